//! Logging and tracing set-up.
//!
//! Logs: human-readable lines on stderr, or one JSON object per line with `LOG_FORMAT=json`,
//! filtered by `RUST_LOG` (default `info`). Whatever `RUST_LOG` asks for, the AWS SDK's and the
//! HTTP stack's TRACE events are dropped: they print whole request and response bodies (SQS
//! messages, S3 error bodies), and avscan's logs carry keys and ids only, never payloads. Log
//! lines carry their own fields, not the spans around them.
//!
//! Traces: avscan's spans (the `message` → `object` → stage tree of `avscan_actors::trace`) go
//! to an OTLP endpoint when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set, and
//! nowhere otherwise. The OpenTelemetry SDK reads the standard variables itself:
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf` by default, or `grpc`), `OTEL_SERVICE_NAME`
//! (`avscan` unless set), `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::{Level, Metadata};

use crate::config::LogFormat;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Crates whose TRACE output includes payloads.
const PAYLOAD_LOGGING_TARGETS: [&str; 5] = ["aws_smithy", "aws_sdk", "aws_config", "hyper", "h2"];

/// Either variable turns trace export on.
const ENDPOINT_VARIABLES: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

fn may_carry_payload(metadata: &Metadata<'_>) -> bool {
    *metadata.level() == Level::TRACE
        && PAYLOAD_LOGGING_TARGETS
            .iter()
            .any(|target| metadata.target().starts_with(target))
}

/// avscan's own spans and events at INFO and above: not the SDK's, the HTTP stack's or
/// ractor's, which would each start traces of their own.
fn is_avscan_trace(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("avscan") && *metadata.level() <= Level::INFO
}

/// Keeps the trace exporter alive; [`shutdown`](Self::shutdown) flushes it.
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered. Call after the pipeline stopped, when every span of
    /// every message has ended (spans still open are never exported).
    pub fn shutdown(self) {
        if let Some(provider) = self.traces {
            if let Err(err) = provider.shutdown() {
                tracing::warn!(error = %err, "flushing traces at shutdown failed");
            }
        }
    }
}

/// Installs logging and, when an OTLP endpoint is configured, trace export. Must run inside
/// the Tokio runtime (the gRPC exporter spawns onto it). `Err` names a bad exporter setting.
pub fn init(format: LogFormat) -> Result<Telemetry, String> {
    let requested = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = requested
        .and(filter_fn(|metadata| !may_carry_payload(metadata)))
        .and(filter_fn(|metadata| metadata.is_event()));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => layer
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => layer.json().with_filter(filter).boxed(),
    };
    let traces = trace_provider()?;
    let spans = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("avscan"))
            .with_filter(filter_fn(is_avscan_trace))
    });
    tracing_subscriber::registry().with(logs).with(spans).init();
    if traces.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    Ok(Telemetry { traces })
}

fn trace_provider() -> Result<Option<SdkTracerProvider>, String> {
    if !ENDPOINT_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
    {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .build()
        .map_err(|err| format!("OTLP trace exporter: {err}"))?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("avscan");
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

//! `avscan run`: builds the adapters from the settings (resolving the queues), serves the
//! operations endpoint, waits for clamd and proves its configuration with the start-up canaries
//! (`limits`), looks at its definitions (`definitions`: the poller receives only while they are
//! accepted), then runs the pipeline until the shutdown signal and drains it. [`RunError`] says
//! why it ended early; `main` turns it into the exit code.

use std::sync::Arc;
use std::time::Duration;

use avscan_actors::allow_list::AllowListHandle;
use avscan_actors::definitions::{DefinitionsPolicy, ReceiveGate};
use avscan_actors::{Pipeline, PipelinePorts};
use aws_config::SdkConfig;

use crate::allow_list::AllowListWatch;
use crate::config::Settings;
use crate::definitions::DefinitionsWatch;
use crate::{aws, clamd, definitions, limits, ops};

/// Why `run` ended early; the process exit code follows from it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("clamd at {address} did not answer within {waited:?}: {detail}")]
    ClamdNotReady {
        address: String,
        waited: std::time::Duration,
        detail: String,
    },
    #[error(transparent)]
    Queue(#[from] avscan_actors::ports::QueueError),
    #[error(transparent)]
    ClamdConfig(#[from] limits::ConfigError),
    #[error("operations endpoint on {address}: {detail}")]
    Ops {
        address: std::net::SocketAddr,
        detail: String,
    },
    #[error("ALLOW_LIST: {0}")]
    AllowList(#[from] crate::allow_list::LoadError),
    #[error("pipeline failed to start: {0}")]
    Start(String),
    #[error("pipeline stopped: {0}")]
    Failed(String),
}

/// Builds the real adapters from the settings; resolves the queues.
async fn ports(
    settings: &Settings,
    sdk: &SdkConfig,
    clamd: &clamd::Clamd,
    receive_gate: ReceiveGate,
    allow_list: AllowListHandle,
) -> Result<PipelinePorts, RunError> {
    let sqs = aws::sqs_client(sdk, &settings.sqs, settings.wait_time);
    let inbound_url = aws::queue_url(&sqs, &settings.inbound_queue).await?;
    let outbound_url = aws::queue_url(&sqs, &settings.outbound_queue).await?;
    let rejected_url = match &settings.rejected_queue {
        Some(queue) => Some(aws::queue_url(&sqs, queue).await?),
        None => None,
    };
    let ports = PipelinePorts {
        inbound: Arc::new(aws::SqsInbound {
            client: sqs.clone(),
            url: inbound_url,
            wait_time: settings.wait_time,
            visibility_timeout: settings.pipeline.visibility_timeout,
        }),
        outbound: Arc::new(sink(&sqs, outbound_url).await?),
        rejected: match rejected_url {
            Some(url) => Some(Arc::new(sink(&sqs, url).await?) as _),
            None => None,
        },
        store: Arc::new(aws::S3Store::new(aws::s3_client(sdk, &settings.s3))),
        notifier: Arc::new(aws::SnsNotifier {
            client: aws::sns_client(sdk, &settings.sns),
            topic_arn: settings.topic_arn.clone(),
        }),
        scanner: Arc::new(clamd.clone()),
        receive_gate,
        allow_list,
        results: settings.result_events.sinks(sdk, &settings.sns),
    };
    Ok(ports)
}

/// A queue avscan sends to, with its `MaximumMessageSize`.
async fn sink(sqs: &aws_sdk_sqs::Client, url: String) -> Result<aws::SqsSink, RunError> {
    let max_message_bytes = aws::queue_max_message_bytes(sqs, &url).await?;
    Ok(aws::SqsSink {
        client: sqs.clone(),
        url,
        max_message_bytes,
    })
}

/// Stage latencies from a millisecond to ten minutes.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0,
];

/// The metrics recorder (installed once per process) and what `/readyz` checks: clamd, its
/// definitions and the two queues avscan cannot work without.
fn probes(
    settings: &Settings,
    sdk: &SdkConfig,
    clamd: clamd::Clamd,
    definitions: ReceiveGate,
) -> Result<Arc<ops::Probes>, RunError> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)
        .and_then(|builder| builder.install_recorder())
        .map_err(|err| RunError::Start(format!("metrics recorder: {err}")))?;
    avscan_actors::metrics::describe();
    definitions::describe();
    // For alerts on scans that take most of it (deploy/prometheus/alerts.yaml).
    metrics::describe_gauge!(
        "avscan_visibility_timeout_seconds",
        metrics::Unit::Seconds,
        "the visibility timeout avscan receives with (the heartbeat extends it while a message is in flight)"
    );
    metrics::gauge!("avscan_visibility_timeout_seconds").set(settings.pipeline.visibility_timeout.as_secs_f64());
    Ok(ops::Probes::new(
        metrics,
        clamd,
        aws::sqs_client(sdk, &settings.sqs, Duration::ZERO),
        vec![settings.inbound_queue.clone(), settings.outbound_queue.clone()],
        definitions,
    ))
}

/// Connects the adapters, waits for clamd, proves its configuration, looks at its definitions
/// (from then on every `DEFINITIONS_CHECK_INTERVAL`) and starts the pipeline with the archive
/// guard's member limit set to clamd's proven MaxFileSize. Stale definitions do not stop the
/// start: the pipeline starts with its receive gate closed and opens it when fresh ones load.
async fn start(
    settings: &Settings,
    sdk: &SdkConfig,
    clamd: &clamd::Clamd,
    mut watch: DefinitionsWatch,
) -> Result<Pipeline, RunError> {
    let allow_list = match &settings.allow_list {
        Some(source) => {
            let watch = AllowListWatch::start(source.clone(), aws::s3_client(sdk, &settings.s3)).await?;
            let handle = watch.handle();
            watch.spawn(settings.allow_list_reload_interval);
            handle
        }
        None => AllowListHandle::empty(),
    };
    let ports = ports(settings, sdk, clamd, watch.gate(), allow_list).await?;
    clamd
        .wait_ready(settings.clamd_ready_timeout)
        .await
        .map_err(|err| RunError::ClamdNotReady {
            address: settings.clamd_address.to_string(),
            waited: settings.clamd_ready_timeout,
            detail: err.to_string(),
        })?;
    let version = match clamd.command("VERSION").await {
        Ok(version) => version,
        Err(err) => {
            tracing::warn!(error = %err, "clamd answered PING but not VERSION");
            String::new()
        }
    };
    tracing::info!(address = %settings.clamd_address, %version, "clamd answers; proving its configuration");
    let expected = limits::Expected {
        member_limit: settings.clamd_max_file_size,
        max_file_size: settings.stream_limit,
    };
    // A clamd that cannot finish a scan is not ready either: keep trying until the ready
    // timeout. Only a definite wrong answer stops avscan at once.
    let deadline = tokio::time::Instant::now() + settings.clamd_ready_timeout;
    let proven = loop {
        match limits::prove(clamd, &expected).await.outcome() {
            Ok(proven) => break proven,
            Err(limits::ConfigError::Unanswered { setting, source }) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%setting, error = %source, "clamd could not scan the start-up canary; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(err) => return Err(err.into()),
        }
    };
    for (setting, proof) in &proven.findings {
        tracing::debug!(%setting, proof, "clamd setting proven");
    }
    let member_limit_mb = proven.member_limit / avscan_actors::defaults::MIB;
    if let Some(discovery) = proven.discovery {
        tracing::info!(
            clamd_max_file_size_mb = discovery.mb,
            took_ms = discovery.took.as_millis() as u64,
            probes = discovery.probes,
            "discovered clamd's MaxFileSize; set CLAMD_MAX_FILE_SIZE={} to verify it instead",
            discovery.mb
        );
    }
    if proven.member_limit < settings.pipeline.max_file_size {
        tracing::warn!(
            clamd_max_file_size_mb = member_limit_mb,
            max_file_size_mb = settings.pipeline.max_file_size / avscan_actors::defaults::MIB,
            "objects larger than clamd's MaxFileSize, up to MAX_FILE_SIZE, are quarantined as unscannable \
             (clamd answers Heuristics.Limits.Exceeded.MaxFileSize for them)"
        );
    }
    tracing::info!(
        address = %settings.clamd_address,
        %version,
        clamd_max_file_size_mb = member_limit_mb,
        took_ms = proven.took.as_millis() as u64,
        "clamd ready: AlertExceedsMax, MaxFileSize, MaxScanSize, StreamMaxLength and AlertEncryptedArchive proven"
    );
    watch.look().await;
    watch.spawn(settings.definitions_check_interval);
    let mut pipeline = settings.pipeline.clone();
    pipeline.archive_member_limit = proven.member_limit;
    Pipeline::start(pipeline, ports)
        .await
        .map_err(|err| RunError::Start(err.to_string()))
}

/// Runs avscan until `shutdown` resolves, then drains within the grace period.
pub async fn run(settings: Settings, shutdown: impl std::future::Future<Output = ()>) -> Result<(), RunError> {
    // Listening for the signal from the start: a SIGTERM while avscan still waits for clamd or
    // resolves queues is a clean stop too, with nothing in flight.
    tokio::pin!(shutdown);
    // One SDK configuration and one clamd client for the probes and the pipeline.
    let sdk = aws::sdk_config_for(&settings).await;
    let clamd = settings.clamd();
    let watch = DefinitionsWatch::new(
        clamd.clone(),
        DefinitionsPolicy {
            max_age: settings.pipeline.definitions_max_age,
        },
    );
    let probes = probes(&settings, &sdk, clamd.clone(), watch.gate())?;
    let ops_address = ops::serve(settings.ops_address, probes.clone())
        .await
        .map_err(|err| RunError::Ops {
            address: settings.ops_address,
            detail: err.to_string(),
        })?;
    tracing::info!(address = %ops_address, "operations endpoint listening (/metrics, /healthz, /readyz)");
    let mut pipeline = tokio::select! {
        () = &mut shutdown => {
            tracing::info!("shutdown requested before the pipeline started");
            return Ok(());
        }
        started = start(&settings, &sdk, &clamd, watch) => started?,
    };
    probes.set(ops::Phase::Running);
    probes.spawn_readiness_gauge(settings.definitions_check_interval);
    tracing::info!(
        inbound = %settings.inbound_queue,
        max_in_flight = settings.pipeline.max_in_flight,
        clamd_connections = settings.pipeline.scanner_connections,
        fetch_concurrency = settings.pipeline.fetch_concurrency,
        "avscan running"
    );
    tokio::select! {
        () = shutdown => {
            probes.set(ops::Phase::Stopping);
            tracing::info!(grace = ?settings.shutdown_grace, in_flight = pipeline.in_flight(), "shutting down");
            let report = pipeline.shutdown(settings.shutdown_grace).await;
            tracing::info!(drained = report.drained, released = report.released, "stopped");
            Ok(())
        }
        reason = pipeline.failed() => Err(RunError::Failed(reason)),
    }
}

//! Logging set-up: human-readable lines on stderr, or one JSON object per line with
//! `LOG_FORMAT=json`, filtered by `RUST_LOG` (default `info`).
//!
//! Whatever `RUST_LOG` asks for, the AWS SDK's and the HTTP stack's TRACE events are dropped:
//! they print whole request and response bodies (SQS messages, S3 error bodies), and avscan's
//! logs carry keys and ids only, never payloads.

use std::io::IsTerminal;

use tracing::{Level, Metadata};

use crate::config::LogFormat;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Crates whose TRACE output includes payloads.
const PAYLOAD_LOGGING_TARGETS: [&str; 5] = ["aws_smithy", "aws_sdk", "aws_config", "hyper", "h2"];

fn may_carry_payload(metadata: &Metadata<'_>) -> bool {
    *metadata.level() == Level::TRACE
        && PAYLOAD_LOGGING_TARGETS
            .iter()
            .any(|target| metadata.target().starts_with(target))
}

pub fn init(format: LogFormat) {
    let requested = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = requested.and(filter_fn(|metadata| !may_carry_payload(metadata)));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Text => layer
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => layer.json().with_filter(filter).boxed(),
    };
    tracing_subscriber::registry().with(layer).init();
}

//! The AWS side of avscan: the SDK's shared configuration and one client per service, each
//! overridden by the old worker's `AWS_<SERVICE>_*` variables and bounded by a per-service attempt
//! timeout. The adapters that plug these clients into the pipeline's ports live beside it, each
//! mapping the SDK's errors to the port's and keeping bucket, key, queue or topic in the error:
//! - `sqs.rs`: the inbound queue ([`SqsInbound`]), the outbound and rejected-events queues
//!   ([`SqsSink`]), and queue look-ups ([`queue_url`], [`queue_depth`]);
//! - `s3.rs`: the buckets ([`S3Store`]), with the multipart copy for objects over one CopyObject;
//! - `sns.rs`: the notification topic ([`SnsNotifier`]);
//! - `results.rs`: the result-event destinations ([`EventBridgeResults`], [`SnsResults`]).
//!
//! [`crate::run`](mod@crate::run) builds the clients and adapters; `check`, `scan` and `ops` use
//! the clients and queue look-ups directly.

mod results;
mod s3;
mod sns;
mod sqs;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::error::DisplayErrorContext;

use crate::config::ServiceEndpoint;

pub use results::{EventBridgeResults, SnsResults};
pub use s3::{S3Store, MAX_SINGLE_COPY};
pub use sns::SnsNotifier;
pub use sqs::{queue_depth, queue_max_message_bytes, queue_url, SqsInbound, SqsSink};

/// The SDK's shared configuration for every service `settings` names.
pub async fn sdk_config_for(settings: &crate::config::Settings) -> SdkConfig {
    sdk_config(&[
        &settings.sqs,
        &settings.s3,
        &settings.sns,
        &settings.result_events.events,
    ])
    .await
}

/// The SDK's shared configuration. A region from the per-service variables short-cuts the
/// region chain (which would otherwise probe instance metadata).
pub async fn sdk_config(services: &[&ServiceEndpoint]) -> SdkConfig {
    let timeouts = TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(region) = services.iter().find_map(|s| s.region.clone()) {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}

fn credentials(service: &ServiceEndpoint) -> Option<aws_sdk_s3::config::Credentials> {
    match (&service.access_key_id, &service.secret_access_key) {
        (Some(key), Some(secret)) => Some(aws_sdk_s3::config::Credentials::new(
            key,
            secret,
            None,
            None,
            "avscan-service-env",
        )),
        _ => None,
    }
}

/// Applies one service's `AWS_<SERVICE>_*` overrides to its SDK config builder (the three SDK
/// builders share no trait).
macro_rules! with_overrides {
    ($builder:expr, $service:expr) => {{
        let mut builder = $builder;
        if let Some(url) = &$service.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(region) = &$service.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(credentials) = credentials($service) {
            builder = builder.credentials_provider(credentials);
        }
        builder
    }};
}

/// Every call is bounded, so a silently stalled connection becomes a retry, not a stuck actor.
/// Each service's bound fits its slowest legitimate call.
fn attempt_timeout(limit: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(limit)
        .build()
}

/// S3's slowest call is a server-side copy of up to 5 GiB. Body reads are bounded by the scanner.
const S3_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);
const SNS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The S3 client: path-style addressing whenever an endpoint is set (emulators).
pub fn s3_client(base: &SdkConfig, service: &ServiceEndpoint) -> aws_sdk_s3::Client {
    let mut builder = with_overrides!(aws_sdk_s3::config::Builder::from(base), service)
        .timeout_config(attempt_timeout(S3_ATTEMPT_TIMEOUT));
    if service.endpoint_url.is_some() || base.endpoint_url().is_some() {
        // Emulators answer on one host: virtual-host style would ask for `bucket.localhost`.
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// `long_poll` is the receive wait time; each attempt gets that plus headroom.
pub fn sqs_client(base: &SdkConfig, service: &ServiceEndpoint, long_poll: Duration) -> aws_sdk_sqs::Client {
    let builder = with_overrides!(aws_sdk_sqs::config::Builder::from(base), service)
        .timeout_config(attempt_timeout(long_poll + Duration::from_secs(30)));
    aws_sdk_sqs::Client::from_conf(builder.build())
}

/// The SNS client; each publish attempt is bounded by `SNS_ATTEMPT_TIMEOUT`.
pub fn sns_client(base: &SdkConfig, service: &ServiceEndpoint) -> aws_sdk_sns::Client {
    let builder = with_overrides!(aws_sdk_sns::config::Builder::from(base), service)
        .timeout_config(attempt_timeout(SNS_ATTEMPT_TIMEOUT));
    aws_sdk_sns::Client::from_conf(builder.build())
}

/// The EventBridge client; each PutEvents attempt is bounded like a publish.
pub fn events_client(base: &SdkConfig, service: &ServiceEndpoint) -> aws_sdk_eventbridge::Client {
    let builder = with_overrides!(aws_sdk_eventbridge::config::Builder::from(base), service)
        .timeout_config(attempt_timeout(SNS_ATTEMPT_TIMEOUT));
    aws_sdk_eventbridge::Client::from_conf(builder.build())
}

/// A bucket's versioning status: `Enabled`, `Suspended`, or `None` when it was never turned on.
pub async fn versioning_status(client: &aws_sdk_s3::Client, bucket: &str) -> Result<Option<String>, String> {
    match client.get_bucket_versioning().bucket(bucket).send().await {
        Ok(output) => Ok(output.status.map(|status| status.as_str().to_owned())),
        // A 200 whose root element the SDK rejects (moto writes `GetBucketVersioningResponse`
        // where S3 writes `VersioningConfiguration`): its `Status` still says it.
        Err(err) if err.raw_response().is_some_and(|raw| raw.status().as_u16() == 200) => {
            let body = err
                .raw_response()
                .and_then(|raw| raw.body().bytes())
                .unwrap_or_default();
            let body = String::from_utf8_lossy(body);
            let status = body
                .split_once("<Status>")
                .and_then(|(_, rest)| rest.split_once("</Status>"))
                .map(|(status, _)| status.to_owned());
            Ok(status)
        }
        Err(err) => Err(format!("GetBucketVersioning {bucket}: {}", detail(err))),
    }
}

/// The whole body of a small object (a report, a manifest, a list), at most `max` bytes; the
/// error says which object and why.
pub async fn read_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    max: usize,
) -> Result<bytes::Bytes, String> {
    let address = format!("s3://{bucket}/{key}");
    let output = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|err| format!("GetObject {address}: {}", detail(err)))?;
    if output.content_length.unwrap_or(0) > max as i64 {
        return Err(format!("{address} is larger than {max} bytes"));
    }
    let body = output.body.collect().await;
    Ok(body.map_err(|err| format!("reading {address}: {err}"))?.into_bytes())
}

fn detail<E: std::error::Error + 'static>(err: E) -> String {
    DisplayErrorContext(err).to_string()
}

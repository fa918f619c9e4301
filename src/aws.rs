//! The AWS adapters: SQS for the inbound, outbound and rejected queues, S3 for the buckets, SNS
//! for notifications. Each maps the SDK's errors to the port's, keeping bucket, key and queue in
//! the error. Clients are built from the SDK's standard configuration, overridden per service by
//! the old worker's `AWS_<SERVICE>_*` variables.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use avscan_actors::event::unquote_etag;
use avscan_actors::model::ObjectRef;
use avscan_actors::ports::*;
use avscan_actors::trace;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use bytes::Bytes;
use futures::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::ServiceEndpoint;

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

pub fn sns_client(base: &SdkConfig, service: &ServiceEndpoint) -> aws_sdk_sns::Client {
    let builder = with_overrides!(aws_sdk_sns::config::Builder::from(base), service)
        .timeout_config(attempt_timeout(SNS_ATTEMPT_TIMEOUT));
    aws_sdk_sns::Client::from_conf(builder.build())
}

fn detail<E: std::error::Error + 'static>(err: E) -> String {
    DisplayErrorContext(err).to_string()
}

/// Resolves a queue given by name (GetQueueUrl) or by URL.
pub async fn queue_url(client: &aws_sdk_sqs::Client, name_or_url: &str) -> Result<String, QueueError> {
    if name_or_url.starts_with("https://") || name_or_url.starts_with("http://") {
        return Ok(name_or_url.to_owned());
    }
    let output = client
        .get_queue_url()
        .queue_name(name_or_url)
        .send()
        .await
        .map_err(|err| QueueError {
            operation: "GetQueueUrl",
            queue: name_or_url.to_owned(),
            detail: detail(err),
        })?;
    output.queue_url.ok_or_else(|| QueueError {
        operation: "GetQueueUrl",
        queue: name_or_url.to_owned(),
        detail: "no url in reply".into(),
    })
}

/// Messages waiting on a queue (ApproximateNumberOfMessages); also proves the queue exists.
pub async fn queue_depth(client: &aws_sdk_sqs::Client, url: &str) -> Result<u64, QueueError> {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|err| QueueError {
            operation: "GetQueueAttributes",
            queue: url.to_owned(),
            detail: detail(err),
        })?;
    Ok(output
        .attributes
        .and_then(|attributes| {
            attributes
                .get(&QueueAttributeName::ApproximateNumberOfMessages)
                .cloned()
        })
        .and_then(|depth| depth.parse().ok())
        .unwrap_or(0))
}

/// The inbound queue.
pub struct SqsInbound {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    pub wait_time: Duration,
    pub visibility_timeout: Duration,
}

impl SqsInbound {
    fn error(&self, operation: &'static str, err: impl std::error::Error + 'static) -> QueueError {
        QueueError {
            operation,
            queue: self.url.clone(),
            detail: detail(err),
        }
    }
}

#[async_trait]
impl InboundQueue for SqsInbound {
    async fn receive(&self, max: usize) -> Result<Vec<QueueMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(self.wait_time.as_secs() as i32)
            .visibility_timeout(self.visibility_timeout.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .message_attribute_names(trace::TRACEPARENT)
            .message_attribute_names(trace::TRACESTATE)
            .send()
            .await
            .map_err(|err| self.error("ReceiveMessage", err))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|message| {
                let system = |name| message.attributes.as_ref().and_then(|a| a.get(&name)).cloned();
                let receive_count = system(MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|count| count.parse().ok())
                    .unwrap_or(1);
                let attribute = |name: &str| {
                    message
                        .message_attributes
                        .as_ref()
                        .and_then(|a| a.get(name))
                        .and_then(|value| value.string_value.clone())
                };
                let trace = TraceHeaders {
                    traceparent: attribute(trace::TRACEPARENT),
                    tracestate: attribute(trace::TRACESTATE),
                    aws_trace_header: system(MessageSystemAttributeName::AwsTraceHeader),
                };
                Some(QueueMessage {
                    message_id: message.message_id.unwrap_or_default(),
                    receipt_handle: message.receipt_handle?,
                    body: message.body.unwrap_or_default(),
                    receive_count,
                    trace,
                })
            })
            .collect())
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<Vec<DeleteFailure>, QueueError> {
        if receipt_handles.is_empty() {
            return Ok(Vec::new());
        }
        // Entry ids are positions: SQS only needs them unique within the call.
        let entries = receipt_handles
            .iter()
            .enumerate()
            .map(|(index, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(handle)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|err| self.error("DeleteMessageBatch", err))?;
        Ok(output
            .failed
            .into_iter()
            .map(|failed| {
                let receipt_handle = failed
                    .id
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| receipt_handles.get(index))
                    .cloned()
                    .unwrap_or_default();
                DeleteFailure {
                    receipt_handle,
                    retryable: !failed.sender_fault,
                    detail: format!("{}: {}", failed.code, failed.message.unwrap_or_default()),
                }
            })
            .collect())
    }

    async fn set_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(timeout.as_secs().min(43_200) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| self.error("ChangeMessageVisibility", err))
    }
}

/// The outbound or rejected-events queue.
pub struct SqsSink {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
}

#[async_trait]
impl MessageSink for SqsSink {
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<Vec<SendFailure>, QueueError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let error = |detail: String| QueueError {
            operation: "SendMessageBatch",
            queue: self.url.clone(),
            detail,
        };
        // Entry ids are positions: SQS only needs them unique within the call.
        let mut entries = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(&message.body);
            for (name, value) in &message.attributes {
                let attribute = aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .map_err(|err| error(err.to_string()))?;
                entry = entry.message_attributes(name, attribute);
            }
            entries.push(entry.build().map_err(|err| error(err.to_string()))?);
        }
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|err| error(detail(err)))?;
        // A failure naming no entry of ours cannot be placed: then nothing counts as sent.
        output
            .failed
            .into_iter()
            .map(|failed| match failed.id.parse::<usize>() {
                Ok(index) if index < messages.len() => Ok(SendFailure {
                    index,
                    detail: format!("{}: {}", failed.code, failed.message.unwrap_or_default()),
                }),
                _ => Err(error(format!("failure for unknown entry {:?}", failed.id))),
            })
            .collect()
    }
}

/// The SNS topic.
pub struct SnsNotifier {
    pub client: aws_sdk_sns::Client,
    pub topic_arn: String,
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        let error = |detail: String| NotifyError {
            topic: self.topic_arn.clone(),
            detail,
        };
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&notification.subject)
            .message(&notification.message);
        for (name, value) in &notification.attributes {
            let attribute = aws_sdk_sns::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|err| error(err.to_string()))?;
            request = request.message_attributes(name, attribute);
        }
        request.send().await.map(|_| ()).map_err(|err| error(detail(err)))
    }
}

/// S3's limit for a single CopyObject.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// The buckets.
pub struct S3Store {
    pub client: aws_sdk_s3::Client,
    /// Objects above this are copied with UploadPartCopy (S3's limit, lowered in tests).
    pub multipart_threshold: u64,
    pub part_size: u64,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self {
            client,
            multipart_threshold: MAX_SINGLE_COPY,
            part_size: 512 * 1024 * 1024,
        }
    }
}

fn status_of<E, R>(err: &SdkError<E, R>) -> Option<u16>
where
    R: HasStatus,
{
    err.raw_response().map(HasStatus::status)
}

/// The HTTP status of an SDK error's raw response.
trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Maps an S3 error: 404 and 412 are the port's typed cases, everything else is retryable.
fn store_error<E>(
    operation: &'static str,
    object: (&str, &str),
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError
where
    E: std::error::Error + 'static,
{
    let (bucket, key) = (object.0.to_owned(), object.1.to_owned());
    match status_of(&err) {
        Some(404) => StoreError::NotFound { bucket, key },
        Some(412) => StoreError::PreconditionFailed { bucket, key },
        _ => StoreError::Failed {
            operation,
            bucket,
            key,
            detail: detail(err),
        },
    }
}

/// S3 wants the copy source URL-encoded, slashes kept.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn copy_source(object: &ObjectRef) -> String {
    let mut source = format!("{}/{}", object.bucket, utf8_percent_encode(&object.key, COPY_SOURCE));
    if let Some(version) = &object.version_id {
        source.push_str("?versionId=");
        source.push_str(&utf8_percent_encode(version, NON_ALPHANUMERIC).to_string());
    }
    source
}

/// The If-Match (or CopySourceIfMatch) value that pins a request to the announced object when it
/// has no version id; a version id pins it by itself.
fn etag_precondition(object: &ObjectRef) -> Option<String> {
    match (&object.version_id, &object.etag) {
        (None, Some(etag)) => Some(format!("\"{etag}\"")),
        _ => None,
    }
}

impl S3Store {
    async fn head_pinned(
        &self,
        object: &ObjectRef,
    ) -> Result<aws_sdk_s3::operation::head_object::HeadObjectOutput, StoreError> {
        let request = self
            .client
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .set_if_match(etag_precondition(object));
        request
            .send()
            .await
            .map_err(|err| store_error("HeadObject", (&object.bucket, &object.key), err))
    }

    async fn copy_in_parts(
        &self,
        source: &ObjectRef,
        size: u64,
        dest: (&str, &str),
        content_type: Option<String>,
        metadata: HashMap<String, String>,
    ) -> Result<(), StoreError> {
        let fail = |operation, detail| StoreError::Failed {
            operation,
            bucket: dest.0.to_owned(),
            key: dest.1.to_owned(),
            detail,
        };
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(dest.0)
            .key(dest.1)
            .set_content_type(content_type)
            .set_metadata(Some(metadata))
            .send()
            .await
            .map_err(|err| store_error("CreateMultipartUpload", dest, err))?;
        let upload_id = upload
            .upload_id
            .ok_or_else(|| fail("CreateMultipartUpload", "no upload id".into()))?;
        let result = async {
            let mut parts = Vec::new();
            let mut start = 0u64;
            while start < size {
                let end = (start + self.part_size).min(size) - 1;
                let part_number = parts.len() as i32 + 1;
                let request = self
                    .client
                    .upload_part_copy()
                    .bucket(dest.0)
                    .key(dest.1)
                    .upload_id(&upload_id)
                    .part_number(part_number)
                    .copy_source(copy_source(source))
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .set_copy_source_if_match(etag_precondition(source));
                let part = request
                    .send()
                    .await
                    .map_err(|err| store_error("UploadPartCopy", (&source.bucket, &source.key), err))?;
                let etag = part
                    .copy_part_result
                    .and_then(|r| r.e_tag)
                    .ok_or_else(|| fail("UploadPartCopy", "no part etag".into()))?;
                parts.push(CompletedPart::builder().e_tag(etag).part_number(part_number).build());
                start = end + 1;
            }
            self.client
                .complete_multipart_upload()
                .bucket(dest.0)
                .key(dest.1)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|err| store_error("CompleteMultipartUpload", dest, err))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(dest.0)
                .key(dest.1)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, object: &ObjectRef) -> Result<ObjectBody, StoreError> {
        let request = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .set_if_match(etag_precondition(object));
        let output = request
            .send()
            .await
            .map_err(|err| store_error("GetObject", (&object.bucket, &object.key), err))?;
        let content_length = output.content_length.unwrap_or_default().max(0) as u64;
        let (bucket, key) = (object.bucket.clone(), object.key.clone());
        let chunks = futures::stream::unfold(Some(output.body), move |body: Option<ByteStream>| {
            let (bucket, key) = (bucket.clone(), key.clone());
            async move {
                let mut body = body?;
                match body.next().await? {
                    Ok(bytes) => Some((Ok(bytes), Some(body))),
                    // End the stream after its first error.
                    Err(err) => Some((
                        Err(StoreError::Failed {
                            operation: "GetObject body",
                            bucket,
                            key,
                            detail: detail(err),
                        }),
                        None,
                    )),
                }
            }
        });
        Ok(ObjectBody {
            content_length,
            chunks: chunks.boxed(),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(output) => Ok(Some(ObjectMeta {
                etag: output.e_tag.as_deref().map(unquote_etag).unwrap_or_default().to_owned(),
                size: output.content_length.unwrap_or_default().max(0) as u64,
                content_type: output.content_type,
                metadata: output.metadata.unwrap_or_default(),
            })),
            Err(err) => match store_error("HeadObject", (bucket, key), err) {
                StoreError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn copy(
        &self,
        source: &ObjectRef,
        dest_bucket: &str,
        dest_key: &str,
        metadata: &[(String, String)],
    ) -> Result<(), StoreError> {
        // The source's own content type and size: REPLACE would drop the former, and the latter
        // decides between one CopyObject and a multipart copy.
        let head = self.head_pinned(source).await?;
        let size = head.content_length.unwrap_or_default().max(0) as u64;
        let metadata: HashMap<String, String> = metadata.iter().cloned().collect();
        if size > self.multipart_threshold {
            return self
                .copy_in_parts(source, size, (dest_bucket, dest_key), head.content_type, metadata)
                .await;
        }
        let request = self
            .client
            .copy_object()
            .bucket(dest_bucket)
            .key(dest_key)
            .copy_source(copy_source(source))
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(metadata))
            .set_content_type(head.content_type)
            .set_copy_source_if_match(etag_precondition(source));
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|err| store_error("CopyObject", (&source.bucket, &source.key), err))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .set_metadata(Some(metadata.iter().cloned().collect()))
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| store_error("PutObject", (bucket, key), err))
    }

    async fn delete(&self, object: &ObjectRef) -> Result<(), StoreError> {
        let request = self
            .client
            .delete_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .set_if_match(etag_precondition(object));
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|err| store_error("DeleteObject", (&object.bucket, &object.key), err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_encoded_and_pinned_to_the_version() {
        let object = ObjectRef {
            bucket: "in".into(),
            key: "guid/a b+c ü.txt".into(),
            version_id: Some("v+1".into()),
            etag: None,
            size: 1,
        };
        assert_eq!(copy_source(&object), "in/guid/a%20b%2Bc%20%C3%BC.txt?versionId=v%2B1");
    }
}

//! The SQS adapters: [`SqsInbound`] implements [`InboundQueue`] for the pipeline's poller, acker
//! and heartbeat; [`SqsSink`] implements [`MessageSink`] for the forwarder's outbound and
//! rejected-events queues. [`queue_url`] and [`queue_depth`] serve `run`, `check` and `ops`.
//! Errors keep the queue.

use std::time::Duration;

use async_trait::async_trait;
use avscan_actors::ports::*;
use avscan_actors::trace;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};

use super::detail;
use aws_sdk_sqs::error::ProvideErrorMetadata;

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
    /// Its attempt timeout must exceed `wait_time`, or every empty long poll would time out.
    pub client: aws_sdk_sqs::Client,
    /// Every call names the queue by URL, resolved once at start-up.
    pub url: String,
    /// The long poll: how long a receive waits for messages before returning empty.
    pub wait_time: Duration,
    /// How long a received message stays hidden while it is scanned.
    pub visibility_timeout: Duration,
}

/// SQS' longest visibility timeout, 12 hours: longer requests are capped.
const MAX_VISIBILITY_SECS: u64 = 43_200;

/// SQS' visibility timeout parameter for `timeout`: whole seconds, capped at 12 hours.
fn visibility_secs(timeout: Duration) -> i32 {
    timeout.as_secs().min(MAX_VISIBILITY_SECS) as i32
}

/// The failed entries of a batch call whose entry ids are positions in `receipt_handles`.
fn entry_failures(failed: Vec<BatchResultErrorEntry>, receipt_handles: &[String]) -> Vec<EntryFailure> {
    failed
        .into_iter()
        .map(|failed| {
            let receipt_handle = failed
                .id
                .parse::<usize>()
                .ok()
                .and_then(|index| receipt_handles.get(index))
                .cloned()
                .unwrap_or_default();
            EntryFailure {
                receipt_handle,
                retryable: !failed.sender_fault,
                detail: format!("{}: {}", failed.code, failed.message.unwrap_or_default()),
            }
        })
        .collect()
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
            .message_attribute_names(FORWARD_CLEAN_ATTRIBUTE)
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
                    forward_clean: attribute(FORWARD_CLEAN_ATTRIBUTE).as_deref() != Some("false"),
                })
            })
            .collect())
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<Vec<EntryFailure>, QueueError> {
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
        Ok(entry_failures(output.failed, receipt_handles))
    }

    async fn set_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(visibility_secs(timeout))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| self.error("ChangeMessageVisibility", err))
    }

    async fn set_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        if receipt_handles.is_empty() {
            return Ok(Vec::new());
        }
        // Entry ids are positions, as for deletes.
        let entries = receipt_handles
            .iter()
            .enumerate()
            .map(|(index, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(visibility_secs(timeout))
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let output = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|err| self.error("ChangeMessageVisibilityBatch", err))?;
        Ok(entry_failures(output.failed, receipt_handles))
    }
}

/// The outbound or rejected-events queue.
pub struct SqsSink {
    /// Sends with the SQS overrides and timeout.
    pub client: aws_sdk_sqs::Client,
    /// Every call names the queue by URL, resolved once at start-up.
    pub url: String,
    /// The queue's `MaximumMessageSize`, read once at start-up.
    pub max_message_bytes: usize,
}

/// Error codes with which SQS refuses the messages themselves: sending them again cannot help.
const REFUSALS: [&str; 5] = [
    "InvalidParameterValue",
    "InvalidMessageContents",
    "BatchRequestTooLong",
    "InvalidAttributeName",
    "InvalidAttributeValue",
];

/// A queue's `MaximumMessageSize` (which also proves it exists).
pub async fn queue_max_message_bytes(client: &aws_sdk_sqs::Client, url: &str) -> Result<usize, QueueError> {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::MaximumMessageSize)
        .send()
        .await
        .map_err(|err| QueueError {
            operation: "GetQueueAttributes",
            queue: url.to_owned(),
            detail: detail(err),
        })?;
    Ok(output
        .attributes
        .and_then(|attributes| attributes.get(&QueueAttributeName::MaximumMessageSize).cloned())
        .and_then(|size| size.parse().ok())
        .unwrap_or(avscan_actors::ports::SQS_MAX_MESSAGE_BYTES))
}

#[async_trait]
impl MessageSink for SqsSink {
    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

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
        let output = match self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => output,
            // A refusal of the call for what it carries: every entry is refused, for good.
            Err(err)
                if err
                    .as_service_error()
                    .and_then(|e| e.code())
                    .is_some_and(|code| REFUSALS.contains(&code)) =>
            {
                let detail = detail(err);
                return Ok((0..messages.len())
                    .map(|index| SendFailure {
                        index,
                        permanent: true,
                        detail: detail.clone(),
                    })
                    .collect());
            }
            Err(err) => return Err(error(detail(err))),
        };
        // A failure naming no entry of ours cannot be placed: then nothing counts as sent.
        output
            .failed
            .into_iter()
            .map(|failed| match failed.id.parse::<usize>() {
                Ok(index) if index < messages.len() => Ok(SendFailure {
                    index,
                    permanent: failed.sender_fault,
                    detail: format!("{}: {}", failed.code, failed.message.unwrap_or_default()),
                }),
                _ => Err(error(format!("failure for unknown entry {:?}", failed.id))),
            })
            .collect()
    }
}

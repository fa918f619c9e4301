//! The result-event destinations: [`EventBridgeResults`] puts each event on an EventBridge bus
//! (PutEvents, ten per call) as GuardDuty puts its "Object Scan Result" events, and
//! [`SnsResults`] publishes the same event, in the envelope EventBridge would deliver it in, to
//! an SNS topic (PublishBatch, ten per call), with `verdict`, `scanResultStatus` and `bucket`
//! attributes for subscription filter policies. Errors keep the bus or topic.

use async_trait::async_trait;
use avscan_actors::ports::{PublishError, ResultSink, SendFailure};
use avscan_actors::result_event::{ResultEvent, DETAIL_TYPE};
use sha2::Digest;

use super::detail;

/// An EventBridge bus.
pub struct EventBridgeResults {
    /// Puts events with the EventBridge overrides and timeout.
    pub client: aws_sdk_eventbridge::Client,
    /// The bus' name or ARN (`default` is the account's default bus).
    pub bus: String,
    /// The events' `source` (EventBridge keeps `aws.*` for AWS services).
    pub source: String,
}

/// The bucket's ARN, the event's `resources` (GuardDuty names its protection plan there).
fn resources(event: &ResultEvent) -> Vec<String> {
    event
        .bucket
        .iter()
        .map(|bucket| format!("arn:aws:s3:::{bucket}"))
        .collect()
}

#[async_trait]
impl ResultSink for EventBridgeResults {
    async fn publish_batch(&self, events: &[ResultEvent]) -> Result<Vec<SendFailure>, PublishError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let error = |detail: String| PublishError {
            destination: format!("event bus {}", self.bus),
            detail,
        };
        let entries = events.iter().map(|event| {
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .event_bus_name(&self.bus)
                .source(&self.source)
                .detail_type(DETAIL_TYPE)
                .detail(event.detail().to_string())
                .set_resources(Some(resources(event)))
                .build()
        });
        let answer = self
            .client
            .put_events()
            .set_entries(Some(entries.collect()))
            .send()
            .await
            .map_err(|err| error(detail(err)))?;
        // The answer's entries are in the request's order; a failed one has an error code. An
        // answer that does not account for every entry is no proof that any went out.
        if answer.entries().len() != events.len() {
            return Err(error(format!(
                "PutEvents answered for {} of {} entries",
                answer.entries().len(),
                events.len()
            )));
        }
        Ok(answer
            .entries()
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                let code = entry.error_code()?;
                Some(SendFailure {
                    index,
                    permanent: false,
                    detail: format!("{code}: {}", entry.error_message().unwrap_or_default()),
                })
            })
            .collect())
    }
}

/// An SNS topic for result events.
pub struct SnsResults {
    /// Publishes with the SNS overrides and timeout.
    pub client: aws_sdk_sns::Client,
    /// The topic's ARN: also the envelope's `account` and `region`.
    pub topic_arn: String,
    /// The envelope's `source`.
    pub source: String,
}

impl SnsResults {
    /// `event` in the envelope EventBridge delivers to its targets, so that a consumer of
    /// GuardDuty's events through EventBridge → SNS reads it unchanged. The `id` is derived from
    /// the message, the object and the verdict: the event of a redelivered message keeps it.
    pub fn envelope(&self, event: &ResultEvent) -> serde_json::Value {
        let detail = event.detail();
        let identity = serde_json::json!([
            event.message_id,
            event.bucket,
            event.key,
            event.version_id,
            event.etag,
            event.verdict.label()
        ]);
        let digest = sha2::Sha256::digest(identity.to_string().as_bytes());
        let hex: String = digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
        let id = format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        );
        // arn:aws:sns:<region>:<account>:<name>
        let mut arn = self.topic_arn.split(':').skip(3);
        let region = arn.next().unwrap_or_default();
        let account = arn.next().unwrap_or_default();
        serde_json::json!({
            "version": "0",
            "id": id,
            "detail-type": DETAIL_TYPE,
            "source": self.source,
            "account": account,
            "time": event.scanned_at,
            "region": region,
            "resources": resources(event),
            "detail": detail,
        })
    }
}

#[async_trait]
impl ResultSink for SnsResults {
    async fn publish_batch(&self, events: &[ResultEvent]) -> Result<Vec<SendFailure>, PublishError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let error = |detail: String| PublishError {
            destination: self.topic_arn.clone(),
            detail,
        };
        let mut entries = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let mut entry = aws_sdk_sns::types::PublishBatchRequestEntry::builder()
                .id(index.to_string())
                .message(self.envelope(event).to_string());
            for (name, value) in event.attributes() {
                let attribute = aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .map_err(|err| error(err.to_string()))?;
                entry = entry.message_attributes(name, attribute);
            }
            entries.push(entry.build().map_err(|err| error(err.to_string()))?);
        }
        let answer = self
            .client
            .publish_batch()
            .topic_arn(&self.topic_arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
            .map_err(|err| error(detail(err)))?;
        Ok(answer
            .failed()
            .iter()
            .map(|failed| SendFailure {
                index: failed.id().parse().unwrap_or(usize::MAX),
                permanent: failed.sender_fault(),
                detail: format!("{}: {}", failed.code(), failed.message().unwrap_or_default()),
            })
            .collect())
    }
}

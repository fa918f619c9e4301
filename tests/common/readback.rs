//! Putting work in and reading outcomes back from the services, as the tests assert them: objects
//! in a `TestEnv`'s buckets, messages on its queues (received, drained, tallied by key, duplicates
//! included), and `Drainer`, which empties a queue as fast as avscan fills it. The resources
//! themselves are made in `environment.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::{Message, QueueAttributeName};

use super::environment::TestEnv;

impl TestEnv {
    /// Uploads `body` as `key` to the unprocessed bucket; returns its ETag, unquoted.
    pub async fn put(&self, key: &str, body: &[u8]) -> String {
        let output = self
            .s3
            .put_object()
            .bucket(&self.unprocessed)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap();
        output.e_tag.unwrap().trim_matches('"').to_owned()
    }

    /// The object's bytes, or `None` if it cannot be read (for any reason).
    pub async fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(output) => Some(output.body.collect().await.unwrap().to_vec()),
            Err(_) => None,
        }
    }

    /// The keys in `bucket`, sorted (one listing page).
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let output = self.s3.list_objects_v2().bucket(bucket).send().await.unwrap();
        let mut keys: Vec<String> = output
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.key)
            .collect();
        keys.sort();
        keys
    }

    /// Sends `body` to the inbound queue, as S3 or a hand-made event would.
    pub async fn send_inbound(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.inbound_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Receives (and deletes) messages from `queue_url` until `count` arrived or `timeout` passed.
    pub async fn receive(&self, queue_url: &str, count: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::new();
        while messages.len() < count && Instant::now() < deadline {
            let output = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            for message in output.messages.unwrap_or_default() {
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(message.receipt_handle.clone().unwrap())
                    .send()
                    .await
                    .unwrap();
                messages.push(message);
            }
        }
        messages
    }

    /// Messages on the queue, visible or in flight.
    pub async fn queue_depth(&self, queue_url: &str) -> u64 {
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attributes = output.attributes.unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|name| attributes.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum()
    }

    /// Waits until the inbound queue holds nothing, visible or in flight.
    pub async fn wait_inbound_empty(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.queue_depth(&self.inbound_url).await > 0 {
            assert!(
                Instant::now() < deadline,
                "inbound queue not emptied within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `key` exists in `bucket`.
    pub async fn wait_for_object(&self, bucket: &str, key: &str, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(body) = self.get(bucket, key).await {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "s3://{bucket}/{key} did not appear within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Receives `expected` messages from `queue_url` (within `timeout`), then looks two seconds
    /// more for anything beyond them: duplicates.
    pub async fn drain(&self, queue_url: &str, expected: usize, timeout: Duration) -> Vec<Message> {
        let mut messages = self.receive(queue_url, expected, timeout).await;
        messages.extend(self.receive(queue_url, usize::MAX, Duration::from_secs(2)).await);
        messages
    }

    /// Drains the outbound queue; returns how often each object key was forwarded.
    pub async fn drain_forwarded(&self, expected: usize, timeout: Duration) -> BTreeMap<String, usize> {
        let messages = self.drain(&self.validation_url, expected, timeout).await;
        tally(messages.iter().flat_map(record_keys))
    }

    /// Drains the notifications queue; returns how often each key was notified.
    pub async fn drain_notified(&self, expected: usize, timeout: Duration) -> BTreeMap<String, usize> {
        let messages = self.drain(&self.notifications_url, expected, timeout).await;
        tally(messages.iter().map(notified_key))
    }

    /// Versions of each key in `bucket` (the bucket must have versioning on).
    pub async fn versions(&self, bucket: &str) -> BTreeMap<String, usize> {
        let output = self.s3.list_object_versions().bucket(bucket).send().await.unwrap();
        tally(output.versions.unwrap_or_default().into_iter().filter_map(|v| v.key))
    }
}

/// The object keys in a forwarded message body: S3 records (form-encoded keys) or an
/// EventBridge event (plain key).
pub fn record_keys(message: &Message) -> Vec<String> {
    let body: serde_json::Value = serde_json::from_str(message.body.as_deref().unwrap_or("")).unwrap_or_default();
    if let Some(key) = body.pointer("/detail/object/key").and_then(|key| key.as_str()) {
        return vec![key.to_owned()];
    }
    body["Records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .filter_map(|record| record["s3"]["object"]["key"].as_str())
                .map(|key| avscan_actors::event::decode_event_key(key).unwrap_or_else(|_| key.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `key` of each quarantine notification (SNS envelope around the report). Checks on the
/// way that the subject is the fixed one: a key (user input) never reaches it.
pub fn notified_key(message: &Message) -> String {
    let envelope: serde_json::Value = serde_json::from_str(message.body.as_deref().unwrap()).unwrap();
    assert_eq!(envelope["Subject"], "avscan: object quarantined");
    let report: serde_json::Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    report["key"].as_str().unwrap().to_owned()
}

/// How many times each key occurs.
pub fn tally(keys: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Reads a queue as fast as it fills, deleting in batches, until told to finish and the queue
/// stays empty.
pub struct Drainer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, Message)>>,
}

impl Drainer {
    /// Starts reading `queue_url` in a task of its own.
    pub fn start(env: Arc<TestEnv>, queue_url: String) -> Drainer {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut messages = Vec::new();
                let mut empty_after_stop = 0;
                while empty_after_stop < 3 {
                    let received = env
                        .sqs
                        .receive_message()
                        .queue_url(&queue_url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .send()
                        .await
                        .map(|output| output.messages.unwrap_or_default())
                        .unwrap_or_default();
                    if received.is_empty() && stop.load(std::sync::atomic::Ordering::SeqCst) {
                        empty_after_stop += 1;
                        continue;
                    }
                    let entries: Vec<_> = received
                        .iter()
                        .enumerate()
                        .map(|(i, message)| {
                            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(message.receipt_handle.clone().unwrap())
                                .build()
                                .unwrap()
                        })
                        .collect();
                    if !entries.is_empty() {
                        env.sqs
                            .delete_message_batch()
                            .queue_url(&queue_url)
                            .set_entries(Some(entries))
                            .send()
                            .await
                            .unwrap();
                    }
                    let arrived = Instant::now();
                    messages.extend(received.into_iter().map(|message| (arrived, message)));
                }
                messages
            }
        });
        Drainer { stop, task }
    }

    /// Stops once the queue stays empty; every message drained, with when it arrived.
    pub async fn finish_timed(self) -> Vec<(Instant, Message)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.unwrap()
    }

    /// Stops once the queue stays empty; every message drained.
    pub async fn finish(self) -> Vec<Message> {
        self.finish_timed()
            .await
            .into_iter()
            .map(|(_, message)| message)
            .collect()
    }
}

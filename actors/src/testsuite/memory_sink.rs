//! Fakes a send-only SQS queue ([`MessageSink`]): the outbound (validation) queue and the
//! rejected-events queue. It keeps the contract the forwarder relies on: at most ten entries per
//! call, and entries that fail are reported by their position in the batch and not kept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::ports::{MessageSink, OutboundMessage, QueueError, SendFailure, SQS_MAX_MESSAGE_BYTES};

/// A send-only queue that keeps what it got.
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Every message sent successfully, in order: what tests assert on.
    pub sent: Mutex<Vec<OutboundMessage>>,
    /// Entries per send call, in order.
    batches: Mutex<Vec<usize>>,
    /// How many of the next entries fail as SQS' server-side errors do.
    failing_entries: AtomicUsize,
    /// How many of the next entries are refused as SQS refuses invalid contents.
    refused_entries: AtomicUsize,
    /// The queue's `MaximumMessageSize`; 0 means SQS' default. Larger messages are refused.
    max_message_bytes: AtomicUsize,
}

impl MemorySink {
    /// A copy of the messages sent so far, in order.
    pub fn messages(&self) -> Vec<OutboundMessage> {
        lock(&self.sent).clone()
    }

    /// Messages sent so far.
    pub fn count(&self) -> usize {
        lock(&self.sent).len()
    }

    /// Forgets what was sent (benches send millions).
    pub fn clear(&self) {
        lock(&self.sent).clear();
        lock(&self.batches).clear();
    }

    /// Entries per send call so far.
    pub fn batch_sizes(&self) -> Vec<usize> {
        lock(&self.batches).clone()
    }

    /// Makes the next `entries` entries fail; they are not kept.
    pub fn fail_next_entries(&self, entries: usize) {
        self.failing_entries.store(entries, Ordering::SeqCst);
    }

    /// Makes the next `entries` entries be refused permanently; they are not kept.
    pub fn refuse_next_entries(&self, entries: usize) {
        self.refused_entries.store(entries, Ordering::SeqCst);
    }

    /// Sets the queue's `MaximumMessageSize`, as a queue created smaller than the inbound one.
    pub fn set_max_message_bytes(&self, bytes: usize) {
        self.max_message_bytes.store(bytes, Ordering::SeqCst);
    }
}

#[async_trait]
impl MessageSink for MemorySink {
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<Vec<SendFailure>, QueueError> {
        assert!(messages.len() <= 10, "SQS takes at most ten entries per batch");
        lock(&self.batches).push(messages.len());
        let mut failures = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            let take = |counter: &AtomicUsize| {
                counter
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            };
            if message.size() > self.max_message_bytes() {
                failures.push(SendFailure {
                    index,
                    permanent: true,
                    detail: format!(
                        "InvalidParameterValue: message must be shorter than {} bytes",
                        self.max_message_bytes()
                    ),
                });
            } else if take(&self.refused_entries) {
                failures.push(SendFailure {
                    index,
                    permanent: true,
                    detail: "InvalidMessageContents: injected refusal".into(),
                });
            } else if take(&self.failing_entries) {
                failures.push(SendFailure {
                    index,
                    permanent: false,
                    detail: "InternalError: injected failure".into(),
                });
            } else {
                lock(&self.sent).push(message.clone());
            }
        }
        Ok(failures)
    }

    fn max_message_bytes(&self) -> usize {
        match self.max_message_bytes.load(Ordering::SeqCst) {
            0 => SQS_MAX_MESSAGE_BYTES,
            bytes => bytes,
        }
    }
}

//! Fakes a send-only SQS queue ([`MessageSink`]): the outbound (validation) queue and the
//! rejected-events queue. It keeps the contract the forwarder relies on: at most ten entries per
//! call, and entries that fail are reported by their position in the batch and not kept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::ports::{MessageSink, OutboundMessage, QueueError, SendFailure};

/// A send-only queue that keeps what it got.
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Every message sent successfully, in order: what tests assert on.
    pub sent: Mutex<Vec<OutboundMessage>>,
    /// Entries per send call, in order.
    batches: Mutex<Vec<usize>>,
    /// How many of the next entries fail as SQS' server-side errors do.
    failing_entries: AtomicUsize,
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
}

#[async_trait]
impl MessageSink for MemorySink {
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<Vec<SendFailure>, QueueError> {
        assert!(messages.len() <= 10, "SQS takes at most ten entries per batch");
        lock(&self.batches).push(messages.len());
        let mut failures = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            let injected = self
                .failing_entries
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if injected {
                failures.push(SendFailure {
                    index,
                    detail: "InternalError: injected failure".into(),
                });
            } else {
                lock(&self.sent).push(message.clone());
            }
        }
        Ok(failures)
    }
}

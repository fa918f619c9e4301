//! Fakes a result-event destination ([`ResultSink`]: EventBridge or SNS). It keeps the contract
//! the publisher relies on: at most ten events per call, and events that fail are reported by
//! their position in the batch and not kept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::ports::{PublishError, ResultSink, SendFailure};
use crate::result_event::ResultEvent;

/// A destination that keeps the events it took.
#[derive(Debug, Default)]
pub struct MemoryResults {
    /// Every event published, in order: what tests assert on.
    pub published: Mutex<Vec<ResultEvent>>,
    /// How many of the next events fail as a service's server-side errors do.
    failing_entries: AtomicUsize,
}

impl MemoryResults {
    /// A copy of the events published so far, in order.
    pub fn events(&self) -> Vec<ResultEvent> {
        lock(&self.published).clone()
    }

    /// Makes the next `entries` events fail; they are not kept.
    pub fn fail_next_entries(&self, entries: usize) {
        self.failing_entries.store(entries, Ordering::SeqCst);
    }
}

#[async_trait]
impl ResultSink for MemoryResults {
    async fn publish_batch(&self, events: &[ResultEvent]) -> Result<Vec<SendFailure>, PublishError> {
        assert!(
            events.len() <= 10,
            "PutEvents and PublishBatch take at most ten entries"
        );
        let mut failures = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let fails = self
                .failing_entries
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fails {
                failures.push(SendFailure {
                    index,
                    permanent: false,
                    detail: "InternalFailure".into(),
                });
            } else {
                lock(&self.published).push(event.clone());
            }
        }
        Ok(failures)
    }
}

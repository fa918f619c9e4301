//! In-memory fakes of every port, for actor tests and benches (feature `testsuite`). They keep
//! the contracts of the real services that the pipeline relies on: visibility timeouts and
//! receipt handles on the queue, conditional GET/DELETE on the store. The store, the notifier
//! and the pattern scanner can be told to panic on their next calls, to test supervision; the
//! queue and the sinks can be told to fail their next batch entries as SQS does server-side.
//!
//! One fake per file, everything re-exported here so that tests and benches name them as
//! `avscan_actors::testsuite::X`:
//!
//! * [`MemoryQueue`] fakes the inbound SQS queue ([`InboundQueue`](crate::ports::InboundQueue)),
//! * [`MemorySink`] the outbound and rejected-events queues ([`MessageSink`](crate::ports::MessageSink)),
//! * [`MemoryStore`] S3 ([`ObjectStore`](crate::ports::ObjectStore)),
//! * [`MemoryNotifier`] SNS ([`Notifier`](crate::ports::Notifier)),
//! * [`MemoryResults`] a result-event destination ([`ResultSink`](crate::ports::ResultSink)),
//! * [`PatternScanner`] and [`NullScanner`] clamd ([`ScanEngine`](crate::ports::ScanEngine)),
//! * [`SlowQueue`], [`SlowSink`], [`SlowStore`] and [`SlowNotifier`] wrap any of these with
//!   [`AwsLatencies`], AWS as it answers from a region,
//! * [`FakeWorld`] wires one of each into a pipeline's ports,
//! * [`s3_event`] and friends write the S3 notifications the queue carries,
//! * [`pseudo_random_bytes`] makes upload content for benches and load tests.

use std::sync::Mutex;

mod content;
mod events;
mod latency;
mod memory_notifier;
mod memory_queue;
mod memory_results;
mod memory_sink;
mod memory_store;
mod panic_switch;
mod scanners;
mod world;

pub use content::pseudo_random_bytes;
pub use events::{encode_event_key, next_sequencer, s3_event, s3_record};
pub use latency::{AwsLatencies, SlowNotifier, SlowQueue, SlowSink, SlowStore};
pub use memory_notifier::MemoryNotifier;
pub use memory_queue::MemoryQueue;
pub use memory_results::MemoryResults;
pub use memory_sink::MemorySink;
pub use memory_store::{MemoryStore, StoredObject};
pub use panic_switch::PanicSwitch;
pub use scanners::{fresh_definitions, NullScanner, PatternScanner, FAKE_VIRUS};
pub use world::FakeWorld;

/// A pipeline configuration for actor tests: one source bucket and its quarantine, with timings
/// that let a test see retries and restarts in milliseconds (visibility 2 s, retries 50 to
/// 200 ms, restart backoff 10 ms).
pub fn quick_config(unprocessed: &str, quarantine: &str) -> crate::PipelineConfig {
    let mut config = crate::PipelineConfig::new(unprocessed, quarantine);
    config.visibility_timeout = std::time::Duration::from_secs(2);
    config.retry_base = std::time::Duration::from_millis(50);
    config.retry_max = std::time::Duration::from_millis(200);
    config.restart_policy = crate::restart::RestartPolicy {
        base_backoff: std::time::Duration::from_millis(10),
        ..crate::restart::RestartPolicy::default()
    };
    config
}

/// Waits until `condition` holds, checking every 10 ms; fails the test after 10 s naming `what`.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Locks a fake's state even if a panic poisoned it, so that one panicking caller (an injected
/// panic, a failed assertion) does not make every later call of the fake panic too.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

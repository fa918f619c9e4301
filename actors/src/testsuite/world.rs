//! Fakes the whole outside world of one pipeline: a [`FakeWorld`] holds one fake of each port
//! and hands them out as [`PipelinePorts`](crate::PipelinePorts), so an actor test can upload an
//! object, run the pipeline and read the outcome back from the fakes. It adds no contract of its
//! own beyond those of the fakes it holds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::allow_list::{AllowList, AllowListControl, AllowListHandle};
use crate::definitions::{ReceiveGate, ReceiveGateControl};

use super::{s3_event, MemoryNotifier, MemoryQueue, MemoryResults, MemorySink, MemoryStore, PatternScanner};

/// All the fakes of one pipeline, and the ports that point at them.
pub struct FakeWorld {
    /// The inbound queue S3 events arrive on.
    pub inbound: Arc<MemoryQueue>,
    /// The outbound (validation) queue clean objects are forwarded to.
    pub outbound: Arc<MemorySink>,
    /// The rejected-events queue unusable events go to.
    pub rejected: Arc<MemorySink>,
    /// Every bucket: the uploads, and the quarantined copies and their reports.
    pub store: Arc<MemoryStore>,
    /// Where quarantine notifications are published.
    pub notifier: Arc<MemoryNotifier>,
    /// Where every record's result event is published.
    pub results: Arc<MemoryResults>,
    /// The scanning engine the scan pool connects to.
    pub scanner: Arc<PatternScanner>,
    /// Closes and opens the poller's receive gate (open unless a test closes it).
    pub receive_gate: Arc<ReceiveGateControl>,
    /// Replaces the allow-list the pipeline reads (empty unless a test fills it).
    pub allow_list: Arc<AllowListControl>,
}

impl FakeWorld {
    /// Fresh fakes with a default [`PatternScanner`]; received messages stay invisible for
    /// `visibility_timeout`.
    pub fn new(visibility_timeout: Duration) -> Self {
        Self::with_scanner(visibility_timeout, PatternScanner::default())
    }

    /// Fresh fakes around a scanner set up by the test (delay, panics).
    pub fn with_scanner(visibility_timeout: Duration, scanner: PatternScanner) -> Self {
        Self {
            inbound: MemoryQueue::new(visibility_timeout),
            outbound: Arc::default(),
            rejected: Arc::default(),
            store: MemoryStore::new(),
            notifier: Arc::default(),
            results: Arc::default(),
            scanner: Arc::new(scanner),
            receive_gate: Arc::new(ReceiveGate::new().0),
            allow_list: Arc::new(AllowListHandle::new(AllowList::default()).0),
        }
    }

    /// The ports a pipeline under test is started with, each pointing at one of these fakes.
    pub fn ports(&self) -> crate::PipelinePorts {
        crate::PipelinePorts {
            inbound: self.inbound.clone(),
            outbound: self.outbound.clone(),
            rejected: Some(self.rejected.clone()),
            store: self.store.clone(),
            notifier: self.notifier.clone(),
            scanner: self.scanner.clone(),
            receive_gate: self.receive_gate.gate(),
            allow_list: self.allow_list.handle(),
            results: vec![self.results.clone()],
        }
    }

    /// Puts an object in `bucket` and queues its S3 ObjectCreated event; returns the message id.
    pub fn upload(&self, bucket: &str, key: &str, body: impl Into<Bytes>) -> String {
        let body = body.into();
        let size = body.len();
        let etag = self.store.put_object(bucket, key, body);
        self.inbound.push(s3_event(bucket, key, size as u64, &etag))
    }
}

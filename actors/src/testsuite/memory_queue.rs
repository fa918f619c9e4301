//! Fakes the inbound SQS queue ([`InboundQueue`]). It keeps the SQS contract the poller and the
//! acker and the heartbeat rely on: a received message is invisible for the visibility timeout,
//! every receive issues a new receipt handle and only the latest one deletes or changes
//! visibility, a receive takes at most ten messages and long-polls when none is visible, a batch
//! delete or visibility change takes at most ten entries and reports stale handles as permanent
//! failures of their entries. Its deletes and visibility changes can be told to panic or (the
//! next visibility change) to stall, and it records every such call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{lock, PanicSwitch};
use crate::ports::{EntryFailure, InboundQueue, QueueError, QueueMessage};

#[derive(Debug)]
struct QueuedMessage {
    id: String,
    body: Arc<str>,
    receipt_handle: String,
    receive_count: u32,
    visible_at: Instant,
}

/// Messages in arrival order (by sequence number), and which of them were ever received: the
/// in-flight ones are among those, so no call walks the whole queue.
#[derive(Debug, Default)]
struct QueueState {
    messages: BTreeMap<u64, QueuedMessage>,
    received: BTreeSet<u64>,
}

impl QueueState {
    fn in_flight(&self, now: Instant) -> usize {
        self.received
            .iter()
            .filter(|seq| self.messages.get(seq).is_some_and(|m| m.visible_at > now))
            .count()
    }

    /// The message a receipt handle (`msg-<seq>#<receive>`) names, if it is still the latest.
    fn by_handle(&mut self, receipt_handle: &str) -> Option<(u64, &mut QueuedMessage)> {
        let seq = receipt_handle.strip_prefix("msg-")?.split('#').next()?.parse().ok()?;
        let message = self.messages.get_mut(&seq)?;
        (message.receipt_handle == receipt_handle).then_some((seq, message))
    }
}

/// An SQS-like queue: received messages are invisible for the visibility timeout, each receive
/// issues a new receipt handle, and only the latest one deletes. An empty receive waits (like
/// SQS' long poll) until a message is pushed or the wait time passes.
#[derive(Debug)]
pub struct MemoryQueue {
    state: Mutex<QueueState>,
    pushed: tokio::sync::Notify,
    visibility_timeout: Duration,
    /// How long an empty receive waits, like SQS' WaitTimeSeconds.
    wait: Duration,
    next_seq: AtomicU64,
    /// How often each message was received, kept after it is deleted.
    receive_history: Mutex<HashMap<String, u32>>,
    /// Most messages ever received and not yet deleted or made visible again.
    peak_in_flight: AtomicUsize,
    /// The receipt handles of every delete call, in order.
    delete_calls: Mutex<Vec<Vec<String>>>,
    /// How many of the next delete entries fail with a retryable error.
    failing_deletes: AtomicUsize,
    /// The receipt handles and timeout of every visibility change, single or batch, in order.
    visibility_calls: Mutex<Vec<(Vec<String>, Duration)>>,
    /// How long the next visibility change waits before it takes effect, like a stalled call.
    stall_next_visibility: Mutex<Option<Duration>>,
    /// Makes the next delete calls panic, to test the acker's supervision.
    pub panic_on_delete: PanicSwitch,
    /// Makes the next visibility changes (single or batch) panic.
    pub panic_on_visibility: PanicSwitch,
}

impl MemoryQueue {
    /// An empty queue whose received messages stay invisible for `visibility_timeout`.
    pub fn new(visibility_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            pushed: tokio::sync::Notify::new(),
            visibility_timeout,
            wait: Duration::from_millis(20),
            next_seq: AtomicU64::new(1),
            receive_history: Mutex::default(),
            peak_in_flight: AtomicUsize::new(0),
            delete_calls: Mutex::default(),
            failing_deletes: AtomicUsize::new(0),
            visibility_calls: Mutex::default(),
            stall_next_visibility: Mutex::default(),
            panic_on_delete: PanicSwitch::default(),
            panic_on_visibility: PanicSwitch::default(),
        })
    }

    /// Queues a message, visible at once, and wakes a waiting receive; returns its message id.
    pub fn push(&self, body: impl Into<String>) -> String {
        self.push_shared(Arc::from(body.into()))
    }

    /// Queues a body shared with other messages (benches queue the same event many times).
    pub fn push_shared(&self, body: Arc<str>) -> String {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let id = format!("msg-{seq}");
        lock(&self.state).messages.insert(
            seq,
            QueuedMessage {
                id: id.clone(),
                body,
                receipt_handle: String::new(),
                receive_count: 0,
                visible_at: Instant::now(),
            },
        );
        self.pushed.notify_waiters();
        id
    }

    /// Messages not yet deleted, visible or not.
    pub fn len(&self) -> usize {
        lock(&self.state).messages.len()
    }

    /// Whether every message was deleted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How often the message with this id was received.
    pub fn receive_count(&self, id: &str) -> Option<u32> {
        let seq: u64 = id.strip_prefix("msg-")?.parse().ok()?;
        lock(&self.state).messages.get(&seq).map(|m| m.receive_count)
    }

    /// How often the message with this id was received, also after it was deleted.
    pub fn receives_of(&self, id: &str) -> u32 {
        lock(&self.receive_history).get(id).copied().unwrap_or(0)
    }

    /// The receipt handles of every delete call so far, one list per call.
    pub fn delete_calls(&self) -> Vec<Vec<String>> {
        lock(&self.delete_calls).clone()
    }

    /// The receipt handles and timeout of every visibility change so far, one entry per call (a
    /// single change is a call of one handle).
    pub fn visibility_calls(&self) -> Vec<(Vec<String>, Duration)> {
        lock(&self.visibility_calls).clone()
    }

    /// Makes the next visibility change, single or batch, wait `stall` before it takes effect
    /// (dropping the call meanwhile leaves no effect, as for an abandoned request).
    pub fn stall_next_visibility(&self, stall: Duration) {
        *lock(&self.stall_next_visibility) = Some(stall);
    }

    /// Makes the next `entries` delete entries fail as SQS' server-side errors do.
    pub fn fail_next_deletes(&self, entries: usize) {
        self.failing_deletes.store(entries, Ordering::SeqCst);
    }

    /// The most messages ever in flight at once (received, not yet deleted or visible again): what
    /// tests check the poller's permits against.
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Records a visibility change and waits out a stall it was told to have.
    async fn begin_visibility_call(&self, receipt_handles: &[String], timeout: Duration) {
        self.panic_on_visibility.check("MemoryQueue visibility change");
        lock(&self.visibility_calls).push((receipt_handles.to_vec(), timeout));
        let stall = lock(&self.stall_next_visibility).take();
        if let Some(stall) = stall {
            tokio::time::sleep(stall).await;
        }
    }

    /// Sets the visibility of the message `receipt_handle` names; false if it is stale.
    fn change_visibility(&self, state: &mut QueueState, receipt_handle: &str, timeout: Duration) -> bool {
        let Some((_, message)) = state.by_handle(receipt_handle) else {
            return false;
        };
        message.visible_at = Instant::now() + timeout;
        if timeout.is_zero() {
            self.pushed.notify_waiters();
        }
        true
    }

    fn take_visible(&self, max: usize) -> Vec<QueueMessage> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let QueueState { messages, received } = &mut *state;
        let mut taken = Vec::new();
        for (seq, message) in messages
            .iter_mut()
            .filter(|(_, m)| m.visible_at <= now)
            .take(max.min(10))
        {
            message.receive_count += 1;
            message.visible_at = now + self.visibility_timeout;
            message.receipt_handle = format!("{}#{}", message.id, message.receive_count);
            received.insert(*seq);
            lock(&self.receive_history).insert(message.id.clone(), message.receive_count);
            taken.push(QueueMessage {
                message_id: message.id.clone(),
                receipt_handle: message.receipt_handle.clone(),
                body: message.body.to_string(),
                receive_count: message.receive_count,
                trace: Default::default(),
                forward_clean: true,
            });
        }
        self.peak_in_flight.fetch_max(state.in_flight(now), Ordering::SeqCst);
        taken
    }
}

#[async_trait]
impl InboundQueue for MemoryQueue {
    async fn receive(&self, max: usize) -> Result<Vec<QueueMessage>, QueueError> {
        let pushed = self.pushed.notified();
        let received = self.take_visible(max);
        if !received.is_empty() {
            return Ok(received);
        }
        let _ = tokio::time::timeout(self.wait, pushed).await;
        Ok(self.take_visible(max))
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<Vec<EntryFailure>, QueueError> {
        self.panic_on_delete.check("MemoryQueue::delete_batch");
        assert!(receipt_handles.len() <= 10, "SQS takes at most ten entries per batch");
        lock(&self.delete_calls).push(receipt_handles.to_vec());
        let mut state = lock(&self.state);
        let mut failures = Vec::new();
        for receipt_handle in receipt_handles {
            let injected = self
                .failing_deletes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let found = state.by_handle(receipt_handle).map(|(seq, _)| seq);
            match (injected, found) {
                (false, Some(seq)) => {
                    state.messages.remove(&seq);
                    state.received.remove(&seq);
                }
                (true, _) | (false, None) => failures.push(EntryFailure {
                    receipt_handle: receipt_handle.clone(),
                    retryable: injected,
                    detail: if injected {
                        "injected failure"
                    } else {
                        "stale receipt handle"
                    }
                    .into(),
                }),
            }
        }
        Ok(failures)
    }

    async fn set_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        self.begin_visibility_call(&[receipt_handle.to_owned()], timeout).await;
        if self.change_visibility(&mut lock(&self.state), receipt_handle, timeout) {
            Ok(())
        } else {
            Err(QueueError {
                operation: "set_visibility",
                queue: "memory".into(),
                detail: "stale receipt handle".into(),
            })
        }
    }

    async fn set_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        assert!(receipt_handles.len() <= 10, "SQS takes at most ten entries per batch");
        if receipt_handles.is_empty() {
            return Ok(Vec::new());
        }
        self.begin_visibility_call(receipt_handles, timeout).await;
        let mut state = lock(&self.state);
        Ok(receipt_handles
            .iter()
            .filter(|receipt_handle| !self.change_visibility(&mut state, receipt_handle, timeout))
            .map(|receipt_handle| EntryFailure {
                receipt_handle: receipt_handle.clone(),
                retryable: false,
                detail: "stale receipt handle".into(),
            })
            .collect())
    }
}

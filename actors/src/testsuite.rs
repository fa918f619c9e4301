//! In-memory fakes of every port, for actor tests and benches (feature `testsuite`). They keep
//! the contracts of the real services that the pipeline relies on: visibility timeouts and
//! receipt handles on the queue, conditional GET/DELETE on the store. Each fake can be told to
//! panic on its next calls, to test supervision.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use crate::model::{ObjectRef, ScanOutcome, Verdict};
use crate::ports::*;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Makes the next `n` calls of a fake panic.
#[derive(Debug, Default)]
pub struct PanicSwitch(AtomicUsize);

impl PanicSwitch {
    pub fn arm(&self, n: usize) {
        self.0.store(n, Ordering::SeqCst);
    }

    fn check(&self, what: &str) {
        if self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("injected panic in {what}");
        }
    }
}

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
}

impl MemoryQueue {
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
        })
    }

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

    /// Makes the next `entries` delete entries fail as SQS' server-side errors do.
    pub fn fail_next_deletes(&self, entries: usize) {
        self.failing_deletes.store(entries, Ordering::SeqCst);
    }

    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::SeqCst)
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

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<Vec<DeleteFailure>, QueueError> {
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
                (true, _) | (false, None) => failures.push(DeleteFailure {
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
        let mut state = lock(&self.state);
        match state.by_handle(receipt_handle) {
            Some((_, message)) => {
                message.visible_at = Instant::now() + timeout;
                if timeout.is_zero() {
                    self.pushed.notify_waiters();
                }
                Ok(())
            }
            None => Err(QueueError {
                operation: "set_visibility",
                queue: "memory".into(),
                detail: "stale receipt handle".into(),
            }),
        }
    }
}

/// A send-only queue that keeps what it got.
#[derive(Debug, Default)]
pub struct MemorySink {
    pub sent: Mutex<Vec<OutboundMessage>>,
    /// Entries per send call, in order.
    batches: Mutex<Vec<usize>>,
    /// How many of the next entries fail as SQS' server-side errors do.
    failing_entries: AtomicUsize,
}

impl MemorySink {
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

#[derive(Debug, Clone)]
pub struct StoredObject {
    pub body: Bytes,
    pub etag: String,
    pub content_type: Option<String>,
    pub metadata: HashMap<String, String>,
}

/// An unversioned S3-like store with conditional GET and DELETE on ETag.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<(String, String), StoredObject>>,
    next_etag: AtomicU64,
    /// Chunk size of GET bodies.
    pub chunk: usize,
    pub panic_on_get: PanicSwitch,
}

impl MemoryStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            chunk: 64 * 1024,
            ..Default::default()
        })
    }

    /// Stores an object; returns its ETag.
    pub fn put_object(&self, bucket: &str, key: &str, body: impl Into<Bytes>) -> String {
        let etag = format!("etag-{}", self.next_etag.fetch_add(1, Ordering::SeqCst));
        let object = StoredObject {
            body: body.into(),
            etag: etag.clone(),
            content_type: None,
            metadata: HashMap::new(),
        };
        lock(&self.objects).insert((bucket.into(), key.into()), object);
        etag
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        lock(&self.objects).get(&(bucket.to_owned(), key.to_owned())).cloned()
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys: Vec<String> = lock(&self.objects)
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    fn pinned(&self, object: &ObjectRef) -> Result<StoredObject, StoreError> {
        let stored = self
            .object(&object.bucket, &object.key)
            .ok_or_else(|| StoreError::NotFound {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
            })?;
        if object.etag.as_ref().is_some_and(|etag| *etag != stored.etag) {
            return Err(StoreError::PreconditionFailed {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
            });
        }
        Ok(stored)
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn get(&self, object: &ObjectRef) -> Result<ObjectBody, StoreError> {
        self.panic_on_get.check("MemoryStore::get");
        let stored = self.pinned(object)?;
        let chunk = self.chunk.max(1);
        let len = stored.body.len();
        let chunks =
            (0..len.div_ceil(chunk)).map(move |i| Ok(stored.body.slice(i * chunk..((i + 1) * chunk).min(len))));
        Ok(ObjectBody {
            content_length: len as u64,
            chunks: futures::stream::iter(chunks.collect::<Vec<_>>()).boxed(),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.object(bucket, key).map(|o| ObjectMeta {
            etag: o.etag,
            size: o.body.len() as u64,
            content_type: o.content_type,
            metadata: o.metadata,
        }))
    }

    async fn copy(
        &self,
        source: &ObjectRef,
        dest_bucket: &str,
        dest_key: &str,
        metadata: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut stored = self.pinned(source)?;
        stored.metadata = metadata.iter().cloned().collect();
        lock(&self.objects).insert((dest_bucket.into(), dest_key.into()), stored);
        Ok(())
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &[(String, String)],
    ) -> Result<(), StoreError> {
        let etag = format!("etag-{}", self.next_etag.fetch_add(1, Ordering::SeqCst));
        let object = StoredObject {
            body,
            etag,
            content_type: Some(content_type.into()),
            metadata: metadata.iter().cloned().collect(),
        };
        lock(&self.objects).insert((bucket.into(), key.into()), object);
        Ok(())
    }

    async fn delete(&self, object: &ObjectRef) -> Result<(), StoreError> {
        self.pinned(object)?;
        lock(&self.objects).remove(&(object.bucket.clone(), object.key.clone()));
        Ok(())
    }
}

/// Keeps published notifications.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    pub published: Mutex<Vec<Notification>>,
    pub panic_on_publish: PanicSwitch,
}

impl MemoryNotifier {
    pub fn notifications(&self) -> Vec<Notification> {
        lock(&self.published).clone()
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.panic_on_publish.check("MemoryNotifier::publish");
        lock(&self.published).push(notification.clone());
        Ok(())
    }
}

/// Body content that [`PatternScanner`] calls infected.
pub const FAKE_VIRUS: &[u8] = b"FAKE-VIRUS-MARKER";

/// A scanner that reads the whole stream and reports [`FAKE_VIRUS`] as infected, anything else
/// as clean.
#[derive(Debug, Default)]
pub struct PatternScanner {
    pub panic_on_scan: Arc<PanicSwitch>,
    pub connections: AtomicU64,
    /// Scans currently running, and the most ever at once.
    pub active: Arc<AtomicUsize>,
    pub peak_active: Arc<AtomicUsize>,
    pub delay: Duration,
}

struct PatternSession {
    id: u64,
    panic_on_scan: Arc<PanicSwitch>,
    active: Arc<AtomicUsize>,
    peak_active: Arc<AtomicUsize>,
    delay: Duration,
}

#[async_trait]
impl ScanEngine for PatternScanner {
    async fn connect(&self) -> Result<Box<dyn ScanSession>, ScanError> {
        Ok(Box::new(PatternSession {
            id: self.connections.fetch_add(1, Ordering::SeqCst),
            panic_on_scan: self.panic_on_scan.clone(),
            active: self.active.clone(),
            peak_active: self.peak_active.clone(),
            delay: self.delay,
        }))
    }
}

#[async_trait]
impl ScanSession for PatternSession {
    async fn scan(&mut self, mut body: ObjectBody) -> Result<ScanOutcome, ScanError> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_active.fetch_max(now, Ordering::SeqCst);
        struct Active(Arc<AtomicUsize>);
        impl Drop for Active {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _active = Active(self.active.clone());
        self.panic_on_scan.check("PatternSession::scan");
        let mut content = Vec::new();
        while let Some(chunk) = body.chunks.next().await {
            content.extend_from_slice(&chunk.map_err(ScanError::Source)?);
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let infected = content.windows(FAKE_VIRUS.len()).any(|w| w == FAKE_VIRUS);
        let verdict = if infected {
            Verdict::Infected {
                signature: "Fake.Virus".into(),
            }
        } else {
            Verdict::Clean
        };
        Ok(ScanOutcome {
            verdict,
            engine: Some("pattern-scanner".into()),
        })
    }

    fn is_reusable(&mut self) -> bool {
        true
    }

    fn id(&self) -> u64 {
        self.id
    }
}

/// A scanner that answers clean at once without reading a byte: what is left is the
/// pipeline's own cost (benches).
#[derive(Debug, Default)]
pub struct NullScanner;

struct NullSession;

#[async_trait]
impl ScanEngine for NullScanner {
    async fn connect(&self) -> Result<Box<dyn ScanSession>, ScanError> {
        Ok(Box::new(NullSession))
    }
}

#[async_trait]
impl ScanSession for NullSession {
    async fn scan(&mut self, _: ObjectBody) -> Result<ScanOutcome, ScanError> {
        Ok(ScanOutcome {
            verdict: Verdict::Clean,
            engine: None,
        })
    }

    fn is_reusable(&mut self) -> bool {
        true
    }

    fn id(&self) -> u64 {
        0
    }
}

/// All the fakes of one pipeline, and the ports that point at them.
pub struct FakeWorld {
    pub inbound: Arc<MemoryQueue>,
    pub outbound: Arc<MemorySink>,
    pub rejected: Arc<MemorySink>,
    pub store: Arc<MemoryStore>,
    pub notifier: Arc<MemoryNotifier>,
    pub scanner: Arc<PatternScanner>,
}

impl FakeWorld {
    pub fn new(visibility_timeout: Duration) -> Self {
        Self::with_scanner(visibility_timeout, PatternScanner::default())
    }

    pub fn with_scanner(visibility_timeout: Duration, scanner: PatternScanner) -> Self {
        Self {
            inbound: MemoryQueue::new(visibility_timeout),
            outbound: Arc::default(),
            rejected: Arc::default(),
            store: MemoryStore::new(),
            notifier: Arc::default(),
            scanner: Arc::new(scanner),
        }
    }

    pub fn ports(&self) -> crate::PipelinePorts {
        crate::PipelinePorts {
            inbound: self.inbound.clone(),
            outbound: self.outbound.clone(),
            rejected: Some(self.rejected.clone()),
            store: self.store.clone(),
            notifier: self.notifier.clone(),
            scanner: self.scanner.clone(),
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

/// An S3 ObjectCreated notification body for one object, key form-encoded like S3 does.
pub fn s3_event(bucket: &str, key: &str, size: u64, etag: &str) -> String {
    serde_json::json!({ "Records": [s3_record(bucket, key, size, etag)] }).to_string()
}

/// Encodes a key the way S3 writes it into events: URL-encoding with `+` for spaces.
pub fn encode_event_key(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(key, KEEP)
        .to_string()
        .replace("%20", "+")
}

pub fn s3_record(bucket: &str, key: &str, size: u64, etag: &str) -> serde_json::Value {
    let encoded = encode_event_key(key);
    serde_json::json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-29T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": { "s3SchemaVersion": "1.0", "bucket": { "name": bucket, "arn": format!("arn:aws:s3:::{bucket}") },
                "object": { "key": encoded, "size": size, "eTag": etag, "sequencer": "00" } }
    })
}

/// Pseudo-random bytes (xorshift) from `seed`: incompressible like most uploads, and matching no
/// signature. For benches and load tests.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

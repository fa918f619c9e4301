//! The ports: narrow traits the pipeline talks through, and [`PipelinePorts`], the set of them
//! a pipeline is started with. Adapters for SQS, S3, SNS and clamd live in the binary crate;
//! in-memory fakes live in `testsuite` (feature `testsuite`). Every method is cancel-safe in the
//! sense that dropping its future leaves no partial effect we rely on.

use crate::allow_list::AllowListHandle;
use crate::definitions::ReceiveGate;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use crate::model::{Judge, JudgedBy, Scanned};
use crate::model::{ObjectRef, ScanOutcome};
use crate::result_event::ResultEvent;
pub use crate::trace::TraceHeaders;

/// The adapters the pipeline talks through.
#[derive(Clone)]
pub struct PipelinePorts {
    /// Where S3 events arrive.
    pub inbound: Arc<dyn InboundQueue>,
    /// Where clean records go (the validation queue).
    pub outbound: Arc<dyn MessageSink>,
    /// Where the raw bodies of rejected events go, if anywhere.
    pub rejected: Option<Arc<dyn MessageSink>>,
    /// The buckets: the unprocessed one and the quarantine.
    pub store: Arc<dyn ObjectStore>,
    /// Where quarantine notifications go.
    pub notifier: Arc<dyn Notifier>,
    /// The scanning engine the scanners hold sessions with.
    pub scanner: Arc<dyn ScanEngine>,
    /// The poller receives only while this is open (the binary closes it while clamd's
    /// definitions are refused).
    pub receive_gate: ReceiveGate,
    /// The false positives operators allowed (the binary reloads them).
    pub allow_list: AllowListHandle,
    /// Where every record's result event goes (EventBridge, SNS); empty: nowhere. A message is
    /// deleted only once every destination took its events.
    pub results: Vec<Arc<dyn ResultSink>>,
}

/// A message as received from the inbound queue.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    /// SQS' message id.
    pub message_id: String,
    /// Changes with every receive; deletes and visibility changes need the latest one.
    pub receipt_handle: String,
    /// The event, as sent.
    pub body: String,
    /// SQS' ApproximateReceiveCount: 1 on the first delivery; drives the retry backoff.
    pub receive_count: u32,
    /// The sender's trace context, continued by the message's trace.
    pub trace: TraceHeaders,
    /// `false` when the sender asked, with [`FORWARD_CLEAN_ATTRIBUTE`] = `false`, that clean
    /// objects not be forwarded (a rescan by `avscan backfill --action report`); only ever
    /// narrows what the policy does.
    pub forward_clean: bool,
}

/// The message attribute that asks for clean objects not to be forwarded (value `false`).
pub const FORWARD_CLEAN_ATTRIBUTE: &str = "avscan-forward-clean";

/// A message for the outbound or the rejected-events queue.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    /// The message body.
    pub body: String,
    /// String message attributes.
    pub attributes: Vec<(String, String)>,
}

/// A queue call that failed as a whole.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} on queue {queue} failed: {detail}")]
pub struct QueueError {
    /// The SQS operation, e.g. `ReceiveMessage`.
    pub operation: &'static str,
    /// The queue's name or URL.
    pub queue: String,
    /// What the service or the network said.
    pub detail: String,
}

/// The inbound queue S3 events arrive on.
#[async_trait]
pub trait InboundQueue: Send + Sync + 'static {
    /// Long-polls for up to `max` messages (1 to 10). An empty list means the wait time passed.
    async fn receive(&self, max: usize) -> Result<Vec<QueueMessage>, QueueError>;
    /// Deletes up to ten messages in one call. `Err` means the call as a whole failed (nothing
    /// is known to be deleted); otherwise the entries that failed are returned, each saying
    /// whether trying again can help. An empty list is a no-op. A receipt handle that is no
    /// longer valid is a permanent failure: the message comes back and is handled again.
    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<Vec<EntryFailure>, QueueError>;
    /// Sets the message's visibility timeout from now: zero makes it visible at once.
    async fn set_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError>;
    /// Sets the visibility timeout of up to ten messages from now in one call (SQS'
    /// ChangeMessageVisibilityBatch): zero makes them visible at once. `Err` means the call as a
    /// whole failed (no entry is known to be changed); otherwise the entries that failed are
    /// returned, each saying whether trying again can help. An empty list is a no-op. A receipt
    /// handle that is no longer the message's latest (it was received again, or deleted) fails
    /// its entry permanently and leaves the others alone.
    async fn set_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<EntryFailure>, QueueError>;
}

/// One entry of a batch delete or visibility change that did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryFailure {
    /// The entry's receipt handle, as given.
    pub receipt_handle: String,
    /// SQS' `SenderFault = false`: a server-side failure that another try may fix.
    pub retryable: bool,
    /// SQS' code and message.
    pub detail: String,
}

/// A queue we only send to: the outbound (validation) queue, the rejected-events queue.
#[async_trait]
pub trait MessageSink: Send + Sync + 'static {
    /// Sends up to ten messages in one call. `Err` means the call as a whole failed (nothing is
    /// known to be sent); otherwise the entries that failed are returned. An empty slice is a
    /// no-op.
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<Vec<SendFailure>, QueueError>;

    /// The largest message the queue takes, bytes: the body plus every attribute's name, type
    /// (`String`) and value, as SQS counts it. A larger one fails as a permanent refusal.
    fn max_message_bytes(&self) -> usize {
        SQS_MAX_MESSAGE_BYTES
    }
}

/// SQS' default (and, before 2025, largest) `MaximumMessageSize`.
pub const SQS_MAX_MESSAGE_BYTES: usize = 256 * 1024;

impl OutboundMessage {
    /// Its size as SQS counts it against `MaximumMessageSize`.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(name, value)| name.len() + "String".len() + value.len())
                .sum::<usize>()
    }
}

/// One entry of a batch send that did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct SendFailure {
    /// Position of the entry in the batch.
    pub index: usize,
    /// The queue refused the message itself (too long, invalid contents): sending it again
    /// fails the same way. Otherwise (server-side, throttling) another try may succeed.
    pub permanent: bool,
    /// SQS' code and message.
    pub detail: String,
}

/// Why an object store call failed; `bucket` and `key` name the object it was about.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No such object (or version): for a GET, a newer event or a quarantine already took it.
    #[error("s3://{bucket}/{key} not found")]
    NotFound {
        /// The object's bucket.
        bucket: String,
        /// The object's key.
        key: String,
    },
    /// The object exists but is not the one the event announced (its ETag changed).
    #[error("s3://{bucket}/{key} is not the announced version")]
    PreconditionFailed {
        /// The object's bucket.
        bucket: String,
        /// The object's key.
        key: String,
    },
    /// A write asked for an absent key and something is stored there.
    #[error("s3://{bucket}/{key} already exists")]
    AlreadyExists {
        /// The destination's bucket.
        bucket: String,
        /// The destination's key.
        key: String,
    },
    /// Anything else: network, 5xx, throttling, a broken body stream. Retried.
    #[error("{operation} s3://{bucket}/{key} failed: {detail}")]
    Failed {
        /// The S3 operation, e.g. `GetObject`.
        operation: &'static str,
        /// The object's bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// What the service or the network said.
        detail: String,
    },
}

/// A streaming object body. Chunks come as the network delivers them; the scanner regroups them.
pub struct ObjectBody {
    /// The GET's Content-Length, checked against the bytes actually streamed.
    pub content_length: u64,
    /// The body's bytes, in order; an error ends it.
    pub chunks: BoxStream<'static, Result<Bytes, StoreError>>,
}

/// What a HEAD tells about an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectMeta {
    /// Without quotes.
    pub etag: String,
    /// Content-Length.
    pub size: u64,
    /// Content-Type, if set.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`), keys without the prefix, lower case.
    pub metadata: HashMap<String, String>,
    /// The KMS key the object is encrypted with (SSE-KMS), if it is: a copy of it must be too.
    pub kms_key_id: Option<String>,
}

/// How a copy or a put is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Only if nothing is stored under the key yet (S3's `If-None-Match: *`): evidence is never
    /// overwritten. `AlreadyExists` otherwise.
    pub if_absent: bool,
    /// Encrypt with this KMS key (SSE-KMS); `None`: the bucket's default encryption.
    pub kms_key_id: Option<String>,
}

/// One server-side copy.
#[derive(Debug, Clone, Copy)]
pub struct CopyRequest<'a> {
    /// Exactly the object to copy, pinned like a GET.
    pub source: &'a ObjectRef,
    /// What a pinned HEAD of the source said: its size and content type travel with the copy.
    pub source_meta: &'a ObjectMeta,
    /// Where the copy goes.
    pub bucket: &'a str,
    /// Its key there.
    pub key: &'a str,
    /// The copy's user metadata, replacing the source's.
    pub metadata: &'a [(String, String)],
    /// Conditions and encryption.
    pub options: &'a WriteOptions,
}

/// The buckets: S3 in production.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// GETs exactly the announced object: by `version_id` when it has one, else conditional on
    /// `etag` (If-Match). Returns `NotFound` or `PreconditionFailed`, never `Failed`, when the
    /// object is gone or was replaced.
    async fn get(&self, object: &ObjectRef) -> Result<ObjectBody, StoreError>;
    /// What is stored under `key` now, whatever it is. `Ok(None)` when there is no such object.
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// HEADs exactly the announced object (pinned like `get`). `NotFound`/`PreconditionFailed`
    /// as for `get`.
    async fn head_object(&self, object: &ObjectRef) -> Result<ObjectMeta, StoreError>;
    /// Server-side copies exactly `request.source` (pinned like `get`), keeping its content type
    /// and replacing its user metadata. Objects too large for a single copy are copied in parts.
    /// `NotFound`/`PreconditionFailed` as for `get`; `AlreadyExists` when the options ask for an
    /// absent key and one is there.
    async fn copy(&self, request: CopyRequest<'_>) -> Result<(), StoreError>;
    /// Stores a small object with user metadata; `AlreadyExists` as for `copy`.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &[(String, String)],
        options: &WriteOptions,
    ) -> Result<(), StoreError>;
    /// Deletes exactly `object`: its version when it has one, else conditional on its etag, so a
    /// newer upload under the same key is never deleted. `NotFound`/`PreconditionFailed` when
    /// it is already gone or was replaced.
    async fn delete(&self, object: &ObjectRef) -> Result<(), StoreError>;
    /// The tags of `object`: of its version when it has one, else of whatever is under its key
    /// now (S3 cannot make tagging conditional on an ETag: the caller checks the ETag around
    /// it). `NotFound` when it is gone.
    async fn tags(&self, object: &ObjectRef) -> Result<Vec<(String, String)>, StoreError>;
    /// Replaces the tags of `object` (its version when it has one, else what is under its key
    /// now) with `tags`.
    async fn put_tags(&self, object: &ObjectRef, tags: &[(String, String)]) -> Result<(), StoreError>;
}

/// An SNS-style notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// A fixed subject: never user data.
    pub subject: String,
    /// The body.
    pub message: String,
    /// String message attributes.
    pub attributes: Vec<(String, String)>,
}

/// A publish that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("publish to {topic} failed: {detail}")]
pub struct NotifyError {
    /// The topic's ARN.
    pub topic: String,
    /// What the service or the network said.
    pub detail: String,
}

/// Where quarantine notifications go: SNS in production.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Publishes one notification; `Ok` once the service accepted it.
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError>;
}

/// A result-event publish that failed as a whole.
#[derive(Debug, Clone, thiserror::Error)]
#[error("publishing result events to {destination} failed: {detail}")]
pub struct PublishError {
    /// The event bus or topic.
    pub destination: String,
    /// What the service or the network said.
    pub detail: String,
}

/// Where result events go: an EventBridge bus or an SNS topic in production.
#[async_trait]
pub trait ResultSink: Send + Sync + 'static {
    /// Publishes up to ten events in one call. `Err` means the call as a whole failed (nothing
    /// is known to be published); otherwise the entries that failed are returned. An empty
    /// slice is a no-op.
    async fn publish_batch(&self, events: &[ResultEvent]) -> Result<Vec<SendFailure>, PublishError>;
}

/// Why a scan has no verdict; always retried, never taken for clean.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScanError {
    /// The engine cannot be reached (refused, restarting).
    #[error("scanner unavailable: {0}")]
    Unavailable(String),
    /// The connection broke mid-scan.
    #[error("scanner connection failed: {0}")]
    Io(String),
    /// A read or write stalled past its timeout.
    #[error("scanner timed out: {0}")]
    Timeout(String),
    /// A reply that is not a verdict we know.
    #[error("scanner replied {0:?}")]
    UnexpectedReply(String),
    /// The object's body stream broke; the scan was aborted without a verdict.
    #[error("object stream failed: {0}")]
    Source(StoreError),
    /// The engine's definitions changed while it scanned (clamd reloaded them): which of the
    /// two judged the body is unknown, so the verdict is not taken.
    #[error("the engine's definitions changed during the scan ({before} -> {after})")]
    DefinitionsChanged {
        /// The engine named before the scan.
        before: String,
        /// The engine named after the verdict.
        after: String,
    },
    /// The body ended before (or went past) its Content-Length: never scanned as complete.
    #[error("object stream had {streamed} bytes, expected {expected}")]
    LengthMismatch {
        /// The Content-Length.
        expected: u64,
        /// What came.
        streamed: u64,
    },
}

/// Opens scanning sessions (one per pooled connection).
#[async_trait]
pub trait ScanEngine: Send + Sync + 'static {
    /// Opens a session; fails while the engine is unreachable.
    async fn connect(&self) -> Result<Box<dyn ScanSession>, ScanError>;
}

/// One connection to the scanning engine, used by one scanner at a time.
#[async_trait]
pub trait ScanSession: Send + 'static {
    /// Streams the body to the engine. `Ok` only for a certain verdict on the complete body;
    /// anything else is an error and the session must not be reused. Which definitions gave
    /// the verdict may be named only later ([`JudgedBy::Confirming`]): the session goes on
    /// scanning meanwhile.
    async fn scan(&mut self, body: ObjectBody) -> Result<Scanned, ScanError>;
    /// Names the definitions of every verdict of this session still waiting for them. Its
    /// owner calls it before the session idles, so no verdict waits for a next scan.
    async fn confirm(&mut self) -> Result<(), ScanError>;
    /// Cheap check before reuse: false once the engine closed the connection.
    fn is_reusable(&mut self) -> bool;
    /// Identifies the connection in logs.
    fn id(&self) -> u64;

    /// One body scanned and its definitions named: for callers that scan one at a time.
    async fn scan_and_confirm(&mut self, body: ObjectBody) -> Result<ScanOutcome, ScanError> {
        let scanned = self.scan(body).await?;
        self.confirm().await?;
        scanned.outcome().await
    }
}

//! AWS as it answers from a region, around any fake: [`AwsLatencies`] are the delays (one place,
//! stated in BENCHMARKS.md), and the `Slow…` wrappers add them to every call of the port they
//! wrap, with jitter: an S3 GET's first byte, then its body at a per-stream transfer rate; every
//! other S3 call; every SQS call; every SNS publish. They change no outcome, only when it comes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::model::ObjectRef;
use crate::ports::*;

/// The delays of AWS seen from a task in the same region.
#[derive(Debug, Clone, Copy)]
pub struct AwsLatencies {
    /// An S3 GET's first byte, and every other S3 call.
    pub s3_call: Duration,
    /// An S3 body's transfer rate per stream, bytes per second.
    pub s3_bytes_per_second: f64,
    /// Every SQS call (receive, send, delete, visibility).
    pub sqs_call: Duration,
    /// Every SNS publish.
    pub sns_call: Duration,
    /// Each delay is drawn uniformly from ±this share of its value.
    pub jitter: f64,
}

impl AwsLatencies {
    /// S3 first byte 30 ms and 100 MB/s per stream, SQS 15 ms, SNS 20 ms, ±30 %.
    pub const IN_REGION: AwsLatencies = AwsLatencies {
        s3_call: Duration::from_millis(30),
        s3_bytes_per_second: 100e6,
        sqs_call: Duration::from_millis(15),
        sns_call: Duration::from_millis(20),
        jitter: 0.3,
    };
}

/// Jittered sleeps, reproducible (a fixed-seed xorshift shared by every call).
#[derive(Debug)]
struct Clock {
    latencies: AwsLatencies,
    state: AtomicU64,
}

impl Clock {
    fn new(latencies: AwsLatencies) -> Arc<Clock> {
        Arc::new(Clock {
            latencies,
            state: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
        })
    }

    fn jittered(&self, base: Duration) -> Duration {
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::Relaxed);
        let unit = (x >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        base.mul_f64(1.0 + self.latencies.jitter * (2.0 * unit - 1.0))
    }

    async fn wait(&self, base: Duration) {
        tokio::time::sleep(self.jittered(base)).await;
    }
}

/// The inbound queue, slowed.
pub struct SlowQueue {
    inner: Arc<dyn InboundQueue>,
    clock: Arc<Clock>,
}

impl SlowQueue {
    /// `inner` with `latencies`.
    pub fn new(inner: Arc<dyn InboundQueue>, latencies: AwsLatencies) -> Arc<SlowQueue> {
        Arc::new(SlowQueue {
            inner,
            clock: Clock::new(latencies),
        })
    }
}

#[async_trait]
impl InboundQueue for SlowQueue {
    async fn receive(&self, max: usize) -> Result<Vec<QueueMessage>, QueueError> {
        self.clock.wait(self.clock.latencies.sqs_call).await;
        self.inner.receive(max).await
    }
    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<Vec<EntryFailure>, QueueError> {
        self.clock.wait(self.clock.latencies.sqs_call).await;
        self.inner.delete_batch(receipt_handles).await
    }
    async fn set_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        self.clock.wait(self.clock.latencies.sqs_call).await;
        self.inner.set_visibility(receipt_handle, timeout).await
    }
    async fn set_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        self.clock.wait(self.clock.latencies.sqs_call).await;
        self.inner.set_visibility_batch(receipt_handles, timeout).await
    }
}

/// A send-only queue, slowed.
pub struct SlowSink {
    inner: Arc<dyn MessageSink>,
    clock: Arc<Clock>,
}

impl SlowSink {
    /// `inner` with `latencies`.
    pub fn new(inner: Arc<dyn MessageSink>, latencies: AwsLatencies) -> Arc<SlowSink> {
        Arc::new(SlowSink {
            inner,
            clock: Clock::new(latencies),
        })
    }
}

#[async_trait]
impl MessageSink for SlowSink {
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<Vec<SendFailure>, QueueError> {
        self.clock.wait(self.clock.latencies.sqs_call).await;
        self.inner.send_batch(messages).await
    }
    fn max_message_bytes(&self) -> usize {
        self.inner.max_message_bytes()
    }
}

/// The buckets, slowed: a GET's body arrives at the per-stream rate after its first byte.
pub struct SlowStore {
    inner: Arc<dyn ObjectStore>,
    clock: Arc<Clock>,
}

impl SlowStore {
    /// `inner` with `latencies`.
    pub fn new(inner: Arc<dyn ObjectStore>, latencies: AwsLatencies) -> Arc<SlowStore> {
        Arc::new(SlowStore {
            inner,
            clock: Clock::new(latencies),
        })
    }

    async fn call(&self) {
        self.clock.wait(self.clock.latencies.s3_call).await;
    }
}

#[async_trait]
impl ObjectStore for SlowStore {
    async fn get(&self, object: &ObjectRef) -> Result<ObjectBody, StoreError> {
        self.call().await;
        let body = self.inner.get(object).await?;
        let rate = self.clock.latencies.s3_bytes_per_second;
        let chunks = body
            .chunks
            .then(move |chunk| async move {
                if let Ok(bytes) = &chunk {
                    tokio::time::sleep(Duration::from_secs_f64(bytes.len() as f64 / rate)).await;
                }
                chunk
            })
            .boxed();
        Ok(ObjectBody {
            content_length: body.content_length,
            chunks,
        })
    }
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.call().await;
        self.inner.head(bucket, key).await
    }
    async fn head_object(&self, object: &ObjectRef) -> Result<ObjectMeta, StoreError> {
        self.call().await;
        self.inner.head_object(object).await
    }
    async fn copy(&self, request: CopyRequest<'_>) -> Result<(), StoreError> {
        self.call().await;
        self.inner.copy(request).await
    }
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: bytes::Bytes,
        content_type: &str,
        metadata: &[(String, String)],
        options: &WriteOptions,
    ) -> Result<(), StoreError> {
        self.call().await;
        self.inner.put(bucket, key, body, content_type, metadata, options).await
    }
    async fn delete(&self, object: &ObjectRef) -> Result<(), StoreError> {
        self.call().await;
        self.inner.delete(object).await
    }
    async fn tags(&self, object: &ObjectRef) -> Result<Vec<(String, String)>, StoreError> {
        self.call().await;
        self.inner.tags(object).await
    }
    async fn put_tags(&self, object: &ObjectRef, tags: &[(String, String)]) -> Result<(), StoreError> {
        self.call().await;
        self.inner.put_tags(object, tags).await
    }
}

/// The notification topic, slowed.
pub struct SlowNotifier {
    inner: Arc<dyn Notifier>,
    clock: Arc<Clock>,
}

impl SlowNotifier {
    /// `inner` with `latencies`.
    pub fn new(inner: Arc<dyn Notifier>, latencies: AwsLatencies) -> Arc<SlowNotifier> {
        Arc::new(SlowNotifier {
            inner,
            clock: Clock::new(latencies),
        })
    }
}

#[async_trait]
impl Notifier for SlowNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.clock.wait(self.clock.latencies.sns_call).await;
        self.inner.publish(notification).await
    }
}

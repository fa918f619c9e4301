//! Fakes the S3 side of the inbound queue: the ObjectCreated notification bodies S3 would send.
//! They keep the event format the parser relies on (`eventName`, `eventTime`, `s3.bucket.name`,
//! `s3.object.{key, size, eTag, sequencer}` in each of `Records`), keys form-encoded the way
//! S3 writes them, and a `sequencer` that grows with every event, as S3's grows with every
//! upload of a key. They write no `versionId`: the events of an unversioned bucket.

use std::sync::atomic::{AtomicU64, Ordering};

/// The last sequencer written: each event gets a larger one.
static SEQUENCER: AtomicU64 = AtomicU64::new(0x0A00_0000);

/// An S3 ObjectCreated notification body for one object, key form-encoded like S3 does.
pub fn s3_event(bucket: &str, key: &str, size: u64, etag: &str) -> String {
    serde_json::json!({ "Records": [s3_record(bucket, key, size, etag)] }).to_string()
}

pub use crate::event::encode_event_key;

/// One ObjectCreated record, for tests that build events of several records or break one.
pub fn s3_record(bucket: &str, key: &str, size: u64, etag: &str) -> serde_json::Value {
    let encoded = encode_event_key(key);
    serde_json::json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-29T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": { "s3SchemaVersion": "1.0", "bucket": { "name": bucket, "arn": format!("arn:aws:s3:::{bucket}") },
                "object": { "key": encoded, "size": size, "eTag": etag, "sequencer": next_sequencer() } }
    })
}

/// A sequencer larger than every one before, in S3's form (upper-case hex).
pub fn next_sequencer() -> String {
    format!("{:016X}", SEQUENCER.fetch_add(1, Ordering::SeqCst) + 1)
}

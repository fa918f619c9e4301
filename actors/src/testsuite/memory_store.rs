//! Fakes S3 ([`ObjectStore`]) as an unversioned bucket store. It keeps the contract the fetcher
//! and the quarantiner rely on: GET, copy and DELETE are pinned to the announced ETag and answer
//! `NotFound` or `PreconditionFailed`, never `Failed`, for an object that is gone or was
//! replaced; GET bodies stream in chunks; a copy keeps the content type and replaces the user
//! metadata. Its GET can be told to panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{lock, PanicSwitch};
use crate::model::ObjectRef;
use crate::ports::{ObjectBody, ObjectMeta, ObjectStore, StoreError};

/// One object as [`MemoryStore`] keeps it, for tests to read back.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The object's content.
    pub body: Bytes,
    /// Changes with every put (`etag-<n>`); what GET, copy and DELETE are conditional on.
    pub etag: String,
    /// Set by `put` (quarantine reports), kept by copies; `None` for objects a test uploaded.
    pub content_type: Option<String>,
    /// User metadata, set by `put` and replaced by a copy: where quarantine copies and reports
    /// record which object they were written for.
    pub metadata: HashMap<String, String>,
}

/// An unversioned S3-like store with conditional GET and DELETE on ETag.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<(String, String), StoredObject>>,
    next_etag: AtomicU64,
    /// Chunk size of GET bodies.
    pub chunk: usize,
    /// Makes the next GETs panic, to test the fetchers' supervision.
    pub panic_on_get: PanicSwitch,
}

impl MemoryStore {
    /// An empty store whose GET bodies come in 64 KiB chunks.
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

    /// A copy of the object under `bucket`/`key`, if there is one.
    pub fn object(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        lock(&self.objects).get(&(bucket.to_owned(), key.to_owned())).cloned()
    }

    /// The keys in `bucket`, sorted.
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

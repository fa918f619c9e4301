//! Fakes S3 ([`ObjectStore`]) as an unversioned bucket store. It keeps the contract the fetcher
//! and the quarantiner rely on: GET, HEAD, copy and DELETE are pinned to the announced ETag and
//! answer `NotFound` or `PreconditionFailed`, never `Failed`, for an object that is gone or was
//! replaced; the ETag is a digest of the content, so the same bytes uploaded again have the same
//! one, as on S3; a write asked for an absent key fails with `AlreadyExists`; GET bodies stream
//! in chunks; a copy keeps the content type, replaces the user metadata and is encrypted as
//! asked. Its GET can be told to panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{lock, PanicSwitch};
use crate::model::ObjectRef;
use crate::ports::{CopyRequest, ObjectBody, ObjectMeta, ObjectStore, StoreError, WriteOptions};

/// One object as [`MemoryStore`] keeps it, for tests to read back.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The object's content.
    pub body: Bytes,
    /// A digest of the content, as S3's MD5 is; what GET, copy and DELETE are conditional on.
    pub etag: String,
    /// Set by `put` (quarantine reports), kept by copies; `None` for objects a test uploaded.
    pub content_type: Option<String>,
    /// User metadata, set by `put` and replaced by a copy: where quarantine copies and reports
    /// record which object they were written for.
    pub metadata: HashMap<String, String>,
    /// The KMS key it is encrypted with, if any.
    pub kms_key_id: Option<String>,
    /// Its object tags, in order.
    pub tags: Vec<(String, String)>,
}

impl StoredObject {
    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            etag: self.etag.clone(),
            size: self.body.len() as u64,
            content_type: self.content_type.clone(),
            metadata: self.metadata.clone(),
            kms_key_id: self.kms_key_id.clone(),
        }
    }
}

/// The ETag of `body`: the same bytes always get the same one.
fn etag_of(body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    digest[..16].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An unversioned S3-like store with conditional GET and DELETE on ETag.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<(String, String), StoredObject>>,
    /// Chunk size of GET bodies.
    pub chunk: usize,
    /// Makes the next GETs panic, to test the fetchers' supervision.
    pub panic_on_get: PanicSwitch,
    /// GET bodies not yet dropped (in S3, open responses holding their connection's buffers).
    pub open_bodies: Arc<AtomicUsize>,
    /// The most GET bodies ever open at once.
    pub peak_open_bodies: Arc<AtomicUsize>,
}

/// Counts a GET body as open until its stream is dropped.
struct OpenBody(Arc<AtomicUsize>);

impl Drop for OpenBody {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
        self.put_encrypted(bucket, key, body, None)
    }

    /// Stores an object encrypted with `kms_key_id` (SSE-KMS); returns its ETag.
    pub fn put_encrypted(&self, bucket: &str, key: &str, body: impl Into<Bytes>, kms_key_id: Option<&str>) -> String {
        let body = body.into();
        let etag = etag_of(&body);
        let object = StoredObject {
            body,
            etag: etag.clone(),
            content_type: None,
            metadata: HashMap::new(),
            kms_key_id: kms_key_id.map(str::to_owned),
            tags: Vec::new(),
        };
        lock(&self.objects).insert((bucket.into(), key.into()), object);
        etag
    }

    /// Sets an object's user metadata, as an uploader's `x-amz-meta-*` headers would.
    pub fn set_metadata(&self, bucket: &str, key: &str, metadata: &[(&str, &str)]) {
        if let Some(object) = lock(&self.objects).get_mut(&(bucket.to_owned(), key.to_owned())) {
            object.metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        }
    }

    /// Removes whatever is under `key`, as a user deleting an upload would.
    pub fn remove(&self, bucket: &str, key: &str) {
        lock(&self.objects).remove(&(bucket.to_owned(), key.to_owned()));
    }

    /// Writes `object` under `bucket`/`key` as S3 would with `options`.
    fn write(
        &self,
        bucket: &str,
        key: &str,
        mut object: StoredObject,
        options: &WriteOptions,
    ) -> Result<(), StoreError> {
        let mut objects = lock(&self.objects);
        let address = (bucket.to_owned(), key.to_owned());
        if options.if_absent && objects.contains_key(&address) {
            return Err(StoreError::AlreadyExists {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        if let Some(kms_key_id) = &options.kms_key_id {
            object.kms_key_id = Some(kms_key_id.clone());
        }
        objects.insert(address, object);
        Ok(())
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
        let open = self.open_bodies.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_open_bodies.fetch_max(open, Ordering::SeqCst);
        let open = OpenBody(self.open_bodies.clone());
        Ok(ObjectBody {
            content_length: len as u64,
            chunks: futures::stream::iter(chunks.collect::<Vec<_>>())
                .map(move |chunk| {
                    let _open = &open;
                    chunk
                })
                .boxed(),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.object(bucket, key).map(|object| object.meta()))
    }

    async fn head_object(&self, object: &ObjectRef) -> Result<ObjectMeta, StoreError> {
        Ok(self.pinned(object)?.meta())
    }

    async fn copy(&self, request: CopyRequest<'_>) -> Result<(), StoreError> {
        let mut stored = self.pinned(request.source)?;
        stored.metadata = request.metadata.iter().cloned().collect();
        stored.kms_key_id = None;
        self.write(request.bucket, request.key, stored, request.options)
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &[(String, String)],
        options: &WriteOptions,
    ) -> Result<(), StoreError> {
        let object = StoredObject {
            etag: etag_of(&body),
            body,
            content_type: Some(content_type.into()),
            metadata: metadata.iter().cloned().collect(),
            kms_key_id: None,
            tags: Vec::new(),
        };
        self.write(bucket, key, object, options)
    }

    async fn delete(&self, object: &ObjectRef) -> Result<(), StoreError> {
        self.pinned(object)?;
        lock(&self.objects).remove(&(object.bucket.clone(), object.key.clone()));
        Ok(())
    }

    async fn tags(&self, object: &ObjectRef) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.pinned(object)?.tags)
    }

    async fn put_tags(&self, object: &ObjectRef, tags: &[(String, String)]) -> Result<(), StoreError> {
        self.pinned(object)?;
        if let Some(stored) = lock(&self.objects).get_mut(&(object.bucket.clone(), object.key.clone())) {
            stored.tags = tags.to_vec();
        }
        Ok(())
    }
}

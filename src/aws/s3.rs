//! The S3 adapter: [`S3Store`] implements [`ObjectStore`] for the pipeline's fetcher and
//! quarantiner (and `scan` reads single objects through it). Owns the mapping of S3 statuses to
//! the port's typed errors, the copy-source encoding, the etag precondition that pins a request to
//! the announced object, and the multipart copy for objects over one CopyObject. Errors keep
//! bucket and key.

use std::collections::HashMap;

use async_trait::async_trait;
use avscan_actors::event::unquote_etag;
use avscan_actors::model::ObjectRef;
use avscan_actors::ports::*;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective, ServerSideEncryption};
use bytes::Bytes;
use futures::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::detail;

/// S3's limit for a single CopyObject.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// S3's most parts in one multipart upload: parts grow so that its largest object (5 TB) fits.
const MAX_PARTS: u64 = 10_000;

/// The buckets.
pub struct S3Store {
    /// Reaches the buckets with the S3 overrides and timeout.
    pub client: aws_sdk_s3::Client,
    /// Objects above this are copied with UploadPartCopy (S3's limit, lowered in tests).
    pub multipart_threshold: u64,
    /// The byte range each UploadPartCopy copies in a multipart copy (lowered in tests).
    pub part_size: u64,
}

impl S3Store {
    /// A store with S3's own limits: one CopyObject up to 5 GiB, 512 MiB parts above that.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self {
            client,
            multipart_threshold: MAX_SINGLE_COPY,
            part_size: 512 * 1024 * 1024,
        }
    }
}

fn status_of<E, R>(err: &SdkError<E, R>) -> Option<u16>
where
    R: HasStatus,
{
    err.raw_response().map(HasStatus::status)
}

/// The HTTP status of an SDK error's raw response.
trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Maps an S3 error: 404 and 412 are the port's typed cases, everything else is retryable.
fn store_error<E>(
    operation: &'static str,
    object: (&str, &str),
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError
where
    E: std::error::Error + 'static,
{
    let (bucket, key) = (object.0.to_owned(), object.1.to_owned());
    match status_of(&err) {
        Some(404) => StoreError::NotFound { bucket, key },
        Some(412) => StoreError::PreconditionFailed { bucket, key },
        _ => StoreError::Failed {
            operation,
            bucket,
            key,
            detail: detail(err),
        },
    }
}

/// S3 wants the copy source URL-encoded, slashes kept.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn copy_source(object: &ObjectRef) -> String {
    let mut source = format!("{}/{}", object.bucket, utf8_percent_encode(&object.key, COPY_SOURCE));
    if let Some(version) = &object.version_id {
        source.push_str("?versionId=");
        source.push_str(&utf8_percent_encode(version, NON_ALPHANUMERIC).to_string());
    }
    source
}

/// The If-Match (or CopySourceIfMatch) value that pins a request to the announced object when it
/// has no version id; a version id pins it by itself.
fn etag_precondition(object: &ObjectRef) -> Option<String> {
    match (&object.version_id, &object.etag) {
        (None, Some(etag)) => Some(format!("\"{etag}\"")),
        _ => None,
    }
}

/// What a HEAD says, as the port's [`ObjectMeta`].
fn meta_of(output: HeadObjectOutput) -> ObjectMeta {
    let kms_key_id = match output.server_side_encryption {
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse) => output.ssekms_key_id,
        _ => None,
    };
    ObjectMeta {
        etag: output.e_tag.as_deref().map(unquote_etag).unwrap_or_default().to_owned(),
        size: output.content_length.unwrap_or_default().max(0) as u64,
        content_type: output.content_type,
        metadata: output.metadata.unwrap_or_default(),
        kms_key_id,
    }
}

/// `If-None-Match: *` when the write must not replace anything.
fn if_absent(options: &WriteOptions) -> Option<String> {
    options.if_absent.then(|| "*".to_owned())
}

/// SSE-KMS with the options' key, when they name one.
fn kms(options: &WriteOptions) -> (Option<ServerSideEncryption>, Option<String>) {
    match &options.kms_key_id {
        Some(key) => (Some(ServerSideEncryption::AwsKms), Some(key.clone())),
        None => (None, None),
    }
}

impl S3Store {
    /// The part size for a multipart copy of `size` bytes.
    fn part_size_for(&self, size: u64) -> u64 {
        self.part_size.max(size.div_ceil(MAX_PARTS))
    }

    /// S3 answers 412 for a copy whose source changed and for one whose destination exists: a
    /// HEAD of the destination tells which.
    async fn which_precondition(&self, request: &CopyRequest<'_>) -> StoreError {
        match self.head(request.bucket, request.key).await {
            Ok(Some(_)) => StoreError::AlreadyExists {
                bucket: request.bucket.to_owned(),
                key: request.key.to_owned(),
            },
            _ => StoreError::PreconditionFailed {
                bucket: request.source.bucket.clone(),
                key: request.source.key.clone(),
            },
        }
    }

    async fn head_pinned(&self, object: &ObjectRef) -> Result<HeadObjectOutput, StoreError> {
        let request = self
            .client
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .set_if_match(etag_precondition(object));
        request
            .send()
            .await
            .map_err(|err| store_error("HeadObject", (&object.bucket, &object.key), err))
    }

    async fn copy_in_parts(&self, request: &CopyRequest<'_>) -> Result<(), StoreError> {
        let (source, size) = (request.source, request.source_meta.size);
        let dest = (request.bucket, request.key);
        let metadata: HashMap<String, String> = request.metadata.iter().cloned().collect();
        let (encryption, kms_key_id) = kms(request.options);
        let part_size = self.part_size_for(size);
        let fail = |operation, detail| StoreError::Failed {
            operation,
            bucket: dest.0.to_owned(),
            key: dest.1.to_owned(),
            detail,
        };
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(dest.0)
            .key(dest.1)
            .set_content_type(request.source_meta.content_type.clone())
            .set_metadata(Some(metadata))
            .set_server_side_encryption(encryption)
            .set_ssekms_key_id(kms_key_id)
            .send()
            .await
            .map_err(|err| store_error("CreateMultipartUpload", dest, err))?;
        let upload_id = upload
            .upload_id
            .ok_or_else(|| fail("CreateMultipartUpload", "no upload id".into()))?;
        let result = async {
            let mut parts = Vec::new();
            let mut start = 0u64;
            while start < size {
                let end = (start + part_size).min(size) - 1;
                let part_number = parts.len() as i32 + 1;
                let request = self
                    .client
                    .upload_part_copy()
                    .bucket(dest.0)
                    .key(dest.1)
                    .upload_id(&upload_id)
                    .part_number(part_number)
                    .copy_source(copy_source(source))
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .set_copy_source_if_match(etag_precondition(source));
                let part = request
                    .send()
                    .await
                    .map_err(|err| store_error("UploadPartCopy", (&source.bucket, &source.key), err))?;
                let etag = part
                    .copy_part_result
                    .and_then(|r| r.e_tag)
                    .ok_or_else(|| fail("UploadPartCopy", "no part etag".into()))?;
                parts.push(CompletedPart::builder().e_tag(etag).part_number(part_number).build());
                start = end + 1;
            }
            self.client
                .complete_multipart_upload()
                .bucket(dest.0)
                .key(dest.1)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .set_if_none_match(if_absent(request.options))
                .send()
                .await
                .map_err(|err| match store_error("CompleteMultipartUpload", dest, err) {
                    // Its one precondition is the destination's absence.
                    StoreError::PreconditionFailed { bucket, key } => StoreError::AlreadyExists { bucket, key },
                    other => other,
                })?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(dest.0)
                .key(dest.1)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, object: &ObjectRef) -> Result<ObjectBody, StoreError> {
        let request = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .set_if_match(etag_precondition(object));
        let output = request
            .send()
            .await
            .map_err(|err| store_error("GetObject", (&object.bucket, &object.key), err))?;
        let content_length = output.content_length.unwrap_or_default().max(0) as u64;
        let (bucket, key) = (object.bucket.clone(), object.key.clone());
        let chunks = futures::stream::unfold(Some(output.body), move |body: Option<ByteStream>| {
            let (bucket, key) = (bucket.clone(), key.clone());
            async move {
                let mut body = body?;
                match body.next().await? {
                    Ok(bytes) => Some((Ok(bytes), Some(body))),
                    // End the stream after its first error.
                    Err(err) => Some((
                        Err(StoreError::Failed {
                            operation: "GetObject body",
                            bucket,
                            key,
                            detail: detail(err),
                        }),
                        None,
                    )),
                }
            }
        });
        Ok(ObjectBody {
            content_length,
            chunks: chunks.boxed(),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(output) => Ok(Some(meta_of(output))),
            Err(err) => match store_error("HeadObject", (bucket, key), err) {
                StoreError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn head_object(&self, object: &ObjectRef) -> Result<ObjectMeta, StoreError> {
        self.head_pinned(object).await.map(meta_of)
    }

    async fn copy(&self, request: CopyRequest<'_>) -> Result<(), StoreError> {
        // The source's size decides between one CopyObject and a multipart copy; its content type
        // goes with it (REPLACE would drop it).
        if request.source_meta.size > self.multipart_threshold {
            return self.copy_in_parts(&request).await;
        }
        let (encryption, kms_key_id) = kms(request.options);
        let source = request.source;
        let copied = self
            .client
            .copy_object()
            .bucket(request.bucket)
            .key(request.key)
            .copy_source(copy_source(source))
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(request.metadata.iter().cloned().collect()))
            .set_content_type(request.source_meta.content_type.clone())
            .set_copy_source_if_match(etag_precondition(source))
            .set_if_none_match(if_absent(request.options))
            .set_server_side_encryption(encryption)
            .set_ssekms_key_id(kms_key_id)
            .send()
            .await;
        match copied.map_err(|err| store_error("CopyObject", (&source.bucket, &source.key), err)) {
            Ok(_) => Ok(()),
            Err(StoreError::PreconditionFailed { .. }) if request.options.if_absent => {
                Err(self.which_precondition(&request).await)
            }
            Err(err) => Err(err),
        }
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
        let (encryption, kms_key_id) = kms(options);
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .set_metadata(Some(metadata.iter().cloned().collect()))
            .set_if_none_match(if_absent(options))
            .set_server_side_encryption(encryption)
            .set_ssekms_key_id(kms_key_id)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| match store_error("PutObject", (bucket, key), err) {
                // Its one precondition is the key's absence.
                StoreError::PreconditionFailed { bucket, key } => StoreError::AlreadyExists { bucket, key },
                other => other,
            })
    }

    async fn delete(&self, object: &ObjectRef) -> Result<(), StoreError> {
        let request = self
            .client
            .delete_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .set_if_match(etag_precondition(object));
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|err| store_error("DeleteObject", (&object.bucket, &object.key), err))
    }

    async fn tags(&self, object: &ObjectRef) -> Result<Vec<(String, String)>, StoreError> {
        let output = self
            .client
            .get_object_tagging()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .send()
            .await
            .map_err(|err| store_error("GetObjectTagging", (&object.bucket, &object.key), err))?;
        Ok(output.tag_set.into_iter().map(|tag| (tag.key, tag.value)).collect())
    }

    async fn put_tags(&self, object: &ObjectRef, tags: &[(String, String)]) -> Result<(), StoreError> {
        let failed = |detail: String| StoreError::Failed {
            operation: "PutObjectTagging",
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            detail,
        };
        let tag_set = tags
            .iter()
            .map(|(key, value)| aws_sdk_s3::types::Tag::builder().key(key).value(value).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| failed(err.to_string()))?;
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(|err| failed(err.to_string()))?;
        self.client
            .put_object_tagging()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .tagging(tagging)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| store_error("PutObjectTagging", (&object.bucket, &object.key), err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_encoded_and_pinned_to_the_version() {
        let object = ObjectRef {
            bucket: "in".into(),
            key: "guid/a b+c ü.txt".into(),
            version_id: Some("v+1".into()),
            etag: None,
            size: 1,
            sequencer: None,
        };
        assert_eq!(copy_source(&object), "in/guid/a%20b%2Bc%20%C3%BC.txt?versionId=v%2B1");
    }

    #[test]
    fn parts_grow_so_that_s3s_largest_object_fits_in_its_parts() {
        let store = S3Store {
            client: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::Config::builder()
                    .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                    .build(),
            ),
            multipart_threshold: MAX_SINGLE_COPY,
            part_size: 512 * 1024 * 1024,
        };
        assert_eq!(store.part_size_for(6 * 1024 * 1024 * 1024), 512 * 1024 * 1024);
        let largest: u64 = 5 * 1024 * 1024 * 1024 * 1024;
        assert!(largest.div_ceil(store.part_size_for(largest)) <= MAX_PARTS);
    }
}

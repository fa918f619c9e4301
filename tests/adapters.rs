//! The S3 adapter against the emulator, for what the pipeline tests cannot reach cheaply: the
//! multipart copy used above 5 GiB, exercised with a lowered threshold, and every read, copy and
//! delete pinned to the announced ETag.

mod common;

use avscan::aws::S3Store;
use avscan_actors::model::ObjectRef;
use avscan_actors::ports::{CopyRequest, ObjectStore, StoreError, WriteOptions};
use common::{lacks, Gap, TestEnv};

#[tokio::test]
async fn large_objects_are_copied_in_parts_with_content_type_and_metadata() {
    let env = TestEnv::new(false).await;
    let body: Vec<u8> = (0..12 * 1024 * 1024 + 123).map(|i| (i % 251) as u8).collect();
    let etag = env
        .s3
        .put_object()
        .bucket(&env.unprocessed)
        .key("guid/big.iso")
        .content_type("application/x-iso9660-image")
        .body(body.clone().into())
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap();
    let store = S3Store {
        client: env.s3.clone(),
        multipart_threshold: 8 * 1024 * 1024,
        part_size: 5 * 1024 * 1024,
    };
    let source = ObjectRef {
        bucket: env.unprocessed.clone(),
        key: "guid/big.iso".into(),
        version_id: None,
        etag: Some(etag.trim_matches('"').to_owned()),
        size: body.len() as u64,
        sequencer: None,
    };
    let source_meta = store.head_object(&source).await.unwrap();
    let metadata = [("avscan-verdict".to_owned(), "infected".to_owned())];
    let options = WriteOptions {
        if_absent: true,
        kms_key_id: None,
    };
    let request = CopyRequest {
        source: &source,
        source_meta: &source_meta,
        bucket: &env.quarantine,
        key: "guid/big.iso",
        metadata: &metadata,
        options: &options,
    };
    store.copy(request).await.unwrap();
    // Written only if absent: a second copy to the same key is refused, the first kept.
    assert!(matches!(
        store.copy(request).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(env.get(&env.quarantine, "guid/big.iso").await.unwrap(), body);
    let meta = store.head(&env.quarantine, "guid/big.iso").await.unwrap().unwrap();
    assert_eq!(meta.content_type.as_deref(), Some("application/x-iso9660-image"));
    assert_eq!(
        meta.metadata.get("avscan-verdict").map(String::as_str),
        Some("infected")
    );
    assert!(meta.etag.ends_with("-3"), "three parts: {}", meta.etag);
}

#[tokio::test]
async fn gets_and_deletes_are_pinned_to_the_announced_etag() {
    let env = TestEnv::new(false).await;
    let old = env.put("guid/f.txt", b"old").await;
    env.put("guid/f.txt", b"new").await;
    let store = S3Store::new(env.s3.clone());
    let stale = ObjectRef {
        bucket: env.unprocessed.clone(),
        key: "guid/f.txt".into(),
        version_id: None,
        etag: Some(old),
        size: 3,
        sequencer: None,
    };
    assert!(matches!(
        store.get(&stale).await,
        Err(StoreError::PreconditionFailed { .. })
    ));
    assert!(matches!(
        store.delete(&stale).await,
        Err(StoreError::PreconditionFailed { .. })
    ));
    assert_eq!(
        env.get(&env.unprocessed, "guid/f.txt").await.as_deref(),
        Some(&b"new"[..])
    );
    let missing = ObjectRef {
        key: "guid/none.txt".into(),
        ..stale
    };
    assert!(matches!(store.get(&missing).await, Err(StoreError::NotFound { .. })));
    assert_eq!(store.head(&env.quarantine, "guid/none.txt").await.unwrap(), None);
}

#[tokio::test]
async fn copies_are_pinned_to_the_announced_etag_in_one_call_and_in_parts() {
    let env = TestEnv::new(false).await;
    let enforced = !lacks(Gap::CopySourceIfMatch);
    let big = |seed: u8| -> Vec<u8> { (0..6 * 1024 * 1024).map(|i| (i % 251) as u8 ^ seed).collect() };
    let store = S3Store {
        client: env.s3.clone(),
        multipart_threshold: 5 * 1024 * 1024,
        part_size: 5 * 1024 * 1024,
    };
    for (key, old, new) in [
        ("guid/small.txt", b"old".to_vec(), b"new".to_vec()),
        ("guid/parts.bin", big(1), big(2)),
    ] {
        let old_etag = env.put(key, &old).await;
        env.put(key, &new).await;
        let stale = ObjectRef {
            bucket: env.unprocessed.clone(),
            key: key.into(),
            version_id: None,
            etag: Some(old_etag),
            size: old.len() as u64,
            sequencer: None,
        };
        let current = ObjectRef {
            etag: None,
            ..stale.clone()
        };
        let source_meta = store.head_object(&current).await.unwrap();
        let options = WriteOptions {
            if_absent: true,
            kms_key_id: None,
        };
        let copied = store
            .copy(CopyRequest {
                source: &stale,
                source_meta: &source_meta,
                bucket: &env.quarantine,
                key,
                metadata: &[],
                options: &options,
            })
            .await;
        if !enforced {
            continue;
        }
        // The newer upload under the key is not copied in place of the announced one.
        assert!(
            matches!(copied, Err(StoreError::PreconditionFailed { .. })),
            "{key}: {copied:?}"
        );
        assert_eq!(env.get(&env.quarantine, key).await, None, "{key}");
    }
}

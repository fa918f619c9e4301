//! `avscan scan <path | s3://bucket/key>...`: ad-hoc scans through the same clamd client and
//! the same rules as the pipeline (size limit, archive guard, only `stream: OK` is clean), one
//! line per input in clamdscan's style, once clamd's configuration is proven as for `avscan run`
//! (else every input is an error). The exit code follows clamdscan's convention: 0 all
//! clean, 1 something infected or unscannable, 2 an error (an input that could not be scanned).

use std::path::Path;

use avscan_actors::archive_guard::{self, GuardLimits};
use avscan_actors::model::{ObjectRef, QuarantineReason, Verdict};
use avscan_actors::ports::{ObjectBody, ObjectStore, ScanEngine};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::config::ScanSettings;
use crate::{aws, clamd, limits};

/// How one input ended, worst last: the exit code is the worst of all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Clean = 0,
    NotClean = 1,
    Error = 2,
}

/// Scans every input in order, printing one line each; returns the worst outcome.
pub async fn scan(inputs: &[String], settings: &ScanSettings) -> Outcome {
    let clamd = clamd::Clamd::new(
        settings.clamd_address.clone(),
        settings.clamd_chunk_size,
        settings.clamd_timeout,
    )
    .with_max_scan_time(settings.clamd_max_scan_time);
    // The same proof as `avscan run`: a verdict from a clamd that skips in silence is worth
    // nothing, and the archive guard needs clamd's MaxFileSize.
    let expected = limits::Expected {
        member_limit: settings.clamd_max_file_size,
        max_file_size: settings.max_file_size,
    };
    let member_limit = match limits::prove(&clamd, &expected).await.outcome() {
        Ok(proven) => proven.member_limit,
        Err(err) => {
            eprintln!("avscan: {err}");
            for input in inputs {
                println!("{input}: ERROR not scanned: {err}");
            }
            return Outcome::Error;
        }
    };
    let mut store = None;
    let mut worst = Outcome::Clean;
    for input in inputs {
        let body = match input.strip_prefix("s3://") {
            Some(address) => {
                if store.is_none() {
                    let sdk = aws::sdk_config(&[&settings.s3]).await;
                    store = Some(aws::S3Store::new(aws::s3_client(&sdk, &settings.s3)));
                }
                s3_body(store.as_ref().expect("just set"), address).await
            }
            None => file_body(Path::new(input), settings.clamd_chunk_size).await,
        };
        let (line, outcome) = match body {
            Err(err) => (format!("ERROR {err}"), Outcome::Error),
            Ok(body) if body.content_length > settings.max_file_size => (
                format!(
                    "{} (over MAX_FILE_SIZE, not scanned) UNSCANNABLE",
                    QuarantineReason::FileTooLarge.as_str()
                ),
                Outcome::NotClean,
            ),
            Ok(body) => {
                let limits = GuardLimits {
                    member_limit,
                    inflate_budget: settings.archive_inflate_budget,
                };
                scan_body(&clamd, body, limits).await
            }
        };
        println!("{input}: {line}");
        worst = worst.max(outcome);
    }
    worst
}

async fn scan_body(clamd: &clamd::Clamd, body: ObjectBody, limits: GuardLimits) -> (String, Outcome) {
    let mut session = match clamd.connect().await {
        Ok(session) => session,
        Err(err) => return (format!("ERROR {err}"), Outcome::Error),
    };
    let (guarded, archive_check) = archive_guard::check_while_streaming(body, limits);
    let scanned = match session.scan_and_confirm(guarded).await {
        Ok(outcome) => Ok(archive_check.apply(outcome).await),
        Err(err) => Err(err),
    };
    match scanned {
        Ok(outcome) => match outcome.verdict {
            Verdict::Clean => ("OK".into(), Outcome::Clean),
            Verdict::Infected { signature } => (format!("{signature} FOUND"), Outcome::NotClean),
            Verdict::Unscannable { reason, signature } => (
                match signature {
                    Some(signature) => format!("{signature} UNSCANNABLE"),
                    None => format!("{} UNSCANNABLE", reason.as_str()),
                },
                Outcome::NotClean,
            ),
        },
        Err(err) => (format!("ERROR {err}"), Outcome::Error),
    }
}

async fn s3_body(store: &aws::S3Store, address: &str) -> Result<ObjectBody, String> {
    let (bucket, key) = address
        .split_once('/')
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .ok_or_else(|| format!("not an s3://bucket/key address: s3://{address}"))?;
    let object = ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: None,
        etag: None,
        size: 0,
        sequencer: None,
    };
    store.get(&object).await.map_err(|err| err.to_string())
}

/// A local file as a stream of chunks, never read whole.
async fn file_body(path: &Path, chunk_size: usize) -> Result<ObjectBody, String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|err| format!("{}: {err}", path.display()))?;
    let metadata = file.metadata().await.map_err(|err| err.to_string())?;
    if !metadata.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let path_text = path.display().to_string();
    let chunks = futures::stream::unfold(Some(file), move |file| {
        let path_text = path_text.clone();
        async move {
            let mut file = file?;
            let mut buffer = vec![0u8; chunk_size];
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(Bytes::from(buffer)), Some(file)))
                }
                Err(err) => Some((
                    Err(avscan_actors::ports::StoreError::Failed {
                        operation: "read",
                        bucket: String::new(),
                        key: path_text,
                        detail: err.to_string(),
                    }),
                    None,
                )),
            }
        }
    })
    .boxed();
    Ok(ObjectBody {
        content_length: metadata.len(),
        chunks,
    })
}

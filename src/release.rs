//! `avscan release s3://<quarantine bucket>/<key> --reason …`: puts a quarantined object back
//! where it was uploaded, for a false positive. The restore is an upload like any other: its own
//! ObjectCreated event is scanned, and only an allow-list entry for its SHA-256 lets it through
//! (then it is handled as clean: tagged, forwarded when its policy forwards clean objects, its
//! result event published). So release refuses unless `ALLOW_LIST` already allows the object's
//! bytes, or `--rescan` says that judging it again is the point (after raising a limit). avscan
//! never forwards what clamd did not scan whole, released or not.
//!
//! Only a detection can be allowed: an unscannable object was not scanned whole, so it is
//! released only with `--rescan` (and quarantined again unless what made it unscannable changed).
//!
//! In an order that is safe to run again after a failure:
//! 1. read the incident's report beside the copy; refuse when its release report is there (the
//!    release is complete);
//! 2. copy exactly the quarantined bytes back to the source key (pinned by the copy's ETag),
//!    with the source's user metadata, content type and KMS key, only if the key is free (an
//!    object there with the incident's SHA-256 is an earlier attempt's restore);
//! 3. notify the topic (subject `avscan: object released`);
//! 4. write `<key>.release.json` beside the report (who, why, when, what), only if absent: last,
//!    so that its presence means every step is done (a run that failed between 3 and 4 notifies
//!    again when run again).

use avscan_actors::incident::release_key;
use avscan_actors::model::{ObjectRef, QuarantineReason, ScanOutcome, Verdict};
use avscan_actors::ports::{CopyRequest, Notification, Notifier, ObjectStore, StoreError, WriteOptions};
use avscan_actors::report::QuarantineReport;
use bytes::Bytes;
use serde::Serialize;

use crate::aws;
use crate::config::Settings;

/// The release's own arguments (the configuration is every command's).
#[derive(Debug, Clone, clap::Args)]
pub struct ReleaseRequest {
    /// The quarantined copy: s3://QUARANTINE_BUCKET/KEY, KEY as its report's `quarantine_key`.
    #[arg(value_name = "s3://QUARANTINE_BUCKET/KEY")]
    pub target: String,
    /// Why it is released (kept in the release report and the notification).
    #[arg(long)]
    pub reason: String,
    /// Who releases it; default: $USER.
    #[arg(long, env = "USER")]
    pub by: Option<String>,
    /// Release an object the allow-list does not allow: its restore is judged again (and
    /// quarantined again unless what made it unscannable or too large has changed).
    #[arg(long)]
    pub rescan: bool,
}

/// What was released, by whom and why: `<quarantine key>.release.json`, and the notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseReport {
    pub released_at: String,
    pub released_by: String,
    pub reason: String,
    /// Where the object went back to.
    pub bucket: String,
    pub key: String,
    /// The restored object's ETag.
    pub etag: Option<String>,
    pub sha256: Option<String>,
    pub quarantine_bucket: String,
    pub quarantine_key: String,
    /// The incident's report.
    pub report_key: String,
    /// The incident's verdict and signature.
    pub verdict: String,
    pub signature: Option<String>,
    /// The allow-list entry that lets the restore through, or `null` with `rescan`.
    pub allowed_by: Option<String>,
    pub rescan: bool,
}

/// Fixed on purpose, like the quarantine notification's.
const NOTIFICATION_SUBJECT: &str = "avscan: object released";
/// A report is a few KB; anything larger is not one of ours.
const MAX_REPORT_BYTES: usize = 1024 * 1024;

/// Why a release did not happen (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

fn refused(text: impl Into<String>) -> Refused {
    Refused(text.into())
}

/// `s3://bucket/key` → (bucket, key).
fn parse_target(target: &str) -> Result<(String, String), Refused> {
    target
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .map(|(bucket, key)| (bucket.to_owned(), key.to_owned()))
        .ok_or_else(|| refused(format!("{target:?} is not s3://<quarantine bucket>/<key>")))
}

/// Runs the release; `Ok` is the line to print.
pub async fn release(settings: &Settings, request: &ReleaseRequest) -> Result<String, Refused> {
    let (quarantine, key) = parse_target(&request.target)?;
    let by = request
        .by
        .as_deref()
        .map(str::trim)
        .filter(|by| !by.is_empty())
        .ok_or_else(|| refused("--by is not set (nor $USER): say who releases it"))?;
    if request.reason.trim().is_empty() {
        return Err(refused("--reason is empty: say why it is released"));
    }
    let sdk = aws::sdk_config_for(settings).await;
    let client = aws::s3_client(&sdk, &settings.s3);
    let store = aws::S3Store::new(client.clone());
    let fail = |err: StoreError| refused(err.to_string());

    // 1. The incident.
    let report = read_report(&client, &quarantine, &key).await?;
    let policy = settings
        .pipeline
        .policies
        .for_object(&report.bucket, &report.key)
        .ok_or_else(|| {
            refused(format!(
                "s3://{}/{} is not a source avscan serves now: its restore would not be scanned",
                report.bucket, report.key
            ))
        })?;
    if policy.quarantine_bucket.as_deref() != Some(quarantine.as_str()) || report.action != "quarantine" {
        return Err(refused(format!(
            "s3://{quarantine}/{key} is not a copy this configuration quarantined (its policy's quarantine bucket is {:?}, the report's action {:?})",
            policy.quarantine_bucket, report.action
        )));
    }
    let release_key = release_key(&key);
    if store.head(&quarantine, &release_key).await.map_err(fail)?.is_some() {
        return Err(refused(format!(
            "already released: see s3://{quarantine}/{release_key}"
        )));
    }
    let allowed_by = allowance(settings, &client, &report).await?;
    if allowed_by.is_none() && !request.rescan {
        return Err(refused(match (&report.sha256, report.verdict.as_str()) {
            (Some(sha256), "infected") => format!(
                "the allow-list does not allow these bytes, so the restore's own event would quarantine them again: add `sha256 {sha256} # <why>` to ALLOW_LIST, wait ALLOW_LIST_RELOAD_INTERVAL for running avscans to load it, and release again (or pass --rescan to have it judged again)"
            ),
            (None, _) => "the object was never read whole (too large), so no allow-list entry can allow it: raise the limit that made it too large and release with --rescan".to_owned(),
            _ => format!(
                "it is {} ({}), not a detection: no allow-list entry makes an object scanned whole; fix what made it so and release with --rescan",
                report.verdict, report.reason
            ),
        }));
    }

    // 2. The restore.
    let copy = store
        .head(&quarantine, &key)
        .await
        .map_err(fail)?
        .ok_or_else(|| refused(format!("s3://{quarantine}/{key} does not exist")))?;
    let source = ObjectRef {
        bucket: quarantine.clone(),
        key: key.clone(),
        version_id: None,
        etag: Some(copy.etag.clone()),
        size: copy.size,
        sequencer: None,
    };
    let metadata: Vec<(String, String)> = report.source_metadata.clone().into_iter().collect();
    let restored = store
        .copy(CopyRequest {
            source: &source,
            source_meta: &copy,
            bucket: &report.bucket,
            key: &report.key,
            metadata: &metadata,
            options: &WriteOptions {
                if_absent: true,
                kms_key_id: report.source_kms_key_id.clone(),
            },
        })
        .await;
    match restored {
        Ok(()) => {}
        // An earlier run's restore, or another object: only the incident's bytes count as ours.
        Err(StoreError::AlreadyExists { .. }) if restored_by_an_earlier_run(&client, &report, &copy.etag).await? => {}
        Err(StoreError::AlreadyExists { .. }) => {
            return Err(refused(format!(
                "s3://{}/{} holds another object (a newer upload?): not overwritten",
                report.bucket, report.key
            )))
        }
        Err(err) => return Err(fail(err)),
    }
    let etag = store
        .head(&report.bucket, &report.key)
        .await
        .map_err(fail)?
        .map(|meta| meta.etag);

    // 3. The notification, 4. the release report.
    let release = ReleaseReport {
        released_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        released_by: by.to_owned(),
        reason: request.reason.trim().to_owned(),
        bucket: report.bucket.clone(),
        key: report.key.clone(),
        etag,
        sha256: report.sha256.clone(),
        quarantine_bucket: quarantine.clone(),
        quarantine_key: key.clone(),
        report_key: report.report_key(),
        verdict: report.verdict.clone(),
        signature: report.signature.clone(),
        allowed_by: allowed_by.clone(),
        rescan: request.rescan,
    };
    let document = serde_json::to_string_pretty(&release).expect("a release report serialises");
    let notifier = aws::SnsNotifier {
        client: aws::sns_client(&sdk, &settings.sns),
        topic_arn: settings.topic_arn.clone(),
    };
    let notification = Notification {
        subject: NOTIFICATION_SUBJECT.to_owned(),
        message: document.clone(),
        attributes: vec![
            ("verdict".to_owned(), "released".to_owned()),
            ("bucket".to_owned(), report.bucket.clone()),
        ],
    };
    notifier
        .publish(&notification)
        .await
        .map_err(|err| refused(format!("restored, not notified (run it again to finish): {err}")))?;
    let written = store
        .put(
            &quarantine,
            &release_key,
            Bytes::from(document),
            "application/json",
            &[],
            &WriteOptions {
                if_absent: true,
                kms_key_id: copy.kms_key_id.clone(),
            },
        )
        .await;
    match written {
        // Another release raced this one and finished first.
        Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(err) => {
            return Err(refused(format!(
                "restored and notified, no release report (run it again to finish): {err}"
            )))
        }
    }
    let judged = match &allowed_by {
        Some(entry) => format!("its event will find it allowed by {entry}"),
        None => "its event will judge it again (--rescan)".to_owned(),
    };
    Ok(format!(
        "released s3://{quarantine}/{key} to s3://{}/{} ({} bytes); {judged}; release report s3://{quarantine}/{release_key}",
        report.bucket, report.key, copy.size
    ))
}

/// Whether what is at the source key is the incident's object (restored by an earlier run):
/// its SHA-256 is the report's (ETags differ between copies under SSE-KMS), or, for an object
/// never read whole, its ETag is the copy's.
async fn restored_by_an_earlier_run(
    client: &aws_sdk_s3::Client,
    report: &QuarantineReport,
    copy_etag: &str,
) -> Result<bool, Refused> {
    let address = format!("s3://{}/{}", report.bucket, report.key);
    let output = client
        .get_object()
        .bucket(&report.bucket)
        .key(&report.key)
        .send()
        .await
        .map_err(|err| {
            refused(format!(
                "reading {address}: {}",
                aws_sdk_s3::error::DisplayErrorContext(err)
            ))
        })?;
    let Some(expected) = &report.sha256 else {
        let etag = output.e_tag.unwrap_or_default();
        return Ok(etag.trim_matches('"') == copy_etag);
    };
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    let mut body = output.body;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|err| refused(format!("reading {address}: {err}")))?
    {
        digest.update(&chunk);
    }
    let found: String = digest.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(&found == expected)
}

/// The incident's report beside the copy, which must name the copy.
async fn read_report(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<QuarantineReport, Refused> {
    let report_key = format!("{key}.report.json");
    let bytes = aws::read_object(client, bucket, &report_key, MAX_REPORT_BYTES)
        .await
        .map_err(|err| refused(format!("no quarantine report: {err}")))?;
    let report: QuarantineReport = serde_json::from_slice(&bytes)
        .map_err(|err| refused(format!("s3://{bucket}/{report_key} is not a quarantine report: {err}")))?;
    if report.quarantine_key != key {
        return Err(refused(format!(
            "s3://{bucket}/{report_key} reports the copy {:?}, not {key:?}",
            report.quarantine_key
        )));
    }
    Ok(report)
}

/// The allow-list entry that allows the incident's bytes, read from `ALLOW_LIST` now.
async fn allowance(
    settings: &Settings,
    client: &aws_sdk_s3::Client,
    report: &QuarantineReport,
) -> Result<Option<String>, Refused> {
    let Some(source) = &settings.allow_list else {
        return Ok(None);
    };
    let list = crate::allow_list::load(source, client)
        .await
        .map_err(|err| refused(format!("ALLOW_LIST: {err}")))?;
    let verdict = match report.verdict.as_str() {
        "infected" => Verdict::Infected {
            signature: report.signature.clone().unwrap_or_default(),
        },
        _ => Verdict::Unscannable {
            reason: QuarantineReason::Unscannable,
            signature: report.signature.clone(),
        },
    };
    let judged = ScanOutcome {
        verdict,
        engine: None,
        definitions: None,
        sha256: report.sha256.clone(),
        allowed_by: None,
    };
    Ok(list.allowance(&judged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_s3_address_with_a_key_is_a_target() {
        assert_eq!(
            parse_target("s3://q/guid/a b.txt").unwrap(),
            ("q".to_owned(), "guid/a b.txt".to_owned())
        );
        for wrong in ["q/guid/a", "s3://q", "s3://q/", "s3:///k", "https://q/k"] {
            assert!(parse_target(wrong).is_err(), "{wrong}");
        }
    }
}

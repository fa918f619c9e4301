//! Scanning what is already in a bucket: `avscan backfill` puts an S3-shaped ObjectCreated event
//! for every listed object on the inbound queue, so the running fleet scans it with every
//! guarantee a real upload gets; `avscan audit` does the same for objects left in a source bucket
//! longer than `AUDIT_EVENT_RESEND_INTERVAL` (a lost notification). Nothing is scanned here.
//!
//! - `listing.rs`: where the objects come from: ListObjectsV2, or an S3 Inventory manifest;
//! - `enqueue.rs`: the events, the rate, the checkpoint a resumed run starts from, progress.

mod enqueue;
mod listing;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use avscan_actors::event::validate_key;

use crate::aws;
use crate::config::Settings;
pub use enqueue::{Checkpoint, Summary};
pub use listing::{Listed, Position};

/// What a backfilled clean object leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackfillAction {
    /// As a real upload: clean objects are forwarded to the validation queue.
    Forward,
    /// A rescan: clean objects are not forwarded again (their result event and tags still say
    /// what was found); what is not clean is handled by its policy as always.
    Report,
}

/// `avscan backfill`'s own arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillRequest {
    /// What to scan: s3://bucket or s3://bucket/prefix.
    #[arg(value_name = "s3://BUCKET[/PREFIX]")]
    pub target: String,
    /// List the objects from an S3 Inventory (CSV) manifest instead of ListObjectsV2:
    /// s3://bucket/path/manifest.json.
    #[arg(long, value_name = "s3://BUCKET/KEY")]
    pub inventory: Option<String>,
    /// Events per second, at most.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// Only objects last modified at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<SystemTime>,
    /// Only objects last modified before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<SystemTime>,
    /// Count the objects and bytes; enqueue nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue an interrupted run from its checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// The checkpoint file; default: avscan-backfill-DIGEST.json here (DIGEST: of the arguments).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// `forward` (as a real upload) or `report` (a rescan: clean objects are not forwarded again).
    #[arg(long, value_enum, default_value_t = BackfillAction::Forward)]
    pub action: BackfillAction,
}

/// `avscan audit`'s own arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditRequest {
    /// Seconds an object may stay in a source bucket before its event is sent again (the old
    /// worker's variable).
    #[arg(long, env = "AUDIT_EVENT_RESEND_INTERVAL", default_value_t = 43_200, value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_event_resend_interval: u64,
    /// Events per second, at most.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// Count the stale objects; enqueue nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_time(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text).map_err(|err| format!("{text:?} is not an RFC 3339 time: {err}"))
}

/// A failed run (exit 1); a resumed run continues from its checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(pub String);

/// `s3://bucket[/prefix]` → (bucket, prefix).
fn parse_target(target: &str) -> Result<(String, String), Failed> {
    let rest = target
        .strip_prefix("s3://")
        .ok_or_else(|| Failed(format!("{target:?} is not s3://bucket[/prefix]")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Failed(format!("{target:?} names no bucket")));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// Why an object is not enqueued, or `None` when it is.
fn skip_reason(listed: &Listed, since: Option<SystemTime>, until: Option<SystemTime>) -> Option<&'static str> {
    if since.is_some_and(|since| listed.last_modified < since)
        || until.is_some_and(|until| listed.last_modified >= until)
    {
        return Some("outside the time window");
    }
    // The fleet would reject it (and a folder marker is no upload).
    validate_key(&listed.key)
        .err()
        .map(|_| "not <submission_guid>/<filename>")
}

/// Runs `avscan backfill`; `Ok` is the summary line.
pub async fn backfill(settings: &Settings, request: &BackfillRequest) -> Result<String, Failed> {
    let (bucket, prefix) = parse_target(&request.target)?;
    if !settings.pipeline.policies.covers(&bucket) {
        return Err(Failed(format!(
            "{bucket} is not a source bucket of this configuration: the fleet would reject its events"
        )));
    }
    let sdk = aws::sdk_config_for(settings).await;
    let s3 = aws::s3_client(&sdk, &settings.s3);
    let checkpoint_path = request
        .checkpoint
        .clone()
        .unwrap_or_else(|| enqueue::default_checkpoint_path(request));
    let start = if request.resume {
        let checkpoint = Checkpoint::read(&checkpoint_path)?;
        if checkpoint.run != enqueue::run_identity(request) {
            return Err(Failed(format!(
                "{} is the checkpoint of another run ({}); this one is {}",
                checkpoint_path.display(),
                checkpoint.run,
                enqueue::run_identity(request)
            )));
        }
        Some(checkpoint)
    } else {
        if !request.dry_run && checkpoint_path.exists() {
            return Err(Failed(format!(
                "{} exists: an earlier run did not finish; pass --resume to continue it, or delete it to start over",
                checkpoint_path.display()
            )));
        }
        None
    };
    let objects = match &request.inventory {
        None => {
            let start = start.as_ref().map(|c| c.position.clone());
            listing::list(s3.clone(), bucket.clone(), prefix.clone(), start).await?
        }
        Some(manifest) => {
            listing::inventory(
                s3.clone(),
                manifest,
                &bucket,
                &prefix,
                start.as_ref().map(|c| c.position.clone()),
            )
            .await?
        }
    };
    let started = std::time::Instant::now();
    let mut run = enqueue::Run::new(settings, &sdk, request, &bucket, checkpoint_path, start).await?;
    let summary = run
        .drain(objects, |listed| skip_reason(listed, request.since, request.until))
        .await?;
    Ok(summary.line("backfill", request.dry_run, started.elapsed()))
}

/// Runs `avscan audit`: for each source bucket, the objects older than the interval that carry
/// no avscan verdict tag; `Ok` is the summary line.
pub async fn audit(settings: &Settings, request: &AuditRequest) -> Result<String, Failed> {
    let sdk = aws::sdk_config_for(settings).await;
    let s3 = aws::s3_client(&sdk, &settings.s3);
    let stale_before = SystemTime::now() - Duration::from_secs(request.audit_event_resend_interval);
    let mut lines = Vec::new();
    for bucket_policy in settings.pipeline.policies.buckets() {
        let bucket = bucket_policy.bucket.clone();
        let backfill = BackfillRequest {
            target: format!("s3://{bucket}"),
            inventory: None,
            rate: request.rate,
            since: None,
            until: Some(stale_before),
            dry_run: request.dry_run,
            resume: false,
            checkpoint: None,
            action: BackfillAction::Forward,
        };
        let objects = listing::list(s3.clone(), bucket.clone(), String::new(), None).await?;
        let objects = listing::without_verdict_tags(s3.clone(), bucket.clone(), objects, stale_before);
        let started = std::time::Instant::now();
        let mut run = enqueue::Run::new(settings, &sdk, &backfill, &bucket, PathBuf::new(), None).await?;
        run.audit_only();
        let summary = run
            .drain(objects, |listed| {
                listed
                    .audit_skip
                    .or_else(|| leaves_untagged(settings, &bucket, &listed.key))
                    .or_else(|| skip_reason(listed, None, Some(stale_before)))
            })
            .await?;
        lines.push(summary.line(&format!("audit {bucket}"), request.dry_run, started.elapsed()));
    }
    Ok(lines.join("\n"))
}

/// An object whose policy leaves what it judged in place without a tag: nothing tells it from a
/// lost upload, so an audit would send it round again at every run.
fn leaves_untagged(settings: &Settings, bucket: &str, key: &str) -> Option<&'static str> {
    use avscan_actors::policy::{Action, TagMode};
    let policy = settings.pipeline.policies.for_object(bucket, key)?;
    let in_place = matches!(policy.action, Action::Tag | Action::Report);
    (in_place && policy.tags == TagMode::Off)
        .then_some("its policy leaves judged objects in place untagged: an audit cannot tell them from lost ones")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_a_bucket_and_maybe_a_prefix() {
        assert_eq!(parse_target("s3://b").unwrap(), ("b".into(), "".into()));
        assert_eq!(parse_target("s3://b/p1/").unwrap(), ("b".into(), "p1/".into()));
        assert!(parse_target("b/p").is_err());
        assert!(parse_target("s3:///p").is_err());
    }

    #[test]
    fn objects_outside_the_window_and_keys_the_fleet_rejects_are_skipped() {
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let listed = |key: &str, secs| Listed {
            key: key.into(),
            size: 1,
            etag: "e".into(),
            last_modified: at(secs),
            version_id: None,
            audit_skip: None,
        };
        assert_eq!(skip_reason(&listed("g/f", 100), Some(at(100)), Some(at(200))), None);
        assert!(skip_reason(&listed("g/f", 99), Some(at(100)), None).is_some());
        assert!(skip_reason(&listed("g/f", 200), None, Some(at(200))).is_some());
        assert!(skip_reason(&listed("folder/", 100), None, None).is_some());
        assert!(skip_reason(&listed("no-folder.txt", 100), None, None).is_some());
    }
}

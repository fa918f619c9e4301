//! Putting the listed objects' events on the inbound queue: S3-shaped ObjectCreated records
//! (keys encoded as S3 encodes them, pinned to the listed ETag), marked with the
//! `avscan-origin` attribute (and `avscan-forward-clean` = `false` for a rescan), ten per
//! SendMessageBatch at no more than `--rate` events per second. After each batch the checkpoint
//! names the last object enqueued, so a run killed at any point loses at most that batch's
//! bookkeeping: a resumed run sends it again (duplicates are fine, skips are not).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use avscan_actors::ports::{MessageSink, OutboundMessage};
use aws_config::SdkConfig;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::listing::{Listed, Objects, Position};
use super::{BackfillAction, BackfillRequest, Failed};
use crate::aws;
use crate::config::Settings;

/// The attribute that marks the events avscan made itself: `backfill` or `audit`.
pub const ORIGIN_ATTRIBUTE: &str = "avscan-origin";
/// The attribute that asks the fleet not to forward clean objects (a rescan).
pub const FORWARD_CLEAN_ATTRIBUTE: &str = avscan_actors::ports::FORWARD_CLEAN_ATTRIBUTE;

/// What an interrupted run resumes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Which run it belongs to (a digest of its arguments).
    pub run: String,
    /// After the last object enqueued.
    pub position: Position,
    #[serde(flatten)]
    pub summary: Summary,
}

impl Checkpoint {
    pub fn read(path: &Path) -> Result<Checkpoint, Failed> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            Failed(format!(
                "--resume: cannot read the checkpoint {}: {err}",
                path.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|err| Failed(format!("--resume: {} is not a checkpoint: {err}", path.display())))
    }

    /// Replaces the file whole (written beside it, then renamed): a kill leaves the old one or
    /// the new one, never half of either.
    fn write(&self, path: &Path) -> Result<(), Failed> {
        let partial = path.with_extension("json.partial");
        let text = serde_json::to_string_pretty(self).expect("a checkpoint serialises");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|err| Failed(format!("writing the checkpoint {}: {err}", path.display())))
    }
}

/// What a run did, counted over its resumed parts too.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub listed: u64,
    pub enqueued: u64,
    pub skipped: u64,
    pub bytes: u64,
}

impl Summary {
    /// `backfill: listed N, enqueued N, skipped N, bytes B, D s` (`would enqueue` in a dry run).
    pub fn line(&self, what: &str, dry_run: bool, took: Duration) -> String {
        let enqueued = if dry_run { "would enqueue" } else { "enqueued" };
        format!(
            "{what}: listed {}, {enqueued} {}, skipped {}, bytes {}, {:.1} s",
            self.listed,
            self.enqueued,
            self.skipped,
            self.bytes,
            took.as_secs_f64()
        )
    }
}

/// A digest of what a run enqueues: a checkpoint only resumes the run it was written by.
pub fn run_identity(request: &BackfillRequest) -> String {
    let time = |t: Option<SystemTime>| t.map(|t| humantime::format_rfc3339(t).to_string());
    let identity = serde_json::json!([
        request.target,
        request.inventory,
        time(request.since),
        time(request.until),
        format!("{:?}", request.action)
    ]);
    sha2::Sha256::digest(identity.to_string().as_bytes())
        .iter()
        .take(6)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `avscan-backfill-<run identity>.json`, in the working directory.
pub fn default_checkpoint_path(request: &BackfillRequest) -> PathBuf {
    PathBuf::from(format!("avscan-backfill-{}.json", run_identity(request)))
}

/// The S3 notification S3 would have sent for `listed`.
fn event(bucket: &str, region: &str, listed: &Listed) -> String {
    serde_json::json!({ "Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": humantime::format_rfc3339_millis(listed.last_modified).to_string(),
        "eventName": "ObjectCreated:Put",
        "userIdentity": { "principalId": "avscan-backfill" },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "avscan-backfill",
            "bucket": { "name": bucket, "arn": format!("arn:aws:s3:::{bucket}") },
            "object": {
                "key": avscan_actors::event::encode_event_key(&listed.key),
                "size": listed.size,
                "eTag": listed.etag,
                "versionId": listed.version_id,
            }
        }
    }]})
    .to_string()
}

/// Tries per batch entry before the run fails (a resumed run sends the batch again).
const SEND_ATTEMPTS: u32 = 5;

/// One run over one bucket's objects.
pub struct Run {
    sink: Option<aws::SqsSink>,
    bucket: String,
    region: String,
    rate: u32,
    dry_run: bool,
    attributes: Vec<(String, String)>,
    identity: String,
    checkpoint_path: Option<PathBuf>,
    summary: Summary,
    position: Option<Position>,
    started: Instant,
    /// Events sent by this process (the progress' rate).
    sent_here: u64,
    /// When the next batch may go: a batch of n moves it n/rate on from when it went, so time
    /// spent listing or skipping never builds up a burst.
    next_due: Instant,
    /// `backfill` or `audit`, for progress lines.
    what: &'static str,
    progress: Progress,
}

impl Run {
    /// A run that enqueues `request`'s objects of `bucket` (continuing `resumed`), keeping its
    /// checkpoint at `checkpoint_path`.
    pub async fn new(
        settings: &Settings,
        sdk: &SdkConfig,
        request: &BackfillRequest,
        bucket: &str,
        checkpoint_path: PathBuf,
        resumed: Option<Checkpoint>,
    ) -> Result<Run, Failed> {
        let sink = if request.dry_run {
            None
        } else {
            let sqs = aws::sqs_client(sdk, &settings.sqs, Duration::ZERO);
            let fail = |err: avscan_actors::ports::QueueError| Failed(err.to_string());
            let url = aws::queue_url(&sqs, &settings.inbound_queue).await.map_err(fail)?;
            let max_message_bytes = aws::queue_max_message_bytes(&sqs, &url).await.map_err(fail)?;
            Some(aws::SqsSink {
                client: sqs,
                url,
                max_message_bytes,
            })
        };
        let mut attributes = vec![(ORIGIN_ATTRIBUTE.to_owned(), "backfill".to_owned())];
        if request.action == BackfillAction::Report {
            attributes.push((FORWARD_CLEAN_ATTRIBUTE.to_owned(), "false".to_owned()));
        }
        let region = settings
            .s3
            .region
            .clone()
            .or_else(|| sdk.region().map(|region| region.to_string()))
            .unwrap_or_else(|| "us-east-1".to_owned());
        Ok(Run {
            sink,
            bucket: bucket.to_owned(),
            region,
            rate: request.rate,
            dry_run: request.dry_run,
            attributes,
            identity: run_identity(request),
            checkpoint_path: (!request.dry_run).then_some(checkpoint_path),
            summary: resumed.as_ref().map(|c| c.summary.clone()).unwrap_or_default(),
            position: resumed.map(|c| c.position),
            started: Instant::now(),
            sent_here: 0,
            next_due: Instant::now(),
            what: "backfill",
            progress: Progress::new(),
        })
    }

    /// An audit: marked as such, and without a checkpoint (it lists again each time).
    pub fn audit_only(&mut self) {
        self.attributes = vec![(ORIGIN_ATTRIBUTE.to_owned(), "audit".to_owned())];
        self.checkpoint_path = None;
        self.what = "audit";
    }

    /// Enqueues every object of `objects` that `skip` does not name a reason for; returns the
    /// summary. The checkpoint is removed once everything is enqueued.
    pub async fn drain(
        &mut self,
        mut objects: Objects,
        skip: impl Fn(&Listed) -> Option<&'static str>,
    ) -> Result<Summary, Failed> {
        let batch_size = (self.rate as usize).clamp(1, 10);
        let mut batch: Vec<(Listed, Position)> = Vec::with_capacity(batch_size);
        let mut skipped_shown = 0;
        while let Some(item) = objects.next().await {
            let (listed, position) = item?;
            self.summary.listed += 1;
            self.progress
                .show(self.what, &self.summary, self.sent_here, self.started.elapsed());
            if listed.etag.is_empty() {
                return Err(Failed(format!(
                    "s3://{}/{} was listed without an ETag: its event could not be pinned to what was listed",
                    self.bucket, listed.key
                )));
            }
            if let Some(reason) = skip(&listed) {
                self.summary.skipped += 1;
                if skipped_shown < 20 {
                    skipped_shown += 1;
                    tracing::info!(key = %listed.key, reason, "skipped");
                }
                self.position = Some(position);
                continue;
            }
            if self.dry_run {
                self.summary.enqueued += 1;
                self.summary.bytes += listed.size;
                continue;
            }
            batch.push((listed, position));
            if batch.len() == batch_size {
                self.send(std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            self.send(batch).await?;
        }
        self.progress.finish();
        if let Some(path) = &self.checkpoint_path {
            let _ = std::fs::remove_file(path);
        }
        Ok(self.summary.clone())
    }

    /// Sends one batch at the pace, retrying failed entries; then moves the checkpoint past it.
    async fn send(&mut self, batch: Vec<(Listed, Position)>) -> Result<(), Failed> {
        tokio::time::sleep_until(self.next_due.into()).await;
        self.next_due =
            Instant::now().max(self.next_due) + Duration::from_secs_f64(batch.len() as f64 / f64::from(self.rate));
        let sink = self.sink.as_ref().expect("a run that sends has a queue");
        let mut pending: Vec<OutboundMessage> = batch
            .iter()
            .map(|(listed, _)| OutboundMessage {
                body: event(&self.bucket, &self.region, listed),
                attributes: self.attributes.clone(),
            })
            .collect();
        for attempt in 1..=SEND_ATTEMPTS {
            let failures = match sink.send_batch(&pending).await {
                Ok(failures) => failures,
                Err(err) if attempt < SEND_ATTEMPTS => {
                    tracing::warn!(error = %err, attempt, "SendMessageBatch failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    continue;
                }
                Err(err) => return Err(Failed(err.to_string())),
            };
            if let Some(refused) = failures.iter().find(|failure| failure.permanent) {
                return Err(Failed(format!(
                    "the inbound queue refused an event: {}",
                    refused.detail
                )));
            }
            if failures.is_empty() {
                break;
            }
            if attempt == SEND_ATTEMPTS {
                return Err(Failed(format!(
                    "events not enqueued after {SEND_ATTEMPTS} tries: {}",
                    failures[0].detail
                )));
            }
            pending = failures.iter().map(|failure| pending[failure.index].clone()).collect();
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        self.sent_here += batch.len() as u64;
        self.summary.enqueued += batch.len() as u64;
        self.summary.bytes += batch.iter().map(|(listed, _)| listed.size).sum::<u64>();
        self.position = batch.last().map(|(_, position)| position.clone());
        if let (Some(path), Some(position)) = (&self.checkpoint_path, &self.position) {
            Checkpoint {
                run: self.identity.clone(),
                position: position.clone(),
                summary: self.summary.clone(),
            }
            .write(path)?;
        }
        Ok(())
    }
}

/// A progress bar on a terminal; otherwise a line every few seconds.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
}

/// Seconds between two progress lines when stderr is no terminal.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("a valid template"),
            );
            bar
        });
        Progress {
            bar,
            last_line: Instant::now(),
        }
    }

    /// `sent_here` over `elapsed` is this process's rate (a resumed run's summary counts more).
    fn show(&mut self, what: &str, summary: &Summary, sent_here: u64, elapsed: Duration) {
        let rate = sent_here as f64 / elapsed.as_secs_f64().max(0.001);
        let text = format!(
            "listed {}, enqueued {}, skipped {}, {}, {rate:.0}/s",
            summary.listed,
            summary.enqueued,
            summary.skipped,
            indicatif::HumanBytes(summary.bytes)
        );
        match &self.bar {
            Some(bar) => bar.set_message(text),
            None if self.last_line.elapsed() >= PROGRESS_LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{what}: {text}");
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backfilled_event_is_what_the_fleet_parses_from_s3() {
        let listed = Listed {
            key: "guid/a b+c ü.txt".into(),
            size: 68,
            etag: "e1".into(),
            last_modified: SystemTime::UNIX_EPOCH,
            version_id: Some("v1".into()),
            audit_skip: None,
        };
        let body = event("uploads", "eu-west-1", &listed);
        let avscan_actors::event::ParsedMessage::Records(records) =
            avscan_actors::event::parse_message(&body, "uploads")
        else {
            panic!("records expected: {body}")
        };
        let record = records[0].clone().unwrap();
        assert_eq!(record.object.key, "guid/a b+c ü.txt");
        assert_eq!((record.object.size, record.object.etag.as_deref()), (68, Some("e1")));
        assert_eq!(record.object.version_id.as_deref(), Some("v1"));
        assert!(body.contains(r#""key":"guid/a+b%2Bc+%C3%BC.txt""#), "{body}");
    }
}

//! The quarantiner moves infected and unscannable objects out of the unprocessed bucket, in an
//! order that makes every step safe to repeat after a crash:
//!
//! 1. copy the exact object version to the quarantine bucket under the same key (skipped when an
//!    earlier attempt's copy is there: its metadata names the source ETag and the verdict);
//! 2. publish the report to SNS and put it at `<key>.report.json` (both skipped when that report
//!    exists and was written for this very object: a duplicate notification happens only after
//!    a crash between the two);
//! 3. delete the original version (already gone or replaced counts as done);
//! 4. resolve the ticket, so the message is deleted.
//!
//! When the fetcher found the object gone, [`QuarantinerMsg::Gone`] finishes a quarantine an
//! earlier attempt started, or recognises a stale event.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{Instrument, Span};

use crate::model::{ObjectRecord, ObjectRef, QuarantineReason, RecordJob, ScanOutcome, Verdict};
use crate::ports::{Notifier, NotifyError, ObjectMeta, ObjectStore, StoreError};
use crate::report::{now_rfc3339, QuarantineReport};
use crate::trace::ObjectTrace;

pub enum QuarantinerMsg {
    Quarantine { job: RecordJob, outcome: ScanOutcome },
    Gone { job: RecordJob },
}

pub struct Quarantiner;

pub struct QuarantinerArgs {
    pub store: Arc<dyn ObjectStore>,
    pub notifier: Arc<dyn Notifier>,
    pub quarantine_bucket: String,
}

#[derive(Debug, thiserror::Error)]
enum QuarantineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

/// What happened to a record whose object was gone.
#[derive(Debug, PartialEq)]
enum GoneOutcome {
    FinishedEarlierQuarantine,
    Stale,
}

// User metadata on the quarantined copy and its report: ties them to their source object, and
// keeps the verdict on the copy, so a redelivery can finish the quarantine without the original.
const META_SOURCE_ETAG: &str = "avscan-source-etag";
const META_SOURCE_VERSION: &str = "avscan-source-version";
const META_VERDICT: &str = "avscan-verdict";
const META_REASON: &str = "avscan-reason";
const META_SIGNATURE: &str = "avscan-signature";
const META_SCANNED_AT: &str = "avscan-scanned-at";
const META_ENGINE: &str = "avscan-engine";

/// Names the source object; written on the report as well as on the copy.
fn source_metadata(report: &QuarantineReport) -> Vec<(String, String)> {
    let source = [
        (META_SOURCE_ETAG, &report.etag),
        (META_SOURCE_VERSION, &report.version_id),
    ];
    source
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?)))
        .collect()
}

fn copy_metadata(report: &QuarantineReport) -> Vec<(String, String)> {
    let mut metadata = source_metadata(report);
    metadata.extend([
        (META_VERDICT.to_owned(), report.verdict.clone()),
        (META_REASON.to_owned(), report.reason.clone()),
        (META_SCANNED_AT.to_owned(), report.scanned_at.clone()),
    ]);
    let optional = [(META_SIGNATURE, &report.signature), (META_ENGINE, &report.engine)];
    metadata.extend(
        optional
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?))),
    );
    metadata
}

/// True when `stored` (a quarantined copy or a report) was written for exactly `object`, not for
/// an earlier upload under the same key.
fn written_for(stored: &ObjectMeta, object: &ObjectRef) -> bool {
    let etag_matches = object
        .etag
        .as_ref()
        .map(|etag| stored.metadata.get(META_SOURCE_ETAG) == Some(etag));
    let version_matches = object
        .version_id
        .as_ref()
        .map(|v| stored.metadata.get(META_SOURCE_VERSION) == Some(v));
    match (etag_matches, version_matches) {
        (None, None) => false,
        (etag, version) => etag.unwrap_or(true) && version.unwrap_or(true),
    }
}

/// Rebuilds the verdict an earlier attempt stored on the copy. Unknown values fail closed to
/// "unscannable": the object stays quarantined either way.
fn verdict_from_metadata(metadata: &HashMap<String, String>) -> Verdict {
    let signature = metadata.get(META_SIGNATURE).cloned();
    match (
        metadata.get(META_VERDICT).map(String::as_str),
        metadata.get(META_REASON).map(String::as_str),
    ) {
        (Some("infected"), _) => Verdict::Infected {
            signature: signature.unwrap_or_default(),
        },
        (_, Some(reason)) if reason == QuarantineReason::FileTooLarge.as_str() => Verdict::Unscannable {
            reason: QuarantineReason::FileTooLarge,
            signature,
        },
        _ => Verdict::Unscannable {
            reason: QuarantineReason::Unscannable,
            signature,
        },
    }
}

impl QuarantinerArgs {
    async fn quarantine(
        &self,
        record: &ObjectRecord,
        outcome: ScanOutcome,
        trace: &Steps<'_>,
    ) -> Result<(), QuarantineError> {
        let object = &record.object;
        let report = QuarantineReport::new(
            record,
            &outcome.verdict,
            outcome.engine,
            now_rfc3339(),
            &self.quarantine_bucket,
        );
        let existing = self
            .store
            .head(&self.quarantine_bucket, &report.quarantine_key)
            .instrument(tracing::info_span!(parent: trace.parent, "check_copy"))
            .await?;
        if !existing.as_ref().is_some_and(|copy| written_for(copy, object)) {
            match self
                .store
                .copy(
                    object,
                    &self.quarantine_bucket,
                    &report.quarantine_key,
                    &copy_metadata(&report),
                )
                .instrument(tracing::info_span!(parent: trace.parent, "copy", otel.kind = "client"))
                .await
            {
                Ok(()) => {}
                Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => {
                    // Gone between the scan and the copy: maybe another worker finished it.
                    self.finish_if_quarantined(record, trace).await?;
                    return Ok(());
                }
                Err(err) => return Err(err.into()),
            }
        }
        self.report_and_delete(object, &report, trace).await
    }

    async fn report_and_delete(
        &self,
        object: &ObjectRef,
        report: &QuarantineReport,
        trace: &Steps<'_>,
    ) -> Result<(), QuarantineError> {
        let report_key = report.report_key();
        let existing = self
            .store
            .head(&self.quarantine_bucket, &report_key)
            .instrument(tracing::info_span!(parent: trace.parent, "check_report"))
            .await?;
        if !existing.is_some_and(|stored| written_for(&stored, object)) {
            let notify = tracing::info_span!(parent: trace.parent, "notify", otel.kind = "producer");
            let mut notification = report.notification();
            notification.attributes.extend(trace.object.propagate(&notify));
            self.notifier.publish(&notification).instrument(notify).await?;
            self.store
                .put(
                    &self.quarantine_bucket,
                    &report_key,
                    Bytes::from(report.to_json()),
                    "application/json",
                    &source_metadata(report),
                )
                .instrument(tracing::info_span!(parent: trace.parent, "put_report", otel.kind = "client"))
                .await?;
        }
        let deleted = self
            .store
            .delete(object)
            .instrument(tracing::info_span!(parent: trace.parent, "delete_source", otel.kind = "client"))
            .await;
        match deleted {
            Ok(()) | Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    async fn finish_if_quarantined(
        &self,
        record: &ObjectRecord,
        trace: &Steps<'_>,
    ) -> Result<GoneOutcome, QuarantineError> {
        let object = &record.object;
        let copy = self
            .store
            .head(&self.quarantine_bucket, &object.key)
            .instrument(tracing::info_span!(parent: trace.parent, "check_copy"))
            .await?;
        let Some(copy) = copy else {
            return Ok(GoneOutcome::Stale);
        };
        if !written_for(&copy, object) {
            return Ok(GoneOutcome::Stale);
        }
        let verdict = verdict_from_metadata(&copy.metadata);
        let mut report = QuarantineReport::new(
            record,
            &verdict,
            copy.metadata.get(META_ENGINE).cloned(),
            copy.metadata.get(META_SCANNED_AT).cloned().unwrap_or_else(now_rfc3339),
            &self.quarantine_bucket,
        );
        report.signature = copy.metadata.get(META_SIGNATURE).cloned();
        self.report_and_delete(object, &report, trace).await?;
        Ok(GoneOutcome::FinishedEarlierQuarantine)
    }
}

/// Where the spans of a quarantine's steps go: under `parent` (the `quarantine` span), and
/// the notification continues `object`'s trace.
struct Steps<'a> {
    object: &'a ObjectTrace,
    parent: &'a Span,
}

/// Runs a quarantine, recording how long it took.
async fn timed<T>(quarantine: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let result = quarantine.await;
    crate::metrics::stage("quarantine", started.elapsed());
    result
}

impl Actor for Quarantiner {
    type Msg = QuarantinerMsg;
    type State = QuarantinerArgs;
    type Arguments = QuarantinerArgs;

    async fn pre_start(
        &self,
        _: ActorRef<QuarantinerMsg>,
        args: QuarantinerArgs,
    ) -> Result<QuarantinerArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<QuarantinerMsg>,
        message: QuarantinerMsg,
        state: &mut QuarantinerArgs,
    ) -> Result<(), ActorProcessingErr> {
        let job = match &message {
            QuarantinerMsg::Quarantine { job, .. } | QuarantinerMsg::Gone { job } => job,
        };
        let span = tracing::info_span!(parent: &job.trace.span, "quarantine", error = tracing::field::Empty);
        let trace = job.trace.clone();
        let steps = Steps {
            object: &trace,
            parent: &span,
        };
        let failed = |err: &QuarantineError| {
            span.record("error", tracing::field::display(err));
        };
        match message {
            QuarantinerMsg::Quarantine { job, outcome } => {
                match timed(state.quarantine(&job.record, outcome, &steps)).await {
                    Ok(()) => {
                        tracing::info!(key = %job.record.object.key, message_id = job.ticket.message_id(), "quarantined");
                        job.ticket.done();
                    }
                    Err(err) => {
                        failed(&err);
                        tracing::warn!(key = %job.record.object.key, message_id = job.ticket.message_id(), error = %err, "quarantine step failed; message will be retried");
                        job.ticket.retry("quarantine", err);
                    }
                }
            }
            QuarantinerMsg::Gone { job } => match state.finish_if_quarantined(&job.record, &steps).await {
                Ok(GoneOutcome::FinishedEarlierQuarantine) => {
                    tracing::info!(key = %job.record.object.key, message_id = job.ticket.message_id(), "already quarantined by an earlier attempt");
                    job.ticket.done();
                }
                Ok(GoneOutcome::Stale) => {
                    tracing::info!(key = %job.record.object.key, message_id = job.ticket.message_id(), "object gone or replaced since the event; a newer event exists");
                    job.ticket.done();
                }
                Err(err) => {
                    failed(&err);
                    tracing::warn!(key = %job.record.object.key, message_id = job.ticket.message_id(), error = %err, "quarantine check failed; message will be retried");
                    job.ticket.retry("quarantine", err);
                }
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(etag: Option<&str>, version: Option<&str>) -> ObjectRef {
        ObjectRef {
            bucket: "b".into(),
            key: "g/k".into(),
            etag: etag.map(Into::into),
            version_id: version.map(Into::into),
            size: 1,
        }
    }

    fn copy_with(pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            metadata: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn copies_and_reports_match_only_their_own_source() {
        let copy = copy_with(&[(META_SOURCE_ETAG, "e1"), (META_SOURCE_VERSION, "v1")]);
        assert!(written_for(&copy, &object(Some("e1"), Some("v1"))));
        assert!(written_for(&copy, &object(Some("e1"), None)));
        assert!(!written_for(&copy, &object(Some("e2"), None)));
        assert!(!written_for(&copy, &object(Some("e1"), Some("v2"))));
        assert!(!written_for(&copy, &object(None, None)));
        assert!(!written_for(&copy_with(&[]), &object(Some("e1"), None)));
    }

    #[test]
    fn stored_verdicts_round_trip_and_unknown_ones_fail_closed() {
        let infected = copy_with(&[(META_VERDICT, "infected"), (META_SIGNATURE, "Eicar")]);
        assert_eq!(
            verdict_from_metadata(&infected.metadata),
            Verdict::Infected {
                signature: "Eicar".into()
            }
        );
        let too_large = copy_with(&[(META_VERDICT, "unscannable"), (META_REASON, "file too large")]);
        assert_eq!(
            verdict_from_metadata(&too_large.metadata).quarantine_reason(),
            Some(QuarantineReason::FileTooLarge)
        );
        let garbage = copy_with(&[(META_VERDICT, "clean")]);
        assert_eq!(verdict_from_metadata(&garbage.metadata).label(), "unscannable");
    }
}

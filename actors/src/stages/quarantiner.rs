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
//! When the fetcher found the object gone, [`QuarantinerMsg::CheckQuarantined`] finishes a
//! quarantine an earlier attempt started, or recognises a stale event. Which stored copy or
//! report belongs to which source object is the report's metadata codec (`crate::report`).

use std::sync::Arc;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{Instrument, Span};

use crate::metrics::Latency;
use crate::model::{ObjectRecord, ObjectRef, RecordJob, ScanOutcome};
use crate::ports::{Notifier, NotifyError, ObjectStore, StoreError};
use crate::report::{now_rfc3339, written_for, QuarantineReport};
use crate::ticket::RetryCause;
use crate::trace::ObjectTrace;

/// What the quarantiner is told.
pub(crate) enum QuarantinerMsg {
    /// Move this object to quarantine, notify and report.
    Quarantine {
        /// The record, with its ticket.
        job: RecordJob,
        /// The verdict that sends it here.
        outcome: ScanOutcome,
    },
    /// The object is gone: finish an earlier attempt's quarantine of it, or drop a stale event.
    CheckQuarantined {
        /// The record, with its ticket.
        job: RecordJob,
    },
}

/// The quarantiner actor.
pub(crate) struct Quarantiner;

/// What the quarantiner is spawned with.
pub(crate) struct QuarantinerArguments {
    /// Both buckets.
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The notification topic.
    pub(crate) notifier: Arc<dyn Notifier>,
    /// Where copies and reports go.
    pub(crate) quarantine_bucket: String,
}

/// The quarantiner's state: its arguments (it keeps nothing between records).
pub(crate) struct QuarantinerState {
    arguments: QuarantinerArguments,
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

impl QuarantinerState {
    async fn quarantine(
        &self,
        record: &ObjectRecord,
        outcome: ScanOutcome,
        spans: &StepSpans<'_>,
    ) -> Result<(), QuarantineError> {
        let object = &record.object;
        let report = QuarantineReport::new(
            record,
            &outcome.verdict,
            outcome.engine,
            now_rfc3339(),
            &self.arguments.quarantine_bucket,
        );
        let existing = self
            .arguments
            .store
            .head(&self.arguments.quarantine_bucket, &report.quarantine_key)
            .instrument(tracing::info_span!(parent: spans.parent, "check_copy"))
            .await?;
        if !existing.as_ref().is_some_and(|copy| written_for(copy, object)) {
            match self
                .arguments
                .store
                .copy(
                    object,
                    &self.arguments.quarantine_bucket,
                    &report.quarantine_key,
                    &report.copy_metadata(),
                )
                .instrument(tracing::info_span!(parent: spans.parent, "copy", otel.kind = "client"))
                .await
            {
                Ok(()) => {}
                Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => {
                    // Gone between the scan and the copy: maybe another worker finished it.
                    self.finish_if_quarantined(record, spans).await?;
                    return Ok(());
                }
                Err(err) => return Err(err.into()),
            }
        }
        self.report_and_delete(object, &report, spans).await
    }

    async fn report_and_delete(
        &self,
        object: &ObjectRef,
        report: &QuarantineReport,
        spans: &StepSpans<'_>,
    ) -> Result<(), QuarantineError> {
        let report_key = report.report_key();
        let existing = self
            .arguments
            .store
            .head(&self.arguments.quarantine_bucket, &report_key)
            .instrument(tracing::info_span!(parent: spans.parent, "check_report"))
            .await?;
        if !existing.is_some_and(|stored| written_for(&stored, object)) {
            let notify = tracing::info_span!(parent: spans.parent, "notify", otel.kind = "producer");
            let mut notification = report.notification();
            notification.attributes.extend(spans.object.propagate(&notify));
            self.arguments
                .notifier
                .publish(&notification)
                .instrument(notify)
                .await?;
            self.arguments
                .store
                .put(
                    &self.arguments.quarantine_bucket,
                    &report_key,
                    Bytes::from(report.to_json()),
                    "application/json",
                    &report.source_metadata(),
                )
                .instrument(tracing::info_span!(parent: spans.parent, "put_report", otel.kind = "client"))
                .await?;
        }
        let deleted = self
            .arguments
            .store
            .delete(object)
            .instrument(tracing::info_span!(parent: spans.parent, "delete_source", otel.kind = "client"))
            .await;
        match deleted {
            Ok(()) | Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    async fn finish_if_quarantined(
        &self,
        record: &ObjectRecord,
        spans: &StepSpans<'_>,
    ) -> Result<GoneOutcome, QuarantineError> {
        let object = &record.object;
        let copy = self
            .arguments
            .store
            .head(&self.arguments.quarantine_bucket, &object.key)
            .instrument(tracing::info_span!(parent: spans.parent, "check_copy"))
            .await?;
        let Some(copy) = copy else {
            return Ok(GoneOutcome::Stale);
        };
        if !written_for(&copy, object) {
            return Ok(GoneOutcome::Stale);
        }
        let report = QuarantineReport::from_copy(record, &copy, &self.arguments.quarantine_bucket);
        self.report_and_delete(object, &report, spans).await?;
        Ok(GoneOutcome::FinishedEarlierQuarantine)
    }
}

/// Where the spans of a quarantine's steps go: under `parent` (the `quarantine` span), and
/// the notification continues `object`'s trace.
struct StepSpans<'a> {
    object: &'a ObjectTrace,
    parent: &'a Span,
}

/// Runs a quarantine, recording how long it took.
async fn timed<T>(quarantine: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let result = quarantine.await;
    crate::metrics::observe_latency(Latency::Quarantine, started.elapsed());
    result
}

impl Actor for Quarantiner {
    type Msg = QuarantinerMsg;
    type State = QuarantinerState;
    type Arguments = QuarantinerArguments;

    async fn pre_start(
        &self,
        _: ActorRef<QuarantinerMsg>,
        arguments: QuarantinerArguments,
    ) -> Result<QuarantinerState, ActorProcessingErr> {
        Ok(QuarantinerState { arguments })
    }

    async fn handle(
        &self,
        _: ActorRef<QuarantinerMsg>,
        message: QuarantinerMsg,
        state: &mut QuarantinerState,
    ) -> Result<(), ActorProcessingErr> {
        let job = match &message {
            QuarantinerMsg::Quarantine { job, .. } | QuarantinerMsg::CheckQuarantined { job } => job,
        };
        let span = tracing::info_span!(parent: &job.trace.span, "quarantine", error = tracing::field::Empty);
        let trace = job.trace.clone();
        let steps = StepSpans {
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
                        job.ticket.retry(RetryCause::Quarantine, err);
                    }
                }
            }
            QuarantinerMsg::CheckQuarantined { job } => match state.finish_if_quarantined(&job.record, &steps).await {
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
                    job.ticket.retry(RetryCause::Quarantine, err);
                }
            },
        }
        Ok(())
    }
}

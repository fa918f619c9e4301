//! The quarantiner moves infected and unscannable objects out of the unprocessed bucket, in an
//! order that makes every step safe to repeat after a crash, and never overwrites evidence
//! (what identifies an incident and where its evidence goes: `crate::incident`):
//!
//! 1. HEAD exactly the announced object: its user metadata goes into the report, its KMS key
//!    onto the copy (or the configured quarantine key): a copy is never encrypted more weakly;
//! 2. choose the incident's quarantine key: the source key for a key's first incident, the key
//!    with the upload's id for a later one, passing over a key whose copy or report belongs to
//!    another incident;
//! 3. copy the exact object version there, written only if absent (skipped when this upload's
//!    copy is there: its metadata names the source upload and the verdict);
//! 4. publish the report to SNS and put it at `<quarantine key>.report.json`, written only if
//!    absent (both skipped when this upload's report exists: a duplicate notification happens
//!    only after a crash between the two);
//! 5. delete the original version (already gone or replaced counts as done);
//! 6. resolve the ticket.
//!
//! An object with a verdict that is gone before its copy is still reported and notified
//! (`removed before quarantine`), unless an earlier attempt quarantined it or a newer upload
//! under its key explains it. When the fetcher found the object gone (no verdict),
//! [`QuarantinerMsg::CheckQuarantined`] finishes a quarantine an earlier attempt started, or
//! recognises a stale event.

use std::sync::Arc;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{Instrument, Span};

use crate::incident::{quarantine_keys, report_key};
use crate::metrics::Latency;
use crate::model::{ObjectRecord, ObjectRef, RecordJob, ScanOutcome};
use crate::ports::{CopyRequest, Notifier, NotifyError, ObjectMeta, ObjectStore, StoreError, WriteOptions};
use crate::report::{now_rfc3339, written_for, QuarantineReport, REMOVED_BEFORE_QUARANTINE};
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
    /// Encrypts copies and reports, when set; otherwise a copy keeps its source's KMS key.
    pub(crate) kms_key_id: Option<String>,
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
    /// Every key the incident may use holds another incident's evidence, or a concurrent
    /// attempt took one: the next attempt looks again.
    #[error("no free quarantine key for s3://{bucket}/{key}")]
    NoFreeKey { bucket: String, key: String },
}

/// How a quarantine ended.
#[derive(Debug, PartialEq)]
enum Quarantined {
    /// Copied, reported, removed.
    Moved,
    /// An earlier attempt had copied it; this one finished the rest.
    FinishedEarlierQuarantine,
    /// Gone before its copy, with nothing to explain it: reported without a copy.
    RemovedBeforeQuarantine,
    /// Gone or replaced since the event: a newer upload, judged on its own event.
    Stale,
}

/// Where an incident's evidence goes, and what of it is there already.
struct Place {
    key: String,
    /// This upload's copy is there.
    copied: bool,
    /// This upload's report is there.
    reported: bool,
}

impl QuarantinerState {
    fn bucket(&self) -> &str {
        &self.arguments.quarantine_bucket
    }

    async fn head(
        &self,
        key: &str,
        step: &'static str,
        spans: &StepSpans<'_>,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        self.arguments
            .store
            .head(self.bucket(), key)
            .instrument(tracing::info_span!(parent: spans.parent, "step", otel.name = step))
            .await
    }

    /// The first quarantine key of the incident whose copy and report are absent or this
    /// upload's.
    async fn place(&self, object: &ObjectRef, spans: &StepSpans<'_>) -> Result<Place, QuarantineError> {
        for key in quarantine_keys(object) {
            let copy = self.head(&key, "check_copy", spans).await?;
            if copy.as_ref().is_some_and(|copy| !written_for(copy, object)) {
                continue;
            }
            let report = self.head(&report_key(&key), "check_report", spans).await?;
            if report.as_ref().is_some_and(|report| !written_for(report, object)) {
                continue;
            }
            return Ok(Place {
                key,
                copied: copy.is_some(),
                reported: report.is_some(),
            });
        }
        Err(QuarantineError::NoFreeKey {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
        })
    }

    fn write_options(&self, kms_key_id: Option<&String>) -> WriteOptions {
        WriteOptions {
            if_absent: true,
            kms_key_id: self.arguments.kms_key_id.clone().or_else(|| kms_key_id.cloned()),
        }
    }

    async fn quarantine(
        &self,
        record: &ObjectRecord,
        outcome: ScanOutcome,
        spans: &StepSpans<'_>,
    ) -> Result<Quarantined, QuarantineError> {
        let object = &record.object;
        let mut report = QuarantineReport::new(record, &outcome, now_rfc3339(), self.bucket());
        let source = self
            .arguments
            .store
            .head_object(object)
            .instrument(tracing::info_span!(parent: spans.parent, "step", otel.name = "check_source"))
            .await;
        let source = match source {
            Ok(source) => source,
            Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => {
                return self.vanished(record, report, spans).await
            }
            Err(err) => return Err(err.into()),
        };
        report.source_metadata = source.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let options = self.write_options(source.kms_key_id.as_ref());
        let place = self.place(object, spans).await?;
        report.quarantine_key = place.key.clone();
        if !place.copied {
            let copied = self
                .arguments
                .store
                .copy(CopyRequest {
                    source: object,
                    source_meta: &source,
                    bucket: self.bucket(),
                    key: &place.key,
                    metadata: &report.copy_metadata(),
                    options: &options,
                })
                .instrument(tracing::info_span!(parent: spans.parent, "step", otel.name = "copy", otel.kind = "client"))
                .await;
            match copied {
                Ok(()) => {}
                // Gone between the scan and the copy.
                Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => {
                    return self.vanished(record, report, spans).await
                }
                // Taken since the HEAD, by a concurrent attempt or another incident.
                Err(StoreError::AlreadyExists { bucket, key }) => {
                    return Err(QuarantineError::NoFreeKey { bucket, key })
                }
                Err(err) => return Err(err.into()),
            }
        }
        if !place.reported {
            self.report(&report, &options, spans).await?;
        }
        self.delete_source(object, spans).await?;
        Ok(Quarantined::Moved)
    }

    /// Publishes the report and stores it beside the copy, only if absent.
    async fn report(
        &self,
        report: &QuarantineReport,
        options: &WriteOptions,
        spans: &StepSpans<'_>,
    ) -> Result<(), QuarantineError> {
        let notify = tracing::info_span!(parent: spans.parent, "step", otel.name = "notify", otel.kind = "producer");
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
                self.bucket(),
                &report.report_key(),
                Bytes::from(report.to_json()),
                "application/json",
                &report.source_metadata(),
                options,
            )
            .instrument(
                tracing::info_span!(parent: spans.parent, "step", otel.name = "put_report", otel.kind = "client"),
            )
            .await
            .map_err(|err| match err {
                StoreError::AlreadyExists { bucket, key } => QuarantineError::NoFreeKey { bucket, key },
                other => other.into(),
            })
    }

    async fn delete_source(&self, object: &ObjectRef, spans: &StepSpans<'_>) -> Result<(), QuarantineError> {
        let deleted = self
            .arguments
            .store
            .delete(object)
            .instrument(
                tracing::info_span!(parent: spans.parent, "step", otel.name = "delete_source", otel.kind = "client"),
            )
            .await;
        match deleted {
            Ok(()) | Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// The object was judged but is gone: an earlier attempt may have quarantined it, a newer
    /// upload may have replaced it; otherwise the incident is reported without a copy.
    async fn vanished(
        &self,
        record: &ObjectRecord,
        mut report: QuarantineReport,
        spans: &StepSpans<'_>,
    ) -> Result<Quarantined, QuarantineError> {
        let finished = self.finish_if_quarantined(record, spans).await?;
        if finished != Quarantined::Stale {
            return Ok(finished);
        }
        let object = &record.object;
        let current = self
            .arguments
            .store
            .head(&object.bucket, &object.key)
            .instrument(tracing::info_span!(parent: spans.parent, "step", otel.name = "check_source"))
            .await?;
        if current.is_some() {
            return Ok(Quarantined::Stale);
        }
        let place = self.place(&record.object, spans).await?;
        report.quarantine_key = place.key;
        report.reason = REMOVED_BEFORE_QUARANTINE.to_owned();
        if !place.reported {
            self.report(&report, &self.write_options(None), spans).await?;
        }
        Ok(Quarantined::RemovedBeforeQuarantine)
    }

    /// Finishes the quarantine of a gone object if this upload's copy is in quarantine.
    async fn finish_if_quarantined(
        &self,
        record: &ObjectRecord,
        spans: &StepSpans<'_>,
    ) -> Result<Quarantined, QuarantineError> {
        let object = &record.object;
        for key in quarantine_keys(object) {
            let Some(copy) = self.head(&key, "check_copy", spans).await? else {
                continue;
            };
            if !written_for(&copy, object) {
                continue;
            }
            let report = QuarantineReport::from_copy(record, &copy, self.bucket(), &key);
            let existing = self.head(&report.report_key(), "check_report", spans).await?;
            if !existing.is_some_and(|existing| written_for(&existing, object)) {
                self.report(&report, &self.write_options(copy.kms_key_id.as_ref()), spans)
                    .await?;
            }
            self.delete_source(object, spans).await?;
            return Ok(Quarantined::FinishedEarlierQuarantine);
        }
        Ok(Quarantined::Stale)
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
                    Ok(ended) => {
                        let key = &job.record.object.key;
                        let message_id = job.ticket.message_id();
                        match ended {
                            Quarantined::Moved => tracing::info!(%key, message_id, "quarantined"),
                            Quarantined::FinishedEarlierQuarantine => {
                                tracing::info!(%key, message_id, "quarantined (an earlier attempt had copied it)")
                            }
                            Quarantined::RemovedBeforeQuarantine => {
                                tracing::warn!(%key, message_id, "removed before quarantine; reported and notified without a copy")
                            }
                            Quarantined::Stale => {
                                tracing::info!(%key, message_id, "replaced since its verdict; the newer upload has its own event")
                            }
                        }
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
                Ok(Quarantined::FinishedEarlierQuarantine) => {
                    tracing::info!(key = %job.record.object.key, message_id = job.ticket.message_id(), "already quarantined by an earlier attempt");
                    job.ticket.done();
                }
                Ok(_) => {
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

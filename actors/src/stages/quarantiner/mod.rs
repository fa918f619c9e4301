//! The quarantiner carries out each object's policy on the object itself: it moves infected and
//! unscannable objects out of their bucket (action `quarantine`: `moving.rs`), or leaves them tagged, deletes
//! them or only reports them (`tag`, `delete`, `report`: `in_place.rs`), and tags clean objects
//! before they are forwarded when the policy tags. A move goes in an order that makes every step
//! safe to repeat after a crash, and never overwrites evidence (what identifies an incident and
//! where its evidence goes: `crate::incident`):
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

mod in_place;
mod moving;

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::Span;

use super::forwarder::ForwarderMsg;
use super::RecordJob;
use crate::address::StageAddress;
use crate::metrics::Latency;
use crate::model::now_rfc3339;
use crate::model::ScanOutcome;
use crate::policy::Action;
use crate::ports::{Notifier, NotifyError, ObjectStore, StoreError};
use crate::report::QuarantineReport;
use crate::result_event::ResultEvent;
use crate::ticket::RetryCause;
use crate::trace::ObjectTrace;

/// What the quarantiner is told.
pub(crate) enum QuarantinerMsg {
    /// Carry out the policy's action on this object that is not clean: move it to quarantine,
    /// tag, delete or only report it; notify and report in every case.
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
    /// A clean object whose policy tags: tag it, then forward it if the policy forwards.
    TagClean {
        /// The record, with its ticket.
        job: RecordJob,
        /// clamd's clean verdict, for the tags and the outbound message.
        outcome: ScanOutcome,
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
    /// Encrypts copies and reports, when set; otherwise a copy keeps its source's KMS key.
    pub(crate) kms_key_id: Option<String>,
    /// Where clean objects go once tagged, when their policy forwards them.
    pub(crate) forwarder: StageAddress<ForwarderMsg>,
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
    /// The object's own tags leave no room for avscan's status.
    #[error(transparent)]
    Tags(#[from] crate::tags::NoRoomForStatus),
}

/// How a quarantine ended, with the report of the incident (boxed: the largest part).
#[derive(Debug, PartialEq)]
enum Quarantined {
    /// Copied, reported, removed.
    Moved(Box<QuarantineReport>),
    /// An earlier attempt had copied it; this one finished the rest.
    FinishedEarlierQuarantine(Box<QuarantineReport>),
    /// Gone before its copy, with nothing to explain it: reported without a copy.
    RemovedBeforeQuarantine(Box<QuarantineReport>),
    /// Gone or replaced since the event: a newer upload, judged on its own event.
    Stale,
    /// Reported, and tagged, deleted or left as the policy says.
    InPlace(Action, Box<QuarantineReport>),
}

impl Quarantined {
    /// The record's result event.
    fn result(&self, job: &RecordJob) -> ResultEvent {
        let message_id = job.ticket.message_id();
        let bucket = job.policy.quarantine_bucket.as_deref();
        match self {
            Quarantined::Moved(report)
            | Quarantined::FinishedEarlierQuarantine(report)
            | Quarantined::RemovedBeforeQuarantine(report)
            | Quarantined::InPlace(_, report) => report.result_event(bucket, message_id),
            Quarantined::Stale => ResultEvent::stale(&job.record, message_id),
        }
    }
}

/// Where an incident's evidence goes, and what of it is there already.
struct Place {
    key: String,
    /// This upload's copy is there.
    copied: bool,
    /// This upload's report is there.
    reported: bool,
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
        let (job, name) = match &message {
            QuarantinerMsg::Quarantine { job, .. } => (job, job.policy.action.name()),
            QuarantinerMsg::CheckQuarantined { job } => (job, "quarantine"),
            QuarantinerMsg::TagClean { job, .. } => (job, "tag"),
        };
        let span =
            tracing::info_span!(parent: &job.trace.span, "quarantine", otel.name = name, error = tracing::field::Empty);
        let trace = job.trace.clone();
        let steps = StepSpans {
            object: &trace,
            parent: &span,
        };
        let failed = |err: &QuarantineError| {
            span.record("error", tracing::field::display(err));
        };
        let ended = match message {
            QuarantinerMsg::Quarantine { job, outcome } => {
                let policy = Arc::clone(&job.policy);
                let acted = match (&policy.action, policy.quarantine_bucket.as_deref()) {
                    (Action::Quarantine, Some(bucket)) => {
                        timed(state.quarantine(&job.record, outcome, bucket, &steps)).await
                    }
                    // A policy without a quarantine bucket cannot move (refused at start-up).
                    _ => timed(state.act_in_place(&job.record, outcome, &policy, &steps)).await,
                };
                (job, acted)
            }
            QuarantinerMsg::CheckQuarantined { job } => {
                let checked = match (&job.policy.action, job.policy.quarantine_bucket.as_deref()) {
                    (Action::Quarantine, Some(bucket)) => {
                        state.finish_if_quarantined(&job.record, bucket, &steps).await
                    }
                    // Nothing was moved: a gone object is a newer upload's business.
                    _ => Ok(Quarantined::Stale),
                };
                (job, checked)
            }
            QuarantinerMsg::TagClean { job, outcome } => {
                let tagged = state
                    .tag(&job.record.object, &outcome, job.policy.tags, &now_rfc3339(), &steps)
                    .await;
                match tagged {
                    Ok(()) if job.policy.forward_clean => {
                        if let Err(ForwarderMsg::Forward { job, .. }) =
                            state.arguments.forwarder.send(ForwarderMsg::Forward {
                                job,
                                outcome: Box::new(outcome),
                            })
                        {
                            job.ticket.retry(RetryCause::Restart, "forwarder is restarting");
                        }
                    }
                    Ok(()) => {
                        tracing::info!(key = %job.record.object.key, message_id = job.ticket.message_id(), "clean; tagged (the policy forwards nothing)");
                        let result = ResultEvent::judged(&job.record, &outcome, "tagged", job.ticket.message_id());
                        job.ticket.done(result);
                    }
                    Err(err) => {
                        failed(&err);
                        tracing::warn!(key = %job.record.object.key, message_id = job.ticket.message_id(), error = %err, "tagging failed; message will be retried");
                        job.ticket.retry(RetryCause::Quarantine, err);
                    }
                }
                return Ok(());
            }
        };
        let (job, result) = ended;
        let key = &job.record.object.key;
        let message_id = job.ticket.message_id();
        match result {
            Ok(ended) => {
                match &ended {
                    Quarantined::Moved(_) => tracing::info!(%key, message_id, "quarantined"),
                    Quarantined::FinishedEarlierQuarantine(_) => {
                        tracing::info!(%key, message_id, "quarantined (an earlier attempt had copied it)")
                    }
                    Quarantined::RemovedBeforeQuarantine(_) => {
                        tracing::warn!(%key, message_id, "removed before quarantine; reported and notified without a copy")
                    }
                    Quarantined::Stale => {
                        tracing::info!(%key, message_id, "gone or replaced since the event; a newer event exists")
                    }
                    Quarantined::InPlace(action, _) => {
                        tracing::info!(%key, message_id, action = action.name(), "reported; the policy's action is done")
                    }
                }
                let result = ended.result(&job);
                job.ticket.done(result);
            }
            Err(err) => {
                failed(&err);
                tracing::warn!(%key, message_id, error = %err, "quarantine step failed; message will be retried");
                job.ticket.retry(RetryCause::Quarantine, err);
            }
        }
        Ok(())
    }
}

//! The router decides where a record goes once the fetcher has inspected its object: clean
//! objects to the forwarder, infected, unscannable, too large or vanished ones to the
//! quarantiner, and anything uncertain back to the queue. The decision is [`route`], a pure
//! function: nothing but clamd's `OK` ever reaches the forwarder.

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::forwarder::ForwarderMsg;
use super::quarantiner::QuarantinerMsg;
use crate::model::{InspectError, Inspection, QuarantineReason, RecordJob, ScanOutcome, Verdict};
use crate::stage::Address;

pub enum RouterMsg {
    Route {
        job: RecordJob,
        inspection: Result<Inspection, InspectError>,
    },
}

/// Where a record goes next.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Forward {
        engine: Option<String>,
    },
    Quarantine(ScanOutcome),
    /// The object is gone: finish a quarantine a previous attempt started, or drop a stale event.
    CheckQuarantined,
    /// No verdict; `cause` is `fetch` or `scan`.
    Retry {
        cause: &'static str,
        reason: String,
    },
}

impl Route {
    /// The route's name in traces.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Forward { .. } => "forward",
            Route::Quarantine(_) => "quarantine",
            Route::CheckQuarantined => "check_quarantined",
            Route::Retry { .. } => "retry",
        }
    }
}

/// The one place that maps an inspection (or its failure) to a route.
pub fn route(inspection: Result<Inspection, InspectError>) -> Route {
    match inspection {
        Ok(Inspection::Scanned(ScanOutcome {
            verdict: Verdict::Clean,
            engine,
        })) => Route::Forward { engine },
        Ok(Inspection::Scanned(outcome)) => Route::Quarantine(outcome),
        Ok(Inspection::TooLarge { .. }) => Route::Quarantine(ScanOutcome {
            verdict: Verdict::Unscannable {
                reason: QuarantineReason::FileTooLarge,
                signature: None,
            },
            engine: None,
        }),
        Ok(Inspection::Gone) => Route::CheckQuarantined,
        Err(err) => Route::Retry {
            cause: match err {
                InspectError::Fetch(_) => "fetch",
                InspectError::Scan(_) => "scan",
            },
            reason: err.to_string(),
        },
    }
}

pub struct Router;

pub struct RouterArgs {
    pub forwarder: Address<ForwarderMsg>,
    pub quarantiner: Address<QuarantinerMsg>,
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterArgs;
    type Arguments = RouterArgs;

    async fn pre_start(&self, _: ActorRef<RouterMsg>, args: RouterArgs) -> Result<RouterArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<RouterMsg>,
        message: RouterMsg,
        state: &mut RouterArgs,
    ) -> Result<(), ActorProcessingErr> {
        let RouterMsg::Route { job, inspection } = message;
        let object = &job.record.object;
        let route = route(inspection);
        let object_span = &job.trace.span;
        let _span = tracing::info_span!(parent: object_span, "route", route = route.label()).entered();
        match &route {
            Route::Forward { .. } => {
                object_span.record("scan.verdict", "clean");
            }
            Route::Quarantine(outcome) => {
                object_span.record("scan.verdict", outcome.verdict.label());
                if let Some(signature) = outcome.verdict.signature() {
                    object_span.record("scan.signature", signature);
                }
            }
            Route::CheckQuarantined => {}
            Route::Retry { reason, .. } => {
                object_span.record("otel.status_code", "ERROR");
                object_span.record("error", reason.as_str());
            }
        }
        match route {
            Route::Forward { engine } => {
                tracing::info!(bucket = %object.bucket, key = %object.key, message_id = job.ticket.message_id(), "clean; forwarding");
                crate::metrics::record("clean");
                let _ = state.forwarder.send(ForwarderMsg::Forward { job, engine });
            }
            Route::Quarantine(outcome) => {
                tracing::warn!(
                    bucket = %object.bucket, key = %object.key, message_id = job.ticket.message_id(),
                    verdict = outcome.verdict.label(), signature = outcome.verdict.signature().unwrap_or(""),
                    "quarantining"
                );
                crate::metrics::record(outcome.verdict.label());
                let _ = state.quarantiner.send(QuarantinerMsg::Quarantine { job, outcome });
            }
            Route::CheckQuarantined => {
                crate::metrics::record("gone");
                let _ = state.quarantiner.send(QuarantinerMsg::Gone { job });
            }
            Route::Retry { cause, reason } => {
                tracing::warn!(
                    bucket = %object.bucket, key = %object.key, message_id = job.ticket.message_id(),
                    attempt = job.ticket.attempt(), %reason, "no verdict; message will be retried"
                );
                job.ticket.retry(cause, reason);
            }
        }
        // A failed send above drops the job, and its ticket retries the message.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{ScanError, StoreError};

    fn scanned(verdict: Verdict) -> Result<Inspection, InspectError> {
        Ok(Inspection::Scanned(ScanOutcome {
            verdict,
            engine: Some("e".into()),
        }))
    }

    #[test]
    fn only_a_clean_verdict_is_forwarded() {
        assert_eq!(
            route(scanned(Verdict::Clean)),
            Route::Forward {
                engine: Some("e".into())
            }
        );
        assert!(matches!(
            route(scanned(Verdict::Infected { signature: "x".into() })),
            Route::Quarantine(_)
        ));
        assert!(matches!(
            route(scanned(Verdict::Unscannable {
                reason: QuarantineReason::Unscannable,
                signature: None
            })),
            Route::Quarantine(_)
        ));
    }

    #[test]
    fn too_large_is_quarantined_as_file_too_large() {
        let Route::Quarantine(outcome) = route(Ok(Inspection::TooLarge { size: 1 << 40 })) else {
            panic!("quarantine expected")
        };
        assert_eq!(
            outcome.verdict.quarantine_reason(),
            Some(QuarantineReason::FileTooLarge)
        );
    }

    #[test]
    fn failures_are_retried_and_gone_objects_checked() {
        assert_eq!(route(Ok(Inspection::Gone)), Route::CheckQuarantined);
        let scan_failure = route(Err(ScanError::Timeout("reply".into()).into()));
        assert!(matches!(scan_failure, Route::Retry { cause: "scan", reason } if reason.contains("timed out")));
        let fetch_failure = route(Err(StoreError::Failed {
            operation: "GetObject",
            bucket: "b".into(),
            key: "k".into(),
            detail: "503".into(),
        }
        .into()));
        assert!(matches!(fetch_failure, Route::Retry { cause: "fetch", .. }));
    }
}

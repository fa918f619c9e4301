//! The router decides where a record goes once the fetcher has inspected its object: clean
//! objects to the forwarder, infected, unscannable, too large or vanished ones to the
//! quarantiner, and anything uncertain back to the queue. The decision is [`route`], a pure
//! function: nothing but clamd's `OK`, given by definitions the [`DefinitionsPolicy`] accepts,
//! ever reaches the forwarder.

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::forwarder::ForwarderMsg;
use super::quarantiner::QuarantinerMsg;
use super::RecordJob;
use crate::address::StageAddress;
use crate::allow_list::{AllowList, AllowListHandle};
use crate::definitions::DefinitionsPolicy;
use crate::model::{QuarantineReason, ScanOutcome, Verdict};
use crate::policy::TagMode;
use crate::ports::{ScanError, StoreError};
use crate::result_event::ResultEvent;
use crate::ticket::RetryCause;

/// What the router is told.
pub(crate) enum RouterMsg {
    /// A fetcher is done with a record: route it by what it learnt.
    Route {
        /// The record, with its ticket.
        job: RecordJob,
        /// What the fetcher learnt, or why it learnt nothing.
        inspection: Result<Inspection, InspectError>,
    },
}

/// What the fetcher learnt about an object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Inspection {
    /// Scanned to the end with a certain verdict.
    Scanned(ScanOutcome),
    /// Larger than `MAX_FILE_SIZE` (by the event or by the GET's length): not scanned, fail closed.
    TooLarge {
        /// The GET's length.
        size: u64,
    },
    /// The announced object is gone or was replaced (404/412): a newer event exists, or a previous
    /// attempt already quarantined it.
    Gone,
}

/// Why an inspection has no answer; always retried.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum InspectError {
    /// The GET failed.
    #[error(transparent)]
    Fetch(#[from] StoreError),
    /// The scan gave no verdict.
    #[error(transparent)]
    Scan(#[from] ScanError),
}

/// Where a record goes next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    /// Clean: to the outbound queue, with the engine and definitions that judged it (through
    /// the quarantiner first when the policy tags; nowhere when it forwards nothing).
    Forward(ScanOutcome),
    /// Infected, unscannable or too large: to the quarantine.
    Quarantine(ScanOutcome),
    /// The object is gone: finish a quarantine a previous attempt started, or drop a stale event.
    CheckQuarantined,
    /// No verdict: the message goes back to the queue.
    Retry {
        /// Which side failed: `Fetch` or `Scan`.
        cause: RetryCause,
        /// What happened.
        reason: String,
    },
}

impl Route {
    /// The route's name in traces.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Route::Forward(_) => "forward",
            Route::Quarantine(_) => "quarantine",
            Route::CheckQuarantined => "check_quarantined",
            Route::Retry { .. } => "retry",
        }
    }

    /// The route's label in `avscan_records_total`: the verdict, `gone`, or none for a retry.
    fn verdict_label(&self) -> Option<&'static str> {
        match self {
            Route::Forward(outcome) if outcome.allowed_by.is_some() => Some("allowed"),
            Route::Forward(_) => Some(Verdict::Clean.label()),
            Route::Quarantine(outcome) => Some(outcome.verdict.label()),
            Route::CheckQuarantined => Some("gone"),
            Route::Retry { .. } => None,
        }
    }
}

/// The one place that maps an inspection (or its failure) to a route. A detection an entry of
/// `allow_list` covers becomes clean (`allowed_by` says which entry, and what it overruled). A
/// clean verdict of definitions `policy` refuses at `now` (too old, or of unknown age) is no
/// verdict: retried. Infected and unscannable stand whatever the definitions' age.
pub(crate) fn route(
    inspection: Result<Inspection, InspectError>,
    policy: &DefinitionsPolicy,
    allow_list: &AllowList,
    now: std::time::SystemTime,
) -> Route {
    let inspection = inspection.map(|inspection| match inspection {
        Inspection::Scanned(mut outcome) => {
            if let Some(entry) = allow_list.allowance(&outcome) {
                let overruled = match outcome.verdict.signature() {
                    Some(signature) => format!("{} {signature}", outcome.verdict.label()),
                    None => outcome.verdict.label().to_owned(),
                };
                outcome.allowed_by = Some(format!("{entry}; overruled {overruled}"));
                outcome.verdict = Verdict::Clean;
            }
            Inspection::Scanned(outcome)
        }
        other => other,
    });
    match inspection {
        Ok(Inspection::Scanned(outcome)) if outcome.verdict == Verdict::Clean => {
            match policy.refusal(outcome.definitions.as_ref(), now) {
                None => Route::Forward(outcome),
                Some(refusal) => Route::Retry {
                    cause: RetryCause::Definitions,
                    reason: format!("clean by clamd, not judged: {refusal}"),
                },
            }
        }
        Ok(Inspection::Scanned(outcome)) => Route::Quarantine(outcome),
        Ok(Inspection::TooLarge { .. }) => Route::Quarantine(ScanOutcome {
            verdict: Verdict::Unscannable {
                reason: QuarantineReason::FileTooLarge,
                signature: None,
            },
            engine: None,
            definitions: None,
            sha256: None,
            allowed_by: None,
        }),
        Ok(Inspection::Gone) => Route::CheckQuarantined,
        Err(err) => Route::Retry {
            cause: match err {
                InspectError::Fetch(_) => RetryCause::Fetch,
                // clamd reloaded during the scan: which definitions judged it is unknown.
                InspectError::Scan(ScanError::DefinitionsChanged { .. }) => RetryCause::Definitions,
                InspectError::Scan(_) => RetryCause::Scan,
            },
            reason: err.to_string(),
        },
    }
}

/// The router actor.
pub(crate) struct Router;

/// What the router is spawned with: where the two routes lead.
pub(crate) struct RouterArguments {
    /// Clean records go here.
    pub(crate) forwarder: StageAddress<ForwarderMsg>,
    /// Everything that is not clean goes here.
    pub(crate) quarantiner: StageAddress<QuarantinerMsg>,
    /// Which definitions may call an object clean.
    pub(crate) definitions: DefinitionsPolicy,
    /// The false positives operators allowed, as loaded now.
    pub(crate) allow_list: AllowListHandle,
}

/// The router's state: its arguments (it keeps nothing else).
pub(crate) struct RouterState {
    arguments: RouterArguments,
}

impl RouterState {
    /// Routes one record; a failed send drops the job, and its ticket retries the message.
    fn dispatch(&self, job: RecordJob, inspection: Result<Inspection, InspectError>) {
        let object = &job.record.object;
        let route = route(
            inspection,
            &self.arguments.definitions,
            &self.arguments.allow_list.current(),
            std::time::SystemTime::now(),
        );
        let object_span = &job.trace.span;
        let _span = tracing::info_span!(parent: object_span, "route", route = route.label()).entered();
        match &route {
            Route::Forward(_) => {
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
        if let Some(verdict) = route.verdict_label() {
            crate::metrics::count_routed(verdict);
        }
        if let Route::Forward(ScanOutcome {
            allowed_by: Some(entry),
            ..
        }) = &route
        {
            tracing::warn!(bucket = %object.bucket, key = %object.key, message_id = job.ticket.message_id(), allowed_by = %entry, "detection allowed by the allow-list; handled as clean");
        }
        match route {
            Route::Forward(outcome) if job.policy.tags != TagMode::Off => {
                tracing::info!(bucket = %object.bucket, key = %object.key, message_id = job.ticket.message_id(), "clean; tagging");
                let _ = self
                    .arguments
                    .quarantiner
                    .send(QuarantinerMsg::TagClean { job, outcome });
            }
            Route::Forward(outcome) if job.policy.forward_clean => {
                tracing::info!(bucket = %object.bucket, key = %object.key, message_id = job.ticket.message_id(), "clean; forwarding");
                let _ = self.arguments.forwarder.send(ForwarderMsg::Forward {
                    job,
                    outcome: Box::new(outcome),
                });
            }
            Route::Forward(outcome) => {
                tracing::info!(bucket = %object.bucket, key = %object.key, message_id = job.ticket.message_id(), "clean; the policy forwards nothing");
                let result = ResultEvent::judged(&job.record, &outcome, "none", job.ticket.message_id());
                job.ticket.done(result);
            }
            Route::Quarantine(outcome) => {
                tracing::warn!(
                    bucket = %object.bucket, key = %object.key, message_id = job.ticket.message_id(),
                    verdict = outcome.verdict.label(), signature = outcome.verdict.signature().unwrap_or(""),
                    "quarantining"
                );
                let _ = self
                    .arguments
                    .quarantiner
                    .send(QuarantinerMsg::Quarantine { job, outcome });
            }
            Route::CheckQuarantined => {
                let _ = self
                    .arguments
                    .quarantiner
                    .send(QuarantinerMsg::CheckQuarantined { job });
            }
            Route::Retry { cause, reason } => {
                tracing::warn!(
                    bucket = %object.bucket, key = %object.key, message_id = job.ticket.message_id(),
                    attempt = job.ticket.attempt(), %reason, "no verdict; message will be retried"
                );
                job.ticket.retry(cause, reason);
            }
        }
    }
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArguments;

    async fn pre_start(
        &self,
        _: ActorRef<RouterMsg>,
        arguments: RouterArguments,
    ) -> Result<RouterState, ActorProcessingErr> {
        Ok(RouterState { arguments })
    }

    async fn handle(
        &self,
        _: ActorRef<RouterMsg>,
        message: RouterMsg,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        let RouterMsg::Route { job, inspection } = message;
        state.dispatch(job, inspection);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::definitions::Definitions;

    const WEEK: DefinitionsPolicy = DefinitionsPolicy {
        max_age: Some(Duration::from_secs(7 * 86_400)),
    };

    fn definitions_aged(age: Duration) -> Definitions {
        Definitions {
            version: 27400,
            built_at: SystemTime::now() - age,
        }
    }

    fn scanned_by(verdict: Verdict, definitions: Option<Definitions>) -> Result<Inspection, InspectError> {
        Ok(Inspection::Scanned(ScanOutcome {
            verdict,
            engine: Some("e".into()),
            definitions,
            sha256: None,
            allowed_by: None,
        }))
    }

    fn scanned(verdict: Verdict) -> Result<Inspection, InspectError> {
        scanned_by(verdict, Some(definitions_aged(Duration::from_secs(3600))))
    }

    fn route(inspection: Result<Inspection, InspectError>) -> Route {
        super::route(inspection, &WEEK, &AllowList::default(), SystemTime::now())
    }

    #[test]
    fn only_a_clean_verdict_is_forwarded() {
        let Route::Forward(outcome) = route(scanned(Verdict::Clean)) else {
            panic!("forward expected")
        };
        assert_eq!(outcome.engine.as_deref(), Some("e"));
        assert_eq!(outcome.definitions.map(|d| d.version), Some(27400));
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
        assert!(
            matches!(scan_failure, Route::Retry { cause: RetryCause::Scan, reason } if reason.contains("timed out"))
        );
        // clamd reloaded during the scan: counted with the definitions' retries.
        let reloaded = route(Err(ScanError::DefinitionsChanged {
            before: "ClamAV 1.4.6/27399".into(),
            after: "ClamAV 1.4.6/27400".into(),
        }
        .into()));
        assert!(matches!(
            reloaded,
            Route::Retry {
                cause: RetryCause::Definitions,
                ..
            }
        ));
        let fetch_failure = route(Err(StoreError::Failed {
            operation: "GetObject",
            bucket: "b".into(),
            key: "k".into(),
            detail: "503".into(),
        }
        .into()));
        assert!(matches!(
            fetch_failure,
            Route::Retry {
                cause: RetryCause::Fetch,
                ..
            }
        ));
    }

    #[test]
    fn clean_by_old_or_ageless_definitions_is_retried_and_infected_stands() {
        let eight_days = Duration::from_secs(8 * 86_400);
        for definitions in [Some(definitions_aged(eight_days)), None] {
            let routed = route(scanned_by(Verdict::Clean, definitions));
            assert!(
                matches!(&routed, Route::Retry { cause: RetryCause::Definitions, reason } if reason.contains("DEFINITIONS_MAX_AGE")),
                "{routed:?}"
            );
            assert!(matches!(
                route(scanned_by(Verdict::Infected { signature: "x".into() }, definitions)),
                Route::Quarantine(_)
            ));
        }
        // With the check off, any definitions may judge.
        let off = DefinitionsPolicy { max_age: None };
        for definitions in [Some(definitions_aged(eight_days)), None] {
            assert!(matches!(
                super::route(
                    scanned_by(Verdict::Clean, definitions),
                    &off,
                    &AllowList::default(),
                    SystemTime::now()
                ),
                Route::Forward(_)
            ));
        }
    }
}

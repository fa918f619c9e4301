//! Acknowledgement as a type. A received SQS message becomes one [`InflightMessage`] and one
//! [`RecordTicket`] per record. Each ticket is resolved exactly once; when the last one is, the
//! message is settled: a [`Settlement`] that deletes it if every record is done, or releases it
//! for a retry otherwise, handed to the message's [`SettlementOutlet`]. A ticket dropped
//! unresolved counts as a retry, so a crashed actor never acknowledges by accident. Opening a
//! message registers it in the pipeline's [`InflightRegistry`] (so that its visibility is
//! extended) until its settlement is done with (dropped after the acker's call).
//!
//! Tickets know nothing of who takes the settlement (in the pipeline, the publisher's address
//! implements the outlet, and hands it on to the acker), so they are tested here with plain synchronous asserts, the way
//! vector tests its finalizers.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use crate::inflight::InflightRegistry;
use crate::result_event::ResultEvent;

/// Why a record goes back to the queue: a closed set, counted by cause in the retries metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryCause {
    /// The S3 GET failed (not a 404/412: those are answers).
    Fetch,
    /// clamd gave no verdict.
    Scan,
    /// The outbound or rejected-events send failed.
    Forward,
    /// A quarantine step failed.
    Quarantine,
    /// The next stage was restarting when the record had to be handed on.
    Restart,
    /// The ticket was dropped unresolved (an actor died holding it).
    Dropped,
    /// clamd said clean with definitions too old (or of unknown age) to be trusted, or reloaded
    /// them during the scan.
    Definitions,
}

impl RetryCause {
    /// Every cause, for series that must exist before the first retry.
    pub(crate) const ALL: [RetryCause; 7] = [
        RetryCause::Fetch,
        RetryCause::Scan,
        RetryCause::Forward,
        RetryCause::Quarantine,
        RetryCause::Restart,
        RetryCause::Dropped,
        RetryCause::Definitions,
    ];

    /// The cause's label in `avscan_retries_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RetryCause::Fetch => "fetch",
            RetryCause::Scan => "scan",
            RetryCause::Forward => "forward",
            RetryCause::Quarantine => "quarantine",
            RetryCause::Restart => "restart",
            RetryCause::Dropped => "dropped",
            RetryCause::Definitions => "definitions",
        }
    }
}

/// How a settled message leaves the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SettleOutcome {
    /// Every record succeeded (or was rejected): delete the message.
    Delete,
    /// At least one record must be retried: make the message visible again after a backoff.
    Release {
        /// The first retry's reason.
        reason: String,
    },
}

/// A message whose last ticket was resolved, on its way to the outlet.
#[derive(Debug)]
pub(crate) struct Settlement {
    /// The message settled.
    pub(crate) message: Arc<InflightMessage>,
    /// Delete or release.
    pub(crate) outcome: SettleOutcome,
    /// The result events of its records, published before a delete (none for a release: the
    /// records are handled, and their events published, again).
    pub(crate) results: Vec<ResultEvent>,
    /// Returned to the poller only after the outlet's SQS call, so that in-flight counts
    /// messages until they are really gone: held, never read, and given back by dropping it.
    #[allow(dead_code)]
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

/// Leaving the registry when the settlement is dropped (after its delete or release call, or when
/// nobody could take it), not when it is made: a message whose events are being published, or
/// whose delete waits for company, is still in flight, and the heartbeat keeps it hidden.
impl Drop for Settlement {
    fn drop(&mut self) {
        self.message.registry.remove(&self.message.receipt_handle);
    }
}

/// Takes the settlements of messages: the publisher in the pipeline, a collector in tests.
pub(crate) trait SettlementOutlet: Send + Sync + 'static {
    /// Takes one settlement. `Err` gives it back when nobody can take it now (the acker is
    /// restarting): the message then stays on the queue until its visibility timeout, and
    /// dropping the settlement returns its permit.
    fn settle(&self, settlement: Settlement) -> Result<(), Settlement>;
}

/// One delivery of an SQS message, as much of it as its acknowledgement needs.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// SQS' message id, for logs.
    pub(crate) message_id: String,
    /// The handle of this receive: deletes and visibility changes need the latest one.
    pub(crate) receipt_handle: String,
    /// SQS' ApproximateReceiveCount: 1 on the first delivery; drives the release backoff.
    pub(crate) receive_count: u32,
}

#[derive(Debug)]
struct Progress {
    pending: usize,
    retry_reason: Option<String>,
    results: Vec<ResultEvent>,
    permit: Option<OwnedSemaphorePermit>,
}

/// One received SQS message, shared by the tickets of its records.
pub(crate) struct InflightMessage {
    /// SQS' message id, for logs.
    pub(crate) message_id: String,
    /// The handle of the receive this message is in flight under.
    pub(crate) receipt_handle: String,
    /// Which attempt this is (SQS' ApproximateReceiveCount).
    pub(crate) receive_count: u32,
    /// When it was received: the end-to-end latency starts here.
    pub(crate) received_at: Instant,
    /// The message's span: the root of avscan's part of its trace, ended when the message is
    /// deleted or released.
    pub(crate) span: tracing::Span,
    progress: Mutex<Progress>,
    outlet: Arc<dyn SettlementOutlet>,
    /// Where the message is registered while in flight; it leaves when it settles.
    registry: Arc<InflightRegistry>,
}

impl std::fmt::Debug for InflightMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InflightMessage")
            .field("message_id", &self.message_id)
            .field("receive_count", &self.receive_count)
            .finish_non_exhaustive()
    }
}

impl InflightMessage {
    /// Starts tracking `delivery` with `records` tickets (at least one) and registers it in
    /// `registry` until it settles; `permit` is held until the settlement is dropped.
    pub(crate) fn open(
        delivery: Delivery,
        records: usize,
        permit: OwnedSemaphorePermit,
        outlet: Arc<dyn SettlementOutlet>,
        registry: Arc<InflightRegistry>,
        span: tracing::Span,
    ) -> (Arc<InflightMessage>, Vec<RecordTicket>) {
        let records = records.max(1);
        registry.register(&delivery.receipt_handle, &delivery.message_id, &span);
        let inflight = Arc::new(InflightMessage {
            message_id: delivery.message_id,
            receipt_handle: delivery.receipt_handle,
            receive_count: delivery.receive_count,
            received_at: Instant::now(),
            span,
            progress: Mutex::new(Progress {
                pending: records,
                retry_reason: None,
                results: Vec::new(),
                permit: Some(permit),
            }),
            outlet,
            registry,
        });
        let tickets = (0..records)
            .map(|_| RecordTicket {
                message: Some(Arc::clone(&inflight)),
            })
            .collect();
        (inflight, tickets)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn resolve(self: Arc<Self>, resolution: Result<Option<ResultEvent>, String>) {
        let settlement = {
            let mut progress = self.lock();
            progress.pending -= 1;
            match resolution {
                Ok(result) => progress.results.extend(result),
                Err(reason) => {
                    progress.retry_reason.get_or_insert(reason);
                }
            }
            if progress.pending > 0 {
                return;
            }
            let results = std::mem::take(&mut progress.results);
            let (outcome, results) = match progress.retry_reason.take() {
                None => (SettleOutcome::Delete, results),
                // The records are handled, and their events published, again.
                Some(reason) => (SettleOutcome::Release { reason }, Vec::new()),
            };
            Settlement {
                message: Arc::clone(&self),
                outcome,
                results,
                permit: progress.permit.take(),
            }
        };
        if let Err(lost) = self.outlet.settle(settlement) {
            tracing::warn!(
                message_id = %lost.message.message_id,
                "the stage that settles messages is down; message stays on the queue until its visibility timeout"
            );
        }
    }
}

/// The obligation to finish one record. Resolve it with [`done`](Self::done) (which carries the
/// record's result event), [`ignored`](Self::ignored) or [`retry`](Self::retry); dropping it
/// means retry.
#[derive(Debug)]
#[must_use = "a dropped ticket retries its message"]
pub(crate) struct RecordTicket {
    message: Option<Arc<InflightMessage>>,
}

impl RecordTicket {
    /// The SQS message id of the record's message, for logs.
    pub(crate) fn message_id(&self) -> &str {
        self.message.as_ref().map_or("", |message| &message.message_id)
    }

    /// SQS' receive count of the message: which attempt this is.
    pub(crate) fn attempt(&self) -> u32 {
        self.message.as_ref().map_or(0, |message| message.receive_count)
    }

    /// Every effect of the record succeeded (a rejected record's too: it must not block the
    /// queue); `result` is published before the message is deleted.
    pub(crate) fn done(mut self, result: ResultEvent) {
        if let Some(message) = self.message.take() {
            message.resolve(Ok(Some(result)));
        }
    }

    /// The message is not about an object (S3's test event): finished, with no result event.
    pub(crate) fn ignored(mut self) {
        if let Some(message) = self.message.take() {
            message.resolve(Ok(None));
        }
    }

    /// The record must be handled again: the message is released once all its records finish.
    /// `cause` is counted in the retries metric; `reason` says what happened.
    pub(crate) fn retry(mut self, cause: RetryCause, reason: impl std::fmt::Display) {
        if let Some(message) = self.message.take() {
            crate::metrics::count_retry(cause.label());
            message.resolve(Err(reason.to_string()));
        }
    }
}

impl Drop for RecordTicket {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            tracing::warn!(message_id = %message.message_id, "record dropped unresolved; its message will be retried");
            crate::metrics::count_retry(RetryCause::Dropped.label());
            message.resolve(Err("record dropped unresolved".to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::Semaphore;

    use super::*;

    /// Keeps every settlement as (message id, outcome, permit still held).
    #[derive(Default)]
    struct Collected(Mutex<Vec<(String, SettleOutcome, bool)>>);

    impl SettlementOutlet for Collected {
        fn settle(&self, settlement: Settlement) -> Result<(), Settlement> {
            let entry = (
                settlement.message.message_id.clone(),
                settlement.outcome.clone(),
                settlement.permit.is_some(),
            );
            self.0.lock().unwrap().push(entry);
            Ok(())
        }
    }

    impl Collected {
        fn taken(&self) -> Vec<(String, SettleOutcome, bool)> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    /// An outlet that takes nothing, like an acker that is down.
    struct Down;

    impl SettlementOutlet for Down {
        fn settle(&self, settlement: Settlement) -> Result<(), Settlement> {
            Err(settlement)
        }
    }

    fn result() -> ResultEvent {
        ResultEvent::rejected((None, None), "test", "m")
    }

    fn delivery(id: &str) -> Delivery {
        Delivery {
            message_id: id.into(),
            receipt_handle: format!("rh-{id}"),
            receive_count: 1,
        }
    }

    fn open(id: &str, records: usize, outlet: Arc<dyn SettlementOutlet>) -> (Arc<Semaphore>, Vec<RecordTicket>) {
        let (permits, tickets, _) = open_registered(id, records, outlet);
        (permits, tickets)
    }

    fn open_registered(
        id: &str,
        records: usize,
        outlet: Arc<dyn SettlementOutlet>,
    ) -> (Arc<Semaphore>, Vec<RecordTicket>, Arc<InflightRegistry>) {
        let permits = Arc::new(Semaphore::new(1));
        let permit = permits.clone().try_acquire_owned().unwrap();
        let registry = Arc::new(InflightRegistry::default());
        let (_, tickets) = InflightMessage::open(
            delivery(id),
            records,
            permit,
            outlet,
            registry.clone(),
            tracing::Span::none(),
        );
        (permits, tickets, registry)
    }

    #[test]
    fn message_is_deleted_only_after_every_ticket_is_done() {
        let settled = Arc::new(Collected::default());
        let (_permits, mut tickets) = open("m1", 2, settled.clone());
        tickets.pop().unwrap().done(result());
        assert!(settled.taken().is_empty(), "settled before the second record finished");
        tickets.pop().unwrap().done(result());
        assert_eq!(settled.taken(), vec![("m1".into(), SettleOutcome::Delete, true)]);
    }

    #[test]
    fn one_retry_releases_the_whole_message() {
        let settled = Arc::new(Collected::default());
        let (_permits, mut tickets) = open("m2", 2, settled.clone());
        tickets.pop().unwrap().retry(RetryCause::Scan, "clamd down");
        tickets.pop().unwrap().done(result());
        assert_eq!(
            settled.taken(),
            vec![(
                "m2".into(),
                SettleOutcome::Release {
                    reason: "clamd down".into()
                },
                true
            )]
        );
    }

    /// Keeps the result events of every settlement.
    #[derive(Default)]
    struct Results(Mutex<Vec<(SettleOutcome, usize)>>);

    impl SettlementOutlet for Results {
        fn settle(&self, settlement: Settlement) -> Result<(), Settlement> {
            let entry = (settlement.outcome.clone(), settlement.results.len());
            self.0.lock().unwrap().push(entry);
            Ok(())
        }
    }

    #[test]
    fn result_events_travel_with_a_delete_and_not_with_a_release() {
        let settled = Arc::new(Results::default());
        let (_permits, mut tickets) = open("m6", 2, settled.clone());
        tickets.pop().unwrap().done(result());
        tickets.pop().unwrap().done(result());
        let (_permits, mut tickets) = open("m7", 2, settled.clone());
        tickets.pop().unwrap().done(result());
        tickets.pop().unwrap().retry(RetryCause::Scan, "clamd down");
        let (_permits, tickets) = open("m8", 1, settled.clone());
        tickets.into_iter().for_each(RecordTicket::ignored);
        let taken = std::mem::take(&mut *settled.0.lock().unwrap());
        assert_eq!(
            taken,
            vec![
                (SettleOutcome::Delete, 2),
                (
                    SettleOutcome::Release {
                        reason: "clamd down".into()
                    },
                    0
                ),
                (SettleOutcome::Delete, 0),
            ]
        );
    }

    #[test]
    fn a_dropped_ticket_counts_as_retry() {
        let settled = Arc::new(Collected::default());
        let (_permits, tickets) = open("m3", 1, settled.clone());
        drop(tickets);
        let taken = settled.taken();
        assert_eq!(taken.len(), 1);
        assert!(matches!(taken[0].1, SettleOutcome::Release { .. }));
    }

    /// Holds settlements, as the publisher and the acker do until their calls are answered.
    #[derive(Default)]
    struct Held(Mutex<Vec<Settlement>>);

    impl SettlementOutlet for Held {
        fn settle(&self, settlement: Settlement) -> Result<(), Settlement> {
            self.0.lock().unwrap().push(settlement);
            Ok(())
        }
    }

    #[test]
    fn a_settled_message_stays_registered_while_its_settlement_is_held() {
        let held = Arc::new(Held::default());
        let (_permits, tickets, registry) = open_registered("m9", 1, held.clone());
        tickets.into_iter().for_each(|ticket| ticket.done(result()));
        assert_eq!(registry.len(), 1, "left while its events or delete were pending");
        held.0.lock().unwrap().clear();
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn a_message_is_registered_until_it_settles_also_with_the_acker_down() {
        for outlet in [
            Arc::new(Collected::default()) as Arc<dyn SettlementOutlet>,
            Arc::new(Down),
        ] {
            let (_permits, mut tickets, registry) = open_registered("m5", 2, outlet);
            assert_eq!(registry.len(), 1);
            tickets.pop().unwrap().done(result());
            assert_eq!(registry.len(), 1, "left before its last record finished");
            drop(tickets);
            assert_eq!(registry.len(), 0);
        }
    }

    #[test]
    fn with_the_acker_down_the_permit_still_comes_back() {
        let (permits, tickets) = open("m4", 1, Arc::new(Down));
        assert_eq!(permits.available_permits(), 0);
        for ticket in tickets {
            ticket.ignored();
        }
        assert_eq!(permits.available_permits(), 1);
    }
}

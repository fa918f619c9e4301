//! Acknowledgement as a type. An SQS message becomes one [`InflightMessage`] and one
//! [`RecordTicket`] per record. Each ticket is resolved exactly once; when the last one is, the
//! message is settled: deleted if every record is done, released for a retry otherwise. A ticket
//! dropped unresolved counts as a retry, so a crashed actor never acknowledges by accident.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use crate::actors::acker::AckerMsg;
use crate::ports::QueueMessage;
use crate::stage::Address;

/// How a settled message leaves the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Every record succeeded (or was rejected): delete the message.
    Delete,
    /// At least one record must be retried: make the message visible again after a backoff.
    Release { reason: String },
}

/// Sent to the acker once per message, when its last ticket is resolved.
#[derive(Debug)]
pub struct Settlement {
    pub message: Arc<InflightMessage>,
    pub outcome: SettleOutcome,
    /// Returned to the poller only after the acker's SQS call, so that in-flight counts
    /// messages until they are really gone.
    pub permit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug)]
struct Progress {
    pending: usize,
    retry_reason: Option<String>,
    permit: Option<OwnedSemaphorePermit>,
}

/// One received SQS message, shared by the tickets of its records.
#[derive(Debug)]
pub struct InflightMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub receive_count: u32,
    pub received_at: Instant,
    /// The message's span: the root of avscan's part of its trace, ended when the message is
    /// deleted or released.
    pub span: tracing::Span,
    progress: Mutex<Progress>,
    acker: Address<AckerMsg>,
}

impl InflightMessage {
    /// Starts tracking `message` with `records` tickets (at least one).
    pub fn open(
        message: &QueueMessage,
        records: usize,
        permit: OwnedSemaphorePermit,
        acker: Address<AckerMsg>,
        span: tracing::Span,
    ) -> (Arc<InflightMessage>, Vec<RecordTicket>) {
        let records = records.max(1);
        let inflight = Arc::new(InflightMessage {
            message_id: message.message_id.clone(),
            receipt_handle: message.receipt_handle.clone(),
            receive_count: message.receive_count,
            received_at: Instant::now(),
            span,
            progress: Mutex::new(Progress {
                pending: records,
                retry_reason: None,
                permit: Some(permit),
            }),
            acker,
        });
        let tickets = (0..records)
            .map(|_| RecordTicket {
                message: Some(Arc::clone(&inflight)),
            })
            .collect();
        (inflight, tickets)
    }

    /// True while some ticket is unresolved.
    pub fn is_pending(&self) -> bool {
        self.lock().pending > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn resolve(self: Arc<Self>, retry_reason: Option<String>) {
        let settlement = {
            let mut progress = self.lock();
            progress.pending -= 1;
            if progress.retry_reason.is_none() {
                progress.retry_reason = retry_reason;
            }
            if progress.pending > 0 {
                return;
            }
            let outcome = match progress.retry_reason.take() {
                None => SettleOutcome::Delete,
                Some(reason) => SettleOutcome::Release { reason },
            };
            Settlement {
                message: Arc::clone(&self),
                outcome,
                permit: progress.permit.take(),
            }
        };
        if let Err(AckerMsg::Settle(lost)) = self.acker.send(AckerMsg::Settle(settlement)) {
            tracing::warn!(
                message_id = %lost.message.message_id,
                "acker is down; message stays on the queue until its visibility timeout"
            );
        }
    }
}

/// The obligation to finish one record. Resolve it with [`done`](Self::done),
/// [`reject`](Self::reject) or [`retry`](Self::retry); dropping it means retry.
#[derive(Debug)]
#[must_use = "a dropped ticket retries its message"]
pub struct RecordTicket {
    message: Option<Arc<InflightMessage>>,
}

impl RecordTicket {
    pub fn message_id(&self) -> &str {
        self.message.as_ref().map_or("", |message| &message.message_id)
    }

    /// SQS' receive count of the message: which attempt this is.
    pub fn attempt(&self) -> u32 {
        self.message.as_ref().map_or(0, |message| message.receive_count)
    }

    /// Every effect of the record succeeded.
    pub fn done(mut self) {
        if let Some(message) = self.message.take() {
            message.resolve(None);
        }
    }

    /// The record is invalid and must not block the queue: it counts as finished.
    pub fn reject(self) {
        self.done()
    }

    /// The record must be handled again: the message is released once all its records finish.
    /// `cause` names the stage that failed (`fetch`, `scan`, `forward`, `quarantine`, ...) for
    /// the retries metric; `reason` says what happened.
    pub fn retry(mut self, cause: &'static str, reason: impl std::fmt::Display) {
        if let Some(message) = self.message.take() {
            crate::metrics::retry(cause);
            message.resolve(Some(reason.to_string()));
        }
    }
}

impl Drop for RecordTicket {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            tracing::warn!(message_id = %message.message_id, "record dropped unresolved; its message will be retried");
            crate::metrics::retry("dropped");
            message.resolve(Some("record dropped unresolved".to_owned()));
        }
    }
}

/// How long a released message stays invisible before its next attempt: doubling from `base`
/// with each receive, capped at `max`, so a failing dependency is not hammered.
pub fn retry_delay(receive_count: u32, base: Duration, max: Duration) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(16);
    base.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr, ActorRef};
    use tokio::sync::{mpsc, Semaphore};

    use super::*;

    /// Forwards settlements to a channel, standing in for the acker.
    struct Probe;
    impl Actor for Probe {
        type Msg = AckerMsg;
        type State = mpsc::UnboundedSender<(String, SettleOutcome, bool)>;
        type Arguments = mpsc::UnboundedSender<(String, SettleOutcome, bool)>;
        async fn pre_start(
            &self,
            _: ActorRef<AckerMsg>,
            tx: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(tx)
        }
        async fn handle(
            &self,
            _: ActorRef<AckerMsg>,
            msg: AckerMsg,
            tx: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            if let AckerMsg::Settle(s) = msg {
                let _ = tx.send((s.message.message_id.clone(), s.outcome, s.permit.is_some()));
            }
            Ok(())
        }
    }

    async fn probe() -> (
        Address<AckerMsg>,
        mpsc::UnboundedReceiver<(String, SettleOutcome, bool)>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (actor, _) = Actor::spawn(None, Probe, tx).await.unwrap();
        let address = Address::new("acker");
        address.set(actor);
        (address, rx)
    }

    fn message(id: &str) -> QueueMessage {
        QueueMessage {
            message_id: id.into(),
            receipt_handle: format!("rh-{id}"),
            body: String::new(),
            receive_count: 1,
            trace: Default::default(),
        }
    }

    #[tokio::test]
    async fn message_is_deleted_only_after_every_ticket_is_done() {
        let (acker, mut settled) = probe().await;
        let permits = Arc::new(Semaphore::new(1));
        let (_, mut tickets) = InflightMessage::open(
            &message("m1"),
            2,
            permits.clone().try_acquire_owned().unwrap(),
            acker,
            tracing::Span::none(),
        );
        tickets.pop().unwrap().done();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(settled.try_recv().is_err(), "settled before the second record finished");
        tickets.pop().unwrap().reject();
        assert_eq!(
            settled.recv().await.unwrap(),
            ("m1".into(), SettleOutcome::Delete, true)
        );
    }

    #[tokio::test]
    async fn one_retry_releases_the_whole_message() {
        let (acker, mut settled) = probe().await;
        let permits = Arc::new(Semaphore::new(1));
        let (_, mut tickets) = InflightMessage::open(
            &message("m2"),
            2,
            permits.clone().try_acquire_owned().unwrap(),
            acker,
            tracing::Span::none(),
        );
        tickets.pop().unwrap().retry("scan", "clamd down");
        tickets.pop().unwrap().done();
        assert_eq!(
            settled.recv().await.unwrap(),
            (
                "m2".into(),
                SettleOutcome::Release {
                    reason: "clamd down".into()
                },
                true
            )
        );
    }

    #[tokio::test]
    async fn a_dropped_ticket_counts_as_retry() {
        let (acker, mut settled) = probe().await;
        let permits = Arc::new(Semaphore::new(1));
        let (_, tickets) = InflightMessage::open(
            &message("m3"),
            1,
            permits.clone().try_acquire_owned().unwrap(),
            acker,
            tracing::Span::none(),
        );
        drop(tickets);
        let (_, outcome, _) = settled.recv().await.unwrap();
        assert!(matches!(outcome, SettleOutcome::Release { .. }));
    }

    #[tokio::test]
    async fn with_the_acker_down_the_permit_still_comes_back() {
        let permits = Arc::new(Semaphore::new(1));
        let (_, tickets) = InflightMessage::open(
            &message("m4"),
            1,
            permits.clone().try_acquire_owned().unwrap(),
            Address::new("acker"),
            tracing::Span::none(),
        );
        assert_eq!(permits.available_permits(), 0);
        for ticket in tickets {
            ticket.done();
        }
        assert_eq!(permits.available_permits(), 1);
    }

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        let base = Duration::from_secs(5);
        let max = Duration::from_secs(60);
        assert_eq!(retry_delay(1, base, max), Duration::from_secs(5));
        assert_eq!(retry_delay(2, base, max), Duration::from_secs(10));
        assert_eq!(retry_delay(4, base, max), Duration::from_secs(40));
        assert_eq!(retry_delay(9, base, max), max);
        assert_eq!(retry_delay(0, base, max), base);
    }
}

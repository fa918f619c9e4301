//! The acker owns the inbound queue's side effects for settled messages: it deletes them, ten
//! per `DeleteMessageBatch` call, and releases the ones to retry with a backoff. Messages reach
//! it through their [`RecordTicket`](crate::ticket::RecordTicket)s: the acker's address is the
//! tickets' [`SettlementOutlet`]. At shutdown it also makes every message still in flight
//! visible again at once, ten per `ChangeMessageVisibilityBatch` call, taking them from the
//! pipeline's [`InflightRegistry`]. It keeps no table of messages in flight: extending their
//! visibility is the heartbeat's (`stages/heartbeat.rs`), off this actor, so neither a restart of
//! the acker nor a slow delete call lets a message lapse.
//!
//! A delete waits at most the pipeline's batch linger for nine others, and not at all when no
//! other message in flight could join it. Entries of a batch that fail with
//! a server-side error are tried again, alone with the other failures, up to
//! [`DELETE_ATTEMPTS`] times; after that (or on a permanent failure such as an expired receipt
//! handle) the message reappears on the queue and is handled again, which every effect allows.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::address::StageAddress;
use crate::backoff::Backoff;
use crate::inflight::{InflightRegistry, Registered};
use crate::metrics::Latency;
use crate::ports::InboundQueue;
use crate::ticket::{SettleOutcome, Settlement, SettlementOutlet};

/// What the acker is told.
pub(crate) enum AckerMsg {
    /// A message's last ticket was resolved: delete or release it.
    Settle(Settlement),
    /// Sends the deletes collected so far.
    FlushDeletes,
    /// A delete call came back: its entries, with what failed of them (by receipt handle:
    /// whether another try may help, and why).
    Deleted(Vec<PendingDelete>, HashMap<String, (bool, String)>),
    /// A delete call panicked (a bug in the adapter): the acker fails, loudly, and is restarted;
    /// the call's messages come back after their visibility timeout.
    DeletePanicked,
    /// Shutdown: make every unfinished message visible now; replies with how many.
    ReleaseAll(oneshot::Sender<usize>),
}

impl SettlementOutlet for StageAddress<AckerMsg> {
    fn settle(&self, settlement: Settlement) -> Result<(), Settlement> {
        match self.send(AckerMsg::Settle(settlement)) {
            Ok(()) => Ok(()),
            Err(AckerMsg::Settle(settlement)) => Err(settlement),
            Err(_) => unreachable!("a failed send hands back the message it was given"),
        }
    }
}

/// The acker actor.
pub(crate) struct Acker;

/// What the acker is spawned with.
#[derive(Clone)]
pub(crate) struct AckerArguments {
    /// The inbound queue: deletes and releases.
    pub(crate) queue: Arc<dyn InboundQueue>,
    /// What is in flight: whether a delete may wait for company, and what to release at
    /// shutdown.
    pub(crate) registry: Arc<InflightRegistry>,
    /// How long a released message stays invisible, by receive count.
    pub(crate) release_backoff: Backoff,
    /// How long a settled message may wait for others to share its delete call.
    pub(crate) linger: Duration,
}

/// SQS' largest batch.
const DELETE_BATCH: usize = 10;
/// Tries per delete entry before the message is left to reappear.
const DELETE_ATTEMPTS: u32 = 3;

/// How long a released message stays invisible before its next attempt: doubling from the
/// backoff's base with each receive, capped at its max, so a failing dependency is not hammered.
fn release_delay(receive_count: u32, backoff: Backoff) -> Duration {
    backoff.delay(receive_count.saturating_sub(1))
}

/// A settled message waiting for its delete call; its permit is held until then.
pub(crate) struct PendingDelete {
    settlement: Settlement,
    attempts: u32,
    /// The message's `ack` span, from settlement to the delete call's answer.
    span: tracing::Span,
}

/// The acker's state: the deletes waiting for company.
pub(crate) struct AckerState {
    arguments: AckerArguments,
    myself: ActorRef<AckerMsg>,
    pending_deletes: Vec<PendingDelete>,
    /// A FlushDeletes is on its way.
    flush_scheduled: bool,
}

impl AckerState {
    async fn settle(&mut self, settlement: Settlement) {
        let SettleOutcome::Release { reason } = &settlement.outcome else {
            let span = tracing::info_span!(
                parent: &settlement.message.span,
                "ack",
                ack = "delete",
                attempts = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            self.pending_deletes.push(PendingDelete {
                settlement,
                attempts: 0,
                span,
            });
            if self.pending_deletes.len() >= DELETE_BATCH || !self.others_in_flight() {
                self.flush_deletes().await;
            } else {
                self.schedule_flush(self.arguments.linger);
            }
            return;
        };
        let message = &settlement.message;
        // The shutdown release made every unfinished message visible: a late retry must not hide
        // it again.
        if self.arguments.registry.is_released() {
            tracing::debug!(message_id = %message.message_id, "already released at shutdown");
            return;
        }
        let delay = release_delay(message.receive_count, self.arguments.release_backoff);
        let span = tracing::info_span!(parent: &message.span, "ack", ack = "release", %reason, retry_delay = ?delay);
        tracing::info!(message_id = %message.message_id, attempt = message.receive_count, %reason, ?delay, "releasing message for a retry");
        let released = self
            .arguments
            .queue
            .set_visibility(&message.receipt_handle, delay)
            .instrument(span)
            .await;
        if let Err(err) = released {
            tracing::warn!(message_id = %message.message_id, error = %err, "release failed; message returns after its visibility timeout");
        }
        // Dropping the settlement here returns its permit: the poller may take another message.
    }

    /// True while some message not yet settled could still join the pending deletes (the
    /// pending ones are still registered: they leave when their delete is answered).
    fn others_in_flight(&self) -> bool {
        self.arguments.registry.len() > self.pending_deletes.len()
    }

    fn schedule_flush(&mut self, after: Duration) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            self.myself.send_after(after, || AckerMsg::FlushDeletes);
        }
    }

    /// Sends every collected delete, ten per call, each call in a task of its own (at SQS' ~15
    /// ms a call, one at a time would cap the acker near 650 messages a second); the answers
    /// come back as [`AckerMsg::Deleted`]. The messages' in-flight permits bound how many calls
    /// are out.
    async fn flush_deletes(&mut self) {
        while !self.pending_deletes.is_empty() {
            let take = self.pending_deletes.len().min(DELETE_BATCH);
            let batch: Vec<PendingDelete> = self.pending_deletes.drain(..take).collect();
            let queue = self.arguments.queue.clone();
            let myself = self.myself.clone();
            tokio::spawn(async move {
                let answer = AssertUnwindSafe(delete(queue.as_ref(), &batch)).catch_unwind().await;
                // With the acker gone the batch is dropped: its messages come back after their
                // visibility timeout, which every effect allows.
                let _ = match answer {
                    Ok(failures) => myself.cast(AckerMsg::Deleted(batch, failures)),
                    Err(_) => myself.cast(AckerMsg::DeletePanicked),
                };
            });
        }
    }

    /// Counts what a delete call did; entries that failed with a server-side error are tried
    /// again with the next flush, up to [`DELETE_ATTEMPTS`] times.
    fn deleted(&mut self, batch: Vec<PendingDelete>, failures: HashMap<String, (bool, String)>) {
        let mut retry = Vec::new();
        for mut pending in batch {
            let message = &pending.settlement.message;
            let failure = failures.get(&message.receipt_handle);
            pending.span.record("attempts", pending.attempts + 1);
            if let Some((_, detail)) = failure {
                pending.span.record("error", detail.as_str());
            }
            match failure {
                None => {
                    tracing::debug!(message_id = %message.message_id, "message deleted");
                    metrics::counter!(crate::metrics::DELETES).increment(1);
                    crate::metrics::observe_latency(Latency::EndToEnd, message.received_at.elapsed());
                }
                Some((true, detail)) if pending.attempts + 1 < DELETE_ATTEMPTS => {
                    tracing::info!(message_id = %message.message_id, error = %detail, "delete failed; trying again");
                    pending.attempts += 1;
                    retry.push(pending);
                }
                Some((_, detail)) => {
                    tracing::warn!(message_id = %message.message_id, error = %detail, "delete failed; the message will be handled again")
                }
            }
            // Dropping a settlement that is not retried lets the poller take another message.
        }
        if !retry.is_empty() {
            self.pending_deletes.extend(retry);
            self.schedule_flush(self.arguments.linger.max(Duration::from_millis(20)) * 10);
        }
    }

    async fn release_all(&mut self) -> usize {
        // Finished messages first, once each: a delete is better than a redelivery (here, not in
        // tasks: the release must come after). What fails stays pending, and registered: the
        // release below makes it visible at once. (A delete still out in a task may race the
        // release: either way the message is deleted or handled again, never lost.)
        let mut pending = std::mem::take(&mut self.pending_deletes);
        while !pending.is_empty() {
            let batch: Vec<PendingDelete> = pending.drain(..pending.len().min(DELETE_BATCH)).collect();
            let failures = delete(self.arguments.queue.as_ref(), &batch).await;
            self.deleted(batch, failures);
        }
        let unfinished = self.arguments.registry.release_all();
        let calls = unfinished
            .chunks(DELETE_BATCH)
            .map(|batch| release_now(self.arguments.queue.as_ref(), batch));
        futures::future::join_all(calls).await.into_iter().sum()
    }
}

/// One DeleteMessageBatch call: what failed of it, by receipt handle (whether another try may
/// help, and why); a failed call fails every entry, retryably.
async fn delete(queue: &dyn InboundQueue, batch: &[PendingDelete]) -> HashMap<String, (bool, String)> {
    let handles: Vec<String> = batch
        .iter()
        .map(|pending| pending.settlement.message.receipt_handle.clone())
        .collect();
    match queue.delete_batch(&handles).await {
        Ok(failures) => failures
            .into_iter()
            .map(|failure| (failure.receipt_handle, (failure.retryable, failure.detail)))
            .collect(),
        Err(err) => handles.iter().map(|h| (h.clone(), (true, err.to_string()))).collect(),
    }
}

/// Makes one batch of unfinished messages visible at once (all batches at the same time: none
/// waits for another's call); returns how many were.
async fn release_now(queue: &dyn InboundQueue, batch: &[Registered]) -> usize {
    let handles: Vec<String> = batch.iter().map(|message| message.receipt_handle.clone()).collect();
    let failures: HashMap<String, String> = match queue.set_visibility_batch(&handles, Duration::ZERO).await {
        Ok(failures) => failures
            .into_iter()
            .map(|failure| (failure.receipt_handle, failure.detail))
            .collect(),
        Err(err) => handles.iter().map(|handle| (handle.clone(), err.to_string())).collect(),
    };
    let mut released = 0;
    for message in batch {
        match failures.get(&message.receipt_handle) {
            None => {
                tracing::info!(parent: &message.span, message_id = %message.message_id, "released at shutdown");
                released += 1;
            }
            Some(detail) => {
                tracing::warn!(message_id = %message.message_id, error = %detail, "release at shutdown failed; message returns after its visibility timeout")
            }
        }
    }
    released
}

impl Actor for Acker {
    type Msg = AckerMsg;
    type State = AckerState;
    type Arguments = AckerArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<AckerMsg>,
        arguments: AckerArguments,
    ) -> Result<AckerState, ActorProcessingErr> {
        Ok(AckerState {
            arguments,
            myself,
            pending_deletes: Vec::new(),
            flush_scheduled: false,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<AckerMsg>,
        message: AckerMsg,
        state: &mut AckerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AckerMsg::Settle(settlement) => state.settle(settlement).await,
            AckerMsg::FlushDeletes => {
                state.flush_scheduled = false;
                state.flush_deletes().await;
            }
            AckerMsg::Deleted(batch, failures) => state.deleted(batch, failures),
            AckerMsg::DeletePanicked => return Err("a DeleteMessageBatch call panicked".into()),
            AckerMsg::ReleaseAll(reply) => {
                let released = state.release_all().await;
                let _ = reply.send(released);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::{Delivery, InflightMessage, SettleOutcome};

    #[test]
    fn release_delay_doubles_and_is_capped() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        assert_eq!(release_delay(1, backoff), Duration::from_secs(5));
        assert_eq!(release_delay(2, backoff), Duration::from_secs(10));
        assert_eq!(release_delay(4, backoff), Duration::from_secs(40));
        assert_eq!(release_delay(9, backoff), Duration::from_secs(60));
        assert_eq!(release_delay(0, backoff), Duration::from_secs(5));
    }

    #[test]
    fn an_acker_address_with_no_acker_behind_it_hands_the_settlement_back() {
        let permits = Arc::new(tokio::sync::Semaphore::new(1));
        let delivery = Delivery {
            message_id: "m".into(),
            receipt_handle: "rh".into(),
            receive_count: 1,
        };
        let outlet: Arc<dyn SettlementOutlet> = Arc::new(StageAddress::<AckerMsg>::new("acker"));
        let (message, tickets) = InflightMessage::open(
            delivery,
            1,
            permits.clone().try_acquire_owned().unwrap(),
            outlet,
            Arc::new(InflightRegistry::default()),
            tracing::Span::none(),
        );
        let settlement = Settlement {
            message,
            outcome: SettleOutcome::Delete,
            results: Vec::new(),
            permit: None,
        };
        let address = StageAddress::<AckerMsg>::new("acker");
        let returned = address.settle(settlement).expect_err("nobody to take it");
        assert_eq!(returned.outcome, SettleOutcome::Delete);
        // The ticket settles through the same kind of address: its permit comes back all the same.
        drop(tickets);
        assert_eq!(permits.available_permits(), 1);
    }
}

//! The acker owns the inbound queue's side effects for messages in flight: it deletes settled
//! messages, releases the ones to retry with a backoff, and, on a heartbeat, extends the
//! visibility timeout of messages still being worked on so that no other worker receives them
//! mid-scan. Messages reach it through their [`RecordTicket`](crate::receipt::RecordTicket)s.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;

use crate::ports::InboundQueue;
use crate::receipt::{retry_delay, InflightMessage, SettleOutcome, Settlement};

pub enum AckerMsg {
    /// Watch this message's visibility while it is in flight.
    Track(Weak<InflightMessage>),
    Settle(Settlement),
    Heartbeat,
    /// Shutdown: make every unfinished message visible now; replies with how many.
    ReleaseAll(oneshot::Sender<usize>),
}

pub struct Acker;

#[derive(Clone)]
pub struct AckerArgs {
    pub queue: Arc<dyn InboundQueue>,
    /// The visibility timeout messages are received with, and extended to.
    pub visibility_timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

pub struct AckerState {
    args: AckerArgs,
    /// In-flight messages by receipt handle, with when their visibility was last set.
    tracked: HashMap<String, (Weak<InflightMessage>, Instant)>,
}

impl AckerState {
    async fn settle(&mut self, settlement: Settlement) {
        let message = &settlement.message;
        self.tracked.remove(&message.receipt_handle);
        match &settlement.outcome {
            SettleOutcome::Delete => match self.args.queue.delete(&message.receipt_handle).await {
                Ok(()) => tracing::debug!(message_id = %message.message_id, "message deleted"),
                Err(err) => {
                    tracing::warn!(message_id = %message.message_id, error = %err, "delete failed; the message will be handled again")
                }
            },
            SettleOutcome::Release { reason } => {
                let delay = retry_delay(message.receive_count, self.args.retry_base, self.args.retry_max);
                tracing::info!(message_id = %message.message_id, attempt = message.receive_count, %reason, ?delay, "releasing message for a retry");
                if let Err(err) = self.args.queue.set_visibility(&message.receipt_handle, delay).await {
                    tracing::warn!(message_id = %message.message_id, error = %err, "release failed; message returns after its visibility timeout");
                }
            }
        }
        // Dropping the permit here lets the poller take another message.
        drop(settlement);
    }

    async fn heartbeat(&mut self) {
        let now = Instant::now();
        let due_after = self.args.visibility_timeout / 2;
        self.tracked
            .retain(|_, (message, _)| message.upgrade().is_some_and(|message| message.is_pending()));
        for (receipt_handle, (message, last_set)) in self.tracked.iter_mut() {
            if now.duration_since(*last_set) < due_after {
                continue;
            }
            let Some(message) = message.upgrade() else { continue };
            match self
                .args
                .queue
                .set_visibility(receipt_handle, self.args.visibility_timeout)
                .await
            {
                Ok(()) => {
                    *last_set = now;
                    tracing::debug!(message_id = %message.message_id, "visibility extended");
                }
                Err(err) => {
                    tracing::warn!(message_id = %message.message_id, error = %err, "visibility extension failed")
                }
            }
        }
    }

    async fn release_all(&mut self) -> usize {
        let mut released = 0;
        for (receipt_handle, (message, _)) in self.tracked.drain() {
            let Some(message) = message.upgrade().filter(|message| message.is_pending()) else {
                continue;
            };
            match self.args.queue.set_visibility(&receipt_handle, Duration::ZERO).await {
                Ok(()) => released += 1,
                Err(err) => {
                    tracing::warn!(message_id = %message.message_id, error = %err, "release at shutdown failed; message returns after its visibility timeout")
                }
            }
        }
        released
    }
}

impl Actor for Acker {
    type Msg = AckerMsg;
    type State = AckerState;
    type Arguments = AckerArgs;

    async fn pre_start(&self, myself: ActorRef<AckerMsg>, args: AckerArgs) -> Result<AckerState, ActorProcessingErr> {
        // Often enough that every message is extended well before it would reappear.
        let tick = (args.visibility_timeout / 4).max(Duration::from_millis(250));
        myself.send_interval(tick, || AckerMsg::Heartbeat);
        Ok(AckerState {
            args,
            tracked: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<AckerMsg>,
        message: AckerMsg,
        state: &mut AckerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AckerMsg::Track(message) => {
                if let Some(inflight) = message.upgrade() {
                    state
                        .tracked
                        .insert(inflight.receipt_handle.clone(), (message, inflight.received_at));
                }
            }
            AckerMsg::Settle(settlement) => state.settle(settlement).await,
            AckerMsg::Heartbeat => state.heartbeat().await,
            AckerMsg::ReleaseAll(reply) => {
                let released = state.release_all().await;
                let _ = reply.send(released);
            }
        }
        Ok(())
    }
}

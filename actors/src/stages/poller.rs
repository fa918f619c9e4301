//! The poller is the pipeline's only entrance. It long-polls the inbound queue for as many
//! messages as it holds free in-flight permits (so nothing downstream queues without bound),
//! parses each body, registers each message in the pipeline's in-flight registry (the heartbeat
//! extends what is registered), and sends each valid record with its ticket to the fetch pool.
//! Test events are acknowledged; invalid events and records go to the forwarder's rejected path
//! and never block the queue. While its [`ReceiveGate`] is closed (definitions too old to judge
//! with) it receives nothing: messages wait on SQS.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Span;

use super::forwarder::ForwarderMsg;
use super::pool::PoolMsg;
use super::publisher::PublisherMsg;
use super::RecordJob;
use crate::address::StageAddress;
use crate::backoff::Backoff;
use crate::definitions::ReceiveGate;
use crate::event::{parse_message, ParsedMessage, RejectedRecord};
use crate::inflight::InflightRegistry;
use crate::model::ObjectRef;
use crate::policy::{Policies, Policy};
use crate::ports::{InboundQueue, QueueMessage};
use crate::result_event::ResultEvent;
use crate::shutdown::Shutdown;
use crate::ticket::{Delivery, InflightMessage, RecordTicket, SettlementOutlet};
use crate::trace::{self, ObjectTrace};

/// The span of one record's object, under its message's span; the verdict is recorded by the
/// router.
fn object_span(message: &Span, object: &ObjectRef) -> Span {
    tracing::info_span!(
        parent: message,
        "object",
        aws.s3.bucket = %object.bucket,
        aws.s3.key = %trace::capped_key(&object.key),
        object.size = object.size,
        object.etag = object.etag.as_deref().unwrap_or(""),
        object.version_id = object.version_id.as_deref().unwrap_or(""),
        scan.verdict = tracing::field::Empty,
        scan.signature = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error = tracing::field::Empty,
    )
}

/// SQS returns at most ten messages per receive.
pub(crate) const MAX_RECEIVE_BATCH: usize = 10;

/// The pause after a failed receive: 400 ms after the first failure, doubling to 12.8 s.
const RECEIVE_FAILURE_BACKOFF: Backoff = Backoff::new(Duration::from_millis(400), Duration::from_millis(12_800));

/// What the poller is told (by itself: each poll ends by asking for the next).
pub(crate) enum PollerMsg {
    /// Take permits, receive, dispatch.
    Poll,
}

/// The poller actor.
pub(crate) struct Poller;

/// What the poller is spawned with.
#[derive(Clone)]
pub(crate) struct PollerArguments {
    /// Where messages come from.
    pub(crate) queue: Arc<dyn InboundQueue>,
    /// Which buckets records may point at, and what to do with each record's object.
    pub(crate) policies: Arc<Policies>,
    /// One per message in flight; a receive asks for no more messages than it holds.
    pub(crate) permits: Arc<Semaphore>,
    /// The permits' total, for the in-flight gauge.
    pub(crate) max_in_flight: usize,
    /// Messages per receive.
    pub(crate) receive_batch: usize,
    /// Where valid records go.
    pub(crate) fetch_pool: StageAddress<PoolMsg<RecordJob>>,
    /// Where rejected records go, to be kept.
    pub(crate) forwarder: StageAddress<ForwarderMsg>,
    /// Takes every message's settlement.
    pub(crate) publisher: StageAddress<PublisherMsg>,
    /// Where every message is registered while in flight, so that its visibility is extended.
    pub(crate) registry: Arc<InflightRegistry>,
    /// Stop receiving when it is requested.
    pub(crate) shutdown: Shutdown,
    /// Receive only while this is open.
    pub(crate) gate: ReceiveGate,
}

/// The poller's state.
pub(crate) struct PollerState {
    arguments: PollerArguments,
    /// The publisher's address as the tickets' outlet (it hands on to the acker), shared by every
    /// message.
    settlements: Arc<dyn SettlementOutlet>,
    /// Grows while receives fail, so a broken queue is not hammered.
    receive_failures: u32,
}

impl PollerState {
    /// Waits until a whole batch of permits is free (never more than `max_in_flight`), so that
    /// every receive can ask for a full batch: a receive per freed permit would cost a call per
    /// message.
    async fn take_permits(&self) -> Vec<OwnedSemaphorePermit> {
        let batch = self
            .arguments
            .receive_batch
            .clamp(1, self.arguments.max_in_flight.max(1));
        let Ok(mut permits) = self.arguments.permits.clone().acquire_many_owned(batch as u32).await else {
            return Vec::new();
        };
        let mut each = Vec::with_capacity(batch);
        while let Some(permit) = permits.split(1) {
            each.push(permit);
        }
        each
    }

    fn dispatch(&self, message: QueueMessage, permit: OwnedSemaphorePermit) {
        let message_span = trace::message_span(&message.message_id, message.receive_count, &message.trace);
        let receive = tracing::info_span!(parent: &message_span, "receive", records = tracing::field::Empty).entered();
        let parsed = parse_message(&message.body, self.arguments.policies.as_ref());
        let records = match &parsed {
            ParsedMessage::Records(records) => records.len(),
            _ => 1,
        };
        receive.record("records", records);
        let delivery = Delivery {
            message_id: message.message_id.clone(),
            receipt_handle: message.receipt_handle.clone(),
            receive_count: message.receive_count,
        };
        let (_, mut tickets) = InflightMessage::open(
            delivery,
            records,
            permit,
            self.settlements.clone(),
            self.arguments.registry.clone(),
            message_span.clone(),
        );
        let upstream = Arc::new(message.trace.clone());
        let mut rejected = Vec::new();
        match parsed {
            ParsedMessage::TestEvent => {
                tracing::info!(message_id = %message.message_id, "s3 test event; acknowledged");
                tickets.pop().expect("one ticket").ignored();
            }
            ParsedMessage::Invalid(rejection) => rejected.push((
                RejectedRecord {
                    rejection,
                    bucket: None,
                    key: None,
                },
                tickets.pop().expect("one ticket"),
            )),
            ParsedMessage::Records(records) => {
                for (record, ticket) in records.into_iter().zip(tickets) {
                    match record {
                        Ok(record) => {
                            tracing::debug!(message_id = %message.message_id, key = %record.object.key, "record received");
                            let trace =
                                ObjectTrace::new(object_span(&message_span, &record.object), Arc::clone(&upstream));
                            // The parser accepted the bucket, so a policy names it.
                            let policy = self
                                .arguments
                                .policies
                                .for_object(&record.object.bucket, &record.object.key)
                                .expect("accepted buckets have a policy");
                            // A rescan's events ask for clean objects not to be forwarded again.
                            let policy = match message.forward_clean || !policy.forward_clean {
                                true => Arc::clone(policy),
                                false => Arc::new(Policy {
                                    forward_clean: false,
                                    ..Policy::clone(policy)
                                }),
                            };
                            // A failed send drops the job and its ticket: the message is retried.
                            let _ = self.arguments.fetch_pool.send(PoolMsg::Submit(RecordJob {
                                record,
                                ticket,
                                trace,
                                policy,
                            }));
                        }
                        Err(rejection) => rejected.push((rejection, ticket)),
                    }
                }
            }
        }
        if !rejected.is_empty() {
            self.reject(message, rejected, message_span);
        }
    }

    fn reject(&self, message: QueueMessage, rejected: Vec<(RejectedRecord, RecordTicket)>, span: Span) {
        let records = rejected
            .into_iter()
            .map(|(RejectedRecord { rejection, bucket, key }, ticket)| {
                tracing::warn!(message_id = %message.message_id, reason = rejection.label(), detail = %rejection, "invalid event rejected");
                metrics::counter!(crate::metrics::REJECTED, "reason" => rejection.label()).increment(1);
                let result = ResultEvent::rejected((bucket, key), &rejection.to_string(), &message.message_id);
                (ticket, result)
            })
            .collect();
        let reject = ForwarderMsg::Reject {
            body: message.body,
            message_id: message.message_id,
            records,
            span,
        };
        let _ = self.arguments.forwarder.send(reject);
    }

    /// Makes messages received during shutdown visible again at once.
    async fn hand_back(&self, messages: Vec<QueueMessage>) {
        for message in messages {
            if let Err(err) = self
                .arguments
                .queue
                .set_visibility(&message.receipt_handle, Duration::ZERO)
                .await
            {
                tracing::warn!(message_id = %message.message_id, error = %err, "could not hand back message at shutdown");
            }
        }
    }
}

impl Actor for Poller {
    type Msg = PollerMsg;
    type State = PollerState;
    type Arguments = PollerArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<PollerMsg>,
        arguments: PollerArguments,
    ) -> Result<PollerState, ActorProcessingErr> {
        myself.cast(PollerMsg::Poll)?;
        Ok(PollerState {
            settlements: Arc::new(arguments.publisher.clone()),
            arguments,
            receive_failures: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<PollerMsg>,
        _: PollerMsg,
        state: &mut PollerState,
    ) -> Result<(), ActorProcessingErr> {
        let mut shutdown = state.arguments.shutdown.clone();
        if shutdown.is_requested() {
            myself.stop(Some("shutdown".into()));
            return Ok(());
        }
        // Nothing is received while the gate is closed; what is in flight finishes.
        let mut gate = state.arguments.gate.clone();
        tokio::select! {
            () = gate.opened() => {}
            () = shutdown.requested() => {
                myself.stop(Some("shutdown".into()));
                return Ok(());
            }
        }
        let permits = tokio::select! {
            permits = state.take_permits() => permits,
            () = shutdown.requested() => Vec::new(),
        };
        if permits.is_empty() {
            myself.stop(Some("shutdown".into()));
            return Ok(());
        }
        // Never cancelled: a receive dropped mid-flight would hide its messages until timeout.
        match state.arguments.queue.receive(permits.len()).await {
            Ok(messages) => {
                state.receive_failures = 0;
                metrics::counter!(crate::metrics::MESSAGES_RECEIVED).increment(messages.len() as u64);
                if state.arguments.shutdown.is_requested() {
                    state.hand_back(messages).await;
                } else {
                    for (message, permit) in messages.into_iter().zip(permits) {
                        state.dispatch(message, permit);
                    }
                }
            }
            Err(err) => {
                state.receive_failures += 1;
                let pause = RECEIVE_FAILURE_BACKOFF.delay(state.receive_failures - 1);
                tracing::warn!(error = %err, ?pause, "receive failed");
                drop(permits);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.requested() => {}
                }
            }
        }
        // As of this receive (permits of messages not received are back by now); updated on every
        // poll, so at most one long poll old.
        let free = state.arguments.permits.available_permits();
        metrics::gauge!(crate::metrics::PERMITS_FREE).set(free as f64);
        metrics::gauge!(crate::metrics::IN_FLIGHT).set(state.arguments.max_in_flight.saturating_sub(free) as f64);
        myself.cast(PollerMsg::Poll)?;
        Ok(())
    }
}

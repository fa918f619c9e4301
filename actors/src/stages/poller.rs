//! The poller is the pipeline's only entrance. It long-polls the inbound queue for as many
//! messages as it holds free in-flight permits (so nothing downstream queues without bound),
//! parses each body, registers each message in the pipeline's in-flight registry (the heartbeat
//! extends what is registered), and sends each valid record with its ticket to the fetch pool.
//! Test events are acknowledged; invalid events and records go to the forwarder's rejected path
//! and never block the queue. While its [`ReceiveGate`] is closed (definitions too old to judge
//! with) it receives nothing: messages wait on SQS.

use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Span;

use super::forwarder::ForwarderMsg;
use super::pool::Dispatch;
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

/// The most receives in flight at once. At SQS' ~15 ms a receive of ten brings ~650 messages a
/// second; a backlog is drained faster with several, each holding its own ten permits.
pub(crate) const MAX_CONCURRENT_RECEIVES: usize = 16;

/// What the poller is told (by itself: each poll ends by asking for the next).
pub(crate) enum PollerMsg {
    /// Take permits and start a receive, if one more may be in flight.
    Poll,
    /// A receive came back: dispatch what it brought; `None` when shutdown came first.
    Received(Option<ReceiveAnswer>),
}

/// What a receive brought, with the permits it held (one per message it could bring).
pub(crate) struct ReceiveAnswer {
    answer: Result<Vec<QueueMessage>, crate::ports::QueueError>,
    permits: Vec<OwnedSemaphorePermit>,
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
    pub(crate) fetch_pool: Arc<Dispatch<RecordJob>>,
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
    /// Receives in flight.
    receiving: usize,
    /// How many may be: one while the queue has no backlog (a receive came back short), more,
    /// up to [`MAX_CONCURRENT_RECEIVES`] and the permits, while every receive comes back full.
    receive_concurrency: usize,
    /// Ending: no new receive starts; the poller stops once none is in flight.
    stopping: bool,
    /// Cleared when this poller stops: its receive tasks still waiting for the gate or permits
    /// then receive nothing (a restarted poller has its own).
    alive: Arc<std::sync::atomic::AtomicBool>,
    /// After a failed receive, no receive starts before this (the actor itself never waits).
    pause_until: Option<tokio::time::Instant>,
}

impl PollerState {
    /// Waits until a whole batch of permits is free (never more than `max_in_flight`), so that
    /// every receive can ask for a full batch: a receive per freed permit would cost a call per
    /// message.
    async fn take_permits(arguments: &PollerArguments) -> Vec<OwnedSemaphorePermit> {
        let batch = arguments.receive_batch.clamp(1, arguments.max_in_flight.max(1));
        let Ok(mut permits) = arguments.permits.clone().acquire_many_owned(batch as u32).await else {
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
                            self.arguments.fetch_pool.submit(RecordJob {
                                record,
                                ticket,
                                trace,
                                policy,
                            });
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
            receiving: 0,
            receive_concurrency: 1,
            stopping: false,
            alive: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            pause_until: None,
        })
    }

    async fn post_stop(&self, _: ActorRef<PollerMsg>, state: &mut PollerState) -> Result<(), ActorProcessingErr> {
        state.alive.store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PollerMsg>,
        message: PollerMsg,
        state: &mut PollerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PollerMsg::Poll => state.start_receive(&myself),
            PollerMsg::Received(answer) => {
                state.receiving -= 1;
                match answer {
                    Some(ReceiveAnswer { answer, permits }) => state.received(answer, permits).await,
                    None => state.stopping = true,
                }
                // As of this receive (permits of messages not received are back by now).
                let free = state.arguments.permits.available_permits();
                metrics::gauge!(crate::metrics::PERMITS_FREE).set(free as f64);
                metrics::gauge!(crate::metrics::IN_FLIGHT)
                    .set(state.arguments.max_in_flight.saturating_sub(free) as f64);
                state.start_receive(&myself);
            }
        }
        if state.stopping && state.receiving == 0 {
            myself.stop(Some("shutdown".into()));
        }
        Ok(())
    }
}

impl PollerState {
    /// Starts receives, each in a task of its own, while the concurrency allows; each answers
    /// with [`PollerMsg::Received`]. A task waits for the receive gate and for its permits,
    /// then receives; it is never cancelled once receiving: a receive dropped mid-flight would
    /// hide its messages until their visibility timeout. The actor itself never waits, so what
    /// came back is dispatched at once.
    fn start_receive(&mut self, myself: &ActorRef<PollerMsg>) {
        if self.arguments.shutdown.is_requested() {
            self.stopping = true;
        }
        while !self.stopping && self.receiving < self.receive_concurrency {
            self.receiving += 1;
            let arguments = self.arguments.clone();
            let reply = myself.clone();
            let alive = self.alive.clone();
            let pause_until = self.pause_until;
            tokio::spawn(async move {
                // A panic in the receive is a failed receive, not a receive that never answers
                // (the poller would wait for it for ever).
                let answer = AssertUnwindSafe(receive_when_allowed(&arguments, &alive, pause_until))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        Some(ReceiveAnswer {
                            answer: Err(crate::ports::QueueError {
                                operation: "ReceiveMessage",
                                queue: String::new(),
                                detail: "the receive panicked".into(),
                            }),
                            permits: Vec::new(),
                        })
                    });
                if let Err(ractor::MessagingErr::SendErr(PollerMsg::Received(Some(lost)))) =
                    reply.cast(PollerMsg::Received(answer))
                {
                    // The poller stopped meanwhile: what it brought goes back at once.
                    if let Ok(messages) = lost.answer {
                        let handles: Vec<String> = messages.into_iter().map(|m| m.receipt_handle).collect();
                        for batch in handles.chunks(MAX_RECEIVE_BATCH) {
                            let _ = arguments.queue.set_visibility_batch(batch, Duration::ZERO).await;
                        }
                    }
                }
            });
        }
    }

    /// Dispatches what a receive brought (hands it back when ending), and sets how many receives
    /// may be in flight: one more while receives come back full, one as soon as one comes back
    /// short (no backlog: more would only cost calls).
    async fn received(
        &mut self,
        answer: Result<Vec<QueueMessage>, crate::ports::QueueError>,
        permits: Vec<OwnedSemaphorePermit>,
    ) {
        match answer {
            Ok(messages) => {
                self.receive_failures = 0;
                metrics::counter!(crate::metrics::MESSAGES_RECEIVED).increment(messages.len() as u64);
                let full = !messages.is_empty() && messages.len() == permits.len();
                let most = (self.arguments.max_in_flight / self.arguments.receive_batch.max(1))
                    .clamp(1, MAX_CONCURRENT_RECEIVES);
                self.receive_concurrency = if full {
                    (self.receive_concurrency + 1).min(most)
                } else {
                    1
                };
                if self.stopping || self.arguments.shutdown.is_requested() {
                    self.stopping = true;
                    self.hand_back(messages).await;
                } else {
                    for (message, permit) in messages.into_iter().zip(permits) {
                        self.dispatch(message, permit);
                    }
                }
            }
            Err(err) => {
                self.receive_failures += 1;
                self.receive_concurrency = 1;
                let pause = RECEIVE_FAILURE_BACKOFF.delay(self.receive_failures - 1);
                tracing::warn!(error = %err, ?pause, "receive failed");
                drop(permits);
                // The next receive waits, in its task: what other receives brought is
                // dispatched meanwhile.
                self.pause_until = Some(tokio::time::Instant::now() + pause);
            }
        }
    }
}

/// One receive, after `pause_until`, once the gate is open and a batch of permits is free (the
/// gate is looked at again once the permits are held: it may have closed meanwhile); `None`
/// when shutdown comes first or the poller that started it is gone.
async fn receive_when_allowed(
    arguments: &PollerArguments,
    alive: &std::sync::atomic::AtomicBool,
    pause_until: Option<tokio::time::Instant>,
) -> Option<ReceiveAnswer> {
    let mut shutdown = arguments.shutdown.clone();
    if let Some(until) = pause_until {
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = shutdown.requested() => return None,
        }
    }
    let permits = loop {
        let mut gate = arguments.gate.clone();
        tokio::select! {
            () = gate.opened() => {}
            () = shutdown.requested() => return None,
        }
        let permits = tokio::select! {
            permits = PollerState::take_permits(arguments) => permits,
            () = shutdown.requested() => return None,
        };
        if arguments.gate.closed_reason().is_none() || permits.is_empty() {
            break permits;
        }
    };
    let alive = alive.load(std::sync::atomic::Ordering::SeqCst);
    if permits.is_empty() || shutdown.is_requested() || !alive {
        return None;
    }
    let answer = arguments.queue.receive(permits.len()).await;
    Some(ReceiveAnswer { answer, permits })
}

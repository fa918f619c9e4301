//! The forwarder sends what leaves the pipeline as a queue message: clean records to the
//! outbound (validation) queue, and the raw bodies of rejected events to the optional
//! rejected-events queue. A ticket is resolved only after SQS accepted the message.
//!
//! Clean records go out ten per `SendMessageBatch` call: a record waits at most the pipeline's
//! batch linger for others to share its call (every call is money on a real bill). An entry
//! that fails retries its record's message. Rejected events, rare and up to 256 KiB each, go
//! out one per call.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{Instrument, Span};

use crate::model::RecordJob;
use crate::ports::{MessageSink, OutboundMessage, SendFailure};
use crate::ticket::{RecordTicket, RetryCause};

/// What the forwarder is told.
pub(crate) enum ForwarderMsg {
    /// A clean record for the validator.
    Forward {
        /// The record, with its ticket.
        job: RecordJob,
        /// clamd's VERSION line, sent as the `engine` attribute.
        engine: Option<String>,
    },
    /// The invalid records of one message (or the whole message): its raw body is kept once, for
    /// inspection, when a rejected queue exists.
    Reject {
        /// The message's raw body.
        body: String,
        /// SQS' id of the message, kept as `source_message_id`.
        message_id: String,
        /// One per rejected record.
        reasons: Vec<String>,
        /// One per rejected record; resolved once the body is kept (or there is nowhere to keep it).
        tickets: Vec<RecordTicket>,
        /// The message's span.
        span: Span,
    },
    /// Sends the clean records collected so far.
    Flush,
}

/// The forwarder actor.
pub(crate) struct Forwarder;

/// What the forwarder is spawned with.
pub(crate) struct ForwarderArguments {
    /// The validation queue.
    pub(crate) outbound: Arc<dyn MessageSink>,
    /// The rejected-events queue, if one is configured.
    pub(crate) rejected: Option<Arc<dyn MessageSink>>,
    /// How long a clean record may wait for others to share its send call.
    pub(crate) linger: Duration,
}

/// SQS' largest batch, in entries and in bytes of bodies and attributes together.
const SEND_BATCH: usize = 10;
const SEND_BATCH_BYTES: usize = 256 * 1024;

/// The outbound message for a clean record: the record as received, plus the verdict, the
/// engine that gave it and the trace context of `send` (the span of sending it).
fn clean_message(job: &RecordJob, engine: Option<&str>, send: &Span) -> OutboundMessage {
    let mut attributes = vec![("verdict".to_owned(), "clean".to_owned())];
    if let Some(engine) = engine {
        attributes.push(("engine".to_owned(), engine.to_owned()));
    }
    attributes.extend(job.trace.propagate(send));
    OutboundMessage {
        body: job.record.outbound_body(),
        attributes,
    }
}

fn size_of(message: &OutboundMessage) -> usize {
    message.body.len() + message.attributes.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
}

/// A clean record waiting for its send call, with its `forward` span.
struct PendingForward {
    job: RecordJob,
    message: OutboundMessage,
    span: Span,
}

/// The forwarder's state: the clean records waiting for their batch call.
pub(crate) struct ForwarderState {
    arguments: ForwarderArguments,
    myself: ActorRef<ForwarderMsg>,
    pending: Vec<PendingForward>,
    pending_bytes: usize,
    flush_scheduled: bool,
}

impl ForwarderState {
    async fn forward(&mut self, job: RecordJob, engine: Option<String>) {
        let span = tracing::info_span!(parent: &job.trace.span, "forward", otel.kind = "producer", batch = tracing::field::Empty, error = tracing::field::Empty);
        let message = clean_message(&job, engine.as_deref(), &span);
        let size = size_of(&message);
        if self.pending_bytes + size > SEND_BATCH_BYTES {
            self.flush().await;
        }
        self.pending_bytes += size;
        self.pending.push(PendingForward { job, message, span });
        if self.pending.len() >= SEND_BATCH {
            self.flush().await;
        } else if !self.flush_scheduled {
            self.flush_scheduled = true;
            self.myself.send_after(self.arguments.linger, || ForwarderMsg::Flush);
        }
    }

    async fn flush(&mut self) {
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        if batch.is_empty() {
            return;
        }
        let messages: Vec<OutboundMessage> = batch.iter().map(|pending| pending.message.clone()).collect();
        let sent = self.arguments.outbound.send_batch(&messages).await;
        let failed = |index: usize| -> Option<String> {
            match &sent {
                Ok(failures) => failures
                    .iter()
                    .find(|failure: &&SendFailure| failure.index == index)
                    .map(|failure| failure.detail.clone()),
                Err(err) => Some(err.to_string()),
            }
        };
        for (index, pending) in batch.into_iter().enumerate() {
            pending.span.record("batch", messages.len());
            match failed(index) {
                None => pending.job.ticket.done(),
                Some(detail) => {
                    pending.span.record("error", detail.as_str());
                    let job = pending.job;
                    tracing::warn!(key = %job.record.object.key, message_id = job.ticket.message_id(), error = %detail, "forwarding failed; message will be retried");
                    job.ticket.retry(RetryCause::Forward, detail);
                }
            }
        }
    }

    async fn reject(
        &self,
        body: String,
        message_id: String,
        reasons: Vec<String>,
        tickets: Vec<RecordTicket>,
        span: Span,
    ) {
        let Some(rejected) = &self.arguments.rejected else {
            tickets.into_iter().for_each(RecordTicket::reject);
            return;
        };
        let span = tracing::info_span!(parent: &span, "reject", reasons = %reasons.join("; "));
        let message = OutboundMessage {
            body,
            attributes: vec![
                ("reason".to_owned(), reasons.join("; ")),
                ("source_message_id".to_owned(), message_id.clone()),
            ],
        };
        let sent = match rejected
            .send_batch(std::slice::from_ref(&message))
            .instrument(span)
            .await
        {
            Ok(failures) => failures.into_iter().next().map(|failure| failure.detail),
            Err(err) => Some(err.to_string()),
        };
        match sent {
            None => tickets.into_iter().for_each(RecordTicket::reject),
            Some(detail) => {
                tracing::warn!(%message_id, error = %detail, "could not keep the rejected event; message will be retried");
                tickets
                    .into_iter()
                    .for_each(|ticket| ticket.retry(RetryCause::Forward, &detail));
            }
        }
    }
}

impl Actor for Forwarder {
    type Msg = ForwarderMsg;
    type State = ForwarderState;
    type Arguments = ForwarderArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<ForwarderMsg>,
        arguments: ForwarderArguments,
    ) -> Result<ForwarderState, ActorProcessingErr> {
        Ok(ForwarderState {
            arguments,
            myself,
            pending: Vec::new(),
            pending_bytes: 0,
            flush_scheduled: false,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<ForwarderMsg>,
        message: ForwarderMsg,
        state: &mut ForwarderState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ForwarderMsg::Forward { job, engine } => state.forward(job, engine).await,
            ForwarderMsg::Flush => {
                state.flush_scheduled = false;
                state.flush().await;
            }
            ForwarderMsg::Reject {
                body,
                message_id,
                reasons,
                tickets,
                span,
            } => state.reject(body, message_id, reasons, tickets, span).await,
        }
        Ok(())
    }
}

//! The forwarder sends what leaves the pipeline as a queue message: clean records to the
//! outbound (validation) queue, and the raw bodies of rejected events to the optional
//! rejected-events queue. A ticket is resolved only after SQS accepted the message.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{Instrument, Span};

use crate::model::RecordJob;
use crate::ports::{MessageSink, OutboundMessage};
use crate::receipt::RecordTicket;

pub enum ForwarderMsg {
    /// A clean record for the validator.
    Forward { job: RecordJob, engine: Option<String> },
    /// The invalid records of one message (or the whole message): its raw body is kept once, for
    /// inspection, when a rejected queue exists.
    Reject {
        body: String,
        message_id: String,
        /// One per rejected record.
        reasons: Vec<String>,
        tickets: Vec<RecordTicket>,
        /// The message's span.
        span: Span,
    },
}

pub struct Forwarder;

pub struct ForwarderArgs {
    pub outbound: Arc<dyn MessageSink>,
    pub rejected: Option<Arc<dyn MessageSink>>,
}

/// The outbound message for a clean record: the record as received, plus the verdict, the
/// engine that gave it and the trace context of `send` (the span of sending it).
pub fn clean_message(job: &RecordJob, engine: Option<&str>, send: &Span) -> OutboundMessage {
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

impl Actor for Forwarder {
    type Msg = ForwarderMsg;
    type State = ForwarderArgs;
    type Arguments = ForwarderArgs;

    async fn pre_start(
        &self,
        _: ActorRef<ForwarderMsg>,
        args: ForwarderArgs,
    ) -> Result<ForwarderArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<ForwarderMsg>,
        message: ForwarderMsg,
        state: &mut ForwarderArgs,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ForwarderMsg::Forward { job, engine } => {
                let span = tracing::info_span!(parent: &job.trace.span, "forward", otel.kind = "producer", error = tracing::field::Empty);
                let message = clean_message(&job, engine.as_deref(), &span);
                let sent = state.outbound.send(message).instrument(span.clone()).await;
                if let Err(err) = &sent {
                    span.record("error", tracing::field::display(err));
                }
                drop(span);
                match sent {
                    Ok(()) => job.ticket.done(),
                    Err(err) => {
                        tracing::warn!(key = %job.record.object.key, message_id = job.ticket.message_id(), error = %err, "forwarding failed; message will be retried");
                        job.ticket.retry("forward", err);
                    }
                }
            }
            ForwarderMsg::Reject {
                body,
                message_id,
                reasons,
                tickets,
                span,
            } => {
                let span = tracing::info_span!(parent: &span, "reject", reasons = %reasons.join("; "));
                let Some(rejected) = &state.rejected else {
                    tickets.into_iter().for_each(RecordTicket::reject);
                    return Ok(());
                };
                let message = OutboundMessage {
                    body,
                    attributes: vec![
                        ("reason".to_owned(), reasons.join("; ")),
                        ("source_message_id".to_owned(), message_id.clone()),
                    ],
                };
                match rejected.send(message).instrument(span).await {
                    Ok(()) => tickets.into_iter().for_each(RecordTicket::reject),
                    Err(err) => {
                        tracing::warn!(%message_id, error = %err, "could not keep the rejected event; message will be retried");
                        tickets.into_iter().for_each(|ticket| ticket.retry("forward", &err));
                    }
                }
            }
        }
        Ok(())
    }
}

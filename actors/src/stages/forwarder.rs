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

use super::RecordJob;
use crate::model::{capped, ScanOutcome};
use crate::ports::{MessageSink, OutboundMessage, SendFailure};
use crate::result_event::ResultEvent;
use crate::ticket::{RecordTicket, RetryCause};

/// What the forwarder is told.
pub(crate) enum ForwarderMsg {
    /// A clean record for the validator.
    Forward {
        /// The record, with its ticket.
        job: RecordJob,
        /// clamd's clean verdict: its VERSION line, definitions and digest become attributes
        /// (boxed: the largest part of the message).
        outcome: Box<ScanOutcome>,
    },
    /// The invalid records of one message (or the whole message): its raw body is kept once, for
    /// inspection, when a rejected queue exists.
    Reject {
        /// The message's raw body.
        body: String,
        /// SQS' id of the message, kept as `source_message_id`.
        message_id: String,
        /// One per rejected record, with its result event (which says why): resolved once the
        /// body is kept (or there is nowhere to keep it).
        records: Vec<(RecordTicket, ResultEvent)>,
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
/// engine and definitions that gave it (`engine`, `definitions_version`, `definitions_built_at`),
/// the object's `sha256`, and the trace context of `send` (the span of sending it).
fn clean_message(job: &RecordJob, outcome: &ScanOutcome, send: &Span) -> OutboundMessage {
    let mut attributes = vec![("verdict".to_owned(), "clean".to_owned())];
    if let Some(engine) = &outcome.engine {
        attributes.push(("engine".to_owned(), engine.clone()));
    }
    if let Some(definitions) = &outcome.definitions {
        attributes.push(("definitions_version".to_owned(), definitions.version.to_string()));
        attributes.push(("definitions_built_at".to_owned(), definitions.built_at_rfc3339()));
    }
    if let Some(sha256) = &outcome.sha256 {
        attributes.push(("sha256".to_owned(), sha256.clone()));
    }
    if let Some(entry) = &outcome.allowed_by {
        attributes.push(("allowed_by".to_owned(), entry.chars().take(1024).collect()));
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

/// The `reason` attribute of a rejected copy is cut here: it quotes event fields an attacker sets.
const MAX_REASON_BYTES: usize = 1024;

/// Whether a rejected body was kept whole or cut to fit the rejected-events queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RejectedCopy {
    Whole,
    Truncated,
}

impl RejectedCopy {
    fn label(self) -> &'static str {
        match self {
            RejectedCopy::Whole => "whole",
            RejectedCopy::Truncated => "truncated",
        }
    }
}

/// The copy of a rejected message's body for the rejected-events queue, within `max_bytes`:
/// whole when it fits, else cut (on a character boundary) with `truncated`, `original_size`
/// and `original_sha256` attributes, so the event can still be identified and matched.
fn rejected_copy(body: String, message_id: &str, reason: String, max_bytes: usize) -> (OutboundMessage, RejectedCopy) {
    let mut message = OutboundMessage {
        body,
        attributes: vec![
            ("reason".to_owned(), reason),
            ("source_message_id".to_owned(), capped(message_id, 128)),
        ],
    };
    if message.size() <= max_bytes {
        return (message, RejectedCopy::Whole);
    }
    let (size, sha256) = copy_digest(&message);
    message.attributes.extend([
        ("truncated".to_owned(), "true".to_owned()),
        ("original_size".to_owned(), size.to_string()),
        ("original_sha256".to_owned(), sha256),
    ]);
    // The reason quotes the event; the body is the event. When both do not fit, the reason
    // gives way first: the body keeps about half the limit (a queue's limit can be as small as
    // 1 KiB, which leaves the body ~500 bytes beside the other attributes; SQS refuses an
    // empty body).
    let body_floor = (max_bytes / 2).min(message.body.len());
    let reason_bytes = message.attributes[0].1.len();
    let others = message.size() - message.body.len() - reason_bytes;
    let reason_room = max_bytes.saturating_sub(others + body_floor);
    if reason_bytes > reason_room {
        message.attributes[0].1 = capped(&message.attributes[0].1, reason_room);
    }
    let room = max_bytes.saturating_sub(message.size() - message.body.len());
    let mut end = room.min(message.body.len());
    while !message.body.is_char_boundary(end) {
        end -= 1;
    }
    message.body.truncate(end);
    (message, RejectedCopy::Truncated)
}

/// The size and SHA-256 (hex) of a copy's body.
fn copy_digest(message: &OutboundMessage) -> (usize, String) {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(message.body.as_bytes());
    let hex = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    (message.body.len(), hex)
}

/// A clean record waiting for its send call, with its `forward` span.
struct PendingForward {
    job: RecordJob,
    message: OutboundMessage,
    /// The record's result event, published once it is forwarded.
    result: ResultEvent,
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
    async fn forward(&mut self, job: RecordJob, outcome: ScanOutcome) {
        let span = tracing::info_span!(parent: &job.trace.span, "forward", otel.kind = "producer", batch = tracing::field::Empty, error = tracing::field::Empty);
        let message = clean_message(&job, &outcome, &span);
        let result = ResultEvent::judged(&job.record, &outcome, "forwarded", job.ticket.message_id());
        let size = size_of(&message);
        if self.pending_bytes + size > SEND_BATCH_BYTES {
            self.flush().await;
        }
        self.pending_bytes += size;
        self.pending.push(PendingForward {
            job,
            message,
            result,
            span,
        });
        if self.pending.len() >= SEND_BATCH {
            self.flush().await;
        } else if !self.flush_scheduled {
            self.flush_scheduled = true;
            self.myself.send_after(self.arguments.linger, || ForwarderMsg::Flush);
        }
    }

    /// Sends the collected records in a task of its own: at SQS' ~15 ms a call, one call at a
    /// time would cap the forwarder near 650 records a second. The records' in-flight permits
    /// bound how many calls are out.
    async fn flush(&mut self) {
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        if batch.is_empty() {
            return;
        }
        tokio::spawn(send(self.arguments.outbound.clone(), batch));
    }

    async fn reject(&self, body: String, message_id: String, records: Vec<(RecordTicket, ResultEvent)>, span: Span) {
        let done = |records: Vec<(RecordTicket, ResultEvent)>| {
            for (ticket, result) in records {
                ticket.done(result);
            }
        };
        let Some(rejected) = &self.arguments.rejected else {
            done(records);
            return;
        };
        let reasons: Vec<&str> = records
            .iter()
            .filter_map(|(_, result)| result.reason.as_deref())
            .collect();
        let reason = capped(&reasons.join("; "), MAX_REASON_BYTES);
        let span = tracing::info_span!(parent: &span, "reject", reasons = %reason);
        let (message, copy) = rejected_copy(body, &message_id, reason, rejected.max_message_bytes());
        let sent = match rejected
            .send_batch(std::slice::from_ref(&message))
            .instrument(span)
            .await
        {
            Ok(failures) => failures.into_iter().next(),
            Err(err) => Some(SendFailure {
                index: 0,
                permanent: false,
                detail: err.to_string(),
            }),
        };
        match sent {
            None => {
                metrics::counter!(crate::metrics::REJECTED_COPIES, "copy" => copy.label()).increment(1);
                done(records)
            }
            // Refused for what it is: sending it again fails the same way, so the rejected
            // records must not hold their message. What identifies the body is in the log.
            Some(failure) if failure.permanent => {
                let digest = copy_digest(&message);
                tracing::error!(
                    %message_id, error = %failure.detail, original_size = digest.0, original_sha256 = %digest.1,
                    "the rejected-events queue refused the copy of a rejected event; not kept"
                );
                metrics::counter!(crate::metrics::REJECTED_COPIES, "copy" => "refused").increment(1);
                done(records)
            }
            Some(failure) => {
                tracing::warn!(%message_id, error = %failure.detail, "could not keep the rejected event; message will be retried");
                for (ticket, _) in records {
                    ticket.retry(RetryCause::Forward, &failure.detail);
                }
            }
        }
    }
}

/// Sends one batch of clean records and resolves their tickets by what SQS answered.
async fn send(outbound: Arc<dyn MessageSink>, batch: Vec<PendingForward>) {
    let messages: Vec<OutboundMessage> = batch.iter().map(|pending| pending.message.clone()).collect();
    let sent = outbound.send_batch(&messages).await;
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
            None => pending.job.ticket.done(pending.result),
            Some(detail) => {
                pending.span.record("error", detail.as_str());
                let job = pending.job;
                tracing::warn!(key = %job.record.object.key, message_id = job.ticket.message_id(), error = %detail, "forwarding failed; message will be retried");
                job.ticket.retry(RetryCause::Forward, detail);
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
            ForwarderMsg::Forward { job, outcome } => state.forward(job, *outcome).await,
            ForwarderMsg::Flush => {
                state.flush_scheduled = false;
                state.flush().await;
            }
            ForwarderMsg::Reject {
                body,
                message_id,
                records,
                span,
            } => state.reject(body, message_id, records, span).await,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_body_that_fits_is_kept_whole() {
        let (message, copy) = rejected_copy("{}".into(), "m1", "malformed".into(), 1024);
        assert_eq!(copy, RejectedCopy::Whole);
        assert_eq!(message.body, "{}");
        assert!(message.size() <= 1024);
    }

    #[test]
    fn a_rejected_body_too_large_is_cut_to_fit_with_its_size_and_digest() {
        let body = "é".repeat(5000); // 10,000 bytes, two per character
        let (message, copy) = rejected_copy(body.clone(), "m1", "x".repeat(MAX_REASON_BYTES), 4096);
        assert_eq!(copy, RejectedCopy::Truncated);
        assert!(message.size() <= 4096, "{}", message.size());
        assert!(body.starts_with(&message.body) && !message.body.is_empty());
        let attribute = |name: &str| {
            message
                .attributes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(attribute("original_size").as_deref(), Some("10000"));
        assert_eq!(
            attribute("original_sha256"),
            Some(
                copy_digest(&OutboundMessage {
                    body,
                    attributes: Vec::new()
                })
                .1
            )
        );
        assert_eq!(attribute("truncated").as_deref(), Some("true"));
    }

    #[test]
    fn on_the_smallest_queue_the_reason_gives_way_to_the_body() {
        // SQS's smallest MaximumMessageSize, a full reason and the longest message id kept.
        let body = "{\"Records\":[]}".repeat(200);
        let reason = capped(&"ü".repeat(2000), MAX_REASON_BYTES);
        let (message, copy) = rejected_copy(body.clone(), &"m".repeat(300), reason, 1024);
        assert_eq!(copy, RejectedCopy::Truncated);
        assert!(message.size() <= 1024, "{}", message.size());
        assert!(message.body.len() >= 512, "body cut to {} bytes", message.body.len());
        assert!(body.starts_with(&message.body));
        let reason = &message.attributes.iter().find(|(n, _)| n == "reason").unwrap().1;
        assert!(reason.ends_with('…') && reason.len() < MAX_REASON_BYTES, "{reason}");
    }

    #[test]
    fn reasons_are_capped_on_a_character_boundary() {
        let long = "ü".repeat(2000);
        let reason = capped(&long, MAX_REASON_BYTES);
        assert!(reason.len() <= MAX_REASON_BYTES && reason.ends_with('…'));
        assert_eq!(capped("short", MAX_REASON_BYTES), "short");
    }
}

//! Traces across queues. Each SQS message gets a `message` span that continues the trace its
//! sender started (a W3C `traceparent` message attribute, or the X-Ray `AWSTraceHeader` system
//! attribute); each of its records gets an `object` span under it, and every stage a span under
//! that. What avscan sends on (the outbound message, the SNS notification) carries a
//! `traceparent` naming avscan's span, so the validator downstream continues the same trace.
//!
//! Spans are plain `tracing` spans: the binary exports them through OpenTelemetry when an OTLP
//! endpoint is configured, and they cost next to nothing when it is not.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context's message attribute.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C trace state's message attribute.
pub const TRACESTATE: &str = "tracestate";

/// Keys longer than this are cut in span attributes (S3 allows 1,024 bytes).
pub(crate) const MAX_KEY_ATTRIBUTE_BYTES: usize = 256;

/// The trace context an inbound message carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    /// The W3C `traceparent` message attribute.
    pub traceparent: Option<String>,
    /// The W3C `tracestate` message attribute, meaningful only with a `traceparent`.
    pub tracestate: Option<String>,
    /// X-Ray's `Root=1-…;Parent=…;Sampled=…`, used when there is no `traceparent`.
    pub aws_trace_header: Option<String>,
}

impl TraceHeaders {
    /// The context as W3C headers: the message's own `traceparent`, else one translated from
    /// its X-Ray header. Empty when it carried neither (or nothing usable).
    pub(crate) fn w3c(&self) -> HashMap<String, String> {
        let mut headers = HashMap::new();
        if let Some(traceparent) = &self.traceparent {
            headers.insert(TRACEPARENT.to_owned(), traceparent.clone());
            if let Some(tracestate) = &self.tracestate {
                headers.insert(TRACESTATE.to_owned(), tracestate.clone());
            }
        } else if let Some(traceparent) = self.aws_trace_header.as_deref().and_then(traceparent_from_xray) {
            headers.insert(TRACEPARENT.to_owned(), traceparent);
        }
        headers
    }

    /// The sender's span context, when the headers name a valid one.
    pub(crate) fn context(&self) -> Option<opentelemetry::Context> {
        let context = TraceContextPropagator::new().extract(&self.w3c());
        context.span().span_context().is_valid().then_some(context)
    }
}

/// Translates an X-Ray trace header (`Root=1-5759e988-bd862e3fe1be46a994272793;
/// Parent=53995c3f42cd8ad8;Sampled=1`) into a W3C `traceparent`. X-Ray's root is its epoch
/// and unique parts run together, which is exactly a 128-bit W3C trace id.
pub(crate) fn traceparent_from_xray(header: &str) -> Option<String> {
    let (mut root, mut parent, mut sampled) = (None, None, false);
    for part in header.split(';') {
        match part.trim().split_once('=') {
            Some(("Root", value)) => root = Some(value),
            Some(("Parent", value)) => parent = Some(value),
            Some(("Sampled", value)) => sampled = value == "1",
            _ => {}
        }
    }
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut root = root?.split('-');
    let (version, epoch, unique) = (root.next()?, root.next()?, root.next()?);
    let parent = parent?;
    let valid = version == "1" && root.next().is_none() && is_hex(epoch, 8) && is_hex(unique, 24) && is_hex(parent, 16);
    valid.then(|| format!("00-{epoch}{unique}-{parent}-{}", if sampled { "01" } else { "00" }).to_ascii_lowercase())
}

/// The `message` span of one received SQS message: the root of avscan's part of the trace.
pub(crate) fn message_span(message_id: &str, attempt: u32, upstream: &TraceHeaders) -> Span {
    let span = tracing::info_span!(
        "message",
        otel.kind = "consumer",
        messaging.system = "aws_sqs",
        messaging.message.id = %message_id,
        attempt,
    );
    // Must happen before any child exists: the parent is fixed when the span is first used.
    if let Some(upstream) = upstream.context() {
        let _ = span.set_parent(upstream);
    }
    span
}

/// `key` cut to [`MAX_KEY_ATTRIBUTE_BYTES`] on a character boundary, marked with `…` when cut.
pub(crate) fn capped_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= MAX_KEY_ATTRIBUTE_BYTES {
        return key.into();
    }
    let mut end = MAX_KEY_ATTRIBUTE_BYTES;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &key[..end]).into()
}

/// One object's trace: the `object` span its stages hang under, and the context its message
/// arrived with.
#[derive(Debug, Clone)]
pub(crate) struct ObjectTrace {
    /// The `object` span.
    pub(crate) span: Span,
    upstream: Arc<TraceHeaders>,
}

impl ObjectTrace {
    pub(crate) fn new(span: Span, upstream: Arc<TraceHeaders>) -> Self {
        Self { span, upstream }
    }

    /// Message attributes that let the next service continue the trace from `stage` (the span
    /// of the send or publish). When spans are not exported, the headers the message arrived
    /// with are passed on, so avscan is transparent to a trace it does not record.
    pub(crate) fn propagate(&self, stage: &Span) -> Vec<(String, String)> {
        let context = stage.context();
        let headers = if context.span().span_context().is_valid() {
            let mut headers = HashMap::new();
            TraceContextPropagator::new().inject_context(&context, &mut headers);
            headers
        } else {
            self.upstream.w3c()
        };
        // An empty `tracestate` is valid W3C but not a valid SQS/SNS attribute value.
        let mut headers: Vec<(String, String)> = headers.into_iter().filter(|(_, value)| !value.is_empty()).collect();
        headers.sort();
        headers
    }
}

/// A job that belongs to a trace, so a pool can show how long it waited for a worker.
pub(crate) trait Traced {
    /// The span under which the job's waits and stages go.
    fn trace_span(&self) -> &Span;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xray_headers_become_traceparents() {
        assert_eq!(
            traceparent_from_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
                .as_deref(),
            Some("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01")
        );
        assert_eq!(
            traceparent_from_xray("Sampled=0; Parent=53995C3F42CD8AD8; Root=1-5759e988-bd862e3fe1be46a994272793")
                .as_deref(),
            Some("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00")
        );
        // Without a parent span there is nothing to continue; malformed roots are ignored.
        assert_eq!(traceparent_from_xray("Root=1-5759e988-bd862e3fe1be46a994272793"), None);
        assert_eq!(
            traceparent_from_xray("Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"),
            None
        );
        assert_eq!(
            traceparent_from_xray("Root=1-5759e988-bd86;Parent=53995c3f42cd8ad8"),
            None
        );
        assert_eq!(traceparent_from_xray("garbage"), None);
    }

    #[test]
    fn a_traceparent_wins_over_the_xray_header_and_garbage_is_no_context() {
        let headers = TraceHeaders {
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: Some("vendor=1".into()),
            aws_trace_header: Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into()),
        };
        let context = headers.context().expect("valid context");
        assert_eq!(
            context.span().span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(headers.w3c().get(TRACESTATE).map(String::as_str), Some("vendor=1"));
        let garbage = TraceHeaders {
            traceparent: Some("00-not-a-trace".into()),
            ..Default::default()
        };
        assert!(garbage.context().is_none());
        assert!(TraceHeaders::default().context().is_none());
    }

    #[test]
    fn without_an_exporter_the_upstream_context_is_passed_on() {
        let upstream = TraceHeaders {
            aws_trace_header: Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into()),
            ..Default::default()
        };
        let trace = ObjectTrace::new(Span::none(), Arc::new(upstream));
        assert_eq!(
            trace.propagate(&Span::none()),
            vec![(
                TRACEPARENT.to_owned(),
                "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01".to_owned()
            )]
        );
    }

    #[test]
    fn long_keys_are_capped_on_a_character_boundary() {
        assert_eq!(capped_key("g/short.txt"), "g/short.txt");
        let long = format!("g/{}", "é".repeat(600));
        let capped = capped_key(&long);
        assert!(capped.len() <= MAX_KEY_ATTRIBUTE_BYTES + "…".len());
        assert!(capped.ends_with('…'));
    }
}

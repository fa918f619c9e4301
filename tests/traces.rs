//! Traces: the real binary exports its spans over OTLP to an in-process collector while it
//! scans a clean and an infected object, each sent with its own upstream trace context.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeNameForSends, MessageSystemAttributeValue};
use bytes::Bytes;
use common::faults::{TcpFault, TcpFaultProxy, Upstream};
use common::*;
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// The upstream (uploader's) contexts the two messages arrive with.
const CLEAN_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLEAN_PARENT: &str = "b7ad6b7169203331";
const INFECTED_TRACE: &str = "5759e988bd862e3fe1be46a994272793";
const INFECTED_PARENT: &str = "53995c3f42cd8ad8";

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap()
}

/// Queues `body` on the inbound queue as part of the upstream trace `CLEAN_TRACE` (W3C).
async fn send_in_clean_trace(env: &TestEnv, body: String) -> aws_sdk_sqs::operation::send_message::SendMessageOutput {
    env.sqs
        .send_message()
        .queue_url(&env.inbound_url)
        .message_body(body)
        .message_attributes(
            "traceparent",
            string_attribute(&format!("00-{CLEAN_TRACE}-{CLEAN_PARENT}-01")),
        )
        .send()
        .await
        .unwrap()
}

/// The spans of one trace, by name, with helpers to walk it.
struct Trace<'a> {
    spans: Vec<&'a ExportedSpan>,
}

impl<'a> Trace<'a> {
    fn of(all: &'a [ExportedSpan], trace_id: &str) -> Self {
        Trace {
            spans: all.iter().filter(|span| span.trace_id == trace_id).collect(),
        }
    }

    fn one(&self, name: &str) -> &'a ExportedSpan {
        let found: Vec<_> = self.spans.iter().filter(|span| span.name == name).collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {name:?} span, got {}: {:#?}",
            found.len(),
            self.names()
        );
        found[0]
    }

    /// Names of `parent`'s children, in start order.
    fn children(&self, parent: &ExportedSpan) -> Vec<String> {
        let mut children: Vec<_> = self
            .spans
            .iter()
            .filter(|span| span.parent_span_id == parent.span_id)
            .collect();
        children.sort_by_key(|span| span.start_time_unix_nano);
        children
            .iter()
            .map(|span| match span.attributes.contains_key("pool") {
                true => format!("{}({})", span.name, attribute(span, "pool")),
                false => span.name.clone(),
            })
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.spans.iter().map(|span| span.name.clone()).collect()
    }
}

/// An attribute's value. The collector keeps values as the debug text of OTLP's `AnyValue`
/// (`Some(AnyValue { value: Some(StringValue("x")) })`); this unwraps strings and numbers.
fn attribute(span: &ExportedSpan, name: &str) -> String {
    let raw = span
        .attributes
        .get(name)
        .unwrap_or_else(|| panic!("span {:?} lacks {name}: {:?}", span.name, span.attributes));
    let inner = raw
        .split_once("value: Some(")
        .and_then(|(_, rest)| rest.strip_suffix(") })"))
        .unwrap_or_else(|| panic!("unexpected attribute form {raw}"));
    let (kind, value) = inner.split_once('(').expect("Kind(value)");
    let value = value.strip_suffix(')').expect("closing parenthesis");
    match kind {
        "StringValue" => serde_json::from_str(value).expect("a quoted string"),
        _ => value.to_owned(),
    }
}

/// `traceparent` of a queue message (message attributes) or of an SNS envelope.
fn traceparent(message: &aws_sdk_sqs::types::Message) -> Option<String> {
    message
        .message_attributes
        .as_ref()?
        .get("traceparent")?
        .string_value
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_object_is_one_trace_that_continues_its_sender_and_is_continued_downstream() {
    let mut collector = FakeCollectorServer::start().await.expect("collector");
    let env = TestEnv::new(false).await;
    let mut vars = env.avscan_env();
    vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector.endpoint());
    vars.insert("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into());
    let avscan = Avscan::start(&vars);

    let clean_key = "guid-1/report.txt";
    let clean_etag = env.put(clean_key, b"quarterly numbers\n").await;
    let infected_key = "guid-2/eicar.com";
    let infected_etag = env.put(infected_key, EICAR).await;
    let event = |key: &str, size: usize, etag: &str| {
        serde_json::json!({ "Records": [s3_record(&env.unprocessed, key, size as u64, etag)] }).to_string()
    };
    // The clean object's uploader speaks W3C; the infected one's X-Ray.
    let clean_sent = send_in_clean_trace(&env, event(clean_key, 18, &clean_etag)).await;
    let infected_sent = env
        .sqs
        .send_message()
        .queue_url(&env.inbound_url)
        .message_body(event(infected_key, EICAR.len(), &infected_etag))
        .message_system_attributes(
            MessageSystemAttributeNameForSends::AwsTraceHeader,
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let forwarded = env.receive(&env.validation_url, 1, WAIT).await;
    assert_eq!(forwarded.len(), 1, "log:\n{}", avscan.log_text());
    let notified = env.receive(&env.notifications_url, 1, WAIT).await;
    assert_eq!(notified.len(), 1, "log:\n{}", avscan.log_text());
    env.wait_inbound_empty(WAIT).await;
    // SIGTERM: avscan stops, then flushes what its exporter still holds.
    assert_eq!(avscan.stop().await, Some(0));

    let spans = collector.exported_spans(26, WAIT).await;

    // The clean object: one trace, continuing the sender's, with a span per stage.
    let clean = Trace::of(&spans, CLEAN_TRACE);
    let message = clean.one("message");
    assert_eq!(
        message.parent_span_id, CLEAN_PARENT,
        "does not continue the sender's span"
    );
    assert_eq!(message.kind, "SPAN_KIND_CONSUMER");
    assert_eq!(
        attribute(message, "messaging.message.id"),
        clean_sent.message_id.as_deref().unwrap()
    );
    assert_eq!(attribute(message, "attempt"), "1");
    assert_eq!(clean.children(message), ["receive", "object", "ack"]);
    let object = clean.one("object");
    assert_eq!(
        clean.children(object),
        ["wait(fetcher)", "fetch", "wait(scanner)", "scan", "route", "forward"]
    );
    assert_eq!(attribute(object, "aws.s3.bucket"), env.unprocessed.as_str());
    assert_eq!(attribute(object, "aws.s3.key"), clean_key);
    assert_eq!(attribute(object, "object.size"), "18");
    assert_eq!(attribute(object, "object.etag"), clean_etag);
    assert_eq!(attribute(object, "scan.verdict"), "clean");
    let scan = clean.one("scan");
    assert!(attribute(scan, "clamd.connection.id").parse::<u64>().is_ok());
    assert_eq!(attribute(scan, "scan.verdict"), "clean");
    assert_eq!(attribute(clean.one("fetch"), "object.content_length"), "18");
    assert_eq!(attribute(clean.one("route"), "route"), "forward");
    assert_eq!(attribute(clean.one("ack"), "ack"), "delete");
    // The validator continues the trace from avscan's forward span.
    let forward = clean.one("forward");
    assert_eq!(
        traceparent(&forwarded[0]).as_deref(),
        Some(format!("00-{CLEAN_TRACE}-{}-01", forward.span_id).as_str())
    );

    // The infected object: the X-Ray context continued, the quarantine's steps under it.
    let infected = Trace::of(&spans, INFECTED_TRACE);
    let message = infected.one("message");
    assert_eq!(message.parent_span_id, INFECTED_PARENT);
    assert_eq!(
        attribute(message, "messaging.message.id"),
        infected_sent.message_id.as_deref().unwrap()
    );
    let object = infected.one("object");
    assert_eq!(
        infected.children(object),
        ["wait(fetcher)", "fetch", "wait(scanner)", "scan", "route", "quarantine"]
    );
    assert_eq!(attribute(object, "scan.verdict"), "infected");
    assert_eq!(attribute(object, "scan.signature"), "Eicar-Test-Signature.UNOFFICIAL");
    assert_eq!(
        attribute(infected.one("scan"), "scan.signature"),
        "Eicar-Test-Signature.UNOFFICIAL"
    );
    let quarantine = infected.one("quarantine");
    assert_eq!(
        infected.children(quarantine),
        [
            "check_source",
            "check_copy",
            "check_report",
            "copy",
            "notify",
            "put_report",
            "delete_source"
        ]
    );
    // The notification carries the notify span's context (in the SNS envelope delivered to SQS).
    let envelope: Value = serde_json::from_str(notified[0].body.as_deref().unwrap()).unwrap();
    let notify = infected.one("notify");
    assert_eq!(
        envelope["MessageAttributes"]["traceparent"]["Value"],
        format!("00-{INFECTED_TRACE}-{}-01", notify.span_id)
    );

    // Nothing but these two traces, and every span ended before it was exported.
    let mut traces: Vec<&str> = spans.iter().map(|span| span.trace_id.as_str()).collect();
    traces.sort();
    traces.dedup();
    assert_eq!(traces, [CLEAN_TRACE, INFECTED_TRACE]);
    let by_id: HashMap<&str, &ExportedSpan> = spans.iter().map(|span| (span.span_id.as_str(), span)).collect();
    for span in &spans {
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
        if span.name != "message" {
            assert!(
                by_id.contains_key(span.parent_span_id.as_str()),
                "{} has no parent",
                span.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_still_in_flight_at_shutdown_is_released_and_its_trace_still_exported() {
    let mut collector = FakeCollectorServer::start().await.expect("collector");
    let proxy = TcpFaultProxy::start(Upstream::from_clamd_address(&clamd_address())).await;
    let env = TestEnv::new(false).await;
    let mut vars = env.avscan_env();
    vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector.endpoint());
    vars.insert("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into());
    vars.insert("CLAMD_ADDRESS".into(), proxy.clamd_address());
    vars.insert("SHUTDOWN_GRACE".into(), "1".into());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("avscan running", WAIT).await;

    // clamd goes silent mid-stream: the scan cannot finish before the shutdown.
    proxy.set(TcpFault::StallAfter(300_000));
    let key = "guid-1/big.bin";
    let body = vec![b'a'; 1 << 20];
    let etag = env.put(key, &body).await;
    let event = serde_json::json!({ "Records": [s3_record(&env.unprocessed, key, body.len() as u64, &etag)] });
    send_in_clean_trace(&env, event.to_string()).await;
    avscan.wait_for_log("record received", WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(avscan.stop().await, Some(0));

    // The message went back to the queue at once, not after its visibility timeout...
    let back = env.receive(&env.inbound_url, 1, Duration::from_secs(5)).await;
    assert_eq!(back.len(), 1, "message not released at shutdown");
    // ...and its spans, open when the shutdown began, were ended and exported.
    let spans = collector.exported_spans(7, WAIT).await;
    let trace = Trace::of(&spans, CLEAN_TRACE);
    let message = trace.one("message");
    assert!(
        message.events.iter().any(|event| event.name == "released at shutdown"),
        "no release event on {message:#?}"
    );
    let object = trace.one("object");
    assert_eq!(trace.children(message), ["receive", "object"]);
    let scan = trace.one("scan");
    assert_eq!(scan.parent_span_id, object.span_id);
    assert!(scan.end_time_unix_nano > 0);
}

/// An OTLP/HTTP receiver that keeps every request as (path, content type, body).
async fn otlp_http_receiver() -> (String, Arc<Mutex<Vec<(String, String, Bytes)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let kept = kept.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let content_type = request
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        kept.lock().unwrap().push((path, content_type, body));
                        // An empty ExportTraceServiceResponse.
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (endpoint, received)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_protocol_posts_protobuf_to_v1_traces() {
    let (endpoint, received) = otlp_http_receiver().await;
    let env = TestEnv::new(false).await;
    let mut vars = env.avscan_env();
    // No protocol named: OTLP over HTTP with protobuf, the base endpoint plus /v1/traces.
    vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint);
    let avscan = Avscan::start(&vars);
    let key = "guid-1/http.txt";
    let etag = env.put(key, b"exported over http\n").await;
    let event = serde_json::json!({ "Records": [s3_record(&env.unprocessed, key, 19, &etag)] });
    let sent = env
        .sqs
        .send_message()
        .queue_url(&env.inbound_url)
        .message_body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        env.receive(&env.validation_url, 1, WAIT).await.len(),
        1,
        "{}",
        avscan.log_text()
    );
    env.wait_inbound_empty(WAIT).await;
    let log = avscan.log.clone();
    assert_eq!(avscan.stop().await, Some(0));

    let received = received.lock().unwrap().clone();
    assert!(
        !received.is_empty(),
        "nothing was exported:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    for (path, content_type, _) in &received {
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
    }
    // Protobuf keeps strings as they are: the message id and the stage names are in there.
    let bodies: Vec<u8> = received.iter().flat_map(|(_, _, body)| body.to_vec()).collect();
    let contains = |needle: &str| bodies.windows(needle.len()).any(|w| w == needle.as_bytes());
    for needle in [
        sent.message_id.as_deref().unwrap(),
        "message",
        "object",
        "forward",
        key,
        "avscan",
    ] {
        assert!(contains(needle), "{needle:?} not in the exported spans");
    }
}

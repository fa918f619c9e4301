//! (d) Event parsing and key decoding, per message: what the poller spends on each body.

use std::hint::black_box;

use avscan_actors::event::{decode_event_key, parse_message, ParsedMessage};
use avscan_actors::testsuite::{encode_event_key, s3_event};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BUCKET: &str = "avscan-unprocessed";

fn events(c: &mut Criterion) {
    let key = "6f1c2a9e-0b7d-4a43-9a55-2f6f3c1d9e01/Quarterly report (final) ü+1.pdf";
    let s3 = s3_event(BUCKET, key, 1_048_576, "9b2cf535f27731c974343645a3985328");
    let sns = serde_json::json!({
        "Type": "Notification",
        "MessageId": "2f3a4b5c-0000-4000-8000-000000000001",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads",
        "Message": s3,
    })
    .to_string();
    let eventbridge = serde_json::json!({
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2026-11-29T12:00:00Z",
        "detail": {
            "bucket": { "name": BUCKET },
            "object": { "key": key, "size": 1_048_576, "etag": "9b2cf535f27731c974343645a3985328" }
        }
    })
    .to_string();
    let mut group = c.benchmark_group("event_parsing");
    group.throughput(Throughput::Elements(1));
    for (name, body) in [("s3", &s3), ("sns_wrapped", &sns), ("eventbridge", &eventbridge)] {
        assert!(
            matches!(parse_message(body, BUCKET), ParsedMessage::Records(ref records) if records.iter().all(Result::is_ok)),
            "{name} event does not parse"
        );
        group.bench_function(name, |b| b.iter(|| parse_message(black_box(body), BUCKET)));
    }
    let encoded = encode_event_key(key);
    assert_eq!(decode_event_key(&encoded).unwrap(), key);
    group.bench_function("key_decoding", |b| b.iter(|| decode_event_key(black_box(&encoded))));
    group.finish();
}

criterion_group!(benches, events);
criterion_main!(benches);

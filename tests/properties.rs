//! Property tests over the parsers that face untrusted input: the event parser (anything can be
//! put on the inbound queue), the clamd reply parser (a verdict must never be guessed) and the
//! archive guard (every uploaded byte passes it).
//! Every input gets a typed result, never a panic; only clamd's exact `stream: OK` is clean.

use avscan::clamd::parse_scan_reply;
use avscan_actors::archive_guard::{ArchiveGuard, GuardLimits};
use avscan_actors::event::{decode_event_key, parse_message, validate_key, ParsedMessage};
use avscan_actors::model::Verdict;
use proptest::prelude::*;

const BUCKET: &str = "unprocessed";

/// Strings that look a lot like events: JSON built from event-ish keys and values.
fn event_like() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        prop_oneof![
            Just("ObjectCreated:Put".to_owned()),
            Just(BUCKET.to_owned()),
            Just("guid/file.txt".to_owned()),
            Just("Object Created".to_owned()),
            Just("s3:TestEvent".to_owned()),
            ".{0,12}",
        ]
        .prop_map(serde_json::Value::from),
    ];
    let keys = prop_oneof![
        Just("Records"),
        Just("s3"),
        Just("object"),
        Just("bucket"),
        Just("name"),
        Just("key"),
        Just("size"),
        Just("eTag"),
        Just("eventName"),
        Just("Message"),
        Just("Type"),
        Just("detail"),
        Just("detail-type"),
        Just("Event"),
        Just("time"),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys.clone(), inner, 0..5).prop_map(|map| {
                serde_json::Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
    .prop_map(|value| value.to_string())
}

fn check_event(body: &str) {
    match parse_message(body, BUCKET) {
        ParsedMessage::TestEvent | ParsedMessage::Invalid(_) => {}
        ParsedMessage::Records(records) => {
            assert!(!records.is_empty(), "Records is never empty");
            for record in records.into_iter().flatten() {
                // Whatever got through is an object of our bucket with a valid key.
                assert_eq!(record.object.bucket, BUCKET);
                assert!(validate_key(&record.object.key).is_ok(), "{:?}", record.object.key);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_event_parser_never_panics_on_any_text(body in ".*") {
        check_event(&body);
    }

    #[test]
    fn the_event_parser_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_event(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn the_event_parser_handles_event_shaped_json(body in event_like()) {
        check_event(&body);
        // Also when SNS wraps it.
        check_event(&serde_json::json!({ "Type": "Notification", "Message": body }).to_string());
    }

    #[test]
    fn key_decoding_gives_a_key_or_a_typed_problem(encoded in ".{0,64}") {
        if let Ok(key) = decode_event_key(&encoded) {
            let _ = validate_key(&key);
        }
    }

    #[test]
    fn only_clamds_exact_ok_is_clean(reply in ".{0,80}", session in prop::option::of(0u64..1000)) {
        if let Ok(Verdict::Clean) = parse_scan_reply(&reply, session) {
            let expected = match session {
                Some(id) => format!("{id}: stream: OK"),
                None => "stream: OK".to_owned(),
            };
            prop_assert_eq!(reply, expected);
        }
    }

    #[test]
    fn clamd_replies_near_the_real_ones_get_a_verdict_or_an_error(
        id in 0u64..5,
        body in prop_oneof![
            Just("stream: OK".to_owned()),
            "stream: [A-Za-z.]{0,20} FOUND",
            "stream: .{0,20}",
            Just("INSTREAM size limit exceeded. ERROR".to_owned()),
            Just("COMMAND READ TIMED OUT".to_owned()),
            ".{0,30}",
        ],
    ) {
        let reply = format!("{id}: {body}");
        match parse_scan_reply(&reply, Some(1)) {
            Ok(Verdict::Clean) => prop_assert!(id == 1 && body == "stream: OK"),
            Ok(_) => prop_assert_eq!(id, 1),
            Err(_) => {}
        }
    }
}

proptest! {
    // Each case feeds the guard many small pieces; fewer cases keep this under a few seconds.
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_archive_guard_never_panics_whatever_the_bytes_and_chunking(
        bytes in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'P'), Just(0x1f), Just(0x8b)], 0..4096),
        cuts in prop::collection::vec(1usize..512, 1..16),
        // Headers mixed in, so that the parsing paths are taken, not only the search.
        header in prop_oneof![
            Just(b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec()),
            Just(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x08\x00".to_vec()),
            Just(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff".to_vec()),
        ],
        at in 0usize..4096,
    ) {
        let mut input = bytes;
        let at = at.min(input.len());
        input.splice(at..at, header);
        let mut guard = ArchiveGuard::new(GuardLimits { member_limit: 1024, inflate_budget: 64 * 1024 });
        let mut rest = &input[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*cut).min(rest.len()));
            guard.feed(piece);
            rest = tail;
        }
        let _ = guard.finish();
    }
}

//! The hostile-input corpus: events, keys and objects that try to break avscan, each case with
//! its defined outcome, run through the real binary, the real clamd and the emulator. Outcomes
//! are read back from the queues and buckets. A group runs as one avscan process and reports
//! every case that went wrong by name.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::archives::*;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);
const MIB: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// The object's event reaches the outbound queue.
    Forwarded(String),
    /// The object is quarantined with this reason and a signature starting with this prefix.
    Quarantined {
        key: String,
        reason: &'static str,
        signature: &'static str,
    },
    /// The message is logged and kept on the rejected-events queue, never processed.
    Rejected,
    /// Acknowledged without effect (test events, stale events).
    Dropped,
}

enum Input {
    /// Put in the unprocessed bucket; its S3 notification is the event.
    Upload { key: String, body: Vec<u8> },
    /// A message body queued by hand.
    Event(String),
    /// A record inside another case's message: nothing of its own to send.
    PartOfAbove,
}

struct Case {
    name: &'static str,
    input: Input,
    expect: Expect,
}

fn upload(name: &'static str, key: &str, body: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        input: Input::Upload {
            key: key.to_owned(),
            body,
        },
        expect,
    }
}

fn event(name: &'static str, body: impl Into<String>, expect: Expect) -> Case {
    Case {
        name,
        input: Input::Event(body.into()),
        expect,
    }
}

fn forwarded(key: &str) -> Expect {
    Expect::Forwarded(key.to_owned())
}

fn infected(key: &str, signature: &'static str) -> Expect {
    Expect::Quarantined {
        key: key.to_owned(),
        reason: "virus detected",
        signature,
    }
}

fn unscannable(key: &str, signature: &'static str) -> Expect {
    Expect::Quarantined {
        key: key.to_owned(),
        reason: "unscannable",
        signature,
    }
}

fn too_large(key: &str) -> Expect {
    Expect::Quarantined {
        key: key.to_owned(),
        reason: "file too large",
        signature: "",
    }
}

/// Runs `cases` through one avscan with `vars` and returns the cases whose outcome differs.
async fn run(env: &TestEnv, vars: &std::collections::HashMap<String, String>, cases: Vec<Case>) {
    let avscan = Avscan::start(vars);
    for case in &cases {
        match &case.input {
            Input::Upload { key, body } => {
                env.put(key, body).await;
            }
            Input::Event(body) => env.send_inbound(body).await,
            Input::PartOfAbove => {}
        }
    }
    let expected_forwards = cases
        .iter()
        .filter(|case| matches!(case.expect, Expect::Forwarded(_)))
        .count();
    let expected_rejects = cases.iter().filter(|case| case.expect == Expect::Rejected).count();
    for case in &cases {
        if let Expect::Quarantined { key, .. } = &case.expect {
            env.wait_for_object(&env.quarantine, &format!("{key}.report.json"), WAIT)
                .await;
        }
    }
    let forwarded = env.drain_forwarded(expected_forwards, WAIT).await;
    env.wait_inbound_empty(WAIT).await;
    let rejected: Vec<String> = env
        .drain(&env.rejected_url, expected_rejects, WAIT)
        .await
        .into_iter()
        .filter_map(|m| m.body)
        .collect();
    let quarantined = env.keys(&env.quarantine).await;
    let notified = env
        .drain_notified(
            cases
                .iter()
                .filter(|c| matches!(c.expect, Expect::Quarantined { .. }))
                .count(),
            WAIT,
        )
        .await;

    let mut failures = Vec::new();
    let mut expected_forwarded = BTreeMap::new();
    let mut expected_quarantine = Vec::new();
    for case in &cases {
        let problem = match &case.expect {
            Expect::Forwarded(key) => {
                expected_forwarded.insert(key.clone(), 1);
                (forwarded.get(key) != Some(&1)).then(|| format!("forwarded {:?} times", forwarded.get(key)))
            }
            Expect::Quarantined { key, reason, signature } => {
                let report_key = format!("{key}.report.json");
                expected_quarantine.extend([key.clone(), report_key.clone()]);
                match env.get(&env.quarantine, &report_key).await {
                    None => Some("no report".to_owned()),
                    Some(bytes) => {
                        let report: Value = serde_json::from_slice(&bytes).unwrap();
                        let signature_found = report["signature"].as_str().unwrap_or("");
                        if report["reason"] != *reason || !signature_found.starts_with(signature) {
                            Some(format!("report says {} / {signature_found}", report["reason"]))
                        } else if report["key"] != json!(key) {
                            Some(format!("report names {}", report["key"]))
                        } else if !quarantined.contains(key) {
                            Some("object not in quarantine".to_owned())
                        } else if !notified.contains_key(key) {
                            Some("no notification".to_owned())
                        } else {
                            None
                        }
                    }
                }
            }
            Expect::Rejected => match &case.input {
                Input::Event(body) => (!rejected.contains(body)).then(|| "not on the rejected queue".to_owned()),
                _ => Some("only a queued message can be rejected".to_owned()),
            },
            Expect::Dropped => match &case.input {
                Input::Event(body) => rejected.contains(body).then(|| "was rejected".to_owned()),
                _ => None,
            },
        };
        if let Some(problem) = problem {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    // Nothing beyond the expected: no other object forwarded or quarantined.
    for (key, count) in &forwarded {
        if !expected_forwarded.contains_key(key) {
            failures.push(format!("{key:?} forwarded {count} times, unexpectedly"));
        }
    }
    expected_quarantine.sort();
    if quarantined != expected_quarantine {
        failures.push(format!("quarantine holds {quarantined:?}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}\nlog:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n"),
        avscan.log_text()
    );
    assert_eq!(avscan.stop().await, Some(0));
}

fn s3_event_body(env: &TestEnv, key: &str, size: u64, etag: &str) -> String {
    json!({ "Records": [s3_record(&env.unprocessed, key, size, etag)] }).to_string()
}

#[tokio::test]
async fn hostile_events_are_rejected_or_handled_as_defined() {
    let env = TestEnv::new(false).await;
    let mut objects = BTreeMap::new();
    for name in [
        "sns",
        "eventbridge",
        "small-claim",
        "huge-claim",
        "padded",
        "multi-clean",
    ] {
        let key = format!("guid-ev/{name}.txt");
        let etag = env.put(&key, format!("clean {name}").as_bytes()).await;
        objects.insert(name, (key, etag));
    }
    let evil_etag = env.put("guid-ev/multi-evil.com", EICAR).await;
    let replaced_etag = env.put("guid-ev/replaced.txt", b"first version").await;
    env.put("guid-ev/replaced.txt", b"second version").await;
    let body = |name: &str| {
        let (key, etag) = &objects[name];
        s3_event_body(&env, key, 10, etag)
    };
    let record = |name: &str| {
        let (key, etag) = &objects[name];
        s3_record(&env.unprocessed, key, 10, etag)
    };
    let key = |name: &str| objects[name].0.clone();
    let mut eventbridge = json!({
        "version": "0", "source": "aws.s3", "detail-type": "Object Created",
        "time": "2026-11-29T00:00:00Z",
        "detail": { "bucket": { "name": env.unprocessed },
                    "object": { "key": key("eventbridge"), "size": 10, "etag": objects["eventbridge"].1 } }
    });
    let mut huge = record("huge-claim");
    huge["s3"]["object"]["size"] = json!(50u64 * 1024 * 1024 * 1024);
    let mut padded = record("padded");
    padded["padding"] = json!("p".repeat(250 * 1024));
    let mut removed = record("sns");
    removed["eventName"] = json!("ObjectRemoved:Delete");
    let mut other_bucket = record("sns");
    other_bucket["s3"]["bucket"]["name"] = json!("someone-elses-bucket");
    let mut key_number = record("sns");
    key_number["s3"]["object"]["key"] = json!(42);
    let mut size_string = record("sns");
    size_string["s3"]["object"]["size"] = json!("ten");
    let mut no_key = record("sns");
    no_key["s3"]["object"].as_object_mut().unwrap().remove("key");
    let mut bad_percent = record("sns");
    bad_percent["s3"]["object"]["key"] = json!("guid-ev/%FF%FE.txt");
    let sns = json!({ "Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:000000000000:t",
                      "Message": body("sns") });
    let sns_broken = json!({ "Type": "Notification", "Message": "{\"Records\": [" });
    eventbridge["detail"]["object"]["key"] = json!(key("eventbridge"));

    let cases = vec![
        event("malformed json", r#"{"Records": [ {"s3": "#, Expect::Rejected),
        event("not json at all", "hello, scanner", Expect::Rejected),
        event("lone utf-16 surrogate", r#"{"Records": "\ud800"}"#, Expect::Rejected),
        event("json array", "[]", Expect::Rejected),
        event("json null", "null", Expect::Rejected),
        event("empty object", "{}", Expect::Rejected),
        event("empty records", r#"{"Records": []}"#, Expect::Rejected),
        event("records not an array", r#"{"Records": "x"}"#, Expect::Rejected),
        event("records null", r#"{"Records": null}"#, Expect::Rejected),
        event(
            "record without s3",
            r#"{"Records": [{"eventName": "ObjectCreated:Put"}]}"#,
            Expect::Rejected,
        ),
        event(
            "record without a key",
            json!({ "Records": [no_key] }).to_string(),
            Expect::Rejected,
        ),
        event(
            "key of the wrong type",
            json!({ "Records": [key_number] }).to_string(),
            Expect::Rejected,
        ),
        event(
            "size of the wrong type",
            json!({ "Records": [size_string] }).to_string(),
            Expect::Rejected,
        ),
        event(
            "key not utf-8 once decoded",
            json!({ "Records": [bad_percent] }).to_string(),
            Expect::Rejected,
        ),
        event(
            "object removed",
            json!({ "Records": [removed] }).to_string(),
            Expect::Rejected,
        ),
        event(
            "another bucket",
            json!({ "Records": [other_bucket] }).to_string(),
            Expect::Rejected,
        ),
        event(
            "s3 test event",
            json!({ "Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": env.unprocessed }).to_string(),
            Expect::Dropped,
        ),
        event("sns-wrapped", sns.to_string(), forwarded(&key("sns"))),
        event("sns-wrapped, broken inside", sns_broken.to_string(), Expect::Rejected),
        event("eventbridge", eventbridge.to_string(), forwarded(&key("eventbridge"))),
        event(
            "event size smaller than the object",
            body("small-claim").replace("\"size\":10", "\"size\":1"),
            forwarded(&key("small-claim")),
        ),
        event(
            "event size over MAX_FILE_SIZE for a small object",
            json!({ "Records": [huge] }).to_string(),
            forwarded(&key("huge-claim")),
        ),
        event(
            "250 KB body",
            json!({ "Records": [padded] }).to_string(),
            forwarded(&key("padded")),
        ),
        event(
            "stale event (object replaced since)",
            s3_event_body(&env, "guid-ev/replaced.txt", 13, &replaced_etag),
            Expect::Dropped,
        ),
        event(
            "object that does not exist",
            s3_event_body(
                &env,
                "guid-ev/never-uploaded.txt",
                5,
                "0123456789abcdef0123456789abcdef",
            ),
            Expect::Dropped,
        ),
    ];
    // One message, three records: clean, infected, and an invalid key (kept on the rejected queue).
    let mixed = json!({ "Records": [
        record("multi-clean"),
        s3_record(&env.unprocessed, "guid-ev/multi-evil.com", EICAR.len() as u64, &evil_etag),
        s3_record(&env.unprocessed, "../../etc/passwd", 5, "x"),
    ]})
    .to_string();
    let mut cases = cases;
    cases.push(event(
        "multi-record, mixed: the invalid record",
        mixed,
        Expect::Rejected,
    ));
    cases.push(Case {
        name: "multi-record, mixed: the clean record",
        input: Input::PartOfAbove,
        expect: forwarded(&key("multi-clean")),
    });
    cases.push(Case {
        name: "multi-record, mixed: the infected record",
        input: Input::PartOfAbove,
        expect: infected("guid-ev/multi-evil.com", "Eicar-Test-Signature"),
    });
    run(&env, &env.avscan_env(), cases).await;
}

#[tokio::test]
async fn hostile_keys_read_the_right_object_or_are_rejected() {
    let env = TestEnv::new(true).await;
    let longest = format!("guid-k/{}", "l".repeat(event_key_limit() - "guid-k/".len()));
    let long_evil = format!("guid-k/{}.com", "e".repeat(900));
    let mut cases = vec![
        upload(
            "space",
            "guid-k/with space.txt",
            b"clean".to_vec(),
            forwarded("guid-k/with space.txt"),
        ),
        upload(
            "plus",
            "guid-k/plus+sign.txt",
            b"clean".to_vec(),
            forwarded("guid-k/plus+sign.txt"),
        ),
        upload(
            "percent",
            "guid-k/percent%41%2F.txt",
            b"clean".to_vec(),
            forwarded("guid-k/percent%41%2F.txt"),
        ),
        upload(
            "unicode",
            "guid-k/ünïcødé-文件-📄.txt",
            b"clean".to_vec(),
            forwarded("guid-k/ünïcødé-文件-📄.txt"),
        ),
        upload(
            "nested folders",
            "guid-k/a/b/c/d.txt",
            b"clean".to_vec(),
            forwarded("guid-k/a/b/c/d.txt"),
        ),
        upload("longest allowed key", &longest, b"clean".to_vec(), forwarded(&longest)),
        upload(
            "quotes and html",
            "guid-k/\"<b>&'.txt",
            b"clean".to_vec(),
            forwarded("guid-k/\"<b>&'.txt"),
        ),
        upload(
            "infected, space and plus",
            "guid-k/evil copy+1.com",
            EICAR.to_vec(),
            infected("guid-k/evil copy+1.com", "Eicar-Test-Signature"),
        ),
        upload(
            "infected, unicode and percent",
            "guid-k/ëvïl %25 文件.com",
            EICAR.to_vec(),
            infected("guid-k/ëvïl %25 文件.com", "Eicar-Test-Signature"),
        ),
        upload(
            "infected, long key",
            &long_evil,
            EICAR.to_vec(),
            infected(&long_evil, "Eicar-Test-Signature"),
        ),
    ];
    // Keys S3 would not store, or that must never be processed: events queued by hand.
    let too_long = format!("guid-k/{}", "x".repeat(event_key_limit() + 1 - "guid-k/".len()));
    let s3_longest = format!("guid-k/{}", "y".repeat(1024 - "guid-k/".len()));
    let invalid = [
        ("parent segments", "../../x"),
        ("current segment", "./x"),
        ("parent segment inside", "guid-k/../x"),
        ("current segment inside", "guid-k/./x"),
        ("newline", "guid-k/new\nline.txt"),
        ("nul", "guid-k/nul\0.txt"),
        ("bell", "guid-k/bell\u{7}.txt"),
        ("escape sequence", "guid-k/\u{1b}[31mred.txt"),
        ("delete character", "guid-k/del\u{7f}.txt"),
        ("trailing slash", "guid-k/folder/"),
        ("single segment", "just-a-file.txt"),
        ("double slash", "guid-k//x.txt"),
        ("leading slash", "/guid-k/x.txt"),
        ("empty key", ""),
        ("one byte too long", too_long.as_str()),
        (
            "S3's longest key, 1024 bytes: its report key would not fit",
            s3_longest.as_str(),
        ),
    ];
    for (name, key) in invalid {
        let record = s3_record(&env.unprocessed, key, 5, "0123456789abcdef0123456789abcdef");
        cases.push(event(
            name,
            json!({ "Records": [record] }).to_string(),
            Expect::Rejected,
        ));
    }
    run(&env, &env.avscan_env(), cases).await;
}

fn event_key_limit() -> usize {
    avscan_actors::event::MAX_KEY_BYTES
}

/// `size` bytes of clean filler with the test marker at `at`.
fn marker_at(size: usize, at: usize) -> Vec<u8> {
    let mut body: Vec<u8> = (0..size).map(|i| b'a' + (i % 23) as u8).collect();
    body[at..at + TEST_MARKER.len()].copy_from_slice(TEST_MARKER);
    body
}

#[tokio::test]
async fn hostile_objects_get_a_certain_verdict_or_fail_closed() {
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("MAX_FILE_SIZE".into(), "21".into());
    vars.insert("CLAMD_MAX_FILE_SIZE".into(), "400".into());
    vars.insert("CLAMD_CHUNK_SIZE".into(), "65536".into());
    let limit = 21 * MIB;
    let encrypted = zip(&[Member {
        name: "secret.txt",
        data: b"encrypted bytes would be here",
        deflate: false,
        declared: None,
        encrypted: true,
    }]);
    let cases = vec![
        upload(
            "zero bytes",
            "guid-o/empty.txt",
            Vec::new(),
            forwarded("guid-o/empty.txt"),
        ),
        upload(
            "exactly MAX_FILE_SIZE",
            "guid-o/at-limit.bin",
            marker_free(limit),
            forwarded("guid-o/at-limit.bin"),
        ),
        upload(
            "one byte over MAX_FILE_SIZE",
            "guid-o/over-limit.bin",
            marker_free(limit + 1),
            too_large("guid-o/over-limit.bin"),
        ),
        upload(
            "marker across a chunk boundary",
            "guid-o/boundary.bin",
            marker_at(200_000, 65536 - 10),
            infected("guid-o/boundary.bin", "Avscan.Test.Marker"),
        ),
        upload(
            "marker deep in 20 MB",
            "guid-o/deep.bin",
            marker_at(20_000_000, 19_990_000),
            infected("guid-o/deep.bin", "Avscan.Test.Marker"),
        ),
        upload(
            "eicar in a zip",
            "guid-o/eicar.zip",
            zip_one("eicar.com", EICAR),
            infected("guid-o/eicar.zip", "Eicar-Test-Signature"),
        ),
        upload(
            "eicar in a nested zip",
            "guid-o/nested.zip",
            zip_one("inner.zip", &zip_one("eicar.com", EICAR)),
            infected("guid-o/nested.zip", "Eicar-Test-Signature"),
        ),
        upload(
            "eicar in a gzip",
            "guid-o/eicar.gz",
            gzip(EICAR),
            infected("guid-o/eicar.gz", "Eicar-Test-Signature"),
        ),
        upload(
            "eicar in a tar",
            "guid-o/eicar.tar",
            tar("eicar.com", EICAR),
            infected("guid-o/eicar.tar", "Eicar-Test-Signature"),
        ),
        upload(
            "eicar in a tar.gz",
            "guid-o/eicar.tgz",
            gzip(&tar("eicar.com", EICAR)),
            infected("guid-o/eicar.tgz", "Eicar-Test-Signature"),
        ),
        upload(
            "encrypted zip",
            "guid-o/encrypted.zip",
            encrypted,
            unscannable("guid-o/encrypted.zip", "Heuristics.Encrypted"),
        ),
        upload(
            "clean zip",
            "guid-o/clean.zip",
            zip_one("readme.txt", b"nothing to see"),
            forwarded("guid-o/clean.zip"),
        ),
    ];
    run(&env, &vars, cases).await;
}

/// `size` bytes of clean filler.
fn marker_free(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 23) as u8).collect()
}

/// clamd's limits, small, on a clamd of the test's own: every limit hit is unscannable, never
/// clean, and the zip hole (a member over MaxFileSize passes as OK) is closed by avscan.
fn limited_clamd() -> LocalClamd {
    let mut clamd = LocalClamd::configure(
        "MaxFileSize 10M\nMaxScanSize 20M\nStreamMaxLength 60M\nMaxRecursion 4\nMaxFiles 20\n\
         AlertExceedsMax yes\nAlertEncrypted yes",
    );
    clamd.start();
    clamd
}

fn archive_limit_cases() -> Vec<Case> {
    let hole = hole_zip(11 * MIB);
    let mut deep = b"clean at the bottom".to_vec();
    for level in 0..6 {
        deep = zip_one(&format!("level{level}.zip"), &deep);
    }
    let many: Vec<(String, Vec<u8>)> = (0..30).map(|i| (format!("f{i}.txt"), vec![b'x'; 10])).collect();
    let many = zip(&many
        .iter()
        .map(|(name, data)| Member::deflated(name, data))
        .collect::<Vec<_>>());
    let nine = vec![0u8; 9 * MIB];
    let big_total = zip(&[
        Member::deflated("a.bin", &nine),
        Member::deflated("b.bin", &nine),
        Member::deflated("c.bin", &nine),
    ]);
    const HOLE: &str = "Avscan.Archive.MemberExceedsLimit";
    vec![
        upload(
            "zip hole",
            "guid-l/hole.zip",
            hole.clone(),
            unscannable("guid-l/hole.zip", HOLE),
        ),
        upload(
            "zip hole after junk",
            "guid-l/junk-hole.bin",
            [vec![b'j'; 5000], hole.clone()].concat(),
            unscannable("guid-l/junk-hole.bin", HOLE),
        ),
        upload(
            "zip hole inside a zip",
            "guid-l/nested-hole.zip",
            zip_one("inner.zip", &hole),
            unscannable("guid-l/nested-hole.zip", HOLE),
        ),
        upload(
            "zip hole inside a gzip",
            "guid-l/hole.zip.gz",
            gzip(&hole),
            unscannable("guid-l/hole.zip.gz", HOLE),
        ),
        upload(
            "zip hole inside a tar",
            "guid-l/hole.tar",
            tar("hole.zip", &hole),
            unscannable("guid-l/hole.tar", HOLE),
        ),
        upload(
            "recursion limit",
            "guid-l/deep.zip",
            deep,
            unscannable("guid-l/deep.zip", "Heuristics.Limits.Exceeded.MaxRecursion"),
        ),
        upload(
            "file-count limit",
            "guid-l/many.zip",
            many,
            unscannable("guid-l/many.zip", "Heuristics.Limits.Exceeded.MaxFiles"),
        ),
        upload(
            "scan-size limit",
            "guid-l/big-total.zip",
            big_total,
            unscannable("guid-l/big-total.zip", "Heuristics.Limits.Exceeded.MaxScanSize"),
        ),
        upload(
            "gzip over MaxFileSize",
            "guid-l/zeros.gz",
            gzip(&vec![0u8; 11 * MIB]),
            unscannable("guid-l/zeros.gz", "Heuristics.Limits.Exceeded.MaxFileSize"),
        ),
        upload(
            "zip member within the limits",
            "guid-l/fine.zip",
            zip_one("fine.bin", &vec![0u8; 5 * MIB]),
            forwarded("guid-l/fine.zip"),
        ),
    ]
}

#[tokio::test]
async fn clamd_limits_are_unscannable_and_the_zip_hole_is_closed() {
    let clamd = limited_clamd();
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), clamd.address());
    vars.insert("CLAMD_MAX_FILE_SIZE".into(), "10".into());
    // Within the clamd's StreamMaxLength, as avscan requires.
    vars.insert("MAX_FILE_SIZE".into(), "60".into());
    run(&env, &vars, archive_limit_cases()).await;
}

#[tokio::test]
async fn the_zip_hole_is_real_clamd_passes_it_and_avscan_refuses_a_limit_above_clamds() {
    use avscan_actors::ports::{ObjectBody, ScanEngine};
    use futures::StreamExt;

    let clamd = limited_clamd();
    // clamd alone: the hole zip is `stream: OK`, though its member holds the test marker. Only
    // the archive guard stands between it and the outbound queue (see the corpus above).
    let client = avscan::clamd::Clamd::new(clamd.address().parse().unwrap(), 65536, Duration::from_secs(10));
    client.wait_ready(Duration::from_secs(30)).await.unwrap();
    let hole = hole_zip(11 * MIB);
    let mut session = client.connect().await.unwrap();
    let outcome = session
        .scan(ObjectBody {
            content_length: hole.len() as u64,
            chunks: futures::stream::iter([Ok(bytes::Bytes::from(hole))]).boxed(),
        })
        .await
        .unwrap();
    assert_eq!(
        outcome.verdict,
        avscan_actors::model::Verdict::Clean,
        "clamd no longer has the hole: the archive guard may be revisited"
    );

    // The guard's limit must not exceed clamd's MaxFileSize: avscan checks at start-up and
    // refuses, naming the variable.
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), clamd.address());
    vars.insert("CLAMD_MAX_FILE_SIZE".into(), "11".into());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("CLAMD_MAX_FILE_SIZE (11 MB)", WAIT).await;
    assert!(avscan.log_text().contains("Heuristics.Limits.Exceeded.MaxFileSize"));
    assert_eq!(avscan.wait_exit().await, Some(1));
}

//! Backfill and audit against the real stack. A bucket of 5,000 objects under several prefixes,
//! with odd keys (spaces, `+`, `%`, Unicode): `--dry-run` counts one prefix; a backfill of it
//! holds its rate (measured from the queue's SentTimestamp); an S3 Inventory manifest, written
//! here in S3's format, gives the same events as listing; a backfill killed halfway (SIGKILL)
//! and resumed gets every object of the prefix scanned (infected ones quarantined, clean ones
//! forwarded as for a real upload) and none outside it; `--action report` forwards nothing
//! clean again. `avscan audit` resends only the stale, untagged objects; every call the
//! backfill and the audit make is allowed by `deploy/iam-policy-backfill.json`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use common::faults::HttpFaultProxy;
use common::{endpoint, iam, record_keys, run_command_output, Avscan, TestEnv, EICAR};
use futures::StreamExt;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);

/// The key of object `i` of `prefix`: names with spaces, `+`, `%` and Unicode among plain ones.
fn key_of(prefix: &str, i: usize) -> String {
    match i % 5 {
        0 => format!("{prefix}file-{i}.txt"),
        1 => format!("{prefix}with space {i}.txt"),
        2 => format!("{prefix}plus+{i}.txt"),
        3 => format!("{prefix}percent%25-{i}.txt"),
        _ => format!("{prefix}ünïcødé-{i}.bin"),
    }
}

fn infected(i: usize) -> bool {
    i % 50 == 7
}

/// Uploads `count` objects of `prefix` (every fiftieth from the eighth on is EICAR); returns
/// each key with its size.
async fn upload_prefix(env: &TestEnv, prefix: &str, count: usize) -> BTreeMap<String, usize> {
    let uploads = (0..count).map(|i| {
        let key = key_of(prefix, i);
        let body = if infected(i) {
            EICAR.to_vec()
        } else {
            format!("object {i} of {prefix}").into_bytes()
        };
        async move {
            env.put(&key, &body).await;
            (key, body.len())
        }
    });
    futures::stream::iter(uploads).buffer_unordered(32).collect().await
}

/// Receives everything on `queue_url` (until `expected` arrived and a second passed in
/// silence): each message's body with its SentTimestamp, ms.
async fn receive_all(env: &TestEnv, queue_url: &str, expected: usize) -> Vec<(Value, u64)> {
    received_with_attributes(env, queue_url, expected)
        .await
        .into_iter()
        .map(|(body, sent, _)| (body, sent))
        .collect()
}

/// As [`receive_all`], with each message's string attributes.
async fn received_with_attributes(
    env: &TestEnv,
    queue_url: &str,
    expected: usize,
) -> Vec<(Value, u64, BTreeMap<String, String>)> {
    let deadline = std::time::Instant::now() + WAIT;
    let mut received = Vec::new();
    let mut quiet = 0;
    while std::time::Instant::now() < deadline && (received.len() < expected || quiet < 2) {
        let output = env
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(if received.len() < expected { 1 } else { 0 })
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let messages = output.messages.unwrap_or_default();
        quiet = if messages.is_empty() { quiet + 1 } else { 0 };
        for message in messages {
            let sent: u64 = message.attributes().unwrap()[&MessageSystemAttributeName::SentTimestamp]
                .parse()
                .unwrap();
            let attributes = message
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.clone(), value.string_value().unwrap_or_default().to_owned()))
                .collect();
            received.push((serde_json::from_str(message.body().unwrap()).unwrap(), sent, attributes));
            env.sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    received
}

/// (decoded key, eTag, size) of each record of the events.
fn objects_of(events: &[(Value, u64)]) -> BTreeSet<(String, String, u64)> {
    events
        .iter()
        .flat_map(|(event, _)| event["Records"].as_array().unwrap().clone())
        .map(|record| {
            let object = &record["s3"]["object"];
            let key = avscan_actors::event::decode_event_key(object["key"].as_str().unwrap()).unwrap();
            (
                key,
                object["eTag"].as_str().unwrap().to_owned(),
                object["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn create_queue(env: &TestEnv, name: &str) -> String {
    env.sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// Writes an S3 Inventory of `bucket` (CSV, gzipped, in two files) into `inventory_bucket`;
/// returns the manifest's address.
async fn write_inventory(env: &TestEnv, bucket: &str, inventory_bucket: &str) -> String {
    let mut rows = Vec::new();
    let mut token = None;
    loop {
        let page = env
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        for object in page.contents() {
            let key = percent_encoding::utf8_percent_encode(object.key().unwrap(), percent_encoding::NON_ALPHANUMERIC);
            let modified = object
                .last_modified()
                .unwrap()
                .fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime)
                .unwrap();
            rows.push(format!(
                "\"{bucket}\",\"{key}\",\"{}\",\"{modified}\",\"{}\"\n",
                object.size().unwrap(),
                object.e_tag().unwrap().trim_matches('"')
            ));
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let mut files = Vec::new();
    for (index, chunk) in rows.chunks(rows.len().div_ceil(2)).enumerate() {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(chunk.concat().as_bytes()).unwrap();
        let key = format!("{bucket}/inventory/data/{index}.csv.gz");
        env.s3
            .put_object()
            .bucket(inventory_bucket)
            .key(&key)
            .body(ByteStream::from(gzip.finish().unwrap()))
            .send()
            .await
            .unwrap();
        files.push(json!({ "key": key, "size": 0, "MD5checksum": "" }));
    }
    let manifest = json!({
        "sourceBucket": bucket,
        "destinationBucket": format!("arn:aws:s3:::{inventory_bucket}"),
        "version": "2016-11-30",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag",
        "files": files,
    });
    let key = format!("{bucket}/inventory/manifest.json");
    env.s3
        .put_object()
        .bucket(inventory_bucket)
        .key(&key)
        .body(ByteStream::from(manifest.to_string().into_bytes()))
        .send()
        .await
        .unwrap();
    format!("s3://{inventory_bucket}/{key}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_holds_its_rate_survives_a_kill_and_gets_every_object_of_its_prefix_scanned() {
    let env = TestEnv::new(false).await;
    let bucket = env.unprocessed.clone();
    let mut uploaded = upload_prefix(&env, "p1/", 400).await;
    let rescanned = upload_prefix(&env, "p0/", 20).await;
    for prefix in ["p2/", "p3/", "p4/", "p5/", "p6/", "p7/", "p8/"] {
        uploaded.extend(upload_prefix(&env, prefix, 654).await);
    }
    env.put("p1/", b"").await; // a folder marker: no upload to scan
    assert_eq!(uploaded.len() + rescanned.len() + 2, 5_000);
    let p1: BTreeMap<&String, &usize> = uploaded.iter().filter(|(key, _)| key.starts_with("p1/")).collect();
    let p1_bytes: usize = p1.values().copied().sum();
    let prefix_target = format!("s3://{bucket}/p1/");

    // --dry-run counts the prefix; nothing is enqueued.
    let mut variables = env.avscan_env();
    let dry = ["backfill", &prefix_target, "--dry-run"];
    let (code, stdout, stderr) = run_command_output(&variables, &dry).await;
    assert_eq!(code, Some(0), "{stderr}");
    let expected = format!("backfill: listed 401, would enqueue 400, skipped 1, bytes {p1_bytes},");
    assert!(stdout.starts_with(&expected), "{stdout}");

    // The rate, measured on a queue nobody reads.
    let rate_queue = create_queue(&env, &format!("{}-rate", env.inbound_name)).await;
    variables.insert("VIRUS_SCANNING_QUEUE_NAME".into(), rate_queue.clone());
    let (code, stdout, stderr) = run_command_output(&variables, &["backfill", &prefix_target, "--rate", "100"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("backfill: listed 401, enqueued 400, skipped 1,"),
        "{stdout}"
    );
    let listed = receive_all(&env, &rate_queue, 400).await;
    let sent: Vec<u64> = listed.iter().map(|(_, sent)| *sent).collect();
    let spread = (sent.iter().max().unwrap() - sent.iter().min().unwrap()) as f64 / 1000.0;
    // 400 events at 100/s take 3.9 s at least (the first ten go at once).
    assert!(spread >= 3.5, "400 events in {spread} s: faster than 100/s");
    let listed_objects = objects_of(&listed);
    let expected_objects: BTreeSet<(String, String, u64)> = listed_objects.clone();
    assert_eq!(listed_objects.len(), 400);
    assert!(listed_objects.iter().all(|(key, _, _)| key.starts_with("p1/")));

    // An inventory gives the same events as listing.
    let inventory_bucket = format!("{}-inventory", bucket.trim_end_matches("-unprocessed"));
    env.s3.create_bucket().bucket(&inventory_bucket).send().await.unwrap();
    let manifest = write_inventory(&env, &bucket, &inventory_bucket).await;
    let inventory_queue = create_queue(&env, &format!("{}-inventory", env.inbound_name)).await;
    variables.insert("VIRUS_SCANNING_QUEUE_NAME".into(), inventory_queue.clone());
    let inventory = ["backfill", &prefix_target, "--inventory", &manifest, "--rate", "2000"];
    let (code, stdout, stderr) = run_command_output(&variables, &inventory).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("backfill: listed 401, enqueued 400, skipped 1,"),
        "{stdout}"
    );
    assert_eq!(
        objects_of(&receive_all(&env, &inventory_queue, 400).await),
        expected_objects
    );

    // Killed halfway, resumed: every object of the prefix scanned, none outside it.
    let variables = env.avscan_env();
    let avscan = Avscan::start(&variables);
    let checkpoint = std::env::temp_dir().join(format!("avscan-backfill-{bucket}.json"));
    let checkpoint_arg = checkpoint.display().to_string();
    let mut killed = Command::new(env!("CARGO_BIN_EXE_avscan"))
        .args([
            "backfill",
            &prefix_target,
            "--rate",
            "40",
            "--checkpoint",
            &checkpoint_arg,
        ])
        .env_clear()
        .envs(&variables)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    killed.kill().unwrap();
    killed.wait().unwrap();
    let halfway: Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    let enqueued_before = halfway["enqueued"].as_u64().unwrap();
    assert!((50..400).contains(&enqueued_before), "{halfway}");
    let resume = [
        "backfill",
        &prefix_target,
        "--resume",
        "--rate",
        "500",
        "--checkpoint",
        &checkpoint_arg,
    ];
    let (code, stdout, stderr) = run_command_output(&variables, &resume).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("backfill: listed 401, enqueued 400, skipped 1,"),
        "{stdout}"
    );
    assert!(!checkpoint.exists(), "the checkpoint of a finished run is removed");

    let forwarded = env.receive(&env.validation_url, 400 - 8, WAIT).await;
    env.wait_inbound_empty(WAIT).await;
    let mut forwarded_keys: BTreeSet<String> = forwarded.iter().flat_map(record_keys).collect();
    forwarded_keys.extend(
        env.receive(&env.validation_url, usize::MAX, Duration::from_secs(2))
            .await
            .iter()
            .flat_map(record_keys),
    );
    let quarantined: BTreeSet<String> = env
        .keys(&env.quarantine)
        .await
        .into_iter()
        .filter_map(|key| key.strip_suffix(".report.json").map(str::to_owned))
        .collect();
    for (i, key) in (0..400).map(|i| (i, key_of("p1/", i))) {
        if infected(i) {
            assert!(quarantined.contains(&key) && !forwarded_keys.contains(&key), "{key}");
        } else {
            assert!(
                forwarded_keys.contains(&key) && !quarantined.contains(&key),
                "{key} not forwarded"
            );
        }
    }
    assert!(forwarded_keys
        .iter()
        .chain(&quarantined)
        .all(|key| key.starts_with("p1/")));
    // Forwarded as S3 would have sent it: the record's key encoded as S3 encodes it, its size, ETag.
    let record = &serde_json::from_str::<Value>(forwarded[0].body().unwrap()).unwrap()["Records"][0];
    assert_eq!(record["eventName"], "ObjectCreated:Put");
    let key = avscan_actors::event::decode_event_key(record["s3"]["object"]["key"].as_str().unwrap()).unwrap();
    assert_eq!(
        record["s3"]["object"]["key"],
        avscan_actors::event::encode_event_key(&key)
    );
    assert_eq!(
        record["s3"]["object"]["size"].as_u64().unwrap() as usize,
        uploaded[&key]
    );

    // A rescan of p0 with --action report: its EICAR quarantined, nothing forwarded again.
    let report = [
        "backfill",
        &format!("s3://{bucket}/p0/"),
        "--action",
        "report",
        "--rate",
        "500",
    ];
    let (code, _, stderr) = run_command_output(&variables, &report).await;
    assert_eq!(code, Some(0), "{stderr}");
    let rescanned_infected = format!("{}.report.json", key_of("p0/", 7));
    env.wait_for_object(&env.quarantine, &rescanned_infected, WAIT).await;
    env.wait_inbound_empty(WAIT).await;
    let again = env
        .receive(&env.validation_url, usize::MAX, Duration::from_secs(3))
        .await;
    assert!(
        again.iter().flat_map(record_keys).all(|key| !key.starts_with("p0/")),
        "a rescan forwarded"
    );
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_resends_only_stale_objects_without_a_verdict_and_the_backfill_policy_allows_every_call() {
    let env = TestEnv::new(false).await;
    env.put("g/stale.txt", b"left behind").await;
    // Judged long ago: it carries avscan's verdict tag.
    env.s3
        .put_object()
        .bucket(&env.unprocessed)
        .key("g/judged.txt")
        .tagging("avscan-status=clean")
        .body(ByteStream::from_static(b"judged"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.put("g/fresh.txt", b"just uploaded").await;

    let proxy = HttpFaultProxy::start(endpoint()).await;
    let mut variables: HashMap<String, String> = env.avscan_env();
    for service in ["S3", "SQS"] {
        variables.insert(format!("AWS_{service}_ENDPOINT_URL"), proxy.url.clone());
    }
    variables.insert("AUDIT_EVENT_RESEND_INTERVAL".into(), "2".into());
    let (code, stdout, stderr) = run_command_output(&variables, &["audit", "--rate", "100"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!("audit {}: listed 3, enqueued 1, skipped 2,", env.unprocessed)),
        "{stdout}"
    );
    let resent = received_with_attributes(&env, &env.inbound_url, 1).await;
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].2.get("avscan-origin").map(String::as_str), Some("audit"));
    let resent: Vec<(Value, u64)> = resent.into_iter().map(|(body, sent, _)| (body, sent)).collect();
    let keys: Vec<String> = objects_of(&resent).into_iter().map(|(key, _, _)| key).collect();
    assert_eq!(keys, ["g/stale.txt"]);

    // --since and --until keep objects by LastModified: none is from the future.
    let future = [
        "backfill",
        &format!("s3://{}/g/", env.unprocessed),
        "--dry-run",
        "--since",
        "2999-01-01T00:00:00Z",
    ];
    let (code, stdout, stderr) = run_command_output(&variables, &future).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("backfill: listed 3, would enqueue 0, skipped 3,"),
        "{stdout}"
    );

    // In a versioned bucket every event names the version listed, so that the fleet judges,
    // and deletes, exactly that one.
    env.enable_versioning(&env.unprocessed).await;
    let put = env
        .s3
        .put_object()
        .bucket(&env.unprocessed)
        .key("v/versioned.txt")
        .body(ByteStream::from_static(b"versioned"))
        .send()
        .await
        .unwrap();
    let version = put.version_id.expect("a versioned bucket names the version");
    let versioned_target = format!("s3://{}/v/", env.unprocessed);
    let (code, stdout, stderr) =
        run_command_output(&variables, &["backfill", &versioned_target, "--action", "report"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("backfill: listed 1, enqueued 1,"), "{stdout}");
    let events = received_with_attributes(&env, &env.inbound_url, 1).await;
    assert_eq!(events[0].0["Records"][0]["s3"]["object"]["versionId"], version.as_str());
    assert_eq!(events[0].2.get("avscan-origin").map(String::as_str), Some("backfill"));
    assert_eq!(
        events[0].2.get("avscan-forward-clean").map(String::as_str),
        Some("false")
    );

    // A backfill from an inventory through the proxy too, then the calls against the policy.
    let inventory_bucket = format!("{}-inventory", env.unprocessed.trim_end_matches("-unprocessed"));
    env.s3.create_bucket().bucket(&inventory_bucket).send().await.unwrap();
    let manifest = write_inventory(&env, &env.unprocessed, &inventory_bucket).await;
    let target = format!("s3://{}/g/", env.unprocessed);
    for args in [
        vec!["backfill", &target, "--rate", "100"],
        vec!["backfill", &target, "--inventory", &manifest],
    ] {
        let (code, _, stderr) = run_command_output(&variables, &args).await;
        assert_eq!(code, Some(0), "{stderr}");
    }
    let policy = iam::policy("deploy/iam-policy-backfill.json");
    let calls = proxy.targets();
    for operation in [
        "ListObjects",
        "ListObjectVersions",
        "GetBucketVersioning",
        "GetObjectTagging",
        "GetObject",
        "SendMessageBatch",
    ] {
        assert!(
            calls.iter().any(|(recorded, _)| recorded == operation),
            "no {operation}: {calls:?}"
        );
    }
    let missing = iam::missing(&policy, &calls, |resource| match resource {
        r if r == inventory_bucket => "INVENTORY_BUCKET",
        r => iam::placeholder(&env, None, r),
    });
    assert!(
        missing.is_empty(),
        "deploy/iam-policy-backfill.json lacks:\n{}",
        missing.join("\n")
    );
}

//! Result events against the real stack: an EventBridge rule on a bus of its own routes avscan's
//! events to an SQS queue, and an SNS topic delivers the same events to another; one event per
//! verdict (clean, infected, too large, rejected, stale) arrives on each, in GuardDuty's "Object
//! Scan Result" shape, with the SHA-256 of the bytes uploaded.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{run_command, s3_record, sha256_hex, ResultDestinations, TestEnv, DETAIL_TYPE, EICAR};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// Uploads `body` and queues its event.
async fn upload(env: &TestEnv, key: &str, body: &[u8]) {
    let etag = env.put(key, body).await;
    let record = s3_record(&env.unprocessed, key, body.len() as u64, &etag);
    env.send_inbound(&json!({ "Records": [record] }).to_string()).await;
}

/// The events on `queue_url`, by object key (rejected events without a key under `""`).
async fn events_by_key(env: &TestEnv, queue_url: &str, count: usize) -> HashMap<String, Vec<Value>> {
    let mut by_key: HashMap<String, Vec<Value>> = HashMap::new();
    for message in env.receive(queue_url, count, WAIT).await {
        let event: Value = serde_json::from_str(message.body().unwrap()).unwrap();
        let key = event["detail"]["s3ObjectDetails"]["objectKey"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        by_key.entry(key).or_default().push(event);
    }
    by_key
}

fn only<'a>(events: &'a HashMap<String, Vec<Value>>, key: &str) -> &'a Value {
    match events.get(key).map(Vec::as_slice) {
        Some([event]) => event,
        other => panic!("one event for {key:?} expected, got {other:?} (all: {events:#?})"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_result_event_per_verdict_reaches_an_eventbridge_rule_and_an_sns_topic() {
    let env = TestEnv::new(false).await;
    let destinations = ResultDestinations::create(&env).await;
    let (bus, topic_arn) = (&destinations.bus, &destinations.topic_arn);
    let mut variables = env.avscan_env();
    destinations.configure_direct(&mut variables);
    variables.insert("MAX_FILE_SIZE".into(), "1".into());
    let (code, check) = run_command(&variables, &["check"]).await;
    assert_eq!(code, Some(0), "{check}");
    for expected in [
        format!("ok   event bus RESULT_EVENTS_BUS={bus}: exists"),
        format!("ok   topic RESULT_EVENTS_TOPIC_ARN={topic_arn}: exists"),
    ] {
        assert!(check.contains(&expected), "no {expected:?} in:\n{check}");
    }

    let avscan = common::Avscan::start(&variables);
    let clean = b"a clean upload".to_vec();
    let too_large = vec![7u8; 1024 * 1024 + 1];
    upload(&env, "guid/clean.txt", &clean).await;
    upload(&env, "guid/eicar.com", EICAR).await;
    upload(&env, "guid/large.bin", &too_large).await;
    // No submission folder: rejected. Announced but never uploaded: stale.
    let rejected = s3_record(&env.unprocessed, "no-folder.txt", 1, "e");
    env.send_inbound(&json!({ "Records": [rejected] }).to_string()).await;
    let stale = s3_record(&env.unprocessed, "guid/never-uploaded.txt", 1, "e");
    env.send_inbound(&json!({ "Records": [stale] }).to_string()).await;

    let from_bus = events_by_key(&env, &destinations.bus_queue_url, 5).await;
    let from_topic = events_by_key(&env, &destinations.topic_queue_url, 5).await;
    env.wait_inbound_empty(WAIT).await;
    avscan.stop().await;

    for events in [&from_bus, &from_topic] {
        let clean_event = only(events, "guid/clean.txt");
        assert_eq!(clean_event["detail-type"], DETAIL_TYPE);
        assert_eq!(clean_event["source"], "avscan");
        assert_eq!(clean_event["resources"][0], format!("arn:aws:s3:::{}", env.unprocessed));
        let detail = &clean_event["detail"];
        assert_eq!(detail["schemaVersion"], "1.0");
        assert_eq!(detail["resourceType"], "S3_OBJECT");
        assert_eq!(detail["scanStatus"], "COMPLETED");
        assert_eq!(detail["s3ObjectDetails"]["bucketName"], env.unprocessed.as_str());
        assert_eq!(detail["scanResultDetails"]["scanResultStatus"], "NO_THREATS_FOUND");
        assert_eq!(detail["avscan"]["verdict"], "clean");
        assert_eq!(detail["avscan"]["action"], "forwarded");
        assert_eq!(detail["avscan"]["sha256"], sha256_hex(&clean));
        assert_eq!(detail["avscan"]["size"], clean.len());

        let infected = &only(events, "guid/eicar.com")["detail"];
        assert_eq!(infected["scanResultDetails"]["scanResultStatus"], "THREATS_FOUND");
        let threat = infected["scanResultDetails"]["threats"][0]["name"].as_str().unwrap();
        assert!(threat.contains("Eicar"), "{infected}");
        assert_eq!(infected["avscan"]["sha256"], sha256_hex(EICAR));
        assert_eq!(infected["avscan"]["action"], "quarantine");
        assert_eq!(infected["avscan"]["quarantineBucket"], env.quarantine.as_str());
        assert!(infected["avscan"]["definitionsVersion"].is_u64(), "{infected}");

        let large = &only(events, "guid/large.bin")["detail"];
        assert_eq!(large["scanStatus"], "SKIPPED");
        assert_eq!(large["scanResultDetails"]["scanResultStatus"], "UNSUPPORTED");
        assert_eq!(large["avscan"]["verdict"], "too large");
        assert_eq!(large["avscan"]["reason"], "file too large");

        let rejected = &only(events, "no-folder.txt")["detail"];
        assert_eq!(rejected["avscan"]["verdict"], "rejected");
        assert!(
            rejected["avscan"]["reason"].as_str().unwrap().contains("invalid key"),
            "{rejected}"
        );

        let stale = &only(events, "guid/never-uploaded.txt")["detail"];
        assert_eq!(stale["avscan"]["verdict"], "stale");
        assert_eq!(stale["scanStatus"], "SKIPPED");
        assert_eq!(events.values().map(Vec::len).sum::<usize>(), 5, "{events:#?}");
    }
}

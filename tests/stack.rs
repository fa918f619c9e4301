//! End-to-end tests: the real `avscan` binary against the real clamd and the emulator's S3, SQS
//! and SNS (started by `make test`). Every assertion reads back from the services.

mod common;

use std::time::Duration;

use common::faults;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn attribute(message: &aws_sdk_sqs::types::Message, name: &str) -> Option<String> {
    message.message_attributes.as_ref()?.get(name)?.string_value.clone()
}

fn body_json(message: &aws_sdk_sqs::types::Message) -> Value {
    serde_json::from_str(message.body.as_deref().unwrap()).unwrap()
}

#[tokio::test]
async fn clean_upload_is_forwarded_with_its_record_and_infected_upload_is_quarantined() {
    let env = TestEnv::new(true).await;
    let avscan = env.start_avscan();
    let clean_key = "guid-1/hello world+1.txt";
    let clean_etag = env.put(clean_key, b"just text\n").await;
    let evil_key = "guid-1/nested/eicar copy+1 ü.com";
    let evil_etag = env.put(evil_key, EICAR).await;

    let forwarded = env.receive(&env.validation_url, 1, WAIT).await;
    assert_eq!(forwarded.len(), 1, "log:\n{}", avscan.log_text());
    let body = body_json(&forwarded[0]);
    let records = body["Records"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0]["s3"]["object"]["eTag"].as_str().unwrap().trim_matches('"'),
        clean_etag
    );
    // The record goes on as S3 sent it: its key still encoded as S3 encodes keys.
    if !lacks(Gap::EventKeysEncodedAsS3) {
        assert_eq!(
            records[0]["s3"]["object"]["key"],
            avscan_actors::testsuite::encode_event_key(clean_key)
        );
    }
    assert_eq!(attribute(&forwarded[0], "verdict").as_deref(), Some("clean"));
    assert!(attribute(&forwarded[0], "engine").unwrap().starts_with("ClamAV "));

    let report_key = format!("{evil_key}.report.json");
    let report: Value = serde_json::from_slice(&env.wait_for_object(&env.quarantine, &report_key, WAIT).await).unwrap();
    env.wait_inbound_empty(WAIT).await;

    // The clean object stays; the infected one moved, byte for byte.
    assert_eq!(env.keys(&env.unprocessed).await, vec![clean_key.to_owned()]);
    assert_eq!(env.get(&env.quarantine, evil_key).await.as_deref(), Some(EICAR));
    let head = env
        .s3
        .head_object()
        .bucket(&env.quarantine)
        .key(&report_key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type.as_deref(), Some("application/json"));

    assert_eq!(report["key"], evil_key);
    assert_eq!(report["reason"], "virus detected");
    assert_eq!(report["verdict"], "infected");
    assert_eq!(report["signature"], "Eicar-Test-Signature.UNOFFICIAL");
    assert_eq!(report["bucket"], json!(env.unprocessed));
    assert_eq!(report["etag"], json!(evil_etag));
    assert_eq!(report["size"], EICAR.len());
    assert_eq!(report["quarantine_bucket"], json!(env.quarantine));
    assert_eq!(report["quarantine_key"], evil_key);
    assert!(report["engine"].as_str().unwrap().starts_with("ClamAV "));
    for field in ["time", "scanned_at", "version_id"] {
        assert!(report.get(field).is_some(), "report lacks {field}");
    }

    // The SNS notification is the same document, with a fixed subject and attributes.
    let notifications = env.receive(&env.notifications_url, 1, WAIT).await;
    assert_eq!(notifications.len(), 1);
    let envelope = body_json(&notifications[0]);
    assert_eq!(envelope["Subject"], "avscan: object quarantined");
    let message: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(message, report);
    assert_eq!(envelope["MessageAttributes"]["verdict"]["Value"], "infected");
    assert_eq!(envelope["MessageAttributes"]["reason"]["Value"], "virus detected");
    assert_eq!(envelope["MessageAttributes"]["bucket"]["Value"], json!(env.unprocessed));

    // Nothing else was forwarded or notified.
    assert!(env
        .receive(&env.validation_url, 1, Duration::from_secs(2))
        .await
        .is_empty());
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn a_test_marker_deep_inside_a_file_is_found_with_config_from_dotenv_and_queues_by_url() {
    let env = TestEnv::new(true).await;
    let mut dotenv = env.avscan_env();
    dotenv.insert("VIRUS_SCANNING_QUEUE_NAME".into(), env.inbound_url.clone());
    dotenv.insert("VALIDATION_QUEUE_NAME".into(), env.validation_url.clone());
    // The environment wins over .env.
    dotenv.insert("RUST_LOG".into(), "off".into());
    let environment = [("RUST_LOG".to_owned(), "info".to_owned())].into_iter().collect();
    let avscan = Avscan::start_in(&environment, &dotenv);
    let mut body = vec![b'a'; 3 * 1024 * 1024 + 17];
    let at = body.len() - 1000;
    body[at..at + TEST_MARKER.len()].copy_from_slice(TEST_MARKER);
    env.put("guid/big.bin", &body).await;
    let report: Value = serde_json::from_slice(
        &env.wait_for_object(&env.quarantine, "guid/big.bin.report.json", WAIT)
            .await,
    )
    .unwrap();
    assert_eq!(report["signature"], "Avscan.Test.Marker.UNOFFICIAL");
    env.wait_inbound_empty(WAIT).await;
    assert!(env.keys(&env.unprocessed).await.is_empty());
    assert!(
        avscan.log_text().contains("quarantined"),
        "RUST_LOG from the environment applies"
    );
    assert_eq!(avscan.stop().await, Some(0));
}

/// The old worker's shipped `.env`, as its users will copy it: its timings (visibility 30 s,
/// wait 10 s, MAX_FILE_SIZE 400), the per-service AWS variables, and variables of its other
/// workers that avscan must ignore. Nothing of avscan's own: no CLAMD_* (the default address is
/// the local stack's clamd, whose MaxFileSize avscan then discovers).
fn old_worker_dotenv(env: &TestEnv) -> std::collections::HashMap<String, String> {
    let mut dotenv: std::collections::HashMap<String, String> = [
        ("APP_RUN_MODE", "virus_scanner".to_owned()),
        ("UNPROCESSED_BUCKET_NAME", env.unprocessed.clone()),
        ("QUARANTINE_BUCKET_NAME", env.quarantine.clone()),
        ("ARCHIVE_BUCKET_NAME", "archive".to_owned()),
        ("VIRUS_SCANNING_QUEUE_NAME", env.inbound_name.clone()),
        ("VALIDATION_QUEUE_NAME", env.validation_name.clone()),
        ("ARCHIVE_QUEUE_NAME", "archive".to_owned()),
        ("VALIDATOR_QUEUE_NAME", "validator".to_owned()),
        ("VIRUS_NOTIFICATION_TOPIC_ARN", env.topic_arn.clone()),
        ("VIRUS_SCANNER_WORKER_MSG_WAIT_TIME", "10".to_owned()),
        ("VIRUS_SCANNER_WORKER_MSG_VISIBILITY_TIMEOUT", "30".to_owned()),
        ("VALIDATOR_WORKER_MSG_WAIT_TIME", "10".to_owned()),
        ("ARCHIVE_WORKER_MSG_VISIBILITY_TIMEOUT", "60".to_owned()),
        ("MAX_FILE_SIZE", "400".to_owned()),
        ("AUDIT_EVENT_RESEND_INTERVAL", "43200".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    for service in ["S3", "SQS", "SNS"] {
        dotenv.insert(format!("AWS_{service}_ENDPOINT_URL"), endpoint());
        dotenv.insert(format!("AWS_{service}_REGION"), REGION.into());
        dotenv.insert(format!("AWS_{service}_ACCESS_KEY_ID"), "test".into());
        dotenv.insert(format!("AWS_{service}_SECRET_ACCESS_KEY"), "test".into());
    }
    dotenv
}

#[tokio::test]
async fn the_old_workers_dotenv_runs_unchanged() {
    let env = TestEnv::new(true).await;
    // Only what a shell gives every process, plus a free port for the ops endpoint (tests run
    // side by side; the default 9090 would be shared).
    let environment = [("OPS_ADDRESS".to_owned(), "127.0.0.1:0".to_owned())]
        .into_iter()
        .collect();
    let avscan = Avscan::start_in(&environment, &old_worker_dotenv(&env));
    env.put("guid/clean.txt", b"clean content").await;
    env.put("guid/eicar.com", EICAR).await;
    env.wait_for_object(&env.quarantine, "guid/eicar.com.report.json", Duration::from_secs(120))
        .await;
    let forwarded = env.drain_forwarded(1, Duration::from_secs(60)).await;
    assert_eq!(
        forwarded.get("guid/clean.txt"),
        Some(&1),
        "{forwarded:?}\n{}",
        avscan.log_text()
    );
    env.wait_inbound_empty(WAIT).await;
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn objects_over_max_file_size_are_quarantined_as_too_large() {
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("MAX_FILE_SIZE".into(), "1".into());
    let avscan = Avscan::start(&vars);
    env.put("guid/large.bin", &vec![0u8; 1024 * 1024 + 1]).await;
    let report: Value = serde_json::from_slice(
        &env.wait_for_object(&env.quarantine, "guid/large.bin.report.json", WAIT)
            .await,
    )
    .unwrap();
    assert_eq!(report["reason"], "file too large");
    assert_eq!(report["verdict"], "unscannable");
    env.wait_inbound_empty(WAIT).await;
    assert!(env
        .receive(&env.validation_url, 1, Duration::from_secs(2))
        .await
        .is_empty());
    avscan.stop().await;
}

#[tokio::test]
async fn malformed_and_invalid_events_are_rejected_kept_and_never_block_the_queue() {
    let env = TestEnv::new(false).await;
    env.send_inbound("{this is not json").await;
    env.send_inbound(&json!({ "Records": [s3_record(&env.unprocessed, "no-folder.txt", 1, "e")] }).to_string())
        .await;
    env.send_inbound(&json!({ "Records": [s3_record("someone-elses-bucket", "g/f.txt", 1, "e")] }).to_string())
        .await;
    let avscan = env.start_avscan();
    let rejected = env.receive(&env.rejected_url, 3, WAIT).await;
    assert_eq!(rejected.len(), 3);
    assert!(rejected.iter().any(|m| m.body.as_deref() == Some("{this is not json")));
    assert!(rejected.iter().all(|m| attribute(m, "reason").is_some()));
    env.wait_inbound_empty(WAIT).await;
    assert!(env
        .receive(&env.validation_url, 1, Duration::from_secs(2))
        .await
        .is_empty());
    assert!(env.keys(&env.quarantine).await.is_empty());
    avscan.stop().await;
}

#[tokio::test]
async fn a_rejected_event_larger_than_the_rejected_queue_takes_is_kept_cut_and_never_blocks_its_message() {
    let env = TestEnv::new(false).await;
    // A rejected-events queue created smaller than the inbound one.
    env.sqs
        .set_queue_attributes()
        .queue_url(&env.rejected_url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::MaximumMessageSize, "1024")
        .send()
        .await
        .unwrap();
    let etag = env.put("guid/ok.txt", b"fine").await;
    // The rejection reason (an attribute, counted towards the queue's limit) quotes the event
    // name, which the sender sets: a name as long as the limit must not leave the body empty
    // (SQS refuses an empty body; moto accepts it).
    let mut invalid = s3_record(&env.unprocessed, "guid/other.txt", 1, "e");
    invalid["eventName"] = format!("ObjectRemoved:{}", "x".repeat(2000)).into();
    invalid["userIdentity"] = json!({ "principalId": "x".repeat(5000) });
    let body = json!({ "Records": [s3_record(&env.unprocessed, "guid/ok.txt", 4, &etag), invalid] }).to_string();
    env.send_inbound(&body).await;
    let avscan = env.start_avscan();
    let rejected = env.receive(&env.rejected_url, 1, WAIT).await;
    assert_eq!(rejected.len(), 1, "log:\n{}", avscan.log_text());
    let kept = rejected[0].body.as_deref().unwrap();
    assert!(
        kept.len() >= 512 && kept.len() < 1024 && body.starts_with(kept),
        "the body's beginning, cut to fit: {kept:?}"
    );
    let reason = attribute(&rejected[0], "reason").unwrap();
    assert!(
        reason.contains("ObjectRemoved:xxx") && reason.ends_with('…'),
        "{reason}"
    );
    assert_eq!(attribute(&rejected[0], "truncated").as_deref(), Some("true"));
    let original_size: usize = attribute(&rejected[0], "original_size").unwrap().parse().unwrap();
    assert_eq!(original_size, body.len());
    assert_eq!(
        attribute(&rejected[0], "original_sha256"),
        Some(sha256_hex(body.as_bytes()))
    );
    env.wait_inbound_empty(WAIT).await;
    let forwarded = env.drain_forwarded(1, WAIT).await;
    assert_eq!(forwarded.get("guid/ok.txt"), Some(&1), "forwarded once: {forwarded:?}");
    avscan.stop().await;
}

#[tokio::test]
async fn the_same_infected_bytes_uploaded_again_are_a_new_incident_and_no_evidence_is_overwritten() {
    let env = TestEnv::new(false).await;
    let avscan = env.start_avscan();
    for upload in 1..=2 {
        // The same bytes, so the same ETag: only S3's sequencer tells the uploads apart.
        let etag = env.put("guid/again.com", EICAR).await;
        env.send_inbound(&json!({ "Records": [s3_record(&env.unprocessed, "guid/again.com", 68, &etag)] }).to_string())
            .await;
        let notified = env.drain_notified(1, WAIT).await;
        assert_eq!(
            notified.get("guid/again.com"),
            Some(&1),
            "upload {upload}: {notified:?}"
        );
        env.wait_inbound_empty(WAIT).await;
    }
    let keys = env.keys(&env.quarantine).await;
    assert_eq!(keys.len(), 4, "two copies, two reports: {keys:?}");
    let later = keys
        .iter()
        .find(|key| key.starts_with("guid/again.com~") && key.ends_with('~'))
        .unwrap_or_else(|| panic!("no later incident's copy in {keys:?}"));
    let first: Value =
        serde_json::from_slice(&env.get(&env.quarantine, "guid/again.com.report.json").await.unwrap()).unwrap();
    let second: Value =
        serde_json::from_slice(&env.get(&env.quarantine, &format!("{later}.report.json")).await.unwrap()).unwrap();
    assert_eq!(first["quarantine_key"], "guid/again.com");
    assert_eq!(second["quarantine_key"], later.as_str());
    assert_ne!(first["sequencer"], second["sequencer"]);
    avscan.stop().await;
}

#[tokio::test]
async fn every_record_of_a_message_is_handled_and_sns_wrapped_and_eventbridge_events_work() {
    let env = TestEnv::new(false).await;
    let clean_etag = env.put("guid/a.txt", b"clean").await;
    let evil_etag = env.put("guid/b.com", EICAR).await;
    let both = json!({ "Records": [
        s3_record(&env.unprocessed, "guid/a.txt", 5, &clean_etag),
        s3_record(&env.unprocessed, "guid/b.com", EICAR.len() as u64, &evil_etag),
    ]});
    env.send_inbound(&both.to_string()).await;
    let wrapped_etag = env.put("guid/c d.txt", b"wrapped").await;
    let inner = json!({ "Records": [s3_record(&env.unprocessed, "guid/c d.txt", 7, &wrapped_etag)] }).to_string();
    env.send_inbound(&json!({ "Type": "Notification", "MessageId": "x", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": inner }).to_string()).await;
    let bridge_etag = env.put("guid/e.txt", b"bridge").await;
    let bridge = json!({
        "version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3", "time": "2026-11-29T12:00:00Z",
        "detail": { "bucket": { "name": env.unprocessed }, "object": { "key": "guid/e.txt", "size": 6, "etag": bridge_etag } }
    });
    env.send_inbound(&bridge.to_string()).await;
    env.send_inbound(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"x"}"#)
        .await;

    let avscan = env.start_avscan();
    let forwarded = env.receive(&env.validation_url, 3, WAIT).await;
    env.wait_for_object(&env.quarantine, "guid/b.com.report.json", WAIT)
        .await;
    env.wait_inbound_empty(WAIT).await;
    let mut keys: Vec<String> = forwarded
        .iter()
        .map(|m| {
            let body = body_json(m);
            if body["source"] == "aws.s3" {
                assert_eq!(body, bridge, "EventBridge events are forwarded unchanged");
                "guid/e.txt".to_owned()
            } else {
                body["Records"][0]["s3"]["object"]["key"].as_str().unwrap().to_owned()
            }
        })
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["guid/a.txt", "guid/c+d.txt", "guid/e.txt"]);
    assert_eq!(
        env.keys(&env.unprocessed).await,
        vec!["guid/a.txt", "guid/c d.txt", "guid/e.txt"]
    );
    avscan.stop().await;
}

#[tokio::test]
async fn an_object_overwritten_after_its_event_is_dropped_and_the_newer_one_scanned() {
    let env = TestEnv::new(true).await;
    // Both events are queued before avscan starts: the first names a version that is gone.
    env.put("guid/doc.txt", EICAR).await;
    let newer = env.put("guid/doc.txt", b"harmless now").await;
    let avscan = env.start_avscan();
    let forwarded = env.receive(&env.validation_url, 1, WAIT).await;
    assert_eq!(forwarded.len(), 1);
    assert_eq!(
        body_json(&forwarded[0])["Records"][0]["s3"]["object"]["eTag"]
            .as_str()
            .unwrap()
            .trim_matches('"'),
        newer
    );
    env.wait_inbound_empty(WAIT).await;
    assert!(
        env.keys(&env.quarantine).await.is_empty(),
        "the stale event must not quarantine the newer object"
    );
    assert_eq!(
        env.get(&env.unprocessed, "guid/doc.txt").await.as_deref(),
        Some(&b"harmless now"[..])
    );
    avscan.wait_for_log("a newer event exists", WAIT).await;
    avscan.stop().await;
}

#[tokio::test]
async fn a_scanner_error_keeps_the_message_on_the_queue() {
    // clamd answers PING and the start-up canary, then every scan connection is reset: no
    // verdict is ever given.
    let proxy = faults::TcpFaultProxy::start(faults::Upstream::from_clamd_address(&clamd_address())).await;
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), proxy.clamd_address());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("avscan running", WAIT).await;
    proxy.set(faults::TcpFault::ResetAfter(0));
    env.put("guid/x.txt", b"unscanned").await;
    avscan.wait_for_log("message will be retried", WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let code = avscan.stop().await;
    assert_eq!(code, Some(0));
    // Still there (it may be invisible for its retry backoff), and nothing went anywhere.
    let depth = env.queue_depth(&env.inbound_url).await;
    assert!(depth >= 1, "the event must stay on the queue");
    assert!(env
        .receive(&env.validation_url, 1, Duration::from_secs(1))
        .await
        .is_empty());
    assert!(env.keys(&env.quarantine).await.is_empty());
    assert_eq!(env.keys(&env.unprocessed).await, vec!["guid/x.txt"]);
}

#[tokio::test]
async fn a_clamd_that_never_finishes_a_scan_is_not_ready_and_avscan_exits_1() {
    // A "clamd" that answers PING and VERSION and drops every session: the start-up canary never
    // gets an answer, so avscan never starts taking messages.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 64];
            if let Ok(n) = socket.read(&mut buf).await {
                if buf[..n].starts_with(b"zPING") {
                    let _ = socket.write_all(b"PONG\0").await;
                } else if buf[..n].starts_with(b"zVERSION") {
                    let _ = socket.write_all(b"ClamAV 0.0.0\0").await;
                }
            }
        }
    });
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), format!("tcp://{address}"));
    vars.insert("CLAMD_READY_TIMEOUT".into(), "3".into());
    let avscan = Avscan::start(&vars);
    env.put("guid/x.txt", b"never scanned").await;
    avscan.wait_for_log("could not scan the start-up canary", WAIT).await;
    let log_path = avscan.log.clone();
    assert_eq!(avscan.wait_exit().await, Some(1));
    assert!(std::fs::read_to_string(log_path)
        .unwrap()
        .contains("could not check clamd's AlertExceedsMax"));
    assert!(
        env.queue_depth(&env.inbound_url).await >= 1,
        "the event stays on the queue"
    );
    assert!(env.keys(&env.quarantine).await.is_empty());
}

#[tokio::test]
async fn redelivery_after_a_crash_between_quarantine_steps_finishes_without_double_effects() {
    let env = TestEnv::new(false).await;
    // State left by a crash after the copy: copy present (with avscan's metadata naming the
    // upload: its ETag and its event's sequencer), no report, original still there.
    let etag = env.put("guid/half.com", EICAR).await;
    let half = s3_record(&env.unprocessed, "guid/half.com", 68, &etag);
    let sequencer = |record: &Value| record["s3"]["object"]["sequencer"].as_str().unwrap().to_owned();
    env.s3
        .copy_object()
        .bucket(&env.quarantine)
        .key("guid/half.com")
        .copy_source(format!("{}/guid/half.com", env.unprocessed))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .metadata("avscan-source-etag", &etag)
        .metadata("avscan-source-sequencer", sequencer(&half))
        .metadata("avscan-verdict", "infected")
        .metadata("avscan-reason", "virus detected")
        .metadata("avscan-signature", "Eicar-Test-Signature.UNOFFICIAL")
        .send()
        .await
        .unwrap();
    env.send_inbound(&json!({ "Records": [half] }).to_string()).await;

    // State left by a crash after the delete: original gone, copy and report present.
    let done_etag = env.put("guid/done.com", EICAR).await;
    let done = s3_record(&env.unprocessed, "guid/done.com", 68, &done_etag);
    env.s3
        .copy_object()
        .bucket(&env.quarantine)
        .key("guid/done.com")
        .copy_source(format!("{}/guid/done.com", env.unprocessed))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .metadata("avscan-source-etag", &done_etag)
        .metadata("avscan-source-sequencer", sequencer(&done))
        .metadata("avscan-verdict", "infected")
        .send()
        .await
        .unwrap();
    let earlier_report = br#"{"written":"by the earlier attempt"}"#;
    env.s3
        .put_object()
        .bucket(&env.quarantine)
        .key("guid/done.com.report.json")
        .metadata("avscan-source-etag", &done_etag)
        .metadata("avscan-source-sequencer", sequencer(&done))
        .body(earlier_report.to_vec().into())
        .send()
        .await
        .unwrap();
    env.s3
        .delete_object()
        .bucket(&env.unprocessed)
        .key("guid/done.com")
        .send()
        .await
        .unwrap();
    env.send_inbound(&json!({ "Records": [done] }).to_string()).await;

    let avscan = env.start_avscan();
    let report: Value = serde_json::from_slice(
        &env.wait_for_object(&env.quarantine, "guid/half.com.report.json", WAIT)
            .await,
    )
    .unwrap();
    assert_eq!(report["reason"], "virus detected");
    env.wait_inbound_empty(WAIT).await;
    assert!(env.keys(&env.unprocessed).await.is_empty());
    // One notification: for the half-done one only.
    let notifications = env.receive(&env.notifications_url, 2, Duration::from_secs(5)).await;
    assert_eq!(notifications.len(), 1);
    let message: Value = serde_json::from_str(body_json(&notifications[0])["Message"].as_str().unwrap()).unwrap();
    assert_eq!(message["key"], "guid/half.com");
    // The finished one's report is left as it was.
    assert_eq!(
        env.get(&env.quarantine, "guid/done.com.report.json").await.as_deref(),
        Some(&earlier_report[..])
    );
    avscan.stop().await;
}

#[tokio::test]
async fn avscan_waits_for_a_clamd_that_starts_after_it_and_talks_over_a_unix_socket() {
    let mut clamd = LocalClamd::configure("");
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), clamd.address());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("waiting for clamd", WAIT).await;
    clamd.start();
    avscan.wait_for_log("clamd ready", WAIT).await;
    env.put("guid/late.com", EICAR).await;
    env.wait_for_object(&env.quarantine, "guid/late.com.report.json", WAIT)
        .await;
    avscan.stop().await;
}

#[tokio::test]
async fn clamds_own_stream_limit_makes_an_object_unscannable_as_too_large_not_clean() {
    // clamd cuts the stream at 1 MB and closes; avscan must read its reply after the failed write.
    // avscan refuses to start with a StreamMaxLength below MAX_FILE_SIZE, so clamd's limit is
    // lowered under a running avscan, as a changed clamd.conf and a restarted clamd would.
    let mut clamd = LocalClamd::configure("");
    clamd.start();
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), clamd.address());
    vars.insert("CLAMD_CHUNK_SIZE".into(), "65536".into());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("avscan running", WAIT).await;
    clamd.reconfigure("StreamMaxLength 1M");
    clamd.wait_ready().await;
    env.put("guid/over-clamd-limit.bin", &vec![b'z'; 8 * 1024 * 1024]).await;
    let report: Value = serde_json::from_slice(
        &env.wait_for_object(&env.quarantine, "guid/over-clamd-limit.bin.report.json", WAIT)
            .await,
    )
    .unwrap();
    assert_eq!(report["reason"], "file too large");
    assert_eq!(report["verdict"], "unscannable");
    assert!(env
        .receive(&env.validation_url, 1, Duration::from_secs(1))
        .await
        .is_empty());
    avscan.stop().await;
}

#[tokio::test]
async fn versioned_buckets_scan_quarantine_and_delete_exactly_the_announced_version() {
    // S3's own events name the version; moto's name none, so on moto the test sends them as S3
    // does.
    let s3_names_versions = !lacks(Gap::VersionIdInEvents);
    let env = TestEnv::new(s3_names_versions).await;
    env.enable_versioning(&env.unprocessed).await;
    // An infected version, then a clean one under the same key: both still exist.
    let mut uploaded = Vec::new();
    for body in [EICAR, &b"fixed version"[..]] {
        let put = env
            .s3
            .put_object()
            .bucket(&env.unprocessed)
            .key("guid/report.doc")
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
        uploaded.push(put.version_id().unwrap().to_owned());
        if !s3_names_versions {
            let mut record = s3_record(
                &env.unprocessed,
                "guid/report.doc",
                body.len() as u64,
                put.e_tag().unwrap(),
            );
            record["s3"]["object"]["versionId"] = json!(put.version_id().unwrap());
            env.send_inbound(&json!({ "Records": [record] }).to_string()).await;
        }
    }
    let avscan = env.start_avscan();
    let forwarded = env.receive(&env.validation_url, 1, WAIT).await;
    assert_eq!(forwarded.len(), 1, "log:\n{}", avscan.log_text());
    assert_eq!(
        body_json(&forwarded[0])["Records"][0]["s3"]["object"]["versionId"],
        json!(uploaded[1]),
        "the clean version's event is forwarded"
    );
    let report: Value = serde_json::from_slice(
        &env.wait_for_object(&env.quarantine, "guid/report.doc.report.json", WAIT)
            .await,
    )
    .unwrap();
    env.wait_inbound_empty(WAIT).await;
    assert_eq!(
        report["version_id"],
        json!(uploaded[0]),
        "the report names the infected version"
    );
    assert_eq!(
        env.get(&env.quarantine, "guid/report.doc").await.as_deref(),
        Some(EICAR)
    );
    // The clean version is current and the infected one is gone from the history.
    assert_eq!(
        env.get(&env.unprocessed, "guid/report.doc").await.as_deref(),
        Some(&b"fixed version"[..])
    );
    let versions = env
        .s3
        .list_object_versions()
        .bucket(&env.unprocessed)
        .send()
        .await
        .unwrap();
    let remaining: Vec<_> = versions
        .versions
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.version_id)
        .collect();
    assert_eq!(remaining, vec![uploaded[1].clone()]);
    avscan.stop().await;
}

#[tokio::test]
async fn missing_configuration_exits_2_naming_the_variable() {
    let mut vars = TestEnv::new(false).await.avscan_env();
    vars.remove("QUARANTINE_BUCKET_NAME");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_avscan"))
        .arg("run")
        .env_clear()
        .envs(&vars)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("QUARANTINE_BUCKET_NAME"), "{stderr}");

    vars.insert("QUARANTINE_BUCKET_NAME".into(), "q-bucket".into());
    vars.insert("MAX_FILE_SIZE".into(), "big".into());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_avscan"))
        .arg("run")
        .env_clear()
        .envs(&vars)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("MAX_FILE_SIZE"));
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line_with_facts_as_fields() {
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("LOG_FORMAT".into(), "json".into());
    let avscan = Avscan::start(&vars);
    env.put("guid-json/clean file.txt", b"clean").await;
    assert_eq!(env.drain_forwarded(1, WAIT).await.len(), 1);
    let log_path = avscan.log.clone();
    assert_eq!(avscan.stop().await, Some(0));
    let log = std::fs::read_to_string(log_path).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}")))
        .collect();
    assert!(lines.len() > 5);
    assert!(lines
        .iter()
        .all(|line| line["level"].is_string() && line["timestamp"].is_string()));
    let forwarded = lines
        .iter()
        .find(|line| line["fields"]["message"] == "clean; forwarding")
        .expect("the forwarding line");
    assert_eq!(forwarded["fields"]["key"], "guid-json/clean file.txt");
    assert_eq!(forwarded["fields"]["bucket"], json!(env.unprocessed));
}

#[tokio::test]
async fn healthz_answers_while_alive_and_readyz_only_while_running_with_clamd_up() {
    let mut clamd = LocalClamd::configure("");
    let env = TestEnv::new(false).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), clamd.address());
    let avscan = Avscan::start(&vars);
    let ops = avscan.ops_address().await;
    avscan.wait_for_log("waiting for clamd", WAIT).await;
    // Starting: alive, not ready.
    assert_eq!(http_get(&ops, "/healthz").await, (200, "alive (starting)".into()));
    assert_eq!(http_get(&ops, "/readyz").await, (503, "not ready: starting".into()));

    clamd.start();
    avscan.wait_for_log("avscan running", WAIT).await;
    assert_eq!(http_get(&ops, "/healthz").await, (200, "alive (running)".into()));
    assert_eq!(http_get(&ops, "/readyz").await, (200, "ready".into()));

    // clamd gone: still alive (avscan retries), but not ready for more work.
    clamd.kill();
    let (status, body) = http_get(&ops, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: clamd"), "{body}");
    assert_eq!(http_get(&ops, "/healthz").await.0, 200);
    assert_eq!(http_get(&ops, "/nothing-here").await.0, 404);
    assert_eq!(avscan.stop().await, Some(0));
}

/// The value of one sample in Prometheus' text format, e.g. `avscan_records_total{verdict="clean"}`.
#[tokio::test]
async fn metrics_count_what_was_sent() {
    let env = TestEnv::new(true).await;
    let avscan = env.start_avscan();
    let ops = avscan.ops_address().await;
    let mut scanned_bytes = 0;
    for (i, size) in [10usize, 2000, 300_000].into_iter().enumerate() {
        env.put(&format!("guid-m/clean-{i}.bin"), &vec![b'c'; size]).await;
        scanned_bytes += size;
    }
    for i in 0..2 {
        env.put(&format!("guid-m/evil-{i}.com"), EICAR).await;
        scanned_bytes += EICAR.len();
    }
    env.send_inbound("{ not an event").await;
    assert_eq!(env.drain_forwarded(3, WAIT).await.len(), 3);
    for i in 0..2 {
        env.wait_for_object(&env.quarantine, &format!("guid-m/evil-{i}.com.report.json"), WAIT)
            .await;
    }
    env.wait_inbound_empty(WAIT).await;
    // The gauges are refreshed on every poll (1 s long polls here).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, metrics) = http_get(&ops, "/metrics").await;
    assert_eq!(status, 200);

    // Five uploads, S3's test event and the invalid one: seven messages, all deleted.
    assert_eq!(sample(&metrics, "avscan_messages_received_total"), 7.0);
    assert_eq!(sample(&metrics, "avscan_messages_deleted_total"), 7.0);
    assert_eq!(sample(&metrics, r#"avscan_records_total{verdict="clean"}"#), 3.0);
    assert_eq!(sample(&metrics, r#"avscan_records_total{verdict="infected"}"#), 2.0);
    assert_eq!(
        sample(&metrics, r#"avscan_rejected_total{reason="malformed_json"}"#),
        1.0
    );
    assert_eq!(sample(&metrics, "avscan_bytes_scanned_total"), scanned_bytes as f64);
    for (stage, count) in [("fetch", 5.0), ("scan", 5.0), ("quarantine", 2.0), ("end_to_end", 7.0)] {
        assert_eq!(
            sample(&metrics, &format!(r#"avscan_stage_seconds_count{{stage="{stage}"}}"#)),
            count,
            "{stage}"
        );
    }
    assert_eq!(sample(&metrics, "avscan_in_flight_messages"), 0.0);
    // The defaults of MAX_IN_FLIGHT, CLAMD_CONNECTIONS and FETCH_CONCURRENCY.
    use avscan_actors::defaults;
    assert_eq!(sample(&metrics, "avscan_permits_free"), defaults::MAX_IN_FLIGHT as f64);
    assert_eq!(sample(&metrics, r#"avscan_pool_busy{pool="scanner"}"#), 0.0);
    assert_eq!(
        sample(&metrics, r#"avscan_pool_idle{pool="scanner"}"#),
        defaults::CLAMD_CONNECTIONS as f64
    );
    assert_eq!(
        sample(&metrics, r#"avscan_pool_idle{pool="fetcher"}"#),
        defaults::FETCH_CONCURRENCY as f64
    );
    assert!(metrics.contains("# HELP avscan_records_total"));
    assert_eq!(avscan.stop().await, Some(0));
}

//! Virus definitions as a guarantee, against a real clamd whose definitions the test controls:
//! daily databases built with sigtool, served from a local mirror, fetched by freshclam, reloaded
//! by clamd. Outcomes are read back from the queues and buckets, and from avscan's `/readyz`,
//! `/metrics`, log and `avscan check`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::definitions::{freshclam, DailyDatabase, Mirror, NEW_SIGNATURE_CONTENT, NEW_SIGNATURE_NAME};
use common::{http_get, run_command, sample, LocalClamd, TestEnv};

const DAY: Duration = Duration::from_secs(86_400);

/// The daily database version clamd names now.
async fn clamd_daily_version(clamd: &LocalClamd) -> Option<u64> {
    let client = avscan::clamd::Clamd::new(clamd.address().parse().unwrap(), 65536, Duration::from_secs(5));
    let reply = client.command("VERSION").await.ok()?;
    avscan_actors::definitions::Definitions::from_version_reply(&reply)
        .ok()
        .flatten()
        .map(|definitions| definitions.version)
}

async fn wait_for_daily_version(clamd: &LocalClamd, version: u64) {
    for _ in 0..300 {
        if clamd_daily_version(clamd).await == Some(version) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("clamd never loaded daily {version}");
}

fn avscan_env(env: &TestEnv, clamd: &LocalClamd) -> HashMap<String, String> {
    let mut variables = env.avscan_env();
    variables.insert("CLAMD_ADDRESS".into(), clamd.address());
    variables.insert("DEFINITIONS_CHECK_INTERVAL".into(), "1".into());
    variables
}

/// Uploads `body` as `key` and queues its ObjectCreated event (no S3 test event to wait behind).
async fn upload(env: &TestEnv, key: &str, body: &[u8]) {
    let etag = env.put(key, body).await;
    let record = common::s3_record(&env.unprocessed, key, body.len() as u64, &etag);
    env.send_inbound(&serde_json::json!({ "Records": [record] }).to_string())
        .await;
}

fn attribute(message: &aws_sdk_sqs::types::Message, name: &str) -> Option<String> {
    message.message_attributes.as_ref()?.get(name)?.string_value.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_is_judged_by_the_definitions_clamd_has_loaded_and_names_them() {
    let env = TestEnv::new(false).await;
    let mirror = Mirror::start().await;
    let mut clamd = LocalClamd::configure("");
    // Definitions 7100, fetched by freshclam from the mirror before clamd starts.
    std::fs::remove_file(clamd.database_dir().join("daily.cud")).unwrap();
    DailyDatabase::new(7100).build_into(&mirror.dir);
    freshclam(&mirror, &clamd.database_dir(), &clamd.conf_path());
    clamd.start();
    clamd.wait_ready().await;
    wait_for_daily_version(&clamd, 7100).await;

    let avscan = common::Avscan::start(&avscan_env(&env, &clamd));
    avscan.wait_for_log("avscan running", Duration::from_secs(60)).await;
    let ops = avscan.ops_address().await;

    // Clean under 7100: forwarded, naming 7100.
    upload(&env, "guid/before.bin", NEW_SIGNATURE_CONTENT).await;
    let forwarded = env.receive(&env.validation_url, 1, Duration::from_secs(60)).await;
    assert_eq!(forwarded.len(), 1, "not forwarded under the old definitions");
    assert_eq!(attribute(&forwarded[0], "definitions_version").as_deref(), Some("7100"));
    assert!(attribute(&forwarded[0], "definitions_built_at").is_some());

    // The mirror gets 7101, which adds a signature; freshclam fetches it and clamd reloads.
    tokio::time::sleep(Duration::from_millis(1100)).await; // a newer Last-Modified than the copy
    DailyDatabase::new(7101).with_new_signature().build_into(&mirror.dir);
    let fetched = freshclam(&mirror, &clamd.database_dir(), &clamd.conf_path());
    assert!(fetched.contains("daily.cud updated"), "{fetched}");
    wait_for_daily_version(&clamd, 7101).await;

    // The same bytes under 7101: infected, and the report and notification name 7101.
    upload(&env, "guid/after.bin", NEW_SIGNATURE_CONTENT).await;
    let report = env
        .wait_for_object(&env.quarantine, "guid/after.bin.report.json", Duration::from_secs(60))
        .await;
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    // clamd marks signatures from unsigned databases `.UNOFFICIAL`.
    let signature = report["signature"].as_str().unwrap_or_default();
    assert!(signature.starts_with(NEW_SIGNATURE_NAME), "{report}");
    assert_eq!(report["definitions_version"], 7101);
    assert!(report["engine"].as_str().unwrap().contains("/7101/"), "{report}");
    let notified = env.receive(&env.notifications_url, 1, Duration::from_secs(30)).await;
    let envelope: serde_json::Value = serde_json::from_str(notified[0].body().unwrap()).unwrap();
    let notification: serde_json::Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(notification["definitions_version"], 7101);

    // avscan noticed the reload without a restart.
    avscan
        .wait_for_log("clamd loaded new definitions", Duration::from_secs(10))
        .await;
    let (_, metrics) = http_get(&ops, "/metrics").await;
    assert_eq!(sample(&metrics, "avscan_definitions_version"), 7101.0);
    assert!(sample(&metrics, "avscan_definitions_age_seconds") < 3600.0);
    assert_eq!(sample(&metrics, "avscan_definitions_reloads_total"), 1.0);
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_definitions_stop_receiving_until_fresh_ones_load() {
    let env = TestEnv::new(false).await;
    let mut clamd = LocalClamd::configure("");
    DailyDatabase::new(7200)
        .aged(10 * DAY)
        .build_into(&clamd.database_dir());
    clamd.start();
    clamd.wait_ready().await;
    wait_for_daily_version(&clamd, 7200).await;

    let variables = avscan_env(&env, &clamd);
    let (code, check) = run_command(&variables, &["check"]).await;
    assert_eq!(code, Some(1), "{check}");
    let line = check
        .lines()
        .find(|line| line.contains("definitions:"))
        .unwrap_or_default();
    assert!(
        line.starts_with("FAIL definitions") && line.contains("older than DEFINITIONS_MAX_AGE"),
        "{check}"
    );

    let avscan = common::Avscan::start(&variables);
    avscan.wait_for_log("avscan running", Duration::from_secs(60)).await;
    let ops = avscan.ops_address().await;
    let (status, body) = http_get(&ops, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("definitions") && body.contains("7200"), "{body}");

    // An upload waits on the queue: never received, so never judged.
    upload(&env, "guid/waits.txt", b"hello").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let waiting = env
        .sqs
        .get_queue_attributes()
        .queue_url(&env.inbound_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let visible = waiting
        .attributes()
        .and_then(|attributes| attributes.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .cloned();
    assert_eq!(
        visible.as_deref(),
        Some("1"),
        "the message left the queue (received or lost)"
    );
    let (_, metrics) = http_get(&ops, "/metrics").await;
    assert_eq!(sample(&metrics, "avscan_definitions_refused"), 1.0);
    assert!(sample(&metrics, "avscan_definitions_age_seconds") > 9.0 * 86_400.0);
    assert_eq!(sample(&metrics, "avscan_messages_received_total"), 0.0);

    // Fresh definitions load (clamd reloads): avscan resumes by itself and forwards the upload.
    DailyDatabase::new(7201).build_into(&clamd.database_dir());
    let client = avscan::clamd::Clamd::new(clamd.address().parse().unwrap(), 65536, Duration::from_secs(5));
    assert_eq!(client.command("RELOAD").await.unwrap(), "RELOADING");
    wait_for_daily_version(&clamd, 7201).await;
    let forwarded = env.receive(&env.validation_url, 1, Duration::from_secs(60)).await;
    assert_eq!(forwarded.len(), 1, "not resumed after fresh definitions loaded");
    assert_eq!(attribute(&forwarded[0], "definitions_version").as_deref(), Some("7201"));
    let (status, body) = http_get(&ops, "/readyz").await;
    assert_eq!(status, 200, "{body}");

    // One warning when receiving stopped, one line when it resumed: once per change.
    let log = avscan.log_text();
    assert_eq!(log.matches("not receiving: nothing is judged").count(), 1, "{log}");
    assert_eq!(log.matches("definitions accepted; receiving again").count(), 1, "{log}");
    assert_eq!(avscan.stop().await, Some(0));
}

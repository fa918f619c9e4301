//! The fault suite: the real binary against the real clamd and emulator, with faults injected on
//! loopback by the tests' own proxies (`common::faults`). Each scenario asserts avscan's four
//! zeros from the services' state: no message lost, no clean file quarantined, no infected file
//! forwarded, no unscanned file forwarded.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::faults::*;
use common::*;

const WAIT: Duration = Duration::from_secs(90);
const MIB: usize = 1024 * 1024;

/// A clean object of `size` bytes, different for each `seed`.
fn clean_body(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 0x20)
        .collect()
}

/// An infected object of `size` bytes: the test marker near its end.
fn infected_body(size: usize, seed: u8) -> Vec<u8> {
    let mut body = clean_body(size, seed);
    let at = size - TEST_MARKER.len() - 100;
    body[at..at + TEST_MARKER.len()].copy_from_slice(TEST_MARKER);
    body
}

/// Uploads `clean` clean and `infected` infected objects of `size` bytes under `prefix`;
/// returns the two key lists.
async fn upload_mix(
    env: &TestEnv,
    prefix: &str,
    clean: usize,
    infected: usize,
    size: usize,
) -> (Vec<String>, Vec<String>) {
    let mut clean_keys = Vec::new();
    let mut infected_keys = Vec::new();
    for i in 0..clean.max(infected) {
        if i < clean {
            let key = format!("{prefix}/clean-{i}.bin");
            env.put(&key, &clean_body(size, i as u8)).await;
            clean_keys.push(key);
        }
        if i < infected {
            let key = format!("{prefix}/infected-{i}.bin");
            env.put(&key, &infected_body(size, i as u8)).await;
            infected_keys.push(key);
        }
    }
    (clean_keys, infected_keys)
}

fn once_each(keys: &[String]) -> BTreeMap<String, usize> {
    keys.iter().map(|key| (key.clone(), 1)).collect()
}

/// The end state every scenario must reach: each clean object forwarded (at least once) and
/// still in place, each infected one quarantined with its report and gone from the unprocessed
/// bucket, nothing left on the inbound queue. Returns (forwarded, notified) tallies.
async fn assert_all_finished(
    env: &TestEnv,
    clean: &[String],
    infected: &[String],
    log: &dyn Fn() -> String,
) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    for key in infected {
        env.wait_for_object(&env.quarantine, &format!("{key}.report.json"), WAIT)
            .await;
    }
    let forwarded = env.drain_forwarded(clean.len(), WAIT).await;
    let forwarded_keys: Vec<&String> = forwarded.keys().collect();
    let mut expected: Vec<&String> = clean.iter().collect();
    expected.sort();
    assert_eq!(
        forwarded_keys,
        expected,
        "forwarded exactly the clean objects; log:\n{}",
        log()
    );
    env.wait_inbound_empty(WAIT).await;
    let mut in_place = clean.to_vec();
    in_place.sort();
    assert_eq!(
        env.keys(&env.unprocessed).await,
        in_place,
        "infected objects left the bucket"
    );
    let mut quarantined: Vec<String> = infected
        .iter()
        .flat_map(|key| [key.clone(), format!("{key}.report.json")])
        .collect();
    quarantined.sort();
    assert_eq!(
        env.keys(&env.quarantine).await,
        quarantined,
        "nothing clean quarantined"
    );
    for key in infected {
        let report: serde_json::Value =
            serde_json::from_slice(&env.get(&env.quarantine, &format!("{key}.report.json")).await.unwrap()).unwrap();
        assert_eq!(report["signature"], "Avscan.Test.Marker.UNOFFICIAL", "{key}");
    }
    let notified = env.drain_notified(infected.len(), WAIT).await;
    let notified_keys: Vec<&String> = notified.keys().collect();
    let mut expected: Vec<&String> = infected.iter().collect();
    expected.sort();
    assert_eq!(
        notified_keys, expected,
        "one notification per quarantined object at least"
    );
    (forwarded, notified)
}

#[tokio::test]
async fn clamd_reset_mid_instream_then_down_for_a_while_never_yields_a_verdict_and_all_finish_once_back() {
    let proxy = TcpFaultProxy::start(Upstream::from_clamd_address(&clamd_address())).await;
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), proxy.clamd_address());
    vars.insert("CLAMD_CHUNK_SIZE".into(), "65536".into());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("clamd ready", WAIT).await;

    // Every connection is cut 200 KB into its stream: no 1 MiB object can be judged.
    proxy.set(TcpFault::ResetAfter(200_000));
    let (clean, infected) = upload_mix(&env, "guid-reset", 3, 2, MIB).await;
    avscan.wait_for_log("message will be retried", WAIT).await;
    // Then clamd is gone altogether for a while.
    proxy.set(TcpFault::Down);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        env.receive(&env.validation_url, 1, Duration::from_secs(1))
            .await
            .is_empty(),
        "nothing may be forwarded while clamd cannot finish a scan"
    );
    assert!(env.keys(&env.quarantine).await.is_empty());
    let connections_before = proxy.accepted();

    proxy.set(TcpFault::Pass);
    let (forwarded, _) = assert_all_finished(&env, &clean, &infected, &|| avscan.log_text()).await;
    assert_eq!(forwarded, once_each(&clean));
    assert!(proxy.accepted() > connections_before, "the scanner pool reconnected");
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn a_stream_stalled_in_silence_times_out_before_the_visibility_timeout_and_is_retried() {
    let proxy = TcpFaultProxy::start(Upstream::from_clamd_address(&clamd_address())).await;
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), proxy.clamd_address());
    vars.insert("CLAMD_TIMEOUT".into(), "2".into());
    vars.insert("VIRUS_SCANNER_WORKER_MSG_VISIBILITY_TIMEOUT".into(), "10".into());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("clamd ready", WAIT).await;

    proxy.set(TcpFault::StallAfter(300_000));
    let (clean, infected) = upload_mix(&env, "guid-stall", 1, 1, MIB).await;
    avscan.wait_for_log("message will be retried", WAIT).await;
    assert!(env
        .receive(&env.validation_url, 1, Duration::from_secs(1))
        .await
        .is_empty());
    proxy.set(TcpFault::Pass);
    let (forwarded, _) = assert_all_finished(&env, &clean, &infected, &|| avscan.log_text()).await;
    assert_eq!(forwarded, once_each(&clean));
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn a_stream_cut_short_on_its_way_to_clamd_gets_no_verdict_and_is_retried() {
    // clamd sees the stream end mid-chunk (FIN): it closes without a reply, never judges a prefix.
    let proxy = TcpFaultProxy::start(Upstream::from_clamd_address(&clamd_address())).await;
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), proxy.clamd_address());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("avscan running", WAIT).await;

    proxy.set(TcpFault::TruncateAfter(300_000));
    let (clean, infected) = upload_mix(&env, "guid-truncate", 2, 1, MIB).await;
    avscan.wait_for_log("message will be retried", WAIT).await;
    assert!(env
        .receive(&env.validation_url, 1, Duration::from_secs(1))
        .await
        .is_empty());
    assert!(env.keys(&env.quarantine).await.is_empty());
    proxy.set(TcpFault::Pass);
    let (forwarded, _) = assert_all_finished(&env, &clean, &infected, &|| avscan.log_text()).await;
    assert_eq!(forwarded, once_each(&clean));
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn clamds_own_command_read_timeout_is_a_retry_never_a_verdict() {
    // clamd gives up on a silent stream after 1 s with `COMMAND READ TIMED OUT`, well before
    // avscan's own timeout.
    let mut clamd = LocalClamd::configure("CommandReadTimeout 1\nReadTimeout 1");
    clamd.start();
    let proxy = TcpFaultProxy::start(Upstream::Unix(clamd.socket.clone())).await;
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), proxy.clamd_address());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("clamd ready", WAIT).await;

    proxy.set(TcpFault::StallAfter(300_000));
    let (clean, infected) = upload_mix(&env, "guid-cmdtimeout", 1, 1, MIB).await;
    avscan.wait_for_log("message will be retried", WAIT).await;
    assert!(
        avscan.log_text().contains("TIMED OUT"),
        "clamd's reply is named in the log"
    );
    proxy.set(TcpFault::Pass);
    let (forwarded, _) = assert_all_finished(&env, &clean, &infected, &|| avscan.log_text()).await;
    assert_eq!(forwarded, once_each(&clean));
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn s3_and_sns_server_errors_are_retried_until_every_effect_is_done_once() {
    let proxy = HttpFaultProxy::start(endpoint()).await;
    // The first three of a kind exhaust the SDK's own retries: avscan retries the message.
    // Every other one is absorbed by the SDK's retry of that call.
    for operation in ["GetObject", "DeleteObject", "Publish"] {
        proxy.add(HttpRule {
            operation,
            every: 1,
            fault: HttpFault::Status(503),
            limit: 3,
        });
    }
    for operation in ["CopyObject", "PutObject", "Publish", "GetObject"] {
        proxy.add(HttpRule {
            operation,
            every: 2,
            fault: HttpFault::Status(500),
            limit: u64::MAX,
        });
    }
    // S3's "200 OK with an error inside" for a copy: nothing was copied.
    proxy.add(HttpRule {
        operation: "CopyObject",
        every: 1,
        fault: HttpFault::OkWithErrorBody,
        limit: 1,
    });
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("AWS_S3_ENDPOINT_URL".into(), proxy.url.clone());
    vars.insert("AWS_SNS_ENDPOINT_URL".into(), proxy.url.clone());
    let avscan = Avscan::start(&vars);
    let (clean, infected) = upload_mix(&env, "guid-5xx", 4, 4, 10_000).await;

    let (forwarded, notified) = assert_all_finished(&env, &clean, &infected, &|| avscan.log_text()).await;
    assert_eq!(forwarded, once_each(&clean), "no clean message forwarded twice");
    assert_eq!(
        notified,
        once_each(&infected),
        "failed publishes were not delivered, so no duplicates"
    );
    for operation in ["GetObject", "CopyObject", "PutObject", "DeleteObject", "Publish"] {
        assert!(proxy.injected(operation) > 0, "no fault fired for {operation}");
    }
    assert!(
        avscan.log_text().contains("message will be retried"),
        "some faults outlasted the SDK's retries"
    );
    assert_eq!(avscan.stop().await, Some(0));
}

/// `field` of every entry of every recorded `operation` call (a batch), call by call.
fn batch_entries(proxy: &HttpFaultProxy, operation: &str, field: &str) -> Vec<Vec<String>> {
    proxy
        .recorded(operation)
        .iter()
        .map(|body| {
            let request: serde_json::Value = serde_json::from_slice(body).unwrap();
            request["Entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| entry[field].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_partly_failed_delete_batch_sends_only_the_failed_entry_again() {
    let proxy = HttpFaultProxy::start(endpoint()).await;
    proxy.add(HttpRule {
        operation: "DeleteMessageBatch",
        every: 1,
        fault: HttpFault::FirstBatchEntryFails,
        limit: 1,
    });
    proxy.record("DeleteMessageBatch");
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("AWS_SQS_ENDPOINT_URL".into(), proxy.url.clone());
    let avscan = Avscan::start(&vars);
    let (clean, _) = upload_mix(&env, "guid-batch", 6, 0, 1000).await;
    let forwarded = env.drain_forwarded(clean.len(), WAIT).await;
    assert_eq!(forwarded, once_each(&clean), "no message came back for a second scan");
    env.wait_inbound_empty(WAIT).await;

    let batches = batch_entries(&proxy, "DeleteMessageBatch", "ReceiptHandle");
    assert_eq!(proxy.injected("DeleteMessageBatch"), 1);
    let failed = &batches[0][0];
    let later: Vec<&String> = batches[1..].iter().flatten().collect();
    assert!(later.contains(&failed), "the failed entry was sent again: {batches:?}");
    for handle in &batches[0][1..] {
        assert!(!later.contains(&handle), "a deleted entry was sent again: {batches:?}");
    }
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn a_partly_failed_send_batch_retries_only_the_failed_record_and_loses_nothing() {
    let proxy = HttpFaultProxy::start(endpoint()).await;
    proxy.add(HttpRule {
        operation: "SendMessageBatch",
        every: 1,
        fault: HttpFault::FirstBatchEntryFails,
        limit: 1,
    });
    proxy.record("SendMessageBatch");
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("AWS_SQS_ENDPOINT_URL".into(), proxy.url.clone());
    let avscan = Avscan::start(&vars);
    let (clean, _) = upload_mix(&env, "guid-send", 6, 0, 1000).await;
    // Every clean object reaches the validator exactly once, the failed one on a second try.
    let forwarded = env.drain_forwarded(clean.len(), WAIT).await;
    assert_eq!(forwarded, once_each(&clean), "{}", avscan.log_text());
    env.wait_inbound_empty(WAIT).await;

    let batches = batch_entries(&proxy, "SendMessageBatch", "MessageBody");
    assert_eq!(proxy.injected("SendMessageBatch"), 1);
    let failed = &batches[0][0];
    let later: Vec<&String> = batches[1..].iter().flatten().collect();
    assert!(
        later.contains(&failed),
        "the failed record was not sent again: {batches:?}"
    );
    for body in &batches[0][1..] {
        assert!(!later.contains(&body), "a sent record was sent again: {batches:?}");
    }
    assert!(
        avscan.log_text().contains("forwarding failed; message will be retried"),
        "the failure is logged"
    );
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn sigkill_at_random_points_then_restart_loses_nothing_and_never_quarantines_twice() {
    let env = TestEnv::new(true).await;
    env.enable_versioning(&env.quarantine).await;
    let mut vars = env.avscan_env();
    // Messages a killed process held come back quickly.
    vars.insert("VIRUS_SCANNER_WORKER_MSG_VISIBILITY_TIMEOUT".into(), "4".into());
    vars.insert("CLAMD_TIMEOUT".into(), "3".into());
    let (clean, infected) = upload_mix(&env, "guid-kill", 24, 12, 200_000).await;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut random = seed;
    let mut delays = Vec::new();
    for _ in 0..6 {
        random ^= random << 13;
        random ^= random >> 17;
        random ^= random << 5;
        let delay = Duration::from_millis(300 + u64::from(random % 1500));
        delays.push(delay);
        let avscan = Avscan::start(&vars);
        tokio::time::sleep(delay).await;
        avscan.kill();
    }
    let avscan = Avscan::start(&vars);
    let log = || avscan.log_text();
    let (_, _) = assert_all_finished(&env, &clean, &infected, &log).await;
    // Idempotency: each quarantined copy and report was written once, whatever was redone.
    let versions = env.versions(&env.quarantine).await;
    for key in &infected {
        assert_eq!(
            versions.get(key),
            Some(&1),
            "{key} copied twice (seed {seed}, kills after {delays:?})"
        );
        let report = format!("{key}.report.json");
        assert_eq!(versions.get(&report), Some(&1), "{report} written twice (seed {seed})");
    }
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn sigterm_mid_batch_finishes_or_releases_within_the_grace_period_and_exits_0() {
    let proxy = TcpFaultProxy::start(Upstream::from_clamd_address(&clamd_address())).await;
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), proxy.clamd_address());
    vars.insert("SHUTDOWN_GRACE".into(), "2".into());
    vars.insert("CLAMD_CHUNK_SIZE".into(), "65536".into());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("clamd ready", WAIT).await;
    // Slow scans, so that SIGTERM finds work in flight: 16 chunks x 150 ms per object.
    proxy.set(TcpFault::Delay(Duration::from_millis(150)));
    let (clean, infected) = upload_mix(&env, "guid-term", 8, 4, MIB).await;
    avscan.wait_for_log("record received", WAIT).await;
    let started = Instant::now();
    assert_eq!(avscan.stop().await, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drain took {:?}",
        started.elapsed()
    );
    // A second process finishes whatever the first released.
    proxy.set(TcpFault::Pass);
    let avscan = Avscan::start(&vars);
    assert_all_finished(&env, &clean, &infected, &|| avscan.log_text()).await;
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn the_heartbeat_keeps_a_scan_longer_than_the_visibility_timeout_invisible() {
    // The object's body arrives slowly from S3 (64 KiB every 400 ms: about 6.5 s for 1 MiB,
    // three visibility timeouts), each read well within CLAMD_TIMEOUT.
    let proxy = HttpFaultProxy::start(endpoint()).await;
    proxy.add(HttpRule {
        operation: "GetObject",
        every: 1,
        fault: HttpFault::Trickle {
            chunk: 64 * 1024,
            every: Duration::from_millis(400),
        },
        limit: u64::MAX,
    });
    let env = TestEnv::new(false).await;
    let mut vars = env.avscan_env();
    vars.insert("AWS_S3_ENDPOINT_URL".into(), proxy.url.clone());
    vars.insert("VIRUS_SCANNER_WORKER_MSG_VISIBILITY_TIMEOUT".into(), "2".into());
    vars.insert("CLAMD_TIMEOUT".into(), "1".into());
    // avscan's own poller cannot take the message a second time, so a lapse shows to us.
    vars.insert("MAX_IN_FLIGHT".into(), "1".into());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("clamd ready", WAIT).await;
    let body = clean_body(MIB, 7);
    let etag = env.put("guid-slow/slow.bin", &body).await;
    env.send_inbound(
        &serde_json::json!({ "Records": [s3_record(&env.unprocessed, "guid-slow/slow.bin", body.len() as u64, &etag)] })
            .to_string(),
    )
    .await;
    avscan.wait_for_log("record received", WAIT).await;
    // Another worker polling all along never gets the message.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let stolen = env
            .sqs
            .receive_message()
            .queue_url(&env.inbound_url)
            .wait_time_seconds(1)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        assert!(stolen.is_empty(), "the message became visible mid-scan");
    }
    let forwarded = env.drain_forwarded(1, WAIT).await;
    assert_eq!(forwarded, once_each(&["guid-slow/slow.bin".to_owned()]));
    env.wait_inbound_empty(WAIT).await;
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn two_processes_on_one_queue_handle_each_object_without_doubling_effects() {
    let env = TestEnv::new(true).await;
    env.enable_versioning(&env.quarantine).await;
    let vars = env.avscan_env();
    let first = Avscan::start(&vars);
    let second = Avscan::start(&vars);
    let (clean, infected) = upload_mix(&env, "guid-two", 20, 10, 50_000).await;
    let log = || format!("first:\n{}\nsecond:\n{}", first.log_text(), second.log_text());
    let (forwarded, notified) = assert_all_finished(&env, &clean, &infected, &log).await;
    assert_eq!(forwarded, once_each(&clean));
    assert_eq!(notified, once_each(&infected));
    let versions = env.versions(&env.quarantine).await;
    assert!(versions.values().all(|&n| n == 1), "{versions:?}");
    assert_eq!(first.stop().await, Some(0));
    assert_eq!(second.stop().await, Some(0));
}

#[tokio::test]
async fn sigterm_before_the_pipeline_started_is_a_clean_stop() {
    let clamd = LocalClamd::configure(""); // never started
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), clamd.address());
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("waiting for clamd", WAIT).await;
    assert_eq!(avscan.stop().await, Some(0));
}

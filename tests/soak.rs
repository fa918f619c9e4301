//! The soak: many objects of mixed kinds through the real binary on the local stack while faults
//! fire — clamd killed and restarted, avscan SIGKILLed and restarted, a share of the emulator's
//! requests failing with 503 — then a reconciliation from the emulator's state alone.
//!
//! `make test` runs it with a few hundred objects; `make soak` with 10,000
//! (`AVSCAN_SOAK_OBJECTS`). It prints one line:
//! `soak: sent … clean forwarded … quarantined … rejected … duplicates … lost 0 wrongly routed 0`.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::archives::*;
use common::faults::*;
use common::*;
use serde_json::json;

const MIB: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Clean,
    Infected,
    TooLarge,
    Unscannable,
    Invalid,
}

/// The kind of the i-th object: 60 % clean, 15 % infected, 2.5 % too large, 12.5 % unscannable
/// (encrypted zips and zip-hole archives), 10 % invalid events.
fn kind_of(i: usize) -> Kind {
    match i % 40 {
        0..=23 => Kind::Clean,
        24..=29 => Kind::Infected,
        30 => Kind::TooLarge,
        31..=35 => Kind::Unscannable,
        _ => Kind::Invalid,
    }
}

fn body_of(i: usize, kind: Kind) -> Vec<u8> {
    let filler = |size: usize| -> Vec<u8> { (0..size).map(|j| b'a' + ((i + j) % 26) as u8).collect() };
    match kind {
        Kind::Clean => filler(1000 + (i * 7919) % 20_000),
        Kind::Infected if i % 2 == 0 => EICAR.to_vec(),
        Kind::Infected => {
            let mut body = filler(5000 + i % 5000);
            body.extend_from_slice(TEST_MARKER);
            body.extend_from_slice(&filler(100));
            body
        }
        Kind::TooLarge => filler(MIB + 1),
        Kind::Unscannable if i % 2 == 0 => hole_zip(11 * MIB),
        Kind::Unscannable => zip(&[Member {
            name: "secret.txt",
            data: b"ciphertext",
            deflate: false,
            declared: None,
            encrypted: true,
        }]),
        Kind::Invalid => Vec::new(),
    }
}

fn invalid_event(env: &TestEnv, i: usize) -> String {
    if i % 2 == 0 {
        format!("{{\"Records\": [ broken event {i}")
    } else {
        let record = s3_record(&env.unprocessed, &format!("../soak/{i}"), 5, "x");
        json!({ "Records": [record], "n": i }).to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_mixed_objects_under_faults_loses_nothing_and_routes_nothing_wrongly() {
    let objects: usize = std::env::var("AVSCAN_SOAK_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let mut clamd = LocalClamd::configure(
        "MaxFileSize 10M\nMaxScanSize 40M\nStreamMaxLength 20M\nAlertExceedsMax yes\nAlertEncrypted yes\nMaxThreads 12",
    );
    clamd.start();
    let http = HttpFaultProxy::start(endpoint()).await;
    for operation in [
        "GetObject",
        "CopyObject",
        "PutObject",
        "DeleteObject",
        "Publish",
        "SendMessage",
        "SendMessageBatch",
        "DeleteMessageBatch",
        "ReceiveMessage",
        "ChangeMessageVisibility",
    ] {
        http.add(HttpRule {
            operation,
            every: 20,
            fault: HttpFault::Status(503),
            limit: u64::MAX,
        });
    }
    let env = Arc::new(TestEnv::new(true).await);
    // A dead-letter queue, as production has: nothing valid may end there.
    let dlq_url = env
        .sqs
        .create_queue()
        .queue_name(format!("{}-dlq", env.inbound_name))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = env
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    env.sqs
        .set_queue_attributes()
        .queue_url(&env.inbound_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": "25" }).to_string(),
        )
        .send()
        .await
        .unwrap();

    let mut vars = env.avscan_env();
    vars.insert("CLAMD_ADDRESS".into(), clamd.address());
    vars.insert("CLAMD_MAX_FILE_SIZE".into(), "10".into());
    vars.insert("MAX_FILE_SIZE".into(), "1".into());
    vars.insert("CLAMD_TIMEOUT".into(), "4".into());
    vars.insert("VIRUS_SCANNER_WORKER_MSG_VISIBILITY_TIMEOUT".into(), "6".into());
    vars.insert("RUST_LOG".into(), "info".into());
    // The batching knob changes what a SIGKILL leaves undone: let a run try another value.
    if let Ok(linger) = std::env::var("BATCH_LINGER_MS") {
        vars.insert("BATCH_LINGER_MS".into(), linger);
    }
    for service in ["S3", "SQS", "SNS"] {
        vars.insert(format!("AWS_{service}_ENDPOINT_URL"), http.url.clone());
    }

    // The downstream consumers: the outbound, notification and rejected queues are read as
    // avscan fills them (the emulator slows down with a queue's depth), keeping every body.
    let forwarded_bodies = Drainer::start(env.clone(), env.validation_url.clone());
    let notification_bodies = Drainer::start(env.clone(), env.notifications_url.clone());
    let rejected_bodies = Drainer::start(env.clone(), env.rejected_url.clone());

    // Upload everything, with a few uploaders, while avscan already runs.
    let mut avscan = Avscan::start(&vars);
    let started = Instant::now();
    let uploaders: Vec<_> = (0..4)
        .map(|uploader| {
            let env = env.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for (n, i) in (uploader..objects).step_by(4).enumerate() {
                    // A steady stream of uploads, not one burst: the emulator's queue slows
                    // down with its depth, and a backlog is not what is under test.
                    while n % 25 == 0 && env.queue_depth(&env.inbound_url).await > 200 {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    let kind = kind_of(i);
                    let key = format!("soak-{}/object-{i}.bin", i % 97);
                    if kind == Kind::Invalid {
                        let body = invalid_event(&env, i);
                        env.send_inbound(&body).await;
                        sent.push((body, kind));
                    } else {
                        env.put(&key, &body_of(i, kind)).await;
                        sent.push((key, kind));
                    }
                }
                sent
            })
        })
        .collect();

    // Faults while it runs: clamd killed and restarted, avscan SIGKILLed and restarted.
    let mut rounds = 0u32;
    let mut sent: Vec<(String, Kind)> = Vec::new();
    let mut uploading = uploaders;
    let deadline = started + Duration::from_secs(60 + objects as u64 / 4);
    // Each process lives long enough to get work done between faults.
    let fault_interval = Duration::from_secs(if objects > 1000 { 20 } else { 4 });
    loop {
        tokio::time::sleep(fault_interval).await;
        rounds += 1;
        if rounds % 2 == 1 {
            clamd.restart();
        } else {
            avscan.kill();
            avscan = Avscan::start(&vars);
        }
        if !uploading.is_empty() && uploading.iter().all(|u| u.is_finished()) {
            for uploader in uploading.drain(..) {
                sent.extend(uploader.await.unwrap());
            }
        }
        if uploading.is_empty() && (rounds >= 6 || env.queue_depth(&env.inbound_url).await == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "uploads did not finish");
    }

    // Quiet: let it finish; every expected outcome must appear.
    let clean: BTreeSet<String> = sent
        .iter()
        .filter(|(_, k)| *k == Kind::Clean)
        .map(|(key, _)| key.clone())
        .collect();
    let quarantine_expected: BTreeSet<String> = sent
        .iter()
        .filter(|(_, k)| matches!(k, Kind::Infected | Kind::TooLarge | Kind::Unscannable))
        .map(|(key, _)| key.clone())
        .collect();
    let invalid: BTreeSet<String> = sent
        .iter()
        .filter(|(_, k)| *k == Kind::Invalid)
        .map(|(body, _)| body.clone())
        .collect();
    let finish_by = Instant::now() + Duration::from_secs(120 + objects as u64 / 10);
    while env.queue_depth(&env.inbound_url).await > 0 && Instant::now() < finish_by {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    avscan.wait_for_log("avscan running", Duration::from_secs(60)).await;
    let log = avscan.log_text();
    assert_eq!(avscan.stop().await, Some(0));

    // Reconcile from the emulator's state: what reached the three queues, and the buckets.
    let forwarded = tally(forwarded_bodies.finish().await.iter().flat_map(record_keys));
    let notified = tally(notification_bodies.finish().await.iter().map(notified_key));
    let rejected: BTreeSet<String> = rejected_bodies
        .finish()
        .await
        .into_iter()
        .filter_map(|message| message.body)
        .collect();
    let unprocessed: BTreeSet<String> = all_keys(&env, &env.unprocessed).await;
    let quarantined: BTreeSet<String> = all_keys(&env, &env.quarantine).await;
    let inbound_left = env.queue_depth(&env.inbound_url).await;
    let dead_lettered = env.queue_depth(&dlq_url).await;

    let mut lost = Vec::new();
    let mut wrongly_routed = Vec::new();
    for key in &clean {
        if !forwarded.contains_key(key) {
            lost.push(format!("clean {key} not forwarded"));
        }
        if quarantined.contains(key) {
            wrongly_routed.push(format!("clean {key} quarantined"));
        }
        if !unprocessed.contains(key) {
            lost.push(format!("clean {key} gone from the unprocessed bucket"));
        }
    }
    for key in &quarantine_expected {
        if forwarded.contains_key(key) {
            wrongly_routed.push(format!("{key} forwarded"));
        }
        if unprocessed.contains(key) {
            wrongly_routed.push(format!("{key} left in the unprocessed bucket"));
        }
        if !quarantined.contains(key) || !quarantined.contains(&format!("{key}.report.json")) {
            lost.push(format!("{key} not quarantined with its report"));
        }
        if !notified.contains_key(key) {
            lost.push(format!("{key} not notified"));
        }
    }
    for body in &invalid {
        if !rejected.contains(body) {
            lost.push(format!("invalid event not kept: {body:.60}"));
        }
    }
    for key in forwarded.keys() {
        if !clean.contains(key) && !quarantine_expected.contains(key) {
            wrongly_routed.push(format!("unknown {key} forwarded"));
        }
    }
    if inbound_left > 0 {
        lost.push(format!("{inbound_left} messages left on the inbound queue"));
    }
    if dead_lettered > 0 {
        lost.push(format!("{dead_lettered} messages in the dead-letter queue"));
    }
    let duplicates: usize =
        forwarded.values().map(|n| n - 1).sum::<usize>() + notified.values().map(|n| n - 1).sum::<usize>();
    println!(
        "soak: sent {}, clean forwarded {}, quarantined {}, rejected {}, duplicates {}, lost {}, wrongly routed {} \
         ({} fault rounds, {} injected 503s, {:.0} s)",
        sent.len(),
        forwarded.keys().filter(|k| clean.contains(*k)).count(),
        quarantine_expected.iter().filter(|k| quarantined.contains(*k)).count(),
        rejected.intersection(&invalid).count(),
        duplicates,
        lost.len(),
        wrongly_routed.len(),
        rounds,
        http.calls().keys().map(|op| http.injected(op)).sum::<u64>(),
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(sent.len(), objects);
    assert!(
        lost.is_empty() && wrongly_routed.is_empty(),
        "lost: {lost:#?}\nwrongly routed: {wrongly_routed:#?}\nlast log:\n{log}"
    );
}

/// Every key in a bucket, past the first page.
async fn all_keys(env: &TestEnv, bucket: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut pages = env.s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for object in page.unwrap().contents.unwrap_or_default() {
            keys.extend(object.key);
        }
    }
    keys
}

//! Security: object bytes never reach the logs, whatever the level, and the least-privilege IAM
//! policy in `deploy/iam-policy.json` allows every call avscan makes and nothing broader.

mod common;

use std::time::Duration;

use common::archives::zip_one;
use common::faults::HttpFaultProxy;
use common::iam;
use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn logs_never_carry_object_bytes_or_event_bodies_at_any_level() {
    let secret = format!("SECRET-OBJECT-BYTES-{}", uuid::Uuid::new_v4().simple());
    let env = TestEnv::new(true).await;
    let mut vars = env.avscan_env();
    vars.insert("RUST_LOG".into(), "trace".into());
    let avscan = Avscan::start(&vars);
    env.put("guid-sec/clean.txt", format!("clean {secret} clean").as_bytes())
        .await;
    env.put(
        "guid-sec/infected.bin",
        [secret.as_bytes(), TEST_MARKER, secret.as_bytes()].concat().as_slice(),
    )
    .await;
    env.put(
        "guid-sec/archive.zip",
        &zip_one("inner.txt", format!("zipped {secret}").as_bytes()),
    )
    .await;
    // An invalid event carrying the secret elsewhere than in its key.
    let mut record = s3_record(&env.unprocessed, "no-guid-segment", 5, "x");
    record["userIdentity"] = json!({ "principalId": secret });
    env.send_inbound(&json!({ "Records": [record] }).to_string()).await;

    env.wait_for_object(&env.quarantine, "guid-sec/infected.bin.report.json", WAIT)
        .await;
    assert_eq!(env.drain_forwarded(2, WAIT).await.len(), 2);
    env.wait_inbound_empty(WAIT).await;
    let log_path = avscan.log.clone();
    assert_eq!(avscan.stop().await, Some(0));

    let log = std::fs::read_to_string(log_path).unwrap();
    // The run was logged in depth (so the check below means something)...
    for expected in [
        "TRACE",
        "DEBUG",
        "clean; forwarding",
        "quarantined",
        "invalid event rejected",
    ] {
        assert!(log.contains(expected), "log lacks {expected:?}");
    }
    assert!(log.contains("guid-sec/infected.bin"), "keys are logged");
    // ...and no byte of any object, nor the event body, is in it.
    let leaks: Vec<&str> = log.lines().filter(|line| line.contains(&secret)).collect();
    assert!(
        leaks.is_empty(),
        "object or event bytes in the log:\n{}",
        leaks.join("\n")
    );
    assert!(
        !log.contains(std::str::from_utf8(TEST_MARKER).unwrap()),
        "the marker bytes are in the log"
    );
}

#[tokio::test]
async fn the_iam_policy_allows_every_call_avscan_makes_and_nothing_broader() {
    let policy = iam::policy("deploy/iam-policy.json");

    // Every call of a check and of a run that forwards, quarantines, rejects and drops, and
    // publishes each verdict's result event, through a recording proxy.
    let proxy = HttpFaultProxy::start(endpoint()).await;
    let env = TestEnv::new(true).await;
    let results = ResultDestinations::create(&env).await;
    let mut vars = env.avscan_env();
    for service in ["S3", "SQS", "SNS"] {
        vars.insert(format!("AWS_{service}_ENDPOINT_URL"), proxy.url.clone());
    }
    results.configure(&mut vars, &proxy.url);
    // The same buckets through a policy file that also tags clean objects: the tagging calls too.
    let policy_file = std::env::temp_dir().join(format!("avscan-iam-policy-{}.toml", env.unprocessed));
    std::fs::write(
        &policy_file,
        format!(
            "[[bucket]]\nname = \"{}\"\nquarantine_bucket = \"{}\"\ntags = \"avscan\"\n",
            env.unprocessed, env.quarantine
        ),
    )
    .unwrap();
    vars.remove("UNPROCESSED_BUCKET_NAME");
    vars.remove("QUARANTINE_BUCKET_NAME");
    vars.insert("AVSCAN_POLICY".into(), policy_file.display().to_string());
    let (code, check) = run_command(&vars, &["check"]).await;
    assert_eq!(code, Some(0), "{check}");
    let avscan = Avscan::start(&vars);
    env.put("guid-iam/clean.txt", b"clean").await;
    env.put("guid-iam/evil.com", EICAR).await;
    env.send_inbound("not an event").await;
    env.send_inbound(&json!({ "Records": [s3_record(&env.unprocessed, "guid-iam/gone.txt", 1, "abc")] }).to_string())
        .await;
    env.wait_for_object(&env.quarantine, "guid-iam/evil.com.report.json", WAIT)
        .await;
    assert_eq!(env.drain_forwarded(1, WAIT).await.len(), 1);
    env.wait_inbound_empty(WAIT).await;
    assert_eq!(avscan.stop().await, Some(0));

    let targets = proxy.targets();
    for operation in [
        "ReceiveMessage",
        "CopyObject",
        "PutObjectTagging",
        "Publish",
        "PutEvents",
        "PublishBatch",
        "DescribeEventBus",
    ] {
        assert!(
            targets.iter().any(|(recorded, _)| recorded == operation),
            "no {operation} recorded: {targets:?}"
        );
    }
    let missing = iam::missing(&policy, &targets, |resource| {
        iam::placeholder(&env, Some(&results), resource)
    });
    assert!(
        missing.is_empty(),
        "deploy/iam-policy.json lacks:\n{}",
        missing.join("\n")
    );
}

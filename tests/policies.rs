//! Policies against the real stack: two source buckets with different actions in one run, tags
//! (avscan's and GuardDuty's values) read back with the objects' own tags kept, and a policy
//! file with mistakes refused line by line.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use common::{notified_key, run_command, s3_record, sha256_hex, Avscan, TestEnv, EICAR};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

async fn create_bucket(env: &TestEnv, name: &str) {
    env.s3.create_bucket().bucket(name).send().await.unwrap();
}

/// Uploads `body` with the object's own tag `team=blue`, and queues its event.
async fn upload(env: &TestEnv, bucket: &str, key: &str, body: &[u8]) {
    let output = env
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .tagging("team=blue")
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap();
    let etag = output.e_tag.unwrap().trim_matches('"').to_owned();
    let record = s3_record(bucket, key, body.len() as u64, &etag);
    env.send_inbound(&json!({ "Records": [record] }).to_string()).await;
}

async fn tags(env: &TestEnv, bucket: &str, key: &str) -> BTreeMap<String, String> {
    let output = env
        .s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    output.tag_set.into_iter().map(|tag| (tag.key, tag.value)).collect()
}

/// Waits until `key` in `bucket` carries the tag `name`.
async fn wait_for_tag(env: &TestEnv, bucket: &str, key: &str, name: &str) -> BTreeMap<String, String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let tags = tags(env, bucket, key).await;
        if tags.contains_key(name) {
            return tags;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{key} never tagged {name}: {tags:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn policy_env(env: &TestEnv, policy: &str) -> HashMap<String, String> {
    let path = std::env::temp_dir().join(format!("avscan-policy-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, policy).unwrap();
    let mut variables = env.avscan_env();
    variables.remove("UNPROCESSED_BUCKET_NAME");
    variables.remove("QUARANTINE_BUCKET_NAME");
    variables.insert("AVSCAN_POLICY".into(), path.display().to_string());
    variables
}

#[tokio::test(flavor = "multi_thread")]
async fn two_buckets_with_their_own_actions_and_tags_in_one_run() {
    let env = TestEnv::new(false).await;
    let partners = format!("{}-partners", env.unprocessed.trim_end_matches("-unprocessed"));
    create_bucket(&env, &partners).await;
    let policy = format!(
        r#"
        # the uploads: moved to quarantine, clean ones tagged as GuardDuty tags them
        [[bucket]]
        name = "{uploads}"
        quarantine_bucket = "{quarantine}"
        tags = "guardduty"

        # a prefix left in place, tagged: GuardDuty's values for what is not clean
        [[bucket.prefix]]
        prefix = "kept/"
        action = "tag"

        # the partners' bucket: tagged in place with avscan's tags, nothing forwarded, 1 MB limit
        [[bucket]]
        name = "{partners}"
        action = "tag"
        forward_clean = false
        max_file_size_mb = 1
        "#,
        uploads = env.unprocessed,
        quarantine = env.quarantine,
    );
    let variables = policy_env(&env, &policy);
    let (code, check) = run_command(&variables, &["check"]).await;
    assert_eq!(code, Some(0), "{check}");
    for expected in [
        format!("ok   bucket source={}: exists", env.unprocessed),
        format!("ok   bucket source={partners}: exists"),
        format!("ok   bucket quarantine={}: exists", env.quarantine),
    ] {
        assert!(check.contains(&expected), "no {expected:?} in:\n{check}");
    }

    let avscan = Avscan::start(&variables);
    upload(&env, &env.unprocessed, "guid/clean.txt", b"clean").await;
    upload(&env, &env.unprocessed, "guid/evil.com", EICAR).await;
    upload(&env, &env.unprocessed, "kept/guid/evil.com", EICAR).await;
    upload(&env, &partners, "guid/clean.txt", b"clean").await;
    upload(&env, &partners, "guid/evil.com", EICAR).await;
    upload(&env, &partners, "guid/large.bin", &vec![7u8; 1024 * 1024 + 1]).await;

    // uploads: clean forwarded and tagged as GuardDuty does, its own tag kept.
    let clean = wait_for_tag(&env, &env.unprocessed, "guid/clean.txt", "GuardDutyMalwareScanStatus").await;
    assert_eq!(clean["GuardDutyMalwareScanStatus"], "NO_THREATS_FOUND");
    assert_eq!(clean["team"], "blue");
    assert_eq!(clean.len(), 2, "{clean:?}");
    // uploads: EICAR moved to quarantine, with its report.
    let report = env
        .wait_for_object(&env.quarantine, "guid/evil.com.report.json", WAIT)
        .await;
    let report: Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(report["action"], "quarantine");
    assert_eq!(report["sha256"], sha256_hex(EICAR), "the digest of the bytes uploaded");
    assert!(env.get(&env.quarantine, "guid/evil.com").await.is_some());
    // kept/: EICAR left in place, tagged THREATS_FOUND, reported beside the quarantine's.
    let kept = wait_for_tag(
        &env,
        &env.unprocessed,
        "kept/guid/evil.com",
        "GuardDutyMalwareScanStatus",
    )
    .await;
    assert_eq!(kept["GuardDutyMalwareScanStatus"], "THREATS_FOUND");
    assert_eq!(kept["team"], "blue");
    assert_eq!(
        env.get(&env.unprocessed, "kept/guid/evil.com").await.as_deref(),
        Some(EICAR)
    );
    let kept_report = env
        .wait_for_object(&env.quarantine, "kept/guid/evil.com.report.json", WAIT)
        .await;
    let kept_report: Value = serde_json::from_slice(&kept_report).unwrap();
    assert_eq!(kept_report["action"], "tag");
    assert!(
        env.get(&env.quarantine, "kept/guid/evil.com").await.is_none(),
        "a tag action copied"
    );

    // partners: every object stays, tagged with avscan's tags.
    let clean = wait_for_tag(&env, &partners, "guid/clean.txt", "avscan-status").await;
    assert_eq!(clean["avscan-status"], "clean");
    assert_eq!(clean["team"], "blue");
    assert!(clean.contains_key("avscan-scanned-at") && clean.contains_key("avscan-definitions"));
    let evil = wait_for_tag(&env, &partners, "guid/evil.com", "avscan-status").await;
    assert_eq!(evil["avscan-status"], "infected");
    assert!(evil["avscan-signature"].contains("Eicar"), "{evil:?}");
    assert_eq!(evil["team"], "blue");
    let large = wait_for_tag(&env, &partners, "guid/large.bin", "avscan-status").await;
    assert_eq!(large["avscan-status"], "too-large");
    assert!(
        env.get(&partners, "guid/evil.com").await.is_some(),
        "a tag action removed it"
    );

    // Only the uploads' clean object was forwarded. Four notifications: the quarantined EICAR,
    // the kept one, and the partners' EICAR and large object.
    env.wait_inbound_empty(WAIT).await;
    let forwarded = env.receive(&env.validation_url, 1, Duration::from_secs(10)).await;
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    let sha256 = forwarded[0]
        .message_attributes()
        .and_then(|attributes| attributes.get("sha256"))
        .and_then(|value| value.string_value());
    assert_eq!(sha256, Some(sha256_hex(b"clean").as_str()));
    assert!(env
        .receive(&env.validation_url, 1, Duration::from_secs(3))
        .await
        .is_empty());
    let notified = env.drain(&env.notifications_url, 4, WAIT).await;
    let mut keys: Vec<String> = notified.iter().map(notified_key).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["guid/evil.com", "guid/evil.com", "guid/large.bin", "kept/guid/evil.com"]
    );
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn a_policy_file_with_mistakes_gives_one_line_per_mistake_and_exit_2() {
    let env = TestEnv::new(false).await;
    let variables = policy_env(
        &env,
        r#"
        [[bucket]]
        name = "uploads"
        action = "move"

        [[bucket]]
        name = "partners"
        quarantine_bucket = "uploads"
        tagz = "avscan"
        "#,
    );
    let (code, _) = run_command(&variables, &["check"]).await;
    assert_eq!(code, Some(2));
    let avscan = Avscan::start(&variables);
    let log_path = avscan.log.clone();
    let code = avscan.wait_exit().await;
    let log = std::fs::read_to_string(log_path).unwrap();
    assert_eq!(code, Some(2), "{log}");
    for line in [
        "  bucket \"uploads\": action \"move\" is not one of quarantine, tag, delete, report",
        "  bucket \"partners\": unknown key \"tagz\"",
        "  bucket \"partners\": quarantine_bucket \"uploads\" is a source bucket",
    ] {
        assert_eq!(
            log.lines().filter(|l| l.starts_with(line)).count(),
            1,
            "no line {line:?} in:\n{log}"
        );
    }
    assert!(log.contains("has 3 mistakes"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_listed_eicar_is_forwarded_and_logged_until_the_list_is_reloaded_without_it() {
    let env = TestEnv::new(false).await;
    let list = std::env::temp_dir().join(format!("avscan-allow-{}.txt", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &list,
        format!("sha256 {}  # QA uploads EICAR on purpose\n", sha256_hex(EICAR)),
    )
    .unwrap();
    let mut variables = env.avscan_env();
    variables.insert("ALLOW_LIST".into(), list.display().to_string());
    variables.insert("ALLOW_LIST_RELOAD_INTERVAL".into(), "1".into());
    let (code, check) = run_command(&variables, &["check"]).await;
    assert_eq!(code, Some(0), "{check}");
    assert!(
        check.contains(&format!("ok   allow-list ALLOW_LIST={}: 1 entries", list.display())),
        "{check}"
    );
    let avscan = Avscan::start(&variables);

    upload(&env, &env.unprocessed, "guid/qa-eicar.com", EICAR).await;
    let forwarded = env.receive(&env.validation_url, 1, WAIT).await;
    assert_eq!(forwarded.len(), 1, "the allow-listed EICAR was not forwarded");
    let allowed_by = forwarded[0]
        .message_attributes()
        .and_then(|attributes| attributes.get("allowed_by"))
        .and_then(|value| value.string_value())
        .unwrap_or_default()
        .to_owned();
    assert!(allowed_by.contains("QA uploads EICAR on purpose"), "{allowed_by}");
    avscan
        .wait_for_log("detection allowed by the allow-list; handled as clean", WAIT)
        .await;
    assert!(env.keys(&env.quarantine).await.is_empty());

    // The entry is revoked: the next read (within a second) puts the new list in force.
    std::fs::write(&list, "# nothing allowed any more\n").unwrap();
    avscan.wait_for_log("allow-list reloaded", WAIT).await;
    upload(&env, &env.unprocessed, "guid/qa-eicar-again.com", EICAR).await;
    env.wait_for_object(&env.quarantine, "guid/qa-eicar-again.com.report.json", WAIT)
        .await;

    // A list with a mistake: nothing is allowed, and each mistake is logged.
    std::fs::write(&list, format!("sha256 {}\n", sha256_hex(EICAR))).unwrap();
    avscan.wait_for_log("allow-list mistake", WAIT).await;
    assert!(
        avscan.log_text().contains("line 1: no comment"),
        "{}",
        avscan.log_text()
    );
    upload(&env, &env.unprocessed, "guid/qa-eicar-third.com", EICAR).await;
    env.wait_for_object(&env.quarantine, "guid/qa-eicar-third.com.report.json", WAIT)
        .await;
    // Deleting the list revokes it too.
    std::fs::write(&list, format!("sha256 {}  # back\n", sha256_hex(EICAR))).unwrap();
    avscan.wait_for_log("allow-list reloaded", WAIT).await;
    std::fs::remove_file(&list).unwrap();
    avscan
        .wait_for_log("could not read the allow-list: nothing is allowed", WAIT)
        .await;
    upload(&env, &env.unprocessed, "guid/qa-eicar-fourth.com", EICAR).await;
    env.wait_for_object(&env.quarantine, "guid/qa-eicar-fourth.com.report.json", WAIT)
        .await;
    assert_eq!(avscan.stop().await, Some(0));
}

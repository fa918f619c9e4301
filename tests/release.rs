//! `avscan release` against the real stack: a quarantined EICAR (a false positive, say) is
//! refused until the allow-list allows its bytes, then restored with exactly its bytes, content
//! type and metadata; the release report lies beside the quarantine report, the topic is told,
//! the restore's own event finds it allowed and forwards it, and a second release is refused.
//! Every call the releases make is allowed by `deploy/iam-policy-release.json`.

mod common;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use common::faults::HttpFaultProxy;
use common::{endpoint, iam, run_command_output, sha256_hex, Avscan, TestEnv, EICAR};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_released_false_positive_comes_back_whole_and_is_forwarded_once_allowed() {
    let env = TestEnv::new(true).await;
    let allow_list = std::env::temp_dir().join(format!("avscan-allow-{}.txt", env.unprocessed));
    std::fs::write(&allow_list, "# no entries yet\n").unwrap();
    let mut variables = env.avscan_env();
    variables.insert("ALLOW_LIST".into(), allow_list.display().to_string());
    variables.insert("ALLOW_LIST_RELOAD_INTERVAL".into(), "1".into());
    let avscan = Avscan::start(&variables);

    // The upload, with a content type and metadata of its own; S3 sends its event.
    env.s3
        .put_object()
        .bucket(&env.unprocessed)
        .key("guid/tool.com")
        .content_type("application/x-msdownload")
        .metadata("uploader", "alice")
        .body(ByteStream::from(EICAR.to_vec()))
        .send()
        .await
        .unwrap();
    env.wait_for_object(&env.quarantine, "guid/tool.com.report.json", WAIT)
        .await;
    assert_eq!(env.drain_notified(1, WAIT).await.len(), 1);

    // The releases go through a proxy that records their calls.
    let proxy = HttpFaultProxy::start(endpoint()).await;
    let mut operator = variables.clone();
    for service in ["S3", "SNS"] {
        operator.insert(format!("AWS_{service}_ENDPOINT_URL"), proxy.url.clone());
    }
    let target = format!("s3://{}/guid/tool.com", env.quarantine);
    let release = [
        "release",
        &target,
        "--reason",
        "INC-42: the vendor's tool",
        "--by",
        "tester",
    ];
    let (code, _, stderr) = run_command_output(&operator, &release).await;
    assert_eq!(code, Some(1), "{stderr}");
    let entry = format!("sha256 {}", sha256_hex(EICAR));
    assert!(
        stderr.contains(&format!("add `{entry} # <why>` to ALLOW_LIST")),
        "{stderr}"
    );
    assert!(
        env.get(&env.unprocessed, "guid/tool.com").await.is_none(),
        "restored while refused"
    );

    std::fs::write(&allow_list, format!("{entry}  # INC-42: the vendor's tool\n")).unwrap();
    avscan.wait_for_log("allow-list reloaded", WAIT).await;
    let (code, stdout, stderr) = run_command_output(&operator, &release).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("allowed by sha256"), "{stdout}");

    // Exactly the bytes, the content type and the metadata uploaded.
    assert_eq!(
        env.wait_for_object(&env.unprocessed, "guid/tool.com", WAIT).await,
        EICAR
    );
    let restored = env
        .s3
        .head_object()
        .bucket(&env.unprocessed)
        .key("guid/tool.com")
        .send()
        .await
        .unwrap();
    assert_eq!(restored.content_type.as_deref(), Some("application/x-msdownload"));
    assert_eq!(
        restored
            .metadata
            .unwrap_or_default()
            .get("uploader")
            .map(String::as_str),
        Some("alice")
    );

    let release_report: Value =
        serde_json::from_slice(&env.get(&env.quarantine, "guid/tool.com.release.json").await.unwrap()).unwrap();
    assert_eq!(release_report["released_by"], "tester");
    assert_eq!(release_report["reason"], "INC-42: the vendor's tool");
    assert_eq!(release_report["sha256"], sha256_hex(EICAR));
    assert_eq!(release_report["report_key"], "guid/tool.com.report.json");
    assert!(release_report["allowed_by"].as_str().unwrap().contains("INC-42"));

    let notified = env.receive(&env.notifications_url, 1, WAIT).await;
    let envelope: Value = serde_json::from_str(notified[0].body().unwrap()).unwrap();
    assert_eq!(envelope["Subject"], "avscan: object released");
    let message: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(message["released_by"], "tester");

    // The restore's own event: allowed, forwarded once, and left where it is.
    let forwarded = env.receive(&env.validation_url, 1, WAIT).await;
    assert_eq!(forwarded.len(), 1);
    assert_eq!(common::record_keys(&forwarded[0]), ["guid/tool.com"]);
    let attributes = forwarded[0].message_attributes.clone().unwrap_or_default();
    let allowed_by = attributes["allowed_by"].string_value.clone().unwrap();
    assert!(allowed_by.contains("INC-42"), "{allowed_by}");
    env.wait_inbound_empty(WAIT).await;
    assert_eq!(env.get(&env.unprocessed, "guid/tool.com").await.as_deref(), Some(EICAR));
    let incidents: Vec<String> = env
        .keys(&env.quarantine)
        .await
        .into_iter()
        .filter(|key| key.ends_with(".report.json"))
        .collect();
    assert_eq!(incidents, ["guid/tool.com.report.json"], "quarantined again");

    let (code, _, stderr) = run_command_output(&operator, &release).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("already released"), "{stderr}");
    assert_eq!(avscan.stop().await, Some(0));

    let policy = iam::policy("deploy/iam-policy-release.json");
    let calls = proxy.targets();
    assert!(
        calls.iter().any(|(operation, _)| operation == "CopyObject"),
        "{calls:?}"
    );
    let missing = iam::missing(&policy, &calls, |resource| iam::placeholder(&env, None, resource));
    assert!(
        missing.is_empty(),
        "deploy/iam-policy-release.json lacks:\n{}",
        missing.join("\n")
    );
}

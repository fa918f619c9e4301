//! The commands beside `run`, against the real services: `avscan check` and `avscan scan`.

mod common;

use std::collections::HashMap;

use common::archives::hole_zip;
use common::*;

#[tokio::test]
async fn check_prints_one_ok_line_per_resource_and_exits_0() {
    let env = TestEnv::new(false).await;
    let (code, stdout) = run_command(&env.avscan_env(), &["check"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 15, "{stdout}");
    // How the quarantine bucket keeps evidence is advice: a warning, not a failure.
    assert!(
        lines
            .iter()
            .all(|line| line.starts_with("ok ") || line.starts_with("warn quarantine bucket ")),
        "{stdout}"
    );
    for expected in [
        "clamd tcp://",
        "ClamAV ",
        // The local stack's daily database, fetched by freshclam when `make stack` ran.
        "ok   definitions: daily ",
        "(DEFINITIONS_MAX_AGE 7days)",
        // The local stack's clamd, CLAMD_MAX_FILE_SIZE unset: discovered, one line per setting.
        "clamd AlertExceedsMax: yes",
        "clamd MaxFileSize: 400 MB, discovered in ",
        "clamd MaxScanSize: above the discovered 400 MB",
        "clamd StreamMaxLength: at least MAX_FILE_SIZE (400 MB)",
        "clamd AlertEncryptedArchive: yes",
        &format!(
            "queue VIRUS_SCANNING_QUEUE_NAME={}: {}",
            env.inbound_name, env.inbound_url
        ),
        &format!("queue VALIDATION_QUEUE_NAME={}", env.validation_name),
        &format!("queue REJECTED_EVENTS_QUEUE_NAME={}", env.rejected_name),
        &format!("bucket UNPROCESSED_BUCKET_NAME={}: exists", env.unprocessed),
        &format!("bucket QUARANTINE_BUCKET_NAME={}: exists", env.quarantine),
        &format!("topic VIRUS_NOTIFICATION_TOPIC_ARN={}: exists", env.topic_arn),
        "warn quarantine bucket versioning: off",
        "warn quarantine bucket incomplete multipart uploads: no lifecycle rule aborts them",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    // Versioned, with a rule that aborts incomplete multipart uploads: both are ok.
    env.enable_versioning(&env.quarantine).await;
    let rule = aws_sdk_s3::types::LifecycleRule::builder()
        .id("abort-incomplete-multipart-uploads")
        .status(aws_sdk_s3::types::ExpirationStatus::Enabled)
        .filter(aws_sdk_s3::types::LifecycleRuleFilter::builder().prefix("").build())
        .abort_incomplete_multipart_upload(
            aws_sdk_s3::types::AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(2)
                .build(),
        )
        .build()
        .unwrap();
    env.s3
        .put_bucket_lifecycle_configuration()
        .bucket(&env.quarantine)
        .lifecycle_configuration(
            aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (code, stdout) = run_command(&env.avscan_env(), &["check"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("ok   quarantine bucket versioning: enabled"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   quarantine bucket incomplete multipart uploads: aborted after 2 days"),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_reports_every_problem_it_finds_and_exits_1() {
    let env = TestEnv::new(false).await;
    env.send_inbound("one message waiting").await;
    let mut vars = env.avscan_env();
    vars.insert("VALIDATION_QUEUE_NAME".into(), "no-such-queue-for-avscan".into());
    vars.insert("QUARANTINE_BUCKET_NAME".into(), "no-such-bucket-for-avscan".into());
    vars.insert(
        "VIRUS_NOTIFICATION_TOPIC_ARN".into(),
        "arn:aws:sns:us-east-1:123456789012:no-such-topic".into(),
    );
    vars.insert("CLAMD_ADDRESS".into(), "tcp://127.0.0.1:1".into());
    let (code, stdout) = run_command(&vars, &["check"]).await;
    assert_eq!(code, Some(1), "{stdout}");
    let failed: Vec<&str> = stdout.lines().filter(|line| line.starts_with("FAIL")).collect();
    assert_eq!(failed.len(), 4, "{stdout}");
    for expected in [
        "FAIL clamd tcp://127.0.0.1:1",
        "FAIL queue VALIDATION_QUEUE_NAME=no-such-queue-for-avscan",
        "FAIL bucket QUARANTINE_BUCKET_NAME=no-such-bucket-for-avscan",
        "FAIL topic VIRUS_NOTIFICATION_TOPIC_ARN=",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    // The good ones are still checked, with what they hold.
    assert!(
        stdout.contains(&format!(
            "ok   queue VIRUS_SCANNING_QUEUE_NAME={}: {} (1 messages)",
            env.inbound_name, env.inbound_url
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("ok   bucket UNPROCESSED_BUCKET_NAME={}", env.unprocessed)));
}

/// Only what `avscan scan` needs: clamd and S3.
fn scan_env(env: &TestEnv) -> HashMap<String, String> {
    env.avscan_env()
        .into_iter()
        .filter(|(name, _)| name.starts_with("CLAMD_") || name.starts_with("AWS_S3_"))
        .collect()
}

fn line_for<'a>(stdout: &'a str, input: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| line.starts_with(&format!("{input}: ")))
        .unwrap_or_else(|| panic!("no line for {input} in:\n{stdout}"))
}

#[tokio::test]
async fn scan_reports_each_file_and_object_with_clamdscans_exit_codes() {
    let env = TestEnv::new(false).await;
    env.put("guid/clean.txt", b"clean bytes").await;
    env.put("guid/evil.com", EICAR).await;
    let dir = std::env::temp_dir().join(format!("avscan-scan-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let clean = file("clean.txt", b"nothing here");
    let eicar = file("eicar.com", EICAR);
    let hole = file("hole.zip", &hole_zip(11 * 1024 * 1024));
    let missing = dir.join("missing.txt").display().to_string();
    let clean_object = format!("s3://{}/guid/clean.txt", env.unprocessed);
    let evil_object = format!("s3://{}/guid/evil.com", env.unprocessed);
    let vars = scan_env(&env);

    let (code, stdout) = run_command(&vars, &["scan", &clean, &clean_object]).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(line_for(&stdout, &clean), format!("{clean}: OK"));
    assert_eq!(line_for(&stdout, &clean_object), format!("{clean_object}: OK"));

    let (code, stdout) = run_command(&vars, &["scan", &clean, &eicar, &evil_object]).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(line_for(&stdout, &clean), format!("{clean}: OK"));
    assert_eq!(
        line_for(&stdout, &eicar),
        format!("{eicar}: Eicar-Test-Signature.UNOFFICIAL FOUND")
    );
    assert_eq!(
        line_for(&stdout, &evil_object),
        format!("{evil_object}: Eicar-Test-Signature.UNOFFICIAL FOUND")
    );

    // The zip hole, with a clamd whose MaxFileSize is 10 MB: clamd says OK, avscan does not.
    let mut limited = LocalClamd::configure("MaxFileSize 10M\nAlertExceedsMax yes");
    limited.start();
    let mut hole_vars = vars.clone();
    hole_vars.insert("CLAMD_ADDRESS".into(), limited.address());
    hole_vars.insert("CLAMD_MAX_FILE_SIZE".into(), "10".into());
    wait_for_clamd(&limited).await;
    let (code, stdout) = run_command(&hole_vars, &["scan", &clean, &hole]).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(
        line_for(&stdout, &hole),
        format!("{hole}: Avscan.Archive.MemberExceedsLimit UNSCANNABLE")
    );

    // An error outranks a detection; every input is still reported.
    let (code, stdout) = run_command(&vars, &["scan", &missing, &eicar, "s3://no-key"]).await;
    assert_eq!(code, Some(2), "{stdout}");
    assert!(line_for(&stdout, &missing).contains(": ERROR "), "{stdout}");
    assert!(line_for(&stdout, &eicar).ends_with("FOUND"), "{stdout}");
    assert!(line_for(&stdout, "s3://no-key").contains("ERROR not an s3://bucket/key address"));

    // clamd down: an error, never a verdict.
    let mut down = vars.clone();
    down.insert("CLAMD_ADDRESS".into(), "tcp://127.0.0.1:1".into());
    let (code, stdout) = run_command(&down, &["scan", &clean]).await;
    assert_eq!(code, Some(2), "{stdout}");
    assert!(line_for(&stdout, &clean).contains(": ERROR "), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn wait_for_clamd(clamd: &LocalClamd) {
    let client = avscan::clamd::Clamd::new(
        clamd.address().parse().unwrap(),
        65536,
        std::time::Duration::from_secs(5),
    );
    client.wait_ready(std::time::Duration::from_secs(30)).await.unwrap();
}

//! The commands beside `run`, against the real services: `avscan check`.

mod common;

use common::*;

#[tokio::test]
async fn check_prints_one_ok_line_per_resource_and_exits_0() {
    let env = TestEnv::new(false).await;
    let (code, stdout) = run_command(&env.avscan_env(), &["check"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{stdout}");
    assert!(lines.iter().all(|line| line.starts_with("ok ")), "{stdout}");
    for expected in [
        "clamd tcp://",
        "ClamAV ",
        "clamd MaxFileSize: scans files of CLAMD_MAX_FILE_SIZE (25 MB) completely",
        &format!(
            "queue VIRUS_SCANNING_QUEUE_NAME={}: {}",
            env.inbound_name, env.inbound_url
        ),
        &format!("queue VALIDATION_QUEUE_NAME={}", env.validation_name),
        &format!("queue REJECTED_EVENTS_QUEUE_NAME={}", env.rejected_name),
        &format!("bucket UNPROCESSED_BUCKET_NAME={}: exists", env.unprocessed),
        &format!("bucket QUARANTINE_BUCKET_NAME={}: exists", env.quarantine),
        &format!("topic VIRUS_NOTIFICATION_TOPIC_ARN={}: exists", env.topic_arn),
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
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

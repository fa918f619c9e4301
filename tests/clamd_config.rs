//! clamd's configuration is proven at start-up, not assumed (`src/limits/`): for each way a
//! clamd can be configured to skip content in silence (or to refuse what avscan promises to
//! pass), a clamd of the test's own configured that way, `avscan run` refusing to start (exit 1,
//! one log line naming the clamd.conf option) and `avscan check` printing its FAIL line; then a
//! correct clamd that starts, and a MaxFileSize discovered when `CLAMD_MAX_FILE_SIZE` is unset
//! and used by the archive guard.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::archives::hole_zip;
use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;

/// A clamd of the test's own with `extra_config` (which overrides what avscan needs, see
/// `LocalClamd::configure`), answering PING.
async fn clamd(extra_config: &str) -> LocalClamd {
    let mut clamd = LocalClamd::configure(extra_config);
    clamd.start();
    clamd.wait_ready().await;
    clamd
}

/// avscan's variables for `env`, pointed at `clamd`, with `vars` set on top.
fn variables(env: &TestEnv, clamd: &LocalClamd, vars: &[(&str, &str)]) -> HashMap<String, String> {
    let mut variables = env.avscan_env();
    variables.insert("CLAMD_ADDRESS".into(), clamd.address());
    // Long, so that a refusal that came from the ready timeout would show in the time it took.
    variables.insert("CLAMD_READY_TIMEOUT".into(), "60".into());
    for (name, value) in vars {
        variables.insert((*name).into(), (*value).into());
    }
    variables
}

/// `avscan run` against a clamd configured with `extra_config` must exit 1 at once with one error
/// line naming `option`, and `avscan check` must print `option`'s FAIL line; returns both.
async fn refused(extra_config: &str, vars: &[(&str, &str)], option: &str) -> (String, String) {
    let clamd = clamd(extra_config).await;
    let env = TestEnv::new(false).await;
    let vars = variables(&env, &clamd, vars);

    let started = Instant::now();
    let avscan = Avscan::start(&vars);
    let log_path = avscan.log.clone();
    assert_eq!(avscan.wait_exit().await, Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let log = std::fs::read_to_string(log_path).unwrap();
    let errors: Vec<&str> = log.lines().filter(|line| line.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    let error = errors[0].to_owned();
    assert!(error.contains(&format!("clamd.conf {option}: ")), "{log}");
    assert!(!log.contains("avscan running"), "{log}");

    let (code, stdout) = run_command(&vars, &["check"]).await;
    assert_eq!(code, Some(1), "{stdout}");
    let fail = stdout
        .lines()
        .find(|line| line.starts_with(&format!("FAIL clamd {option}: ")))
        .unwrap_or_else(|| panic!("no FAIL line for {option}:\n{stdout}"))
        .to_owned();
    (error, fail)
}

#[tokio::test]
async fn alert_exceeds_max_off_is_refused() {
    // ClamAV's stock default: whatever passes a limit is skipped and answered OK.
    let (error, fail) = refused("AlertExceedsMax no", &[], "AlertExceedsMax").await;
    for line in [&error, &fail] {
        assert!(line.contains("answered OK to a gzip nested 64 deep"), "{line}");
        assert!(line.contains("set AlertExceedsMax yes"), "{line}");
    }
}

#[tokio::test]
async fn a_max_file_size_below_clamd_max_file_size_is_refused() {
    let (error, fail) = refused("MaxFileSize 8M", &[("CLAMD_MAX_FILE_SIZE", "10")], "MaxFileSize").await;
    for line in [&error, &fail] {
        assert!(line.contains("below CLAMD_MAX_FILE_SIZE (10 MB)"), "{line}");
        assert!(line.contains("Heuristics.Limits.Exceeded.MaxFileSize"), "{line}");
    }
}

#[tokio::test]
async fn a_max_file_size_above_clamd_max_file_size_is_refused() {
    // Members between the two would be unscannable though clamd scans them: clean files
    // quarantined.
    let (error, fail) = refused("MaxFileSize 12M", &[("CLAMD_MAX_FILE_SIZE", "10")], "MaxFileSize").await;
    for line in [&error, &fail] {
        assert!(line.contains("above CLAMD_MAX_FILE_SIZE (10 MB)"), "{line}");
        assert!(line.contains("a gzip of 10 MB + 1 byte scanned completely"), "{line}");
    }
}

#[tokio::test]
async fn a_max_scan_size_below_max_file_size_is_refused() {
    let config = "MaxScanSize 5M\nMaxFileSize 10M";
    let (error, fail) = refused(config, &[("CLAMD_MAX_FILE_SIZE", "10")], "MaxScanSize").await;
    for line in [&error, &fail] {
        assert!(line.contains("below CLAMD_MAX_FILE_SIZE (10 MB)"), "{line}");
        assert!(line.contains("Heuristics.Limits.Exceeded.MaxScanSize"), "{line}");
    }
    // Discovering instead of verifying runs into it too.
    let clamd = clamd(config).await;
    let env = TestEnv::new(false).await;
    let (code, stdout) = run_command(&variables(&env, &clamd, &[]), &["check"]).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL clamd MaxScanSize: below MaxFileSize: clamd stops at 4 MB"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL clamd MaxFileSize: not checked while MaxScanSize is not proven"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_stream_max_length_below_max_file_size_is_refused() {
    // clamd would answer `INSTREAM size limit exceeded` for clean objects of 5 to 10 MB.
    let config = "StreamMaxLength 5M\nMaxFileSize 10M";
    let vars = [("MAX_FILE_SIZE", "10"), ("CLAMD_MAX_FILE_SIZE", "10")];
    let (error, fail) = refused(config, &vars, "StreamMaxLength").await;
    for line in [&error, &fail] {
        assert!(line.contains("below MAX_FILE_SIZE (10 MB)"), "{line}");
        assert!(line.contains("set StreamMaxLength 10M or more"), "{line}");
    }
}

#[tokio::test]
async fn encrypted_archives_not_alerted_are_refused() {
    let (error, fail) = refused("AlertEncrypted no", &[], "AlertEncryptedArchive").await;
    for line in [&error, &fail] {
        assert!(
            line.contains("answered OK to a zip whose member is encrypted"),
            "{line}"
        );
        assert!(line.contains("set AlertEncryptedArchive yes"), "{line}");
    }
}

#[tokio::test]
async fn a_clamd_configured_as_avscan_needs_starts_and_check_proves_every_setting() {
    let clamd = clamd("MaxFileSize 10M\nMaxScanSize 40M\nStreamMaxLength 10M").await;
    let env = TestEnv::new(false).await;
    let vars = variables(&env, &clamd, &[("CLAMD_MAX_FILE_SIZE", "10"), ("MAX_FILE_SIZE", "10")]);

    let (code, stdout) = run_command(&vars, &["check"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    for expected in [
        "ok   clamd AlertExceedsMax: yes (a gzip nested 64 deep answered Heuristics.Limits.Exceeded.MaxRecursion)",
        "ok   clamd MaxFileSize: 10 MB, as CLAMD_MAX_FILE_SIZE says: a gzip of 10 MB scanned completely, one byte \
         more answered Heuristics.Limits.Exceeded.MaxFileSize",
        "ok   clamd MaxScanSize: above CLAMD_MAX_FILE_SIZE (10 MB)",
        "ok   clamd StreamMaxLength: at least MAX_FILE_SIZE (10 MB)",
        "ok   clamd AlertEncryptedArchive: yes (a zip with an encrypted member answered Heuristics.Encrypted.Zip)",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }

    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("avscan running", WAIT).await;
    assert!(avscan.log_text().contains("clamd ready"), "{}", avscan.log_text());
    assert!(!avscan.log_text().contains("discovered"), "{}", avscan.log_text());
    assert_eq!(avscan.stop().await, Some(0));
}

#[tokio::test]
async fn an_unset_clamd_max_file_size_is_discovered_and_becomes_the_archive_guards_limit() {
    let clamd = clamd("MaxFileSize 10M").await;
    let env = TestEnv::new(true).await;
    let vars = variables(&env, &clamd, &[]);
    let avscan = Avscan::start(&vars);
    avscan.wait_for_log("avscan running", WAIT).await;
    let log = avscan.log_text();
    let line = log
        .lines()
        .find(|line| line.contains("discovered clamd's MaxFileSize"))
        .unwrap_or_else(|| panic!("no discovery line in:\n{log}"));
    assert!(line.contains("clamd_max_file_size_mb=10"), "{line}");
    assert!(line.contains("took_ms="), "{line}");
    assert!(
        line.contains("set CLAMD_MAX_FILE_SIZE=10 to verify it instead"),
        "{line}"
    );

    // A member of 11 MB: clamd truncates it and answers OK (the zip hole). Without CLAMD_MAX_FILE_SIZE
    // the guard's limit would be its default, 25 MB, and the zip would go out as clean; with the
    // discovered 10 MB it is unscannable.
    env.put("guid/hole.zip", &hole_zip(11 * MIB)).await;
    let report: Value = serde_json::from_slice(
        &env.wait_for_object(&env.quarantine, "guid/hole.zip.report.json", WAIT)
            .await,
    )
    .unwrap();
    assert_eq!(report["verdict"], "unscannable");
    assert_eq!(report["signature"], "Avscan.Archive.MemberExceedsLimit");
    assert_eq!(avscan.stop().await, Some(0));

    // `avscan scan` discovers it too.
    let dir = std::env::temp_dir().join(format!("avscan-cfg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let hole = dir.join("hole.zip");
    std::fs::write(&hole, hole_zip(11 * MIB)).unwrap();
    let hole = hole.display().to_string();
    let (code, stdout) = run_command(&vars, &["scan", &hole]).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(
        stdout.trim(),
        format!("{hole}: Avscan.Archive.MemberExceedsLimit UNSCANNABLE")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_max_file_size_between_megabytes_is_discovered_rounded_down() {
    let clamd = clamd("MaxFileSize 10500K").await;
    let env = TestEnv::new(false).await;
    let (code, stdout) = run_command(&variables(&env, &clamd, &[]), &["check"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("ok   clamd MaxFileSize: 10 MB, discovered in "),
        "{stdout}"
    );
    assert!(
        stdout.contains("one of 11 MB answered Heuristics.Limits.Exceeded.MaxFileSize"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_misconfigured_clamd_makes_avscan_scan_an_error_for_every_input() {
    let clamd = clamd("AlertExceedsMax no").await;
    let env = TestEnv::new(false).await;
    let (code, stdout) = run_command(
        &variables(&env, &clamd, &[]),
        &["scan", "report.pdf", "s3://bucket/guid/key"],
    )
    .await;
    assert_eq!(code, Some(2), "{stdout}");
    // Nothing is opened or scanned: every input is an error.
    for input in ["report.pdf", "s3://bucket/guid/key"] {
        assert!(
            stdout.contains(&format!("{input}: ERROR not scanned: clamd.conf AlertExceedsMax: ")),
            "{stdout}"
        );
    }
}

//! deploy/prometheus/alerts.yaml against what avscan really exports: the rules' series are
//! scraped from the real binary in four states (healthy; clamd gone, so scans are retried and
//! readiness is lost; clamd back with definitions ten days old), and `promtool test rules` checks
//! which alerts fire on them. Where a state cannot be brought about in a test (an actor restart
//! storm, scans of minutes), the series are a real scrape's (names, labels, histogram buckets)
//! with only their growth made up, and the test says so.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::definitions::DailyDatabase;
use common::{http_get, LocalClamd, TestEnv};
use serde_json::{json, Value};

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yaml");

/// One `/metrics` scrape: series (name and labels, as written) and values.
#[derive(Debug, Clone)]
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    async fn take(ops: &str) -> Scrape {
        let (status, text) = http_get(ops, "/metrics").await;
        assert_eq!(status, 200);
        let series = text
            .lines()
            .filter(|line| line.starts_with("avscan_"))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse::<f64>().ok()?))
            })
            .collect();
        Scrape(series)
    }

    fn value(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(f64::NAN)
    }

    /// The metric names, without `_bucket`, `_sum`, `_count` of histograms.
    fn names(&self) -> BTreeSet<String> {
        self.0
            .keys()
            .map(|series| {
                let name = series.split('{').next().unwrap();
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name)
                    .to_owned()
            })
            .collect()
    }
}

/// Scrapes until `ready` holds for a scrape (the gauges are set every second).
async fn scrape_when(ops: &str, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..120 {
        let scrape = Scrape::take(ops).await;
        if ready(&scrape) {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("never scraped: {what}");
}

fn is_counter(series: &str) -> bool {
    let name = series.split('{').next().unwrap();
    name.ends_with("_total") || name.ends_with("_bucket") || name.ends_with("_count") || name.ends_with("_sum")
}

/// Every series of `scrape` held for the test's 100 minutes, except those `grow` says grow
/// by so much per minute.
fn input_series(scrape: &Scrape, grow: impl Fn(&str) -> Option<f64>) -> Vec<Value> {
    scrape
        .0
        .iter()
        .map(|(series, value)| {
            let values = match grow(series) {
                Some(per_minute) => format!("{value}+{per_minute}x100"),
                None => format!("{value}x100"),
            };
            json!({ "series": series, "values": values })
        })
        .collect()
}

/// The rules' annotations by alert, to expect them as written (they are static).
fn annotations() -> BTreeMap<String, Value> {
    let rules: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(RULES).unwrap()).unwrap();
    rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| (rule["alert"].as_str().unwrap().to_owned(), rule["annotations"].clone()))
        .collect()
}

/// A promtool test case: at 90 minutes, exactly `firing` (alert, extra labels) fire.
fn case(name: &str, series: Vec<Value>, firing: &[(&str, Value)]) -> Value {
    let annotations = annotations();
    let severity = |alert: &str| {
        let rules: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(RULES).unwrap()).unwrap();
        rules["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|rule| rule["alert"] == alert)
            .unwrap()["labels"]["severity"]
            .clone()
    };
    let tests: Vec<Value> = annotations
        .keys()
        .map(|alert| {
            let expected: Vec<Value> = firing
                .iter()
                .filter(|(firing, _)| firing == alert)
                .map(|(_, labels)| {
                    let mut labels = labels.clone();
                    labels["severity"] = severity(alert);
                    json!({ "exp_labels": labels, "exp_annotations": annotations[alert] })
                })
                .collect();
            json!({ "eval_time": "90m", "alertname": alert, "exp_alerts": expected })
        })
        .collect();
    json!({ "name": name, "interval": "1m", "input_series": series, "alert_rule_test": tests })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_alert_rules_fire_on_what_avscan_exports() {
    let env = TestEnv::new(false).await;
    let mut clamd = LocalClamd::configure("");
    clamd.start();
    clamd.wait_ready().await;
    let mut variables = env.avscan_env();
    variables.insert("CLAMD_ADDRESS".into(), clamd.address());
    variables.insert("DEFINITIONS_CHECK_INTERVAL".into(), "1".into());
    let avscan = common::Avscan::start(&variables);
    avscan.wait_for_log("avscan running", Duration::from_secs(60)).await;
    let ops = avscan.ops_address().await;

    let upload = |key: &'static str| {
        let env = &env;
        async move {
            let etag = env.put(key, b"hello").await;
            let record = common::s3_record(&env.unprocessed, key, 5, &etag);
            env.send_inbound(&json!({ "Records": [record] }).to_string()).await;
        }
    };
    // Healthy: three clean objects forwarded.
    for key in ["guid/a.txt", "guid/b.txt", "guid/c.txt"] {
        upload(key).await;
    }
    assert_eq!(
        env.receive(&env.validation_url, 3, Duration::from_secs(60)).await.len(),
        3
    );
    let healthy = scrape_when(&ops, "healthy and ready", |s| {
        s.value("avscan_ready") == 1.0 && s.value("avscan_messages_deleted_total") >= 3.0
    })
    .await;

    // clamd gone: scans fail and are retried, readiness is lost.
    clamd.kill();
    upload("guid/d.txt").await;
    upload("guid/e.txt").await;
    let retrying = r#"avscan_retries_total{cause="scan"}"#;
    let failing = scrape_when(&ops, "scan retries, not ready", |s| {
        s.value(retrying) >= 1.0 && s.value("avscan_ready") == 0.0
    })
    .await;
    let before = failing.value(retrying);
    let failing_later = scrape_when(&ops, "more scan retries", |s| s.value(retrying) > before).await;

    // clamd back with definitions ten days old: refused.
    DailyDatabase::new(7300)
        .aged(Duration::from_secs(10 * 86_400))
        .build_into(&clamd.database_dir());
    clamd.start();
    clamd.wait_ready().await;
    let stale = scrape_when(&ops, "definitions refused", |s| {
        s.value("avscan_definitions_refused") == 1.0 && s.value("avscan_ready") == 0.0
    })
    .await;
    assert_eq!(avscan.stop().await, Some(0));

    // Every metric the rules use is one avscan exports.
    let exported: BTreeSet<String> = [&healthy, &failing_later, &stale]
        .iter()
        .flat_map(|s| s.names())
        .collect();
    let rules = std::fs::read_to_string(RULES).unwrap();
    let used: BTreeSet<String> = rules
        .match_indices("avscan_")
        .map(|(at, _)| {
            let name: String = rules[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            name.strip_suffix("_bucket").map(str::to_owned).unwrap_or(name)
        })
        .collect();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "rules use metrics avscan does not export: {unknown:?}"
    );

    // Counters grow per minute by what they grew between the two failing scrapes.
    let growth =
        |series: &str| is_counter(series).then(|| (failing_later.value(series) - failing.value(series)).max(0.0));
    let scan_bucket_le = |series: &str| -> Option<f64> {
        let rest = series.strip_prefix(r#"avscan_stage_seconds_bucket{stage="scan",le=""#)?;
        rest.trim_end_matches("\"}").parse().ok()
    };
    let cases = vec![
        case("healthy", input_series(&healthy, |_| None), &[]),
        case(
            "clamd gone: scans retried, not ready",
            input_series(&failing_later, growth),
            &[("AvscanRetryRateHigh", json!({})), ("AvscanNotReady", json!({}))],
        ),
        case(
            "definitions ten days old",
            input_series(&stale, |_| None),
            &[
                ("AvscanDefinitionsStale", json!({})),
                ("AvscanDefinitionsNotUpdating", json!({})),
                ("AvscanNotReady", json!({})),
            ],
        ),
        // Made-up growth on real series: the scanner's restart counter (exported at 0 from the
        // start) climbs by one a minute.
        case(
            "a scanner restarting (growth made up)",
            input_series(&healthy, |series| {
                (series == r#"avscan_actor_restarts_total{actor="scanner"}"#).then_some(1.0)
            }),
            &[("AvscanActorRestarts", json!({ "actor": "scanner" }))],
        ),
        // Made-up growth on real series: every new scan lands in the buckets above 60 s.
        case(
            "scans of minutes (growth made up)",
            input_series(&healthy, |series| match scan_bucket_le(series) {
                Some(le) if le > 60.0 => Some(1.0),
                _ if series.ends_with(r#"+Inf"}"#) && series.contains(r#"stage="scan""#) => Some(1.0),
                _ if series == r#"avscan_stage_seconds_count{stage="scan"}"# => Some(1.0),
                _ if series == r#"avscan_stage_seconds_sum{stage="scan"}"# => Some(300.0),
                _ => None,
            }),
            &[("AvscanScanNearVisibilityTimeout", json!({}))],
        ),
    ];
    let dir = std::env::temp_dir().join(format!("avscan-alerts-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let test_file = dir.join("alerts_test.yaml");
    // JSON is YAML; rule_files is relative to the test file.
    std::fs::copy(RULES, dir.join("alerts.yaml")).unwrap();
    let document = json!({ "rule_files": ["alerts.yaml"], "evaluation_interval": "1m", "tests": cases });
    std::fs::write(&test_file, serde_json::to_string_pretty(&document).unwrap()).unwrap();
    let check = std::process::Command::new("promtool")
        .args(["check", "rules", RULES])
        .output()
        .expect("promtool installed: make stack installs it (Debian's prometheus)");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let output = std::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(&test_file)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool test rules failed:\n{report}\n(test file kept at {})",
        test_file.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

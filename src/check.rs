//! `avscan check`: the first thing to run against a new deployment. Resolves every queue, bucket
//! and topic the configuration names and asks clamd for PING, VERSION, its definitions (judged
//! by `DEFINITIONS_MAX_AGE`: a `FAIL definitions` line while avscan would not receive), the
//! start-up canaries
//! (one line per clamd.conf setting avscan proves, see `limits`), and reads how the quarantine
//! bucket keeps evidence (versioning, a rule that aborts incomplete multipart uploads), printing
//! one line per check (`ok`, `warn` or `FAIL`, the variable or setting, what was found). Only a
//! `FAIL` fails the run. Every check runs even after a failure, so one run shows everything that
//! is wrong.

use std::fmt::Display;

use crate::config::Settings;
use crate::{aws, definitions, limits};

/// One check's outcome, printed as a line.
struct Line {
    ok: bool,
    /// Works, but not as we recommend (printed `warn`, does not fail the run).
    warn: bool,
    what: String,
    detail: String,
}

impl Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match (self.ok, self.warn) {
            (false, _) => "FAIL",
            (true, true) => "warn",
            (true, false) => "ok  ",
        };
        write!(f, "{status} {}: {}", self.what, self.detail)
    }
}

fn line<T, E: Display>(what: String, result: Result<T, E>, found: impl FnOnce(T) -> String) -> Line {
    match result {
        Ok(value) => Line {
            ok: true,
            warn: false,
            what,
            detail: found(value),
        },
        Err(err) => Line {
            ok: false,
            warn: false,
            what,
            detail: err.to_string(),
        },
    }
}

/// Runs every check, printing each line as it is known; returns whether all passed.
pub async fn check(settings: &Settings) -> bool {
    let mut all_ok = true;
    let mut report = |line: Line| {
        all_ok &= line.ok;
        println!("{line}");
    };

    let clamd = settings.clamd();
    let what = format!("clamd {}", settings.clamd_address);
    match clamd.ping().await {
        Ok(()) => {
            report(line(what, clamd.command("VERSION").await, |version| version));
            report(definitions_line(&clamd, settings).await);
            let expected = limits::Expected {
                member_limit: settings.clamd_max_file_size,
                max_file_size: settings.stream_limit,
            };
            for (setting, finding) in limits::prove(&clamd, &expected).await.findings {
                report(Line {
                    ok: finding.is_proven(),
                    warn: false,
                    what: format!("clamd {setting}"),
                    detail: finding.to_string(),
                });
            }
        }
        Err(err) => report(line::<(), _>(what, Err(err), |_| String::new())),
    }

    let sdk = aws::sdk_config_for(settings).await;
    let sqs = aws::sqs_client(&sdk, &settings.sqs, settings.wait_time);
    let mut queues = vec![
        ("VIRUS_SCANNING_QUEUE_NAME", &settings.inbound_queue),
        ("VALIDATION_QUEUE_NAME", &settings.outbound_queue),
    ];
    if let Some(rejected) = &settings.rejected_queue {
        queues.push(("REJECTED_EVENTS_QUEUE_NAME", rejected));
    }
    for (variable, queue) in queues {
        let what = format!("queue {variable}={queue}");
        let resolved = match aws::queue_url(&sqs, queue).await {
            Ok(url) => aws::queue_depth(&sqs, &url)
                .await
                .map(|depth| format!("{url} ({depth} messages)")),
            Err(err) => Err(err),
        };
        report(line(what, resolved, |found| found));
    }

    let s3 = aws::s3_client(&sdk, &settings.s3);
    for (what, bucket, quarantine) in buckets(settings) {
        let found = s3
            .head_bucket()
            .bucket(&bucket)
            .send()
            .await
            .map_err(|err| aws_sdk_s3::error::DisplayErrorContext(err).to_string());
        let exists = found.is_ok();
        report(line(format!("bucket {what}={bucket}"), found, |_| "exists".into()));
        if exists && quarantine {
            for evidence in quarantine_evidence(&s3, &bucket).await {
                report(evidence);
            }
        }
    }

    if let Some(source) = &settings.allow_list {
        let loaded = crate::allow_list::load(source, &s3).await;
        report(line(format!("allow-list ALLOW_LIST={source}"), loaded, |list| {
            format!("{} entries", list.len())
        }));
    }

    let sns = aws::sns_client(&sdk, &settings.sns);
    let found = sns
        .get_topic_attributes()
        .topic_arn(&settings.topic_arn)
        .send()
        .await
        .map_err(|err| aws_sdk_sns::error::DisplayErrorContext(err).to_string());
    report(line(
        format!("topic VIRUS_NOTIFICATION_TOPIC_ARN={}", settings.topic_arn),
        found,
        |_| "exists".into(),
    ));
    for (what, found) in settings.result_events.check(&sdk, &settings.sns).await {
        report(line(what, found, |found| found));
    }
    all_ok
}

/// Every bucket the configuration names, once: `(what names it, bucket, is a quarantine
/// bucket)`. Without a policy file, the two variables; with one, each source bucket and each
/// quarantine bucket its policies name.
fn buckets(settings: &Settings) -> Vec<(String, String, bool)> {
    let policies = &settings.pipeline.policies;
    if settings.policy_file.is_none() {
        let source = &policies.buckets()[0];
        return vec![
            ("UNPROCESSED_BUCKET_NAME".into(), source.bucket.clone(), false),
            (
                "QUARANTINE_BUCKET_NAME".into(),
                source.policy.quarantine_bucket.clone().unwrap_or_default(),
                true,
            ),
        ];
    }
    let mut buckets: Vec<(String, String, bool)> = policies
        .buckets()
        .iter()
        .map(|source| ("source".to_owned(), source.bucket.clone(), false))
        .collect();
    for quarantine in policies.all().filter_map(|policy| policy.quarantine_bucket.clone()) {
        if !buckets.iter().any(|(_, bucket, _)| *bucket == quarantine) {
            buckets.push(("quarantine".to_owned(), quarantine, true));
        }
    }
    buckets
}

/// clamd's definitions against `DEFINITIONS_MAX_AGE`: `FAIL` when avscan would not receive.
async fn definitions_line(clamd: &crate::clamd::Clamd, settings: &Settings) -> Line {
    let policy = avscan_actors::definitions::DefinitionsPolicy {
        max_age: settings.pipeline.definitions_max_age,
    };
    let what = "definitions".to_owned();
    let named = match definitions::ask(clamd).await {
        Ok(named) => named,
        Err(err) => return line::<(), _>(what, Err(err), |_| String::new()),
    };
    let now = std::time::SystemTime::now();
    let limit = match policy.max_age {
        Some(max_age) => format!(
            "DEFINITIONS_MAX_AGE {}",
            avscan_actors::definitions::whole_minutes(max_age)
        ),
        None => "DEFINITIONS_MAX_AGE=0: no freshness check".to_owned(),
    };
    match named.refusal(&policy, now) {
        Some(refusal) => Line {
            ok: false,
            warn: false,
            what,
            detail: format!("{refusal}; avscan receives nothing until fresh definitions load"),
        },
        None => Line {
            ok: true,
            // Judging without knowing the age works, but nothing guards against stale definitions.
            warn: policy.max_age.is_none(),
            what,
            detail: format!("{} ({limit})", named.describe(now)),
        },
    }
}

/// How the quarantine bucket keeps evidence: versioning (recommended: a copy or report deleted
/// or overwritten by anyone keeps its older versions), and a lifecycle rule that aborts
/// incomplete multipart uploads (a crash in the middle of a copy over 5 GiB leaves parts
/// that are billed until then).
async fn quarantine_evidence(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<Line> {
    fn detail<E: std::error::Error>(err: E) -> String {
        aws_sdk_s3::error::DisplayErrorContext(err).to_string()
    }
    let enabled = crate::aws::versioning_status(s3, bucket)
        .await
        .map(|status| status.as_deref() == Some("Enabled"));
    let versioning = match enabled {
        Ok(true) => Line {
            ok: true,
            warn: false,
            what: "quarantine bucket versioning".into(),
            detail: "enabled: no copy or report is lost to a delete or overwrite".into(),
        },
        Ok(false) => Line {
            ok: true,
            warn: true,
            what: "quarantine bucket versioning".into(),
            detail: "off: avscan never overwrites evidence itself, but versioning keeps it from any other delete or overwrite (recommended)".into(),
        },
        Err(err) => line::<(), _>("quarantine bucket versioning".into(), Err(err), |_| String::new()),
    };
    let lifecycle = s3.get_bucket_lifecycle_configuration().bucket(bucket).send().await;
    let aborts = |rules: &[aws_sdk_s3::types::LifecycleRule]| {
        rules.iter().find_map(|rule| {
            let enabled = rule.status == aws_sdk_s3::types::ExpirationStatus::Enabled;
            let days = rule.abort_incomplete_multipart_upload.as_ref()?.days_after_initiation?;
            enabled.then_some(days)
        })
    };
    let what = "quarantine bucket incomplete multipart uploads".to_owned();
    let lifecycle = match lifecycle {
        Ok(output) => match aborts(output.rules()) {
            Some(days) => Line {
                ok: true,
                warn: false,
                what,
                detail: format!("aborted after {days} days by a lifecycle rule"),
            },
            None => Line {
                ok: true,
                warn: true,
                what,
                detail: "no lifecycle rule aborts them: parts of a copy a crash interrupted stay billed (add AbortIncompleteMultipartUpload)".into(),
            },
        },
        // S3 answers NoSuchLifecycleConfiguration for a bucket without any rule.
        Err(err) if err.as_service_error().and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e)) == Some("NoSuchLifecycleConfiguration") => Line {
            ok: true,
            warn: true,
            what,
            detail: "no lifecycle rule aborts them: parts of a copy a crash interrupted stay billed (add AbortIncompleteMultipartUpload)".into(),
        },
        Err(err) => line::<(), _>(what, Err(detail(err)), |_| String::new()),
    };
    vec![versioning, lifecycle]
}

//! `avscan check`: the first thing to run against a new deployment. Resolves every queue, bucket
//! and topic the configuration names and asks clamd for PING, VERSION and the start-up canaries
//! (one line per clamd.conf setting avscan proves, see `limits`), printing one line per check
//! (`ok` or `FAIL`, the variable or setting, what was found). Every check runs even after a
//! failure, so one run shows everything that is wrong.

use std::fmt::Display;

use crate::config::Settings;
use crate::{aws, limits};

/// One check's outcome, printed as a line.
struct Line {
    ok: bool,
    what: String,
    detail: String,
}

impl Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{status} {}: {}", self.what, self.detail)
    }
}

fn line<T, E: Display>(what: String, result: Result<T, E>, found: impl FnOnce(T) -> String) -> Line {
    match result {
        Ok(value) => Line {
            ok: true,
            what,
            detail: found(value),
        },
        Err(err) => Line {
            ok: false,
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
            let expected = limits::Expected {
                member_limit: settings.clamd_max_file_size,
                max_file_size: settings.pipeline.max_file_size,
            };
            for (setting, finding) in limits::prove(&clamd, &expected).await.findings {
                report(Line {
                    ok: finding.is_proven(),
                    what: format!("clamd {setting}"),
                    detail: finding.to_string(),
                });
            }
        }
        Err(err) => report(line::<(), _>(what, Err(err), |_| String::new())),
    }

    let sdk = aws::sdk_config(&[&settings.sqs, &settings.s3, &settings.sns]).await;
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
    for (variable, bucket) in [
        ("UNPROCESSED_BUCKET_NAME", &settings.pipeline.unprocessed_bucket),
        ("QUARANTINE_BUCKET_NAME", &settings.pipeline.quarantine_bucket),
    ] {
        let found = s3
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|err| aws_sdk_s3::error::DisplayErrorContext(err).to_string());
        report(line(format!("bucket {variable}={bucket}"), found, |_| "exists".into()));
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
    all_ok
}

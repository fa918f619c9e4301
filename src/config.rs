//! avscan's configuration: environment variables (also read from `.env`), each also a flag of
//! `avscan run` (the commands themselves are `cli.rs`). The old Python worker's variable names are kept so its `.env` works as is.
//! Nothing else in avscan reads the environment.

use std::time::Duration;

use avscan_actors::defaults::{self, MIB};
use avscan_actors::policy::Policies;
use avscan_actors::restart::RestartPolicy;
use avscan_actors::PipelineConfig;
use clap::Args;

use crate::clamd::ClamdAddress;

/// What `avscan scan` needs: clamd and S3, no queues.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    pub clamd_address: ClamdAddress,
    pub clamd_chunk_size: usize,
    pub clamd_timeout: Duration,
    /// clamd's `MaxScanTime`: how long clamd may take after the stream ended.
    pub clamd_max_scan_time: Duration,
    pub max_file_size: u64,
    /// Bytes; `None` until clamd's `MaxFileSize` is discovered at start.
    pub clamd_max_file_size: Option<u64>,
    /// Bytes the archive guard may inflate per object.
    pub archive_inflate_budget: u64,
    pub s3: ServiceEndpoint,
}

/// One AWS service's connection overrides (`AWS_<SERVICE>_*`); unset ones fall back to the
/// SDK's own variables and credential chain.
#[derive(Debug, Clone, Default)]
pub struct ServiceEndpoint {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// Every variable of avscan's configuration, each also a flag; `avscan run`, `check` and
/// `scan` all take them (`scan` needs only the clamd and S3 ones).
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Bucket the uploads land in; events for other buckets are rejected. Without
    /// AVSCAN_POLICY only.
    #[arg(long, env = "UNPROCESSED_BUCKET_NAME")]
    pub unprocessed_bucket_name: Option<String>,
    /// Bucket infected and unscannable objects are moved to. Without AVSCAN_POLICY only.
    #[arg(long, env = "QUARANTINE_BUCKET_NAME")]
    pub quarantine_bucket_name: Option<String>,
    /// A policy file (TOML): the source buckets and, per bucket or key prefix, what happens to
    /// objects that are not clean (quarantine, tag, delete, report), the quarantine bucket, the
    /// size limit, whether clean events are forwarded and which tags are written. Replaces
    /// UNPROCESSED_BUCKET_NAME and QUARANTINE_BUCKET_NAME.
    #[arg(long, env = "AVSCAN_POLICY")]
    pub avscan_policy: Option<std::path::PathBuf>,
    /// KMS key (id or ARN) for quarantined copies and reports; unset, a copy keeps its source's
    /// KMS key and reports get the bucket's default encryption.
    #[arg(long, env = "QUARANTINE_KMS_KEY_ID")]
    pub quarantine_kms_key_id: Option<String>,
    /// Inbound queue with the S3 events: a name (resolved with GetQueueUrl) or a URL.
    #[arg(long, env = "VIRUS_SCANNING_QUEUE_NAME")]
    pub virus_scanning_queue_name: Option<String>,
    /// Outbound queue clean events go to: a name or a URL.
    #[arg(long, env = "VALIDATION_QUEUE_NAME")]
    pub validation_queue_name: Option<String>,
    /// SNS topic that gets a notification per quarantined object.
    #[arg(long, env = "VIRUS_NOTIFICATION_TOPIC_ARN")]
    pub virus_notification_topic_arn: Option<String>,
    /// Optional queue (name or URL) that keeps the raw body of every rejected event.
    #[arg(long, env = "REJECTED_EVENTS_QUEUE_NAME")]
    pub rejected_events_queue_name: Option<String>,
    /// Objects larger than this many MB are quarantined unscanned ("file too large").
    #[arg(long, env = "MAX_FILE_SIZE", default_value_t = defaults::MAX_FILE_SIZE_MB, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_file_size: u64,
    /// clamd's MaxFileSize, MB: an archive member larger than this makes the object
    /// unscannable, because clamd truncates such members without an alert. Unset: avscan
    /// discovers clamd's value at start-up with cheap canaries; set: avscan verifies it.
    #[arg(long, env = "CLAMD_MAX_FILE_SIZE", value_parser = clap::value_parser!(u64).range(1..=crate::limits::MAX_MEMBER_LIMIT_MB))]
    pub clamd_max_file_size: Option<u64>,
    /// clamd's MaxScanSize, MB: the most the archive guard inflates of one object before it
    /// gives up (unscannable), as clamd gives up there too.
    #[arg(long, env = "CLAMD_MAX_SCAN_SIZE", default_value_t = defaults::CLAMD_MAX_SCAN_SIZE_MB, value_parser = clap::value_parser!(u64).range(1..))]
    pub clamd_max_scan_size: u64,
    /// clamd's MaxScanTime, seconds: how long clamd may take to answer after the stream ended.
    #[arg(long, env = "CLAMD_MAX_SCAN_TIME", default_value_t = defaults::CLAMD_MAX_SCAN_TIME_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub clamd_max_scan_time: u64,
    /// Long-poll wait of each receive, seconds (0 to 20).
    #[arg(long, env = "VIRUS_SCANNER_WORKER_MSG_WAIT_TIME", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=20))]
    pub virus_scanner_worker_msg_wait_time: u64,
    /// Visibility timeout of received messages, seconds; extended while a message is in flight.
    #[arg(long, env = "VIRUS_SCANNER_WORKER_MSG_VISIBILITY_TIMEOUT", default_value_t = defaults::VISIBILITY_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(2..=43200))]
    pub virus_scanner_worker_msg_visibility_timeout: u64,

    #[arg(long, env = "AWS_S3_ENDPOINT_URL")]
    pub aws_s3_endpoint_url: Option<String>,
    #[arg(long, env = "AWS_S3_REGION")]
    pub aws_s3_region: Option<String>,
    #[arg(long, env = "AWS_S3_ACCESS_KEY_ID")]
    pub aws_s3_access_key_id: Option<String>,
    #[arg(long, env = "AWS_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_s3_secret_access_key: Option<String>,
    #[arg(long, env = "AWS_SQS_ENDPOINT_URL")]
    pub aws_sqs_endpoint_url: Option<String>,
    #[arg(long, env = "AWS_SQS_REGION")]
    pub aws_sqs_region: Option<String>,
    #[arg(long, env = "AWS_SQS_ACCESS_KEY_ID")]
    pub aws_sqs_access_key_id: Option<String>,
    #[arg(long, env = "AWS_SQS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_sqs_secret_access_key: Option<String>,
    #[arg(long, env = "AWS_SNS_ENDPOINT_URL")]
    pub aws_sns_endpoint_url: Option<String>,
    #[arg(long, env = "AWS_SNS_REGION")]
    pub aws_sns_region: Option<String>,
    #[arg(long, env = "AWS_SNS_ACCESS_KEY_ID")]
    pub aws_sns_access_key_id: Option<String>,
    #[arg(long, env = "AWS_SNS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_sns_secret_access_key: Option<String>,

    /// clamd's address: tcp://host:port or unix:///path.
    #[arg(long, env = "CLAMD_ADDRESS", default_value = "tcp://127.0.0.1:3310")]
    pub clamd_address: ClamdAddress,
    /// Pooled clamd connections (concurrent scans); keep at or below clamd's MaxThreads.
    #[arg(long, env = "CLAMD_CONNECTIONS", default_value_t = defaults::CLAMD_CONNECTIONS, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub clamd_connections: u64,
    /// INSTREAM chunk size in bytes.
    #[arg(long, env = "CLAMD_CHUNK_SIZE", default_value_t = 128 * 1024, value_parser = clap::value_parser!(u64).range(64 * 1024..=16 * 1024 * 1024))]
    pub clamd_chunk_size: u64,
    /// Longest stall of one clamd read or write (or of the object's body), seconds; a stall
    /// beyond it is retried. clamd's answer after the stream ended waits up to
    /// CLAMD_MAX_SCAN_TIME plus this.
    #[arg(long, env = "CLAMD_TIMEOUT", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub clamd_timeout: u64,
    /// How long to wait at start for clamd to answer PING and scan the start-up canary, seconds.
    #[arg(long, env = "CLAMD_READY_TIMEOUT", default_value_t = 120)]
    pub clamd_ready_timeout: u64,
    /// Concurrent S3 GETs; each streams into a clamd connection.
    #[arg(long, env = "FETCH_CONCURRENCY", default_value_t = defaults::FETCH_CONCURRENCY, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub fetch_concurrency: u64,
    /// SQS messages in flight at once; bounds all buffering inside avscan.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = defaults::MAX_IN_FLIGHT, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_in_flight: u64,
    /// Messages asked for per receive (1 to 10).
    #[arg(long, env = "RECEIVE_BATCH_SIZE", default_value_t = defaults::RECEIVE_BATCH_SIZE, value_parser = clap::value_parser!(u64).range(1..=10))]
    pub receive_batch_size: u64,
    /// Milliseconds a finished message may wait for others to share its SendMessageBatch and
    /// DeleteMessageBatch call (ten per call).
    #[arg(long, env = "BATCH_LINGER_MS", default_value_t = defaults::BATCH_LINGER_MS, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub batch_linger_ms: u64,
    /// First retry delay of a failed message, seconds; doubles per receive up to the max.
    #[arg(long, env = "RETRY_BACKOFF_BASE", default_value_t = defaults::RETRY_BACKOFF_BASE_SECS)]
    pub retry_backoff_base: u64,
    #[arg(long, env = "RETRY_BACKOFF_MAX", default_value_t = defaults::RETRY_BACKOFF_MAX_SECS)]
    pub retry_backoff_max: u64,
    /// More actor restarts than this within RESTART_WINDOW seconds stops avscan (exit 1).
    #[arg(long, env = "RESTART_LIMIT", default_value_t = defaults::RESTART_LIMIT, value_parser = clap::value_parser!(u64).range(1..))]
    pub restart_limit: u64,
    #[arg(long, env = "RESTART_WINDOW", default_value_t = defaults::RESTART_WINDOW_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub restart_window: u64,
    /// Seconds in-flight work may take to finish after SIGTERM before it is released.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value_t = 30)]
    pub shutdown_grace: u64,
    /// The oldest virus definitions allowed to call an object clean: seconds, or a duration such
    /// as `7d` or `36h`. Past it (or when clamd names no official database, so the age is
    /// unknown) avscan stops receiving and `/readyz` fails until fresh definitions load. `0`
    /// turns the check off.
    #[arg(long, env = "DEFINITIONS_MAX_AGE", default_value = "7d", value_parser = parse_max_age)]
    pub definitions_max_age: MaxAge,
    /// Seconds between two looks at clamd's definitions (version, age, reloads).
    #[arg(long, env = "DEFINITIONS_CHECK_INTERVAL", default_value_t = defaults::DEFINITIONS_CHECK_INTERVAL_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub definitions_check_interval: u64,
    /// The false-positive allow-list: a file, or an S3 object `s3://bucket/key`; entries
    /// `sha256 <hex> # why` and `signature <name> # why`. Reloaded without a restart.
    #[arg(long, env = "ALLOW_LIST")]
    pub allow_list: Option<crate::allow_list::Source>,
    /// Seconds between two reads of ALLOW_LIST.
    #[arg(long, env = "ALLOW_LIST_RELOAD_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub allow_list_reload_interval: u64,
    #[command(flatten)]
    pub result_events: crate::result_events::ResultEventsArgs,
    /// Address of the operations endpoint (`/healthz`, `/readyz`); port 0 picks a free one.
    #[arg(long, env = "OPS_ADDRESS", default_value = "0.0.0.0:9090")]
    pub ops_address: std::net::SocketAddr,
    /// `text` (human-readable lines) or `json` (one JSON object per line); RUST_LOG filters.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `DEFINITIONS_MAX_AGE`: `None` is `0`, the check turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxAge(pub Option<Duration>);

/// Seconds (`604800`) or a duration (`7d`, `36h`, `1week`); `0` is off.
fn parse_max_age(text: &str) -> Result<MaxAge, String> {
    let text = text.trim();
    let age = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text)
            .map_err(|err| format!("{text:?} is neither seconds nor a duration such as 7d or 36h: {err}"))?,
    };
    Ok(MaxAge((!age.is_zero()).then_some(age)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration problem, reported as one line naming the variable; exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

/// Validated settings for `avscan run`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pipeline: PipelineConfig,
    pub inbound_queue: String,
    pub outbound_queue: String,
    pub rejected_queue: Option<String>,
    pub topic_arn: String,
    pub wait_time: Duration,
    pub s3: ServiceEndpoint,
    pub sqs: ServiceEndpoint,
    pub sns: ServiceEndpoint,
    /// Where result events go (RESULT_EVENTS_*), if anywhere.
    pub result_events: crate::result_events::ResultEventsSettings,
    pub clamd_address: ClamdAddress,
    pub clamd_chunk_size: usize,
    pub clamd_timeout: Duration,
    /// clamd's `MaxScanTime`: how long clamd may take after the stream ended.
    pub clamd_max_scan_time: Duration,
    /// Bytes; `None` until clamd's `MaxFileSize` is discovered at start.
    pub clamd_max_file_size: Option<u64>,
    pub clamd_ready_timeout: Duration,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub ops_address: std::net::SocketAddr,
    pub definitions_check_interval: Duration,
    /// AVSCAN_POLICY, when the policies come from a file.
    pub policy_file: Option<std::path::PathBuf>,
    /// ALLOW_LIST, when set.
    pub allow_list: Option<crate::allow_list::Source>,
    /// Bytes: the largest object any policy scans; clamd's StreamMaxLength must admit it.
    pub stream_limit: u64,
    pub allow_list_reload_interval: Duration,
}

fn required(value: &Option<String>, variable: &'static str) -> Result<String, ConfigError> {
    match value.as_deref().map(str::trim) {
        Some(value) if !value.is_empty() => Ok(value.to_owned()),
        _ => Err(ConfigError {
            variable,
            problem: "is not set (environment, .env or its --flag)".into(),
        }),
    }
}

impl Settings {
    /// The clamd client these settings describe (no connection yet).
    pub fn clamd(&self) -> crate::clamd::Clamd {
        crate::clamd::Clamd::new(self.clamd_address.clone(), self.clamd_chunk_size, self.clamd_timeout)
            .with_max_scan_time(self.clamd_max_scan_time)
    }
}

impl ConfigArgs {
    pub fn scan_settings(&self) -> ScanSettings {
        ScanSettings {
            clamd_address: self.clamd_address.clone(),
            clamd_chunk_size: self.clamd_chunk_size as usize,
            clamd_timeout: Duration::from_secs(self.clamd_timeout),
            clamd_max_scan_time: Duration::from_secs(self.clamd_max_scan_time),
            max_file_size: self.max_file_size.saturating_mul(MIB),
            clamd_max_file_size: self.clamd_max_file_size.map(|mb| mb.saturating_mul(MIB)),
            archive_inflate_budget: self.clamd_max_scan_size.saturating_mul(MIB),
            s3: self.s3_endpoint(),
        }
    }

    fn s3_endpoint(&self) -> ServiceEndpoint {
        ServiceEndpoint {
            endpoint_url: self.aws_s3_endpoint_url.clone(),
            region: self.aws_s3_region.clone(),
            access_key_id: self.aws_s3_access_key_id.clone(),
            secret_access_key: self.aws_s3_secret_access_key.clone(),
        }
    }

    /// The policies: the file's, or the old worker's single bucket.
    fn policies(&self) -> Result<Policies, ConfigError> {
        let Some(path) = &self.avscan_policy else {
            let unprocessed = required(&self.unprocessed_bucket_name, "UNPROCESSED_BUCKET_NAME")?;
            let quarantine = required(&self.quarantine_bucket_name, "QUARANTINE_BUCKET_NAME")?;
            if unprocessed == quarantine {
                return Err(ConfigError {
                    variable: "QUARANTINE_BUCKET_NAME",
                    problem: "must differ from UNPROCESSED_BUCKET_NAME".into(),
                });
            }
            return Ok(Policies::single(unprocessed, quarantine));
        };
        for (variable, value) in [
            ("UNPROCESSED_BUCKET_NAME", &self.unprocessed_bucket_name),
            ("QUARANTINE_BUCKET_NAME", &self.quarantine_bucket_name),
        ] {
            if value.as_deref().is_some_and(|value| !value.trim().is_empty()) {
                return Err(ConfigError {
                    variable,
                    problem: "set beside AVSCAN_POLICY, whose file names the buckets: remove one of the two".into(),
                });
            }
        }
        crate::policy::read(path).map_err(|problem| ConfigError {
            variable: "AVSCAN_POLICY",
            problem,
        })
    }

    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let policies = self.policies()?;
        let inbound_queue = required(&self.virus_scanning_queue_name, "VIRUS_SCANNING_QUEUE_NAME")?;
        let outbound_queue = required(&self.validation_queue_name, "VALIDATION_QUEUE_NAME")?;
        let topic_arn = required(&self.virus_notification_topic_arn, "VIRUS_NOTIFICATION_TOPIC_ARN")?;
        if !topic_arn.starts_with("arn:") {
            return Err(ConfigError {
                variable: "VIRUS_NOTIFICATION_TOPIC_ARN",
                problem: format!("{topic_arn:?} is not an ARN"),
            });
        }
        if inbound_queue == outbound_queue {
            return Err(ConfigError {
                variable: "VALIDATION_QUEUE_NAME",
                problem: "must differ from VIRUS_SCANNING_QUEUE_NAME".into(),
            });
        }
        let visibility = Duration::from_secs(self.virus_scanner_worker_msg_visibility_timeout);
        // No bound against the visibility timeout: the heartbeat keeps a message hidden however
        // long its scan takes, so the old worker's 30 s visibility works with every default.
        let clamd_timeout = Duration::from_secs(self.clamd_timeout);
        let clamd_max_file_size = self.clamd_max_file_size.map(|mb| mb.saturating_mul(MIB));
        // clamd must admit the largest object any policy lets through; a policy without a limit
        // of its own has MAX_FILE_SIZE.
        let stream_limit = policies
            .all()
            .filter_map(|policy| policy.max_file_size)
            .fold(self.max_file_size.saturating_mul(MIB), u64::max);
        let mut pipeline = PipelineConfig::with_policies(policies);
        pipeline.max_file_size = self.max_file_size.saturating_mul(MIB);
        // Replaced at start-up by the MaxFileSize verified (or discovered) on clamd.
        pipeline.archive_member_limit = clamd_max_file_size.unwrap_or(pipeline.archive_member_limit);
        pipeline.archive_inflate_budget = self.clamd_max_scan_size.saturating_mul(MIB);
        pipeline.quarantine_kms_key_id = self.quarantine_kms_key_id.clone().filter(|key| !key.trim().is_empty());
        pipeline.max_in_flight = self.max_in_flight as usize;
        pipeline.fetch_concurrency = self.fetch_concurrency as usize;
        pipeline.scanner_connections = self.clamd_connections as usize;
        pipeline.receive_batch = self.receive_batch_size as usize;
        pipeline.batch_linger = Duration::from_millis(self.batch_linger_ms);
        pipeline.visibility_timeout = visibility;
        pipeline.retry_base = Duration::from_secs(self.retry_backoff_base);
        pipeline.retry_max = Duration::from_secs(self.retry_backoff_max.max(self.retry_backoff_base));
        pipeline.restart_policy = RestartPolicy {
            max_restarts: self.restart_limit as usize,
            window: Duration::from_secs(self.restart_window),
            ..RestartPolicy::default()
        };
        pipeline.definitions_max_age = self.definitions_max_age.0;
        Ok(Settings {
            pipeline,
            inbound_queue,
            outbound_queue,
            rejected_queue: self
                .rejected_events_queue_name
                .clone()
                .filter(|queue| !queue.trim().is_empty()),
            topic_arn,
            wait_time: Duration::from_secs(self.virus_scanner_worker_msg_wait_time),
            s3: self.s3_endpoint(),
            sqs: ServiceEndpoint {
                endpoint_url: self.aws_sqs_endpoint_url.clone(),
                region: self.aws_sqs_region.clone(),
                access_key_id: self.aws_sqs_access_key_id.clone(),
                secret_access_key: self.aws_sqs_secret_access_key.clone(),
            },
            sns: ServiceEndpoint {
                endpoint_url: self.aws_sns_endpoint_url.clone(),
                region: self.aws_sns_region.clone(),
                access_key_id: self.aws_sns_access_key_id.clone(),
                secret_access_key: self.aws_sns_secret_access_key.clone(),
            },
            result_events: self.result_events.settings()?,
            clamd_address: self.clamd_address.clone(),
            clamd_chunk_size: self.clamd_chunk_size as usize,
            clamd_timeout,
            clamd_max_scan_time: Duration::from_secs(self.clamd_max_scan_time),
            clamd_max_file_size,
            clamd_ready_timeout: Duration::from_secs(self.clamd_ready_timeout),
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            log_format: self.log_format,
            ops_address: self.ops_address,
            definitions_check_interval: Duration::from_secs(self.definitions_check_interval),
            policy_file: self.avscan_policy.clone(),
            allow_list: self.allow_list.clone(),
            stream_limit,
            allow_list_reload_interval: Duration::from_secs(self.allow_list_reload_interval),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["avscan", "run"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Run(run) = cli.command else {
            unreachable!("parsed as `avscan run`")
        };
        run.settings().map_err(|e| e.to_string())
    }

    const COMPLETE: [&str; 10] = [
        "--unprocessed-bucket-name",
        "in",
        "--quarantine-bucket-name",
        "q",
        "--virus-scanning-queue-name",
        "scan",
        "--validation-queue-name",
        "valid",
        "--virus-notification-topic-arn",
        "arn:aws:sns:us-east-1:0:t",
    ];

    #[test]
    fn defaults_and_units() {
        let settings = parse(&COMPLETE).unwrap();
        assert_eq!(settings.pipeline.max_file_size, 400 * 1024 * 1024);
        assert_eq!(settings.clamd_address, ClamdAddress::Tcp("127.0.0.1:3310".into()));
        assert_eq!(settings.wait_time, Duration::from_secs(20));
        assert_eq!(settings.pipeline.visibility_timeout, Duration::from_secs(120));
        assert!(settings.rejected_queue.is_none());
        assert_eq!(
            settings.pipeline.definitions_max_age,
            Some(Duration::from_secs(7 * 86_400)),
            "ClamAV's own 7-day warning"
        );
    }

    #[test]
    fn definitions_max_age_takes_seconds_or_a_duration_and_zero_is_off() {
        let max_age = |value: &str| {
            let mut args = COMPLETE.to_vec();
            args.extend(["--definitions-max-age", value]);
            parse(&args).map(|settings| settings.pipeline.definitions_max_age)
        };
        assert_eq!(max_age("86400"), Ok(Some(Duration::from_secs(86_400))));
        assert_eq!(max_age("36h"), Ok(Some(Duration::from_secs(36 * 3600))));
        assert_eq!(max_age("0"), Ok(None));
        assert!(max_age("a week").unwrap_err().contains("DEFINITIONS_MAX_AGE"));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = parse(&COMPLETE[..8]).unwrap_err();
        assert!(err.starts_with("VIRUS_NOTIFICATION_TOPIC_ARN: is not set"), "{err}");
    }

    #[test]
    fn invalid_values_are_refused_with_the_variable_name() {
        let mut args = COMPLETE.to_vec();
        args.extend(["--max-file-size", "lots"]);
        assert!(parse(&args).unwrap_err().contains("MAX_FILE_SIZE"));
        let mut args = COMPLETE.to_vec();
        args.extend(["--clamd-address", "localhost:3310"]);
        assert!(parse(&args).unwrap_err().contains("CLAMD_ADDRESS"));
        let mut args = COMPLETE.to_vec();
        args.extend(["--clamd-timeout", "0"]);
        assert!(parse(&args).unwrap_err().contains("CLAMD_TIMEOUT"));
    }

    #[test]
    fn the_old_workers_timings_parse_with_every_default() {
        // Its shipped .env: visibility 30 s, wait 10 s, MAX_FILE_SIZE 400 (MB).
        let mut args = COMPLETE.to_vec();
        args.extend([
            "--virus-scanner-worker-msg-visibility-timeout",
            "30",
            "--virus-scanner-worker-msg-wait-time",
            "10",
            "--max-file-size",
            "400",
        ]);
        let settings = parse(&args).unwrap();
        assert_eq!(settings.pipeline.visibility_timeout, Duration::from_secs(30));
        assert_eq!(settings.clamd_max_file_size, None, "discovered on clamd at start-up");
    }
}

//! Shared set-up for the integration tests: per-test AWS resources on the local emulator (so
//! tests run in parallel without seeing each other's messages), the real `avscan` binary started
//! against them, and helpers that read outcomes back from the services.
//!
//! The stack comes from `make test` (compose/stack.sh). Endpoints can be overridden with
//! AVSCAN_TEST_ENDPOINT and AVSCAN_TEST_CLAMD.

#![allow(dead_code)]

pub mod archives;
pub mod faults;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::{Message, QueueAttributeName};

pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// Matches the project's `.ndb` body signature `Avscan.Test.Marker` anywhere in a file.
pub const TEST_MARKER: &[u8] = b"AVSCAN-TEST-MARKER-5d41402abc4b2a76";
pub const REGION: &str = "us-east-1";

pub fn endpoint() -> String {
    std::env::var("AVSCAN_TEST_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

pub fn clamd_address() -> String {
    std::env::var("AVSCAN_TEST_CLAMD").unwrap_or_else(|_| "tcp://127.0.0.1:3310".into())
}

async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .endpoint_url(endpoint())
        .load()
        .await
}

/// One test's buckets, queues and topic.
pub struct TestEnv {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub unprocessed: String,
    pub quarantine: String,
    pub inbound_url: String,
    pub inbound_name: String,
    pub validation_url: String,
    pub validation_name: String,
    pub rejected_url: String,
    pub rejected_name: String,
    pub notifications_url: String,
    pub topic_arn: String,
}

impl TestEnv {
    /// Creates fresh resources. With `notify`, the unprocessed bucket sends ObjectCreated events
    /// to the inbound queue (S3 first sends its test event); without, tests queue events by hand.
    pub async fn new(notify: bool) -> TestEnv {
        let sdk = sdk().await;
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let unprocessed = format!("t{id}-unprocessed");
        let quarantine = format!("t{id}-quarantine");
        for bucket in [&unprocessed, &quarantine] {
            s3.create_bucket()
                .bucket(bucket)
                .send()
                .await
                .expect("emulator reachable: run `make test`, which starts it");
        }
        let mut urls = Vec::new();
        for suffix in ["scan", "validation", "rejected", "notifications"] {
            let name = format!("t{id}-{suffix}");
            let url = sqs
                .create_queue()
                .queue_name(&name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            urls.push((name, url));
        }
        let topic_arn = sns
            .create_topic()
            .name(format!("t{id}-topic"))
            .send()
            .await
            .unwrap()
            .topic_arn
            .unwrap();
        let notifications_arn = queue_arn(&sqs, &urls[3].1).await;
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(notifications_arn)
            .send()
            .await
            .unwrap();
        if notify {
            let inbound_arn = queue_arn(&sqs, &urls[0].1).await;
            let config = aws_sdk_s3::types::NotificationConfiguration::builder()
                .queue_configurations(
                    aws_sdk_s3::types::QueueConfiguration::builder()
                        .queue_arn(inbound_arn)
                        .events(aws_sdk_s3::types::Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .build();
            s3.put_bucket_notification_configuration()
                .bucket(&unprocessed)
                .notification_configuration(config)
                .send()
                .await
                .unwrap();
        }
        let mut urls = urls.into_iter();
        let (inbound_name, inbound_url) = urls.next().unwrap();
        let (validation_name, validation_url) = urls.next().unwrap();
        let (rejected_name, rejected_url) = urls.next().unwrap();
        let (_, notifications_url) = urls.next().unwrap();
        TestEnv {
            s3,
            sqs,
            sns,
            unprocessed,
            quarantine,
            inbound_url,
            inbound_name,
            validation_url,
            validation_name,
            rejected_url,
            rejected_name,
            notifications_url,
            topic_arn,
        }
    }

    /// The variables avscan reads, pointing at this test's resources.
    pub fn avscan_env(&self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("UNPROCESSED_BUCKET_NAME", self.unprocessed.clone()),
            ("QUARANTINE_BUCKET_NAME", self.quarantine.clone()),
            ("VIRUS_SCANNING_QUEUE_NAME", self.inbound_name.clone()),
            ("VALIDATION_QUEUE_NAME", self.validation_name.clone()),
            ("REJECTED_EVENTS_QUEUE_NAME", self.rejected_name.clone()),
            ("VIRUS_NOTIFICATION_TOPIC_ARN", self.topic_arn.clone()),
            ("VIRUS_SCANNER_WORKER_MSG_WAIT_TIME", "1".into()),
            ("VIRUS_SCANNER_WORKER_MSG_VISIBILITY_TIMEOUT", "30".into()),
            ("CLAMD_ADDRESS", clamd_address()),
            ("CLAMD_TIMEOUT", "10".into()),
            ("RETRY_BACKOFF_BASE", "1".into()),
            ("RETRY_BACKOFF_MAX", "2".into()),
            ("SHUTDOWN_GRACE", "10".into()),
            ("RUST_LOG", "info,avscan=debug,avscan_actors=debug".into()),
            // Tests run side by side: each avscan picks a free port.
            ("OPS_ADDRESS", "127.0.0.1:0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for service in ["S3", "SQS", "SNS"] {
            env.insert(format!("AWS_{service}_ENDPOINT_URL"), endpoint());
            env.insert(format!("AWS_{service}_REGION"), REGION.into());
            env.insert(format!("AWS_{service}_ACCESS_KEY_ID"), "test".into());
            env.insert(format!("AWS_{service}_SECRET_ACCESS_KEY"), "test".into());
        }
        env
    }

    pub fn start_avscan(&self) -> Avscan {
        Avscan::start(&self.avscan_env())
    }

    pub async fn put(&self, key: &str, body: &[u8]) -> String {
        let output = self
            .s3
            .put_object()
            .bucket(&self.unprocessed)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap();
        output.e_tag.unwrap().trim_matches('"').to_owned()
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(output) => Some(output.body.collect().await.unwrap().to_vec()),
            Err(_) => None,
        }
    }

    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let output = self.s3.list_objects_v2().bucket(bucket).send().await.unwrap();
        let mut keys: Vec<String> = output
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.key)
            .collect();
        keys.sort();
        keys
    }

    pub async fn send_inbound(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.inbound_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Receives (and deletes) messages from `queue_url` until `count` arrived or `timeout` passed.
    pub async fn receive(&self, queue_url: &str, count: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::new();
        while messages.len() < count && Instant::now() < deadline {
            let output = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            for message in output.messages.unwrap_or_default() {
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(message.receipt_handle.clone().unwrap())
                    .send()
                    .await
                    .unwrap();
                messages.push(message);
            }
        }
        messages
    }

    /// Messages on the queue, visible or in flight.
    pub async fn queue_depth(&self, queue_url: &str) -> u64 {
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attributes = output.attributes.unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|name| attributes.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum()
    }

    /// Waits until the inbound queue holds nothing, visible or in flight.
    pub async fn wait_inbound_empty(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.queue_depth(&self.inbound_url).await > 0 {
            assert!(
                Instant::now() < deadline,
                "inbound queue not emptied within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `key` exists in `bucket`.
    pub async fn wait_for_object(&self, bucket: &str, key: &str, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(body) = self.get(bucket, key).await {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "s3://{bucket}/{key} did not appear within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    let output = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    output.attributes.unwrap()[&QueueAttributeName::QueueArn].clone()
}

/// The S3 event record for an object, with the key encoded as S3 does.
pub fn s3_record(bucket: &str, key: &str, size: u64, etag: &str) -> serde_json::Value {
    avscan_actors::testsuite::s3_record(bucket, key, size, etag)
}

/// The real binary, with its log in a file.
pub struct Avscan {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Avscan {
    pub fn start(env: &HashMap<String, String>) -> Avscan {
        Self::start_in(env, &HashMap::new())
    }

    /// Starts avscan with `dotenv` written to a `.env` file in its working directory, as a user
    /// of the old worker would, and only `env` in its environment.
    pub fn start_in(env: &HashMap<String, String>, dotenv: &HashMap<String, String>) -> Avscan {
        let dir = std::env::temp_dir().join(format!("avscan-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if !dotenv.is_empty() {
            let lines: String = dotenv.iter().map(|(name, value)| format!("{name}={value}\n")).collect();
            std::fs::write(dir.join(".env"), format!("# the old worker's .env\n{lines}")).unwrap();
        }
        let log = dir.join("avscan.log");
        let child = Command::new(env!("CARGO_BIN_EXE_avscan"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            // Its own directory: no stray .env from the developer's checkout.
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Avscan {
            child: Some(child),
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a log line containing `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log never said {needle:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for avscan to exit on its own; returns the exit code.
    pub async fn wait_exit(mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "avscan did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The operations endpoint's address, from the log line that announces it.
    pub async fn ops_address(&self) -> String {
        self.wait_for_log("operations endpoint listening", Duration::from_secs(30))
            .await;
        let log = self.log_text();
        let line = log
            .lines()
            .find(|line| line.contains("operations endpoint listening"))
            .unwrap();
        let at = line.find("address=").expect("address field") + "address=".len();
        line[at..].split_whitespace().next().unwrap().to_owned()
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub async fn stop(self) -> Option<i32> {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        self.wait_exit().await
    }
}

impl Drop for Avscan {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A clamd of the test's own on a unix socket, with the project's signatures and extra config
/// lines; started when asked (so a test can start it late) and killed on drop.
pub struct LocalClamd {
    dir: PathBuf,
    pub socket: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
}

impl LocalClamd {
    pub fn configure(extra_config: &str) -> LocalClamd {
        let dir = std::env::temp_dir().join(format!("avscan-clamd-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("clamd.sock");
        let db = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/clamav/db");
        let conf = dir.join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "LocalSocket {}\nDatabaseDirectory {}\nForeground yes\nLogFile {}\n{extra_config}\n",
                socket.display(),
                db.display(),
                dir.join("clamd.log").display()
            ),
        )
        .unwrap();
        LocalClamd {
            dir,
            socket,
            conf,
            child: None,
        }
    }

    pub fn address(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn start(&mut self) {
        let binary = if std::path::Path::new("/usr/sbin/clamd").exists() {
            "/usr/sbin/clamd"
        } else {
            "clamd"
        };
        let child = Command::new(binary)
            .arg(format!("--config-file={}", self.conf.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clamd installed: run `make test`, which installs it");
        self.child = Some(child);
    }
}

impl LocalClamd {
    /// Kills clamd (SIGKILL, as a crash or an OOM kill would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills clamd (SIGKILL, as a crash or an OOM kill would) and starts it again at once.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }
}

impl Drop for LocalClamd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The object keys in a forwarded message body: S3 records (form-encoded keys) or an
/// EventBridge event (plain key).
pub fn record_keys(message: &Message) -> Vec<String> {
    let body: serde_json::Value = serde_json::from_str(message.body.as_deref().unwrap_or("")).unwrap_or_default();
    if let Some(key) = body.pointer("/detail/object/key").and_then(|key| key.as_str()) {
        return vec![key.to_owned()];
    }
    body["Records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .filter_map(|record| record["s3"]["object"]["key"].as_str())
                .map(|key| avscan_actors::event::decode_event_key(key).unwrap_or_else(|_| key.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `key` of each quarantine notification (SNS envelope around the report). Checks on the
/// way that the subject is the fixed one: a key (user input) never reaches it.
pub fn notified_key(message: &Message) -> String {
    let envelope: serde_json::Value = serde_json::from_str(message.body.as_deref().unwrap()).unwrap();
    assert_eq!(envelope["Subject"], "avscan: object quarantined");
    let report: serde_json::Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    report["key"].as_str().unwrap().to_owned()
}

/// How many times each key occurs.
pub fn tally(keys: impl IntoIterator<Item = String>) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

impl TestEnv {
    /// Receives `expected` messages from `queue_url` (within `timeout`), then looks two seconds
    /// more for anything beyond them: duplicates.
    pub async fn drain(&self, queue_url: &str, expected: usize, timeout: Duration) -> Vec<Message> {
        let mut messages = self.receive(queue_url, expected, timeout).await;
        messages.extend(self.receive(queue_url, usize::MAX, Duration::from_secs(2)).await);
        messages
    }

    /// Drains the outbound queue; returns how often each object key was forwarded.
    pub async fn drain_forwarded(
        &self,
        expected: usize,
        timeout: Duration,
    ) -> std::collections::BTreeMap<String, usize> {
        let messages = self.drain(&self.validation_url, expected, timeout).await;
        tally(messages.iter().flat_map(record_keys))
    }

    /// Drains the notifications queue; returns how often each key was notified.
    pub async fn drain_notified(
        &self,
        expected: usize,
        timeout: Duration,
    ) -> std::collections::BTreeMap<String, usize> {
        let messages = self.drain(&self.notifications_url, expected, timeout).await;
        tally(messages.iter().map(notified_key))
    }

    /// Versions of each key in `bucket` (the bucket must have versioning on).
    pub async fn versions(&self, bucket: &str) -> std::collections::BTreeMap<String, usize> {
        let output = self.s3.list_object_versions().bucket(bucket).send().await.unwrap();
        tally(output.versions.unwrap_or_default().into_iter().filter_map(|v| v.key))
    }

    pub async fn enable_versioning(&self, bucket: &str) {
        self.s3
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
}

impl Avscan {
    /// SIGKILL (what dropping does): no drain, no release; whatever was in flight reappears
    /// after its visibility timeout.
    pub fn kill(self) {
        drop(self);
    }
}

/// Runs `avscan <args>` to completion with `env` only; returns its exit code and stdout.
pub async fn run_command(env: &HashMap<String, String>, args: &[&str]) -> (Option<i32>, String) {
    let env = env.clone();
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_avscan"))
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&env)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// A plain HTTP/1.0 GET; returns the status code and the body.
pub async fn http_get(address: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Reads a queue as fast as it fills, deleting in batches, until told to finish and the queue
/// stays empty.
pub struct Drainer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, Message)>>,
}

impl Drainer {
    pub fn start(env: Arc<TestEnv>, queue_url: String) -> Drainer {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut messages = Vec::new();
                let mut empty_after_stop = 0;
                while empty_after_stop < 3 {
                    let received = env
                        .sqs
                        .receive_message()
                        .queue_url(&queue_url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .send()
                        .await
                        .map(|output| output.messages.unwrap_or_default())
                        .unwrap_or_default();
                    if received.is_empty() && stop.load(std::sync::atomic::Ordering::SeqCst) {
                        empty_after_stop += 1;
                        continue;
                    }
                    let entries: Vec<_> = received
                        .iter()
                        .enumerate()
                        .map(|(i, message)| {
                            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(message.receipt_handle.clone().unwrap())
                                .build()
                                .unwrap()
                        })
                        .collect();
                    if !entries.is_empty() {
                        env.sqs
                            .delete_message_batch()
                            .queue_url(&queue_url)
                            .set_entries(Some(entries))
                            .send()
                            .await
                            .unwrap();
                    }
                    let arrived = Instant::now();
                    messages.extend(received.into_iter().map(|message| (arrived, message)));
                }
                messages
            }
        });
        Drainer { stop, task }
    }

    /// Stops once the queue stays empty; every message drained, with when it arrived.
    pub async fn finish_timed(self) -> Vec<(Instant, Message)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.unwrap()
    }

    /// Stops once the queue stays empty; every message drained.
    pub async fn finish(self) -> Vec<Message> {
        self.finish_timed()
            .await
            .into_iter()
            .map(|(_, message)| message)
            .collect()
    }
}

/// The value of one series in a Prometheus exposition, e.g. `avscan_bytes_scanned_total`.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

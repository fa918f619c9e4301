//! The local stack a test runs against and the resources it creates there: the emulator (moto or
//! ministack, `EMULATOR`) and clamd endpoints, what an emulator lacks of AWS (`Gap`, `lacks`), the
//! content the stack's clamd flags, and `TestEnv`, one test's own buckets, queues and topic (so
//! tests run in parallel without seeing each other's messages), with the variables that point
//! avscan at them. Reading outcomes back from those resources is in `readback.rs`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;

use super::process::Avscan;

/// The SHA-256 of `bytes`, lowercase hex, as avscan reports it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The EICAR test file: every clamd reports it as infected.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// Matches the project's `.ndb` body signature `Avscan.Test.Marker` anywhere in a file.
pub const TEST_MARKER: &[u8] = b"AVSCAN-TEST-MARKER-5d41402abc4b2a76";
/// The region the emulator and avscan are configured with.
pub const REGION: &str = "us-east-1";

/// The emulators the local stack can run (`EMULATOR=moto|ministack`, compose/stack.sh), each on
/// a port of its own, so that both can run at once and a URL names the emulator behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    /// moto's server (`moto[server]`): the default.
    Moto,
    /// ministack: ~6 times less CPU per request than moto, and closer to AWS (FACTS.md).
    Ministack,
}

impl Emulator {
    const ALL: [Emulator; 2] = [Emulator::Moto, Emulator::Ministack];

    /// The one `EMULATOR` names; moto when it is unset.
    pub fn selected() -> Emulator {
        match std::env::var("EMULATOR").as_deref() {
            Err(_) | Ok("") | Ok("moto") => Emulator::Moto,
            Ok("ministack") => Emulator::Ministack,
            Ok(other) => panic!("EMULATOR={other}: the local stack runs moto or ministack"),
        }
    }

    /// Its name, as `EMULATOR` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Emulator::Moto => "moto",
            Emulator::Ministack => "ministack",
        }
    }

    /// Its port on 127.0.0.1 in the local stack (compose/stack.sh starts it there).
    fn port(self) -> u16 {
        match self {
            Emulator::Moto => 4566,
            Emulator::Ministack => 4567,
        }
    }

    /// A path that only this emulator answers with 200: how the tests tell which one listens.
    fn probe_path(self) -> &'static str {
        match self {
            Emulator::Moto => "/moto-api/",
            Emulator::Ministack => "/_ministack/health",
        }
    }

    /// Whether it lacks `gap`, a behaviour of AWS that some assertion needs.
    pub fn lacks(self, gap: Gap) -> bool {
        match self {
            Emulator::Moto => matches!(
                gap,
                Gap::CopySourceIfMatch | Gap::VersionIdInEvents | Gap::EventKeysEncodedAsS3
            ),
            Emulator::Ministack => false,
        }
    }
}

impl std::fmt::Display for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A behaviour of S3, SQS or SNS that an emulator of the local stack lacks (`Emulator::lacks`).
/// A test skips only the assertion that needs it, on that emulator, and says so (`lacks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gap {
    /// S3 refuses a CopyObject or UploadPartCopy whose source no longer matches
    /// `x-amz-copy-source-if-match` (412); moto copies whatever is there.
    CopySourceIfMatch,
    /// S3's events for a versioned bucket name the version (`versionId`); moto's name none.
    VersionIdInEvents,
    /// S3 form-encodes event keys leaving `/` as it is; moto encodes it as `%2F`.
    EventKeysEncodedAsS3,
}

impl Gap {
    /// What AWS does that the emulator does not, as a skipped assertion reports it.
    pub fn behaviour(self) -> &'static str {
        match self {
            Gap::CopySourceIfMatch => "S3 enforcing CopySourceIfMatch on a copy",
            Gap::VersionIdInEvents => "S3 events naming the version of a versioned bucket",
            Gap::EventKeysEncodedAsS3 => "S3 event keys encoded as S3 encodes them (`/` kept)",
        }
    }
}

/// Whether the emulator under test lacks `gap`. When it does, one line on stderr names the test
/// and the behaviour whose assertion it skips; written past the test harness' capture, so that
/// every skip shows in `make test`'s output.
pub fn lacks(gap: Gap) -> bool {
    let emulator = emulator();
    let lacking = emulator.lacks(gap);
    if lacking {
        let thread = std::thread::current();
        let _ = writeln!(
            std::io::stderr(),
            "skipped on {emulator} in {}: an assertion that needs {}",
            thread.name().unwrap_or("a test"),
            gap.behaviour()
        );
    }
    lacking
}

/// The emulator's URL (S3, SQS and SNS): AVSCAN_TEST_ENDPOINT, else the port of the emulator
/// `EMULATOR` names.
pub fn endpoint() -> String {
    std::env::var("AVSCAN_TEST_ENDPOINT")
        .unwrap_or_else(|_| format!("http://127.0.0.1:{}", Emulator::selected().port()))
}

/// The emulator that answers at `endpoint()`, asked once per test binary (each answers a path of
/// its own), so that what a test skips follows what runs, whatever the variables say.
pub fn emulator() -> Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    *EMULATOR.get_or_init(|| {
        let endpoint = endpoint();
        let address = endpoint
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let answers = |path: &str| -> std::io::Result<bool> {
            let socket_address = std::net::ToSocketAddrs::to_socket_addrs(&address)?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))?;
            let mut stream = std::net::TcpStream::connect_timeout(&socket_address, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
            let mut status = [0u8; 12];
            stream.read_exact(&mut status)?;
            Ok(status.ends_with(b" 200"))
        };
        let mut unreachable = None;
        for candidate in Emulator::ALL {
            match answers(candidate.probe_path()) {
                Ok(true) => return candidate,
                Ok(false) => {}
                Err(err) => unreachable = Some(err),
            }
        }
        match unreachable {
            Some(err) => panic!(
                "no emulator at {endpoint} ({err}): run `make test` (EMULATOR={} by default), which starts it",
                Emulator::selected()
            ),
            None => panic!("{endpoint} answers neither as moto nor as ministack"),
        }
    })
}

/// The stack's clamd, as avscan's CLAMD_ADDRESS; AVSCAN_TEST_CLAMD overrides it.
pub fn clamd_address() -> String {
    std::env::var("AVSCAN_TEST_CLAMD").unwrap_or_else(|_| "tcp://127.0.0.1:3310".into())
}

pub async fn sdk() -> aws_config::SdkConfig {
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
    /// Puts objects and reads back what avscan left in the buckets.
    pub s3: aws_sdk_s3::Client,
    /// Queues events by hand and drains what avscan forwarded or rejected.
    pub sqs: aws_sdk_sqs::Client,
    /// The client that made the topic and its subscription.
    pub sns: aws_sdk_sns::Client,
    /// Where uploads land: the bucket avscan scans.
    pub unprocessed: String,
    /// Where avscan moves infected objects.
    pub quarantine: String,
    /// The queue avscan reads S3 events from.
    pub inbound_url: String,
    /// The inbound queue's name, as avscan is configured with it.
    pub inbound_name: String,
    /// The queue avscan forwards clean objects' events to.
    pub validation_url: String,
    /// The validation queue's name, as avscan is configured with it.
    pub validation_name: String,
    /// The queue that keeps the raw body of each event avscan rejects as invalid.
    pub rejected_url: String,
    /// The rejected queue's name, as avscan is configured with it.
    pub rejected_name: String,
    /// Subscribed to the topic, so tests can read the quarantine notifications back.
    pub notifications_url: String,
    /// The topic avscan publishes quarantine notifications to.
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

    /// Starts the real binary with `avscan_env`.
    pub fn start_avscan(&self) -> Avscan {
        Avscan::start(&self.avscan_env())
    }

    /// Turns versioning on for `bucket`.
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

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
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

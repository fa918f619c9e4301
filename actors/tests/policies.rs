//! Policies on the in-memory fakes: each action on an object that is not clean (tag, delete,
//! report) with and without a report bucket, tags on clean objects before they are forwarded
//! (or not), the objects' own tags kept, and the size limit of a prefix. Outcomes are read back
//! from the fakes.

use std::sync::Arc;
use std::time::Duration;

use avscan_actors::policy::{Action, BucketPolicy, Policies, Policy, TagMode};
use avscan_actors::report::QuarantineReport;
use avscan_actors::testsuite::{eventually, s3_event, FakeWorld, FAKE_VIRUS};
use avscan_actors::{Pipeline, PipelineConfig};

const BUCKET: &str = "uploads";
const REPORTS: &str = "reports";

fn policy(action: Action, reports: Option<&str>, tags: TagMode, forward_clean: bool) -> Arc<Policy> {
    Arc::new(Policy {
        action,
        quarantine_bucket: reports.map(str::to_owned),
        max_file_size: None,
        forward_clean,
        tags,
    })
}

fn config(policy: Arc<Policy>, prefixes: Vec<(String, Arc<Policy>)>) -> PipelineConfig {
    let mut config = PipelineConfig::with_policies(Policies::new(vec![BucketPolicy {
        bucket: BUCKET.into(),
        policy,
        prefixes,
    }]));
    config.visibility_timeout = Duration::from_secs(2);
    config.retry_base = Duration::from_millis(50);
    config.retry_max = Duration::from_millis(200);
    config
}

fn tag(world: &FakeWorld, key: &str, name: &str) -> Option<String> {
    let object = world.store.object(BUCKET, key)?;
    object.tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// Uploads with the object's own tag `team=blue`, then queues the event.
async fn upload_tagged(world: &FakeWorld, key: &str, body: &[u8]) {
    let etag = world.store.put_object(BUCKET, key, body.to_vec());
    let object = avscan_actors::model::ObjectRef {
        bucket: BUCKET.into(),
        key: key.into(),
        version_id: None,
        etag: None,
        size: body.len() as u64,
        sequencer: None,
    };
    avscan_actors::ports::ObjectStore::put_tags(world.store.as_ref(), &object, &[("team".into(), "blue".into())])
        .await
        .unwrap();
    world.inbound.push(s3_event(BUCKET, key, body.len() as u64, &etag));
}

#[tokio::test]
async fn tag_leaves_the_object_tagged_and_reported_beside_no_copy() {
    let world = FakeWorld::new(Duration::from_secs(2));
    let config = config(policy(Action::Tag, Some(REPORTS), TagMode::Avscan, true), Vec::new());
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    upload_tagged(&world, "guid/evil.bin", FAKE_VIRUS).await;
    upload_tagged(&world, "guid/clean.txt", b"hello").await;
    eventually("both settled", || world.inbound.is_empty()).await;

    assert_eq!(
        tag(&world, "guid/evil.bin", "avscan-status").as_deref(),
        Some("infected")
    );
    assert_eq!(
        tag(&world, "guid/evil.bin", "avscan-signature").as_deref(),
        Some("Fake.Virus")
    );
    assert_eq!(tag(&world, "guid/evil.bin", "team").as_deref(), Some("blue"));
    assert_eq!(tag(&world, "guid/clean.txt", "avscan-status").as_deref(), Some("clean"));
    assert_eq!(tag(&world, "guid/clean.txt", "team").as_deref(), Some("blue"));
    // Nothing moved: the report is in the report bucket, no copy beside it.
    assert_eq!(world.store.keys(REPORTS), vec!["guid/evil.bin.report.json"]);
    let report: QuarantineReport =
        serde_json::from_slice(&world.store.object(REPORTS, "guid/evil.bin.report.json").unwrap().body).unwrap();
    assert_eq!(report.action, "tag");
    assert_eq!(world.notifier.notifications().len(), 1);
    assert_eq!(world.outbound.messages().len(), 1, "the clean one, tagged first");
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn delete_removes_the_object_and_report_only_notifies_without_a_report_bucket() {
    let world = FakeWorld::new(Duration::from_secs(2));
    let config = config(
        policy(Action::Delete, None, TagMode::Off, true),
        vec![("observe/".into(), policy(Action::Report, None, TagMode::Off, true))],
    );
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    world.upload(BUCKET, "guid/evil.bin", FAKE_VIRUS.to_vec());
    world.upload(BUCKET, "observe/guid/evil.bin", FAKE_VIRUS.to_vec());
    eventually("both settled", || world.inbound.is_empty()).await;

    assert_eq!(
        world.store.keys(BUCKET),
        vec!["observe/guid/evil.bin"],
        "delete removed, report left"
    );
    assert!(world
        .store
        .object(BUCKET, "observe/guid/evil.bin")
        .unwrap()
        .tags
        .is_empty());
    let notified: Vec<QuarantineReport> = world
        .notifier
        .notifications()
        .iter()
        .map(|n| serde_json::from_str(&n.message).unwrap())
        .collect();
    let mut actions: Vec<&str> = notified.iter().map(|r| r.action.as_str()).collect();
    actions.sort();
    assert_eq!(actions, ["delete", "report"]);
    assert!(world.store.keys(REPORTS).is_empty());
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn clean_objects_are_tagged_and_not_forwarded_when_the_policy_forwards_nothing() {
    let world = FakeWorld::new(Duration::from_secs(2));
    let config = config(
        policy(Action::Quarantine, Some(REPORTS), TagMode::GuardDuty, false),
        vec![("small/".into(), {
            let mut small = (*policy(Action::Tag, None, TagMode::GuardDuty, false)).clone();
            small.max_file_size = Some(4);
            Arc::new(small)
        })],
    );
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    world.upload(BUCKET, "guid/clean.txt", &b"hello"[..]);
    world.upload(BUCKET, "small/guid/large.txt", &b"hello"[..]);
    eventually("both settled", || world.inbound.is_empty()).await;

    assert_eq!(
        tag(&world, "guid/clean.txt", "GuardDutyMalwareScanStatus").as_deref(),
        Some("NO_THREATS_FOUND")
    );
    assert_eq!(
        tag(&world, "small/guid/large.txt", "GuardDutyMalwareScanStatus").as_deref(),
        Some("UNSUPPORTED"),
        "over the prefix's 4-byte limit"
    );
    assert!(world.outbound.messages().is_empty());
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_allow_listed_detection_is_forwarded_as_clean_saying_which_entry_allowed_it() {
    use sha2::Digest;
    let world = FakeWorld::new(Duration::from_secs(2));
    let allowed = [b"vendor ".as_slice(), FAKE_VIRUS].concat();
    let digest: String = sha2::Sha256::digest(&allowed)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    world.allow_list.replace(
        avscan_actors::allow_list::AllowList::parse(&format!("sha256 {digest} # INC-7: the vendor's installer"))
            .unwrap(),
    );
    let config = config(
        policy(Action::Quarantine, Some(REPORTS), TagMode::Off, true),
        Vec::new(),
    );
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    world.upload(BUCKET, "guid/installer.exe", allowed.clone());
    world.upload(BUCKET, "guid/other.exe", [b"other ".as_slice(), FAKE_VIRUS].concat());
    eventually("both settled", || world.inbound.is_empty()).await;

    let forwarded = world.outbound.messages();
    assert_eq!(forwarded.len(), 1);
    assert!(forwarded[0].body.contains("guid/installer.exe"));
    let allowed_by = forwarded[0]
        .attributes
        .iter()
        .find(|(name, _)| name == "allowed_by")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    assert!(
        allowed_by.contains("INC-7") && allowed_by.contains("overruled infected Fake.Virus"),
        "{allowed_by}"
    );
    assert_eq!(
        world.store.keys(BUCKET),
        vec!["guid/installer.exe"],
        "the other one was moved"
    );
    assert_eq!(
        world.store.keys(REPORTS),
        vec!["guid/other.exe", "guid/other.exe.report.json"]
    );
    pipeline.shutdown(Duration::from_secs(5)).await;
}

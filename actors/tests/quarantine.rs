//! Every incident is reported, and its evidence kept: a new upload of a key is a new incident
//! (also with the same bytes), a redelivery of one event is not; no earlier copy or report is
//! overwritten; no source key takes the place of a report; an object gone before its copy is
//! still reported; the copy keeps its source's encryption and the report its metadata.
//! Outcomes are read back from the fakes.

use std::time::Duration;

use avscan_actors::report::QuarantineReport;
use avscan_actors::testsuite::{eventually, quick_config, s3_event, FakeWorld, PatternScanner, FAKE_VIRUS};
use avscan_actors::{Pipeline, PipelineConfig};

const UNPROCESSED: &str = "unprocessed";
const QUARANTINE: &str = "quarantine";

fn config() -> PipelineConfig {
    quick_config(UNPROCESSED, QUARANTINE)
}

fn infected(prefix: &str) -> Vec<u8> {
    [prefix.as_bytes(), FAKE_VIRUS].concat()
}

fn report(world: &FakeWorld, key: &str) -> QuarantineReport {
    let object = world
        .store
        .object(QUARANTINE, key)
        .unwrap_or_else(|| panic!("no {key}"));
    serde_json::from_slice(&object.body).unwrap()
}

#[tokio::test]
async fn a_later_upload_under_the_same_key_is_a_new_incident_and_the_earlier_evidence_stays() {
    let world = FakeWorld::new(Duration::from_secs(2));
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    world.upload(UNPROCESSED, "guid/again.bin", infected("first"));
    eventually("first quarantined", || world.notifier.notifications().len() == 1).await;
    world.upload(UNPROCESSED, "guid/again.bin", infected("second"));
    eventually("second quarantined", || world.notifier.notifications().len() == 2).await;
    eventually("queue empty", || world.inbound.is_empty()).await;

    let keys = world.store.keys(QUARANTINE);
    assert_eq!(keys.len(), 4, "two copies and two reports: {keys:?}");
    let first = world.store.object(QUARANTINE, "guid/again.bin").unwrap();
    assert!(
        first.body.starts_with(b"first"),
        "the first incident's copy was overwritten"
    );
    assert_eq!(
        report(&world, "guid/again.bin.report.json").quarantine_key,
        "guid/again.bin"
    );
    let later = keys
        .iter()
        .find(|key| key.starts_with("guid/again.bin~") && !key.ends_with(".report.json"))
        .unwrap();
    assert!(world
        .store
        .object(QUARANTINE, later)
        .unwrap()
        .body
        .starts_with(b"second"));
    let second = report(&world, &format!("{later}.report.json"));
    assert_eq!(&second.quarantine_key, later);
    assert_eq!(
        second.etag.as_deref(),
        Some(world.store.object(QUARANTINE, later).unwrap().etag.as_str())
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_same_bytes_uploaded_again_after_a_completed_quarantine_are_a_new_incident() {
    let world = FakeWorld::new(Duration::from_secs(2));
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    world.upload(UNPROCESSED, "guid/same.bin", infected("same"));
    eventually("first quarantined", || world.notifier.notifications().len() == 1).await;
    eventually("first message deleted", || world.inbound.is_empty()).await;
    // The same bytes, so the same ETag; only the event's sequencer tells the uploads apart.
    world.upload(UNPROCESSED, "guid/same.bin", infected("same"));
    eventually("second incident notified", || world.notifier.notifications().len() == 2).await;
    eventually("queue empty", || world.inbound.is_empty()).await;
    assert_eq!(
        world.store.keys(QUARANTINE).len(),
        4,
        "{:?}",
        world.store.keys(QUARANTINE)
    );
    assert!(world.store.keys(UNPROCESSED).is_empty());
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_same_event_delivered_again_is_one_incident() {
    let world = FakeWorld::new(Duration::from_secs(2));
    let body = infected("once");
    let etag = world.store.put_object(UNPROCESSED, "guid/once.bin", body.clone());
    let event = s3_event(UNPROCESSED, "guid/once.bin", body.len() as u64, &etag);
    world.inbound.push(event.clone());
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("quarantined", || world.notifier.notifications().len() == 1).await;
    eventually("deleted", || world.inbound.is_empty()).await;
    world.inbound.push(event);
    eventually("redelivery handled", || world.inbound.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.notifier.notifications().len(), 1);
    assert_eq!(
        world.store.keys(QUARANTINE),
        vec!["guid/once.bin", "guid/once.bin.report.json"]
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_source_named_like_a_report_never_takes_the_place_of_one() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.upload(UNPROCESSED, "guid/k", infected("k"));
    world.upload(UNPROCESSED, "guid/k.report.json", infected("fake report"));
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("both notified", || world.notifier.notifications().len() == 2).await;
    eventually("deleted", || world.inbound.is_empty()).await;

    assert_eq!(
        world.store.keys(QUARANTINE),
        vec![
            "guid/k",
            "guid/k.report.json",
            "guid/k.report.json~",
            "guid/k.report.json~.report.json"
        ]
    );
    assert_eq!(report(&world, "guid/k.report.json").key, "guid/k");
    assert_eq!(
        report(&world, "guid/k.report.json~.report.json").key,
        "guid/k.report.json"
    );
    assert!(world
        .store
        .object(QUARANTINE, "guid/k.report.json~")
        .unwrap()
        .body
        .starts_with(b"fake report"));
    assert!(world.store.keys(UNPROCESSED).is_empty());
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_infected_object_removed_before_its_copy_is_still_reported_and_notified() {
    let scanner = PatternScanner {
        delay: Duration::from_millis(300),
        ..Default::default()
    };
    let world = FakeWorld::with_scanner(Duration::from_secs(5), scanner);
    world.upload(UNPROCESSED, "guid/gone.bin", infected("gone"));
    world.upload(UNPROCESSED, "guid/replaced.bin", infected("old"));
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    // While the scans run: one object is deleted, the other replaced by a newer (clean) upload.
    eventually("scans started", || {
        world.scanner.active.load(std::sync::atomic::Ordering::SeqCst) == 2
    })
    .await;
    world.store.remove(UNPROCESSED, "guid/gone.bin");
    world
        .store
        .put_object(UNPROCESSED, "guid/replaced.bin", &b"newer and clean"[..]);
    eventually("reported", || !world.notifier.notifications().is_empty()).await;
    eventually("deleted", || world.inbound.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let notifications = world.notifier.notifications();
    assert_eq!(notifications.len(), 1, "only the removed one is an incident to report");
    let notified: QuarantineReport = serde_json::from_str(&notifications[0].message).unwrap();
    assert_eq!(notified.key, "guid/gone.bin");
    assert_eq!(notified.reason, "removed before quarantine");
    assert_eq!(notified.verdict, "infected");
    assert_eq!(report(&world, "guid/gone.bin.report.json"), notified);
    assert_eq!(
        world.store.keys(QUARANTINE),
        vec!["guid/gone.bin.report.json"],
        "no copy exists"
    );
    assert_eq!(
        world.store.keys(UNPROCESSED),
        vec!["guid/replaced.bin"],
        "the newer upload stays"
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_copy_keeps_its_sources_kms_key_and_the_report_its_metadata() {
    let world = FakeWorld::new(Duration::from_secs(2));
    let body = infected("encrypted");
    let etag = world.store.put_encrypted(
        UNPROCESSED,
        "guid/kms.bin",
        body.clone(),
        Some("arn:aws:kms:key/source"),
    );
    world
        .store
        .set_metadata(UNPROCESSED, "guid/kms.bin", &[("uploader", "alice"), ("case", "42")]);
    world
        .inbound
        .push(s3_event(UNPROCESSED, "guid/kms.bin", body.len() as u64, &etag));
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("quarantined", || world.inbound.is_empty()).await;
    let copy = world.store.object(QUARANTINE, "guid/kms.bin").unwrap();
    assert_eq!(copy.kms_key_id.as_deref(), Some("arn:aws:kms:key/source"));
    let report = report(&world, "guid/kms.bin.report.json");
    assert_eq!(
        report.source_metadata.get("uploader").map(String::as_str),
        Some("alice")
    );
    assert_eq!(report.source_metadata.get("case").map(String::as_str), Some("42"));
    pipeline.shutdown(Duration::from_secs(1)).await;

    // A configured quarantine key wins, for the copy and the report.
    let world = FakeWorld::new(Duration::from_secs(2));
    world.upload(UNPROCESSED, "guid/plain.bin", infected("plain"));
    let mut config = config();
    config.quarantine_kms_key_id = Some("arn:aws:kms:key/quarantine".into());
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    eventually("quarantined", || world.inbound.is_empty()).await;
    for key in ["guid/plain.bin", "guid/plain.bin.report.json"] {
        assert_eq!(
            world.store.object(QUARANTINE, key).unwrap().kms_key_id.as_deref(),
            Some("arn:aws:kms:key/quarantine"),
            "{key}"
        );
    }
    pipeline.shutdown(Duration::from_secs(1)).await;
}

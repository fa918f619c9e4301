//! Every record that finishes has one result event, published before its message is deleted:
//! clean, infected, too large, rejected and stale records each read back from the fake
//! destination with their verdict, and a destination that fails keeps the message on the queue
//! until its events are out.

use std::time::Duration;

use avscan_actors::result_event::ResultVerdict;
use avscan_actors::testsuite::{eventually, quick_config, s3_event, FakeWorld, FAKE_VIRUS};
use avscan_actors::{Pipeline, PipelineConfig};

const UNPROCESSED: &str = "unprocessed";

fn config() -> PipelineConfig {
    let mut config = quick_config(UNPROCESSED, "quarantine");
    config.max_file_size = 1024;
    config
}

#[tokio::test]
async fn each_verdict_has_one_result_event_with_the_object_it_judged() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.upload(UNPROCESSED, "guid/clean.txt", &b"fine"[..]);
    world.upload(UNPROCESSED, "guid/virus.bin", FAKE_VIRUS);
    world.upload(UNPROCESSED, "guid/large.bin", vec![0u8; 4096]);
    world.inbound.push(s3_event(UNPROCESSED, "no-folder.txt", 1, "e"));
    // Announced, but replaced before it is read: its event is stale.
    world
        .inbound
        .push(s3_event(UNPROCESSED, "guid/gone.txt", 4, "not-the-etag"));
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("every message deleted", || world.inbound.is_empty()).await;

    let events = world.results.events();
    let verdict_of = |key: &str| -> Vec<ResultVerdict> {
        events
            .iter()
            .filter(|event| event.key.as_deref() == Some(key))
            .map(|event| event.verdict.clone())
            .collect()
    };
    assert_eq!(verdict_of("guid/clean.txt"), [ResultVerdict::Clean]);
    assert_eq!(verdict_of("guid/virus.bin"), [ResultVerdict::Infected]);
    assert_eq!(verdict_of("guid/large.bin"), [ResultVerdict::TooLarge]);
    assert_eq!(verdict_of("no-folder.txt"), [ResultVerdict::Rejected]);
    assert_eq!(verdict_of("guid/gone.txt"), [ResultVerdict::Stale]);
    assert_eq!(events.len(), 5, "{events:#?}");

    let infected = events.iter().find(|e| e.verdict == ResultVerdict::Infected).unwrap();
    let detail = infected.detail();
    assert_eq!(detail["scanResultDetails"]["threats"][0]["name"], "Fake.Virus");
    assert_eq!(detail["avscan"]["action"], "quarantine");
    assert_eq!(detail["avscan"]["quarantineBucket"], "quarantine");
    assert_eq!(detail["avscan"]["quarantineKey"], "guid/virus.bin");
    let clean = events.iter().find(|e| e.verdict == ResultVerdict::Clean).unwrap();
    assert_eq!(clean.action, "forwarded");
    let rejected = events.iter().find(|e| e.verdict == ResultVerdict::Rejected).unwrap();
    assert_eq!(rejected.bucket.as_deref(), Some(UNPROCESSED));
    assert!(
        rejected.reason.as_deref().unwrap().contains("invalid key"),
        "{rejected:?}"
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_message_stays_on_the_queue_until_its_result_event_is_published() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.results.fail_next_entries(2);
    let id = world.upload(UNPROCESSED, "guid/clean.txt", &b"fine"[..]);
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("message deleted", || world.inbound.is_empty()).await;

    assert_eq!(
        world.inbound.receives_of(&id),
        3,
        "released twice, deleted on the third receive"
    );
    let events = world.results.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].verdict, ResultVerdict::Clean);
    pipeline.shutdown(Duration::from_secs(1)).await;
}

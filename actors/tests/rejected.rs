//! Rejected events never hold their message: the copy kept on the rejected-events queue is bounded
//! (cut to fit the queue, with the original's size and SHA-256), and a queue that refuses the
//! copy for what it is does not send the message round until its dead-letter queue, handling
//! the valid records that share it again and again. Outcomes are read back from the fakes.

use std::time::Duration;

use avscan_actors::testsuite::{eventually, quick_config, s3_record, FakeWorld};
use avscan_actors::{Pipeline, PipelineConfig};
use serde_json::json;

const UNPROCESSED: &str = "unprocessed";

fn config() -> PipelineConfig {
    quick_config(UNPROCESSED, "quarantine")
}

/// A message with one valid clean record and one record whose event name is `event_name`.
fn mixed_message(world: &FakeWorld, event_name: &str) -> String {
    let etag = world.store.put_object(UNPROCESSED, "guid/ok.txt", &b"fine"[..]);
    let mut invalid = s3_record(UNPROCESSED, "guid/other.txt", 1, "e");
    invalid["eventName"] = event_name.into();
    let body = json!({ "Records": [s3_record(UNPROCESSED, "guid/ok.txt", 4, &etag), invalid] }).to_string();
    world.inbound.push(body)
}

fn attribute(message: &avscan_actors::ports::OutboundMessage, name: &str) -> Option<String> {
    message
        .attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

#[tokio::test]
async fn a_rejected_body_larger_than_the_rejected_queue_takes_is_kept_cut_with_its_size_and_digest() {
    let world = FakeWorld::new(Duration::from_secs(2));
    // A rejected-events queue created smaller than the inbound one, and an event name (attacker
    // text) long enough to pass it.
    world.rejected.set_max_message_bytes(2048);
    let id = mixed_message(&world, &format!("ObjectRemoved:{}", "x".repeat(20_000)));
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("message deleted", || world.inbound.is_empty()).await;

    assert_eq!(world.inbound.receives_of(&id), 1, "the message was handled again");
    assert_eq!(world.outbound.count(), 1, "the valid record is forwarded once");
    let kept = world.rejected.messages();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].size() <= 2048, "{}", kept[0].size());
    assert_eq!(attribute(&kept[0], "truncated").as_deref(), Some("true"));
    let original_size: usize = attribute(&kept[0], "original_size").unwrap().parse().unwrap();
    assert!(original_size > 20_000);
    assert_eq!(attribute(&kept[0], "original_sha256").unwrap().len(), 64);
    assert!(attribute(&kept[0], "reason").unwrap().len() <= 1024);
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_rejected_copy_the_queue_refuses_for_good_does_not_hold_its_message() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.rejected.refuse_next_entries(usize::MAX);
    let id = mixed_message(&world, "ObjectRemoved:Delete");
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("message deleted", || world.inbound.is_empty()).await;

    assert_eq!(world.inbound.receives_of(&id), 1, "the message was handled again");
    assert_eq!(world.outbound.count(), 1, "the valid record is forwarded once");
    assert!(world.rejected.messages().is_empty());
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_rejected_copy_that_fails_for_now_is_tried_again_and_kept() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.rejected.fail_next_entries(1);
    let id = world.inbound.push("{not json");
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("message deleted", || world.inbound.is_empty()).await;

    assert_eq!(
        world.inbound.receives_of(&id),
        2,
        "retried once after the transient failure"
    );
    let kept = world.rejected.messages();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].body, "{not json");
    pipeline.shutdown(Duration::from_secs(1)).await;
}

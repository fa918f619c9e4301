//! Pipeline behaviour on the in-memory fakes: routing, acknowledgement, backpressure and
//! supervision. Outcomes are read back from the fakes (queue, store, sinks), not from counters
//! of the pipeline.

use std::sync::atomic::Ordering;
use std::time::Duration;

use avscan_actors::report::QuarantineReport;
use avscan_actors::restart::RestartPolicy;
use avscan_actors::testsuite::{eventually, quick_config, s3_event, FakeWorld, PatternScanner, FAKE_VIRUS};
use avscan_actors::{Pipeline, PipelineConfig};

const UNPROCESSED: &str = "unprocessed";
const QUARANTINE: &str = "quarantine";

fn config() -> PipelineConfig {
    quick_config(UNPROCESSED, QUARANTINE)
}

#[tokio::test]
async fn clean_is_forwarded_and_infected_is_quarantined_with_report_and_notification() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.upload(UNPROCESSED, "guid/clean.txt", &b"hello"[..]);
    world.upload(
        UNPROCESSED,
        "guid/evil file.bin",
        [b"xx".as_slice(), FAKE_VIRUS].concat(),
    );
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();

    eventually("both messages deleted", || world.inbound.is_empty()).await;
    let forwarded = world.outbound.messages();
    assert_eq!(forwarded.len(), 1);
    assert!(forwarded[0].body.contains("guid/clean.txt"));
    assert!(forwarded[0].attributes.contains(&("verdict".into(), "clean".into())));

    assert_eq!(world.store.keys(UNPROCESSED), vec!["guid/clean.txt"]);
    assert_eq!(
        world.store.keys(QUARANTINE),
        vec!["guid/evil file.bin", "guid/evil file.bin.report.json"]
    );
    let report_object = world
        .store
        .object(QUARANTINE, "guid/evil file.bin.report.json")
        .unwrap();
    assert_eq!(report_object.content_type.as_deref(), Some("application/json"));
    let report: QuarantineReport = serde_json::from_slice(&report_object.body).unwrap();
    assert_eq!(report.reason, "virus detected");
    assert_eq!(report.signature.as_deref(), Some("Fake.Virus"));
    let notifications = world.notifier.notifications();
    assert_eq!(notifications.len(), 1);
    assert_eq!(
        serde_json::from_str::<QuarantineReport>(&notifications[0].message).unwrap(),
        report
    );

    assert!(pipeline.shutdown(Duration::from_secs(1)).await.drained);
}

#[tokio::test]
async fn too_large_objects_are_quarantined_without_being_scanned() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.upload(UNPROCESSED, "guid/big.bin", vec![0u8; 2048]);
    let mut config = config();
    config.max_file_size = 1024;
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    eventually("message deleted", || world.inbound.is_empty()).await;
    assert_eq!(
        world.scanner.connections.load(Ordering::SeqCst),
        0,
        "nothing may be scanned"
    );
    let report: QuarantineReport =
        serde_json::from_slice(&world.store.object(QUARANTINE, "guid/big.bin.report.json").unwrap().body).unwrap();
    assert_eq!(report.reason, "file too large");
    assert!(world.outbound.messages().is_empty());
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn invalid_events_are_rejected_kept_and_deleted() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.inbound.push("{not json");
    world
        .inbound
        .push(avscan_actors::testsuite::s3_event(UNPROCESSED, "no-folder.txt", 1, "e"));
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("both deleted", || world.inbound.is_empty()).await;
    let rejected = world.rejected.messages();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0].body, "{not json");
    assert!(world.outbound.messages().is_empty());
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn never_more_than_max_in_flight_messages_are_received() {
    let scanner = PatternScanner {
        delay: Duration::from_millis(5),
        ..Default::default()
    };
    let world = FakeWorld::with_scanner(Duration::from_secs(5), scanner);
    for i in 0..60 {
        world.upload(UNPROCESSED, &format!("guid/{i}.txt"), format!("body {i}"));
    }
    let mut config = config();
    config.max_in_flight = 4;
    config.fetch_concurrency = 8;
    config.scanner_connections = 8;
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    eventually("all deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.outbound.messages().len(), 60);
    assert!(
        world.inbound.peak_in_flight() <= 4,
        "peak in flight {}",
        world.inbound.peak_in_flight()
    );
    assert!(world.scanner.peak_active.load(Ordering::SeqCst) <= 4);
    pipeline.shutdown(Duration::from_secs(1)).await;
}

/// `objects` small objects, and a pipeline of `fetchers` and one session whose scans take
/// `scan` and name their verdicts only once eight wait (or when it idles), as clamd's session
/// names up to 16 with one VERSION.
async fn one_session_naming_like_clamd(scan: Duration, objects: usize, fetchers: usize) -> (FakeWorld, Pipeline) {
    let scanner = PatternScanner {
        delay: scan,
        names_after: 8,
        ..Default::default()
    };
    let world = FakeWorld::with_scanner(Duration::from_secs(5), scanner);
    for i in 0..objects {
        world.upload(UNPROCESSED, &format!("guid/{i}.txt"), format!("body {i}"));
    }
    let mut config = config();
    config.fetch_concurrency = fetchers;
    config.scanner_connections = 1;
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    (world, pipeline)
}

/// A verdict waits for its definitions' name until a later scan of its session (clamd's: up
/// to 16 later), or until its scanner idles and asks. A fetcher that waited for the name could
/// not fetch the next body meanwhile: with two fetchers per session the session ran out of
/// bodies every two scans and asked VERSION then (measured on clamd: a VERSION per two scans).
#[tokio::test]
async fn fetchers_do_not_wait_for_a_verdicts_name_and_keep_the_session_scanning() {
    const OBJECTS: u64 = 64;
    let (world, pipeline) = one_session_naming_like_clamd(Duration::from_millis(2), OBJECTS as usize, 2).await;
    eventually("all deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.outbound.messages().len(), OBJECTS as usize);
    // Ideally one when the queue runs dry; the session idles only when both fetchers wait for
    // something else.
    let idle_confirms = world.scanner.idle_confirms.load(Ordering::SeqCst);
    assert!(
        idle_confirms <= OBJECTS / 8,
        "the session idled and asked for names {idle_confirms} times in {OBJECTS} scans"
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

/// A session that dies while verdicts wait for their name takes their verdicts with it: those
/// messages are scanned again, none is forwarded unnamed or twice, none is lost.
#[tokio::test]
async fn verdicts_waiting_for_their_name_when_the_session_dies_are_scanned_again() {
    const OBJECTS: usize = 12;
    let (world, pipeline) = one_session_naming_like_clamd(Duration::from_millis(20), OBJECTS, 4).await;
    // Three scans begun, none named yet (8 must wait first): the next scan panics.
    eventually("three scans", || world.scanner.scans.load(Ordering::SeqCst) >= 3).await;
    assert!(
        world.outbound.messages().is_empty(),
        "nothing is forwarded before its name"
    );
    world.scanner.panic_on_scan.arm(1);
    eventually("all deleted", || world.inbound.is_empty()).await;
    let forwarded = world.outbound.messages();
    assert_eq!(forwarded.len(), OBJECTS, "each object forwarded once");
    // The scan that panicked, and the two or more verdicts waiting for their name then.
    let scans = world.scanner.scans.load(Ordering::SeqCst);
    assert!(
        scans >= OBJECTS + 3,
        "{scans} scans of {OBJECTS} objects: the verdicts lost with the session were not scanned again"
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

/// A world whose scans take 20 ms, for the tests of open GETs.
fn slow_scanning_world() -> FakeWorld {
    let scanner = PatternScanner {
        delay: Duration::from_millis(20),
        ..Default::default()
    };
    FakeWorld::with_scanner(Duration::from_secs(30), scanner)
}

/// Runs `world`'s queue through a pipeline of 256 fetchers and 2 clamd sessions until every
/// one of `objects` messages is forwarded; returns the most GET bodies ever open at once. The
/// budget of bodies held whole is then 16 MiB (its floor): 16 bodies of 1 MiB; the gate of
/// streamed objects two per session.
async fn peak_open_gets(world: &FakeWorld, objects: usize) -> usize {
    let mut config = config();
    config.fetch_concurrency = 256;
    config.max_in_flight = 512;
    config.scanner_connections = 2;
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    eventually("all deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.outbound.messages().len(), objects);
    assert_eq!(world.store.open_bodies.load(Ordering::SeqCst), 0);
    pipeline.shutdown(Duration::from_secs(1)).await;
    world.store.peak_open_bodies.load(Ordering::SeqCst)
}

#[tokio::test]
async fn open_gets_stay_within_the_whole_body_budget_and_the_streamed_object_gate() {
    // In S3 an open GET holds its connection's buffers: 256 fetchers of 1 MiB objects held
    // 173 MiB when they opened their GETs before waiting for room.
    let world = slow_scanning_world();
    for i in 0..48 {
        world.upload(UNPROCESSED, &format!("guid/held-{i}.bin"), vec![b'a'; 1024 * 1024]);
    }
    for i in 0..16 {
        world.upload(
            UNPROCESSED,
            &format!("guid/streamed-{i}.bin"),
            vec![b'b'; 2 * 1024 * 1024],
        );
    }
    let peak = peak_open_gets(&world, 64).await;
    assert!(peak <= 16 + 2 * 2, "{peak} GETs open at once");
}

#[tokio::test]
async fn events_that_misstate_the_size_do_not_open_more_gets() {
    // Forged events: 0 bytes for objects of 1 MiB and 2 MiB, 3 MiB for objects of 1 MiB.
    let world = slow_scanning_world();
    let upload = |key: String, body: Vec<u8>, claimed: u64| {
        let etag = world.store.put_object(UNPROCESSED, &key, body);
        world.inbound.push(s3_event(UNPROCESSED, &key, claimed, &etag));
    };
    for i in 0..32 {
        upload(format!("guid/held-{i}.bin"), vec![b'a'; 1024 * 1024], 0);
        upload(
            format!("guid/overstated-{i}.bin"),
            vec![b'c'; 1024 * 1024],
            3 * 1024 * 1024,
        );
    }
    for i in 0..16 {
        upload(format!("guid/streamed-{i}.bin"), vec![b'b'; 2 * 1024 * 1024], 0);
    }
    // A fetcher whose GET needs what is not free ends it before it waits: the bound of the test
    // above holds, plus one GET per fetcher between its answer and its end.
    let peak = peak_open_gets(&world, 80).await;
    assert!(peak <= 16 + 2 * 2 + 8, "{peak} GETs open at once");
}

#[tokio::test]
async fn a_message_is_not_deleted_before_its_scan_finished() {
    let scanner = PatternScanner {
        delay: Duration::from_millis(400),
        ..Default::default()
    };
    let world = FakeWorld::with_scanner(Duration::from_secs(5), scanner);
    let id = world.upload(UNPROCESSED, "guid/slow.txt", &b"slow"[..]);
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("received", || world.inbound.receive_count(&id) == Some(1)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(world.inbound.len(), 1, "acked before the verdict");
    assert!(world.outbound.messages().is_empty());
    eventually("deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.outbound.messages().len(), 1);
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_panicking_scanner_is_restarted_and_the_message_redelivered_and_finished() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.scanner.panic_on_scan.arm(1);
    let id = world.upload(UNPROCESSED, "guid/a.txt", &b"clean"[..]);
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("received twice", || {
        world.inbound.receive_count(&id) >= Some(2) || world.inbound.is_empty()
    })
    .await;
    eventually("deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.outbound.messages().len(), 1);
    assert!(
        world.scanner.connections.load(Ordering::SeqCst) >= 2,
        "the restarted scanner opened a new connection"
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_panicking_fetcher_is_restarted_and_the_message_finished() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.store.panic_on_get.arm(2);
    world.upload(UNPROCESSED, "guid/a.txt", &b"clean"[..]);
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.outbound.messages().len(), 1);
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_panicking_quarantiner_is_restarted_and_the_quarantine_finished_once() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.notifier.panic_on_publish.arm(1);
    world.upload(UNPROCESSED, "guid/v.bin", FAKE_VIRUS);
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("deleted", || world.inbound.is_empty()).await;
    assert_eq!(
        world.store.keys(QUARANTINE),
        vec!["guid/v.bin", "guid/v.bin.report.json"]
    );
    assert!(world.store.keys(UNPROCESSED).is_empty());
    assert_eq!(world.notifier.notifications().len(), 1);
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_restart_storm_fails_the_pipeline() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.scanner.panic_on_scan.arm(usize::MAX);
    world.upload(UNPROCESSED, "guid/a.txt", &b"x"[..]);
    let mut config = config();
    config.retry_base = Duration::from_millis(1);
    config.retry_max = Duration::from_millis(1);
    config.restart_policy = RestartPolicy {
        max_restarts: 3,
        window: Duration::from_secs(60),
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    };
    let mut pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), pipeline.failed())
        .await
        .expect("pipeline gave up");
    assert!(reason.contains("restart storm"), "{reason}");
    assert_eq!(world.inbound.len(), 1, "the message is still on the queue");
    assert!(world.outbound.messages().is_empty());
}

#[tokio::test]
async fn shutdown_releases_what_did_not_finish_within_the_grace_period() {
    let scanner = PatternScanner {
        delay: Duration::from_secs(30),
        ..Default::default()
    };
    let world = FakeWorld::with_scanner(Duration::from_secs(60), scanner);
    let id = world.upload(UNPROCESSED, "guid/a.txt", &b"x"[..]);
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("received", || world.inbound.receive_count(&id) == Some(1)).await;
    let report = pipeline.shutdown(Duration::from_millis(200)).await;
    assert!(!report.drained);
    assert_eq!(report.released, 1);
    // Visible again at once: a new receive gets it.
    let again = avscan_actors::ports::InboundQueue::receive(world.inbound.as_ref(), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert!(world.outbound.messages().is_empty());
}

#[tokio::test]
async fn the_heartbeat_keeps_a_long_scan_invisible_to_other_workers() {
    // The scan takes several visibility timeouts; without extensions the message would be
    // received again mid-scan.
    let scanner = PatternScanner {
        delay: Duration::from_millis(2500),
        ..Default::default()
    };
    let world = FakeWorld::with_scanner(Duration::from_secs(1), scanner);
    let id = world.upload(UNPROCESSED, "guid/slow.txt", &b"slow"[..]);
    let mut config = config();
    config.visibility_timeout = Duration::from_secs(1);
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    eventually("received", || world.inbound.receive_count(&id) == Some(1)).await;
    eventually("deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.outbound.messages().len(), 1, "scanned and forwarded once");
    assert_eq!(world.inbound.receives_of(&id), 1, "received again while in flight");
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_message_with_valid_and_invalid_records_forwards_the_valid_one_and_keeps_the_body_once() {
    let world = FakeWorld::new(Duration::from_secs(2));
    let etag = world.store.put_object(UNPROCESSED, "guid/ok.txt", &b"fine"[..]);
    let mut removed = avscan_actors::testsuite::s3_record(UNPROCESSED, "guid/gone.txt", 1, "e");
    removed["eventName"] = "ObjectRemoved:Delete".into();
    let body = serde_json::json!({ "Records": [
        avscan_actors::testsuite::s3_record(UNPROCESSED, "guid/ok.txt", 4, &etag),
        removed,
        avscan_actors::testsuite::s3_record(UNPROCESSED, "../escape", 1, "e"),
    ]})
    .to_string();
    world.inbound.push(body.clone());
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    eventually("deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.outbound.messages().len(), 1);
    let rejected = world.rejected.messages();
    assert_eq!(rejected.len(), 1, "the raw body is kept once per message");
    assert_eq!(rejected[0].body, body);
    let reason = &rejected[0]
        .attributes
        .iter()
        .find(|(name, _)| name == "reason")
        .unwrap()
        .1;
    assert!(
        reason.contains("ObjectRemoved:Delete") && reason.contains("invalid key"),
        "{reason}"
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn deletes_go_ten_per_call_and_only_failed_entries_are_sent_again() {
    let world = FakeWorld::new(Duration::from_secs(2));
    let ids: Vec<String> = (0..25)
        .map(|i| world.upload(UNPROCESSED, &format!("guid/{i}.txt"), &b"clean"[..]))
        .collect();
    // Two entries of the first batch fail as SQS' server-side errors do.
    world.inbound.fail_next_deletes(2);
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();

    eventually("every message deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.outbound.messages().len(), 25);
    let calls = world.inbound.delete_calls();
    assert!(calls.iter().all(|call| call.len() <= 10));
    // The first two entries sent failed: each is sent once more, with the same receipt handle
    // (the message was received once); every other entry is sent exactly once.
    let sent: Vec<&String> = calls.iter().flatten().collect();
    for (index, handle) in sent.iter().enumerate() {
        let times = sent.iter().filter(|h| *h == handle).count();
        let expected = if sent[..index].contains(handle) || index < 2 {
            2
        } else {
            1
        };
        assert_eq!(times, expected, "{handle} sent {times} times: {calls:?}");
    }
    for id in &ids {
        assert_eq!(world.inbound.receives_of(id), 1, "{id} was redelivered");
    }
    assert!(
        calls.len() < 25,
        "deletes were not batched: {} calls for 25 messages",
        calls.len()
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn clean_records_go_out_ten_per_send_and_a_failed_entry_retries_only_its_message() {
    let world = FakeWorld::new(Duration::from_secs(2));
    let ids: Vec<String> = (0..25)
        .map(|i| world.upload(UNPROCESSED, &format!("guid/{i}.txt"), &b"clean"[..]))
        .collect();
    world.outbound.fail_next_entries(1);
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();

    eventually("every message deleted", || world.inbound.is_empty()).await;
    // Every record forwarded exactly once: the failed entry's message came back once.
    let mut forwarded: Vec<String> = world.outbound.messages().into_iter().map(|m| m.body).collect();
    forwarded.sort();
    forwarded.dedup();
    assert_eq!(forwarded.len(), 25);
    assert_eq!(world.outbound.count(), 25);
    let redelivered: Vec<&String> = ids.iter().filter(|id| world.inbound.receives_of(id) > 1).collect();
    assert_eq!(redelivered.len(), 1, "exactly the failed entry's message is retried");
    // 26 entries (one failed), at most ten per call, nearly all in full calls.
    let batches = world.outbound.batch_sizes();
    assert_eq!(batches.iter().sum::<usize>(), 26);
    assert!(batches.iter().all(|&n| n <= 10), "{batches:?}");
    assert!(batches.len() <= 5, "sends were not batched: {batches:?}");
    pipeline.shutdown(Duration::from_secs(1)).await;
}

/// A pipeline whose visibility timeout is 1 s (heartbeat every 250 ms) and whose scans take
/// `scan` each, on a queue with the same timeout.
fn one_second_visibility(scan: Duration) -> (FakeWorld, PipelineConfig) {
    let scanner = PatternScanner {
        delay: scan,
        ..Default::default()
    };
    let world = FakeWorld::with_scanner(Duration::from_secs(1), scanner);
    let mut config = config();
    config.visibility_timeout = Duration::from_secs(1);
    (world, config)
}

/// The visibility extensions the fake queue saw (calls with the full timeout, not releases).
fn extension_calls(world: &FakeWorld) -> Vec<Vec<String>> {
    world
        .inbound
        .visibility_calls()
        .into_iter()
        .filter(|(_, timeout)| *timeout == Duration::from_secs(1))
        .map(|(handles, _)| handles)
        .collect()
}

#[tokio::test]
async fn a_restarted_acker_and_heartbeat_keep_extending_what_is_in_flight() {
    // A scan of 2.5 visibility timeouts. Meanwhile an S3 test event settles at once, and its
    // delete kills the acker; the first visibility extension kills whoever sends it.
    let (world, config) = one_second_visibility(Duration::from_millis(2500));
    world.inbound.panic_on_delete.arm(1);
    world.inbound.panic_on_visibility.arm(1);
    let slow = world.upload(UNPROCESSED, "guid/slow.txt", &b"slow"[..]);
    let test_event = world
        .inbound
        .push(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"unprocessed"}"#);
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    eventually("both deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.inbound.receives_of(&slow), 1, "received again while in flight");
    assert_eq!(world.outbound.messages().len(), 1, "scanned and forwarded once");
    // The test event's first delete died with the acker: it came back once, and the restarted
    // acker deleted it.
    assert_eq!(world.inbound.receives_of(&test_event), 2);
    assert!(!extension_calls(&world).is_empty());
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_stalled_visibility_call_does_not_let_another_message_lapse() {
    let (world, config) = one_second_visibility(Duration::from_millis(1600));
    let first = world.upload(UNPROCESSED, "guid/first.txt", &b"first"[..]);
    // The first extension call (the first message's, alone: the second is received more than a
    // heartbeat later) stalls for a minute.
    world.inbound.stall_next_visibility(Duration::from_secs(60));
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    eventually("first received", || world.inbound.receive_count(&first) == Some(1)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = world.upload(UNPROCESSED, "guid/second.txt", &b"second"[..]);
    eventually("both deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.inbound.receives_of(&second), 1, "lapsed behind the stalled call");
    let forwarded = world.outbound.messages();
    let second_forwarded = forwarded.iter().filter(|m| m.body.contains("guid/second.txt")).count();
    assert_eq!(second_forwarded, 1);
    // The first message did not wait for its stalled call either: it went out again.
    let first_handle = format!("{first}#1");
    let calls = extension_calls(&world);
    assert_eq!(calls[0], vec![first_handle.clone()], "{calls:?}");
    assert!(
        calls[1..].iter().any(|call| call.contains(&first_handle)),
        "the first message was not extended again while its call stalled: {calls:?}"
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn visibility_extensions_go_ten_per_call() {
    let (world, mut config) = one_second_visibility(Duration::from_millis(1600));
    config.fetch_concurrency = 12;
    config.scanner_connections = 12;
    let ids: Vec<String> = (0..12)
        .map(|i| world.upload(UNPROCESSED, &format!("guid/{i}.txt"), &b"clean"[..]))
        .collect();
    let pipeline = Pipeline::start(config, world.ports()).await.unwrap();
    eventually("every message deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.outbound.messages().len(), 12);
    for id in &ids {
        assert_eq!(world.inbound.receives_of(id), 1, "{id} was received again");
    }
    let calls = extension_calls(&world);
    let entries: usize = calls.iter().map(Vec::len).sum();
    assert!(entries >= 12, "every message was extended: {calls:?}");
    assert!(calls.iter().all(|call| call.len() <= 10), "{calls:?}");
    // Messages received together fall due together, unless a heartbeat falls between them.
    assert!(
        calls.len() * 2 <= entries,
        "extensions were not batched: {} calls for {entries} extensions: {calls:?}",
        calls.len()
    );
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_closed_receive_gate_receives_nothing_and_opening_it_resumes() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.receive_gate.close("definitions too old".into());
    let id = world.upload(UNPROCESSED, "guid/waits.txt", &b"hello"[..]);
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.inbound.receives_of(&id), 0, "received through a closed gate");
    assert!(world.outbound.messages().is_empty());

    world.receive_gate.open();
    eventually("the message forwarded and deleted", || world.inbound.is_empty()).await;
    assert_eq!(world.outbound.messages().len(), 1);
    assert_eq!(world.inbound.receives_of(&id), 1);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn clean_by_stale_definitions_is_never_forwarded_and_fresh_definitions_forward_it() {
    let world = FakeWorld::new(Duration::from_secs(2));
    world.scanner.stale_definitions.store(true, Ordering::SeqCst);
    let clean = world.upload(UNPROCESSED, "guid/clean.txt", &b"hello"[..]);
    let evil = world.upload(UNPROCESSED, "guid/evil.bin", FAKE_VIRUS);
    let pipeline = Pipeline::start(config(), world.ports()).await.unwrap();

    // Infected stands whatever the definitions' age; clean by old definitions comes back.
    eventually("the infected object quarantined", || {
        world.store.keys(QUARANTINE).len() == 2 && world.inbound.receives_of(&evil) == 1
    })
    .await;
    eventually("the clean one retried", || world.inbound.receives_of(&clean) >= 3).await;
    assert!(
        world.outbound.messages().is_empty(),
        "forwarded as clean by stale definitions"
    );

    world.scanner.stale_definitions.store(false, Ordering::SeqCst);
    eventually("the clean object forwarded", || world.inbound.is_empty()).await;
    let forwarded = world.outbound.messages();
    assert_eq!(forwarded.len(), 1);
    assert!(forwarded[0]
        .attributes
        .contains(&("definitions_version".into(), "1".into())));
    pipeline.shutdown(Duration::from_secs(5)).await;
}

//! The pipeline on the in-memory ports (optionally slowed to AWS' latencies) against objects of
//! the same sizes streamed through plain clamd sessions, every object of either side new to
//! clamd (as uploads are): what the pipeline and latency benches share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::FreshBodies;

use criterion::{BenchmarkGroup, BenchmarkId};

use avscan_actors::allow_list::AllowListHandle;
use avscan_actors::definitions::ReceiveGate;
use avscan_actors::ports::{InboundQueue, MessageSink, Notifier, ObjectStore, ScanEngine};
use avscan_actors::testsuite::{
    s3_event, AwsLatencies, MemoryNotifier, MemoryQueue, MemorySink, MemoryStore, SlowNotifier, SlowQueue, SlowSink,
    SlowStore,
};
use avscan_actors::{Pipeline, PipelineConfig, PipelinePorts};

pub const UNPROCESSED: &str = "unprocessed";

/// A running pipeline on the fakes, and the store it fetches from.
pub struct Bench {
    queue: Arc<MemoryQueue>,
    outbound: Arc<MemorySink>,
    store: Arc<MemoryStore>,
    uploaded: AtomicU64,
    _pipeline: Pipeline,
}

/// Objects in the bench's store, and their events.
pub struct Uploaded {
    keys: Vec<String>,
    events: Vec<Arc<str>>,
}

/// The pipeline's settings for a bench: production's, with the batch linger at 2 ms (it delays
/// a batch, it does not limit throughput, but an iteration's last batch would wait it out) and
/// no definitions check (a clamd without an official database may judge here).
pub fn config() -> PipelineConfig {
    let mut config = PipelineConfig::new(UNPROCESSED, "quarantine");
    config.batch_linger = Duration::from_millis(2);
    config.visibility_timeout = Duration::from_secs(600);
    config.definitions_max_age = None;
    config
}

impl Bench {
    /// The pipeline with `config` on the fakes, each slowed by `latencies` when given.
    pub async fn start(scanner: Arc<dyn ScanEngine>, config: PipelineConfig, latencies: Option<AwsLatencies>) -> Bench {
        let queue = MemoryQueue::new(Duration::from_secs(600));
        let outbound = Arc::new(MemorySink::default());
        let memory_store = MemoryStore::new();
        let mut inbound: Arc<dyn InboundQueue> = queue.clone();
        let mut sink: Arc<dyn MessageSink> = outbound.clone();
        let mut store: Arc<dyn ObjectStore> = memory_store.clone();
        let mut notifier: Arc<dyn Notifier> = Arc::new(MemoryNotifier::default());
        if let Some(latencies) = latencies {
            inbound = SlowQueue::new(inbound, latencies);
            sink = SlowSink::new(sink, latencies);
            store = SlowStore::new(store, latencies);
            notifier = SlowNotifier::new(notifier, latencies);
        }
        let ports = PipelinePorts {
            inbound,
            outbound: sink,
            rejected: None,
            store,
            notifier,
            scanner,
            receive_gate: ReceiveGate::always_open(),
            allow_list: AllowListHandle::empty(),
            results: Vec::new(),
        };
        let pipeline = Pipeline::start(config, ports).await.expect("pipeline");
        Bench {
            queue,
            outbound,
            store: memory_store,
            uploaded: AtomicU64::new(0),
            _pipeline: pipeline,
        }
    }

    /// Puts `bodies` in the store, each under a key of its own, with their events.
    pub fn upload(&self, bodies: &[Bytes]) -> Uploaded {
        let (keys, events) = bodies
            .iter()
            .map(|body| {
                let key = format!("guid-{}/object.bin", self.uploaded.fetch_add(1, Ordering::Relaxed));
                let etag = self.store.put_object(UNPROCESSED, &key, body.clone());
                let event = Arc::from(s3_event(UNPROCESSED, &key, body.len() as u64, &etag));
                (key, event)
            })
            .unzip();
        Uploaded { keys, events }
    }

    /// Removes what [`upload`](Self::upload) put in the store.
    pub fn remove(&self, uploaded: Uploaded) {
        for key in uploaded.keys {
            self.store.remove(UNPROCESSED, &key);
        }
    }

    /// Uploads `bodies`, runs them once through ([`run_timed`](Self::run_timed)) and removes
    /// them: the bodies' upload is not timed.
    pub async fn run_fresh(&self, bodies: &[Bytes]) -> Timed {
        let uploaded = self.upload(bodies);
        let timed = self.run_timed(&uploaded, 1).await;
        self.remove(uploaded);
        timed
    }

    /// Queues every event of `uploaded` `rounds` times and waits until every message was deleted
    /// (random bytes can look like a broken archive to the guard: such an object is quarantined,
    /// and its later events find it gone; both count as done). Times the whole run and the
    /// steady state in between: from the tenth to the ninetieth percent of messages deleted.
    pub async fn run_timed(&self, uploaded: &Uploaded, rounds: u64) -> Timed {
        self.outbound.clear();
        let started = Instant::now();
        for _ in 0..rounds {
            for event in &uploaded.events {
                self.queue.push_shared(event.clone());
            }
        }
        let total = self.queue.len();
        let (mut tenth, mut ninetieth) = (None, None);
        loop {
            let left = self.queue.len();
            if tenth.is_none() && left * 10 <= total * 9 {
                tenth = Some(started.elapsed());
            }
            if ninetieth.is_none() && left * 10 <= total {
                ninetieth = Some(started.elapsed());
            }
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let whole = started.elapsed();
        let steady = match (tenth, ninetieth) {
            (Some(tenth), Some(ninetieth)) if ninetieth > tenth => (ninetieth - tenth).mul_f64(1.25),
            _ => whole,
        };
        Timed { whole, steady }
    }
}

/// How long a run took, whole and at its steady rate.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    /// From the first event queued to the last message deleted: includes the pipeline's fill
    /// and drain (one message's latency, ~80 ms at AWS' latencies), when clamd waits.
    pub whole: Duration,
    /// The time the whole run takes at the rate between its tenth and ninetieth percent of
    /// messages deleted: what a replica with a backlog sustains.
    pub steady: Duration,
}

/// Streams every object once through `connections` plain sessions, objects dealt
/// round-robin: raw clamd's throughput for the same sizes.
pub async fn raw_clamd(
    address: &avscan::clamd::ClamdAddress,
    objects: Vec<Bytes>,
    connections: usize,
    chunk: usize,
) -> Duration {
    let objects = Arc::new(objects);
    let mut sessions = Vec::new();
    for _ in 0..connections {
        sessions.push(super::RawSession::open(address, chunk).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(index, mut session)| {
            let objects = objects.clone();
            tokio::spawn(async move {
                for object in objects.iter().skip(index).step_by(connections) {
                    let reply = session.scan(object).await;
                    assert!(reply.ends_with("stream: OK"), "{reply}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// Measures `raw` and `pipeline` (each given the bodies of a number of rounds from `bodies`,
/// returning how long they took; `pipeline` also how long its whole runs took, see [`Timed`]) as
/// `raw_name/label` and `pipeline_name/label` in `group`, then once more alternating one round
/// of each for [`INTERLEAVED`]. Returns the seconds per round from the alternating runs (`None`
/// when one did not run): on a shared machine the load changes between criterion's two
/// measurements; alternating, both sides see the same load. Every round's bodies are new to
/// clamd (see [`FreshBodies`]), and made before the clock starts.
pub fn compare<M: criterion::measurement::Measurement<Value = Duration>>(
    group: &mut BenchmarkGroup<'_, M>,
    label: &str,
    bodies: &FreshBodies,
    (raw_name, mut raw): (&str, impl FnMut(Vec<Bytes>) -> Duration),
    (pipeline_name, mut pipeline): (&str, impl FnMut(&[Bytes]) -> Timed),
) -> Option<Compared> {
    group.bench_function(BenchmarkId::new(raw_name, label), |b| {
        b.iter_custom(|rounds| raw(bodies.take(rounds)))
    });
    group.bench_function(BenchmarkId::new(pipeline_name, label), |b| {
        b.iter_custom(|rounds| pipeline(&bodies.take(rounds)).steady)
    });
    let (mut raw_time, mut steady, mut whole, mut rounds) = (Duration::ZERO, Duration::ZERO, Duration::ZERO, 0u32);
    // `cargo test` runs benches once each, as a smoke test (without `--bench`): one round then.
    let (least, interleaved) = match std::env::args().any(|arg| arg == "--bench") {
        true => (3, INTERLEAVED),
        false => (1, Duration::ZERO),
    };
    let started = Instant::now();
    while started.elapsed() < interleaved || rounds < least {
        raw_time += raw(bodies.take(1));
        let timed = pipeline(&bodies.take(1));
        steady += timed.steady;
        whole += timed.whole;
        rounds += 1;
    }
    let per_round = |time: Duration| time.as_secs_f64() / f64::from(rounds);
    Some(Compared {
        raw: per_round(raw_time),
        pipeline: per_round(steady),
        pipeline_whole: per_round(whole),
    })
}

/// Seconds per round of each side, from [`compare`]'s alternating runs.
pub struct Compared {
    pub raw: f64,
    /// At the pipeline's steady rate ([`Timed::steady`]).
    pub pipeline: f64,
    /// Whole runs, fill and drain included.
    pub pipeline_whole: f64,
}

/// How long [`compare`] alternates the two sides after criterion's measurements.
pub const INTERLEAVED: Duration = Duration::from_secs(8);

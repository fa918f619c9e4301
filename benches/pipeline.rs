//! The pipeline's own cost.
//!
//! (b) `pipeline_vs_raw_clamd`: the whole pipeline on the in-memory queue, store and sinks with
//!     the real clamd of the local stack, against a baseline in the same run that streams the
//!     same bytes through the same number of plain clamd sessions (no actors, no guard). The
//!     ratio pipeline ÷ baseline throughput is printed per object size.
//! (c) `pipeline_null_scanner`: the pipeline with a scanner that answers clean at once:
//!     messages per second of pure polling, parsing, actor hops, routing, sending and acking.
//!
//! Pipelines and runtimes are built outside the measured loops. The batch linger is 2 ms here
//! (`avscan_actors::defaults::BATCH_LINGER_MS` in production): it delays a batch, it does not
//! limit throughput, but an iteration's last batch would otherwise wait it out.

mod support;

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use avscan_actors::allow_list::AllowListHandle;
use avscan_actors::definitions::ReceiveGate;
use avscan_actors::ports::{MessageSink, Notifier, ObjectStore, ScanEngine};
use avscan_actors::testsuite::{s3_event, MemoryNotifier, MemoryQueue, MemorySink, MemoryStore, NullScanner};
use avscan_actors::{Pipeline, PipelineConfig, PipelinePorts};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// The binary's allocator, so that the bench measures what runs in production.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const UNPROCESSED: &str = "unprocessed";
const CONNECTIONS: usize = 4;
const CHUNK: usize = 128 * 1024;

/// A running pipeline on the fakes, and the event bodies of the objects it can fetch.
struct Bench {
    queue: Arc<MemoryQueue>,
    outbound: Arc<MemorySink>,
    events: Vec<Arc<str>>,
    _pipeline: Pipeline,
}

impl Bench {
    async fn start(scanner: Arc<dyn ScanEngine>, objects: &[bytes::Bytes], max_in_flight: usize) -> Bench {
        let queue = MemoryQueue::new(Duration::from_secs(600));
        let outbound = Arc::new(MemorySink::default());
        let store = MemoryStore::new();
        let events = objects
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let key = format!("guid-{i}/object.bin");
                let etag = store.put_object(UNPROCESSED, &key, body.clone());
                Arc::from(s3_event(UNPROCESSED, &key, body.len() as u64, &etag))
            })
            .collect();
        let mut config = PipelineConfig::new(UNPROCESSED, "quarantine");
        config.scanner_connections = CONNECTIONS;
        config.fetch_concurrency = CONNECTIONS * 2;
        config.max_in_flight = max_in_flight;
        config.batch_linger = Duration::from_millis(2);
        config.visibility_timeout = Duration::from_secs(600);
        // Throughput, not freshness: a clamd without an official database may judge here.
        config.definitions_max_age = None;
        let ports = PipelinePorts {
            inbound: queue.clone(),
            outbound: outbound.clone() as Arc<dyn MessageSink>,
            rejected: None,
            store: store as Arc<dyn ObjectStore>,
            notifier: Arc::new(MemoryNotifier::default()) as Arc<dyn Notifier>,
            scanner,
            receive_gate: ReceiveGate::always_open(),
            allow_list: AllowListHandle::empty(),
            results: Vec::new(),
        };
        let pipeline = Pipeline::start(config, ports).await.expect("pipeline");
        Bench {
            queue,
            outbound,
            events,
            _pipeline: pipeline,
        }
    }

    /// Queues every event `rounds` times and waits until all were forwarded.
    async fn run(&self, rounds: u64) -> Duration {
        self.outbound.clear();
        let expected = self.events.len() * rounds as usize;
        let started = Instant::now();
        for _ in 0..rounds {
            for event in &self.events {
                self.queue.push_shared(event.clone());
            }
        }
        while self.outbound.count() < expected {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        started.elapsed()
    }
}

/// Streams every object once through `CONNECTIONS` plain sessions, objects dealt round-robin.
async fn raw_clamd(address: &avscan::clamd::ClamdAddress, objects: &Arc<Vec<bytes::Bytes>>, rounds: u64) -> Duration {
    let mut sessions = Vec::new();
    for _ in 0..CONNECTIONS {
        sessions.push(support::RawSession::open(address, CHUNK).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(index, mut session)| {
            let objects = objects.clone();
            tokio::spawn(async move {
                for _ in 0..rounds {
                    for object in objects.iter().skip(index).step_by(CONNECTIONS) {
                        let reply = session.scan(object).await;
                        assert!(reply.ends_with("stream: OK"), "{reply}");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn pipeline_vs_raw_clamd(c: &mut Criterion) {
    let runtime = support::runtime();
    let Some(clamd) = support::clamd(&runtime, CHUNK, "pipeline_vs_raw_clamd") else {
        return;
    };
    let address = support::clamd_address();
    let clamd: Arc<dyn ScanEngine> = Arc::new(clamd);
    let mut ratios = Vec::new();
    // Per iteration: 16 objects of 1 MiB, or 256 of 4 KiB.
    for (label, size, count) in [("1MiB", 1024 * 1024, 16usize), ("4KiB", 4 * 1024, 256)] {
        let objects: Arc<Vec<bytes::Bytes>> = Arc::new((0..count).map(|i| support::content(i as u64, size)).collect());
        let bench = runtime.block_on(Bench::start(clamd.clone(), &objects, 64));
        let mut group = c.benchmark_group("pipeline_vs_raw_clamd");
        group.throughput(Throughput::Bytes((size * count) as u64));
        group.sample_size(10);
        let raw_time = Cell::new((Duration::ZERO, 0u64));
        let pipeline_time = Cell::new((Duration::ZERO, 0u64));
        group.bench_function(BenchmarkId::new("raw_clamd", label), |b| {
            b.iter_custom(|rounds| {
                let took = runtime.block_on(raw_clamd(&address, &objects, rounds));
                let (sum, n) = raw_time.get();
                raw_time.set((sum + took, n + rounds));
                took
            })
        });
        group.bench_function(BenchmarkId::new("pipeline", label), |b| {
            b.iter_custom(|rounds| {
                let took = runtime.block_on(bench.run(rounds));
                let (sum, n) = pipeline_time.get();
                pipeline_time.set((sum + took, n + rounds));
                took
            })
        });
        group.finish();
        let (raw, pipeline) = (raw_time.get(), pipeline_time.get());
        if raw.1 > 0 && pipeline.1 > 0 {
            let per_round = |(sum, n): (Duration, u64)| sum.as_secs_f64() / n as f64;
            let ratio = per_round(raw) / per_round(pipeline);
            ratios.push(format!("{label} objects: pipeline at {ratio:.2} of raw clamd"));
        }
    }
    for line in ratios {
        println!("pipeline_vs_raw_clamd: {line}");
    }
}

fn pipeline_null_scanner(c: &mut Criterion) {
    let runtime = support::runtime();
    const MESSAGES: usize = 10_000;
    let objects = vec![support::content(7, 1024)];
    let bench = runtime.block_on(Bench::start(Arc::new(NullScanner), &objects, 256));
    let mut group = c.benchmark_group("pipeline_null_scanner");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    group.bench_function("messages", |b| {
        b.iter_custom(|rounds| runtime.block_on(bench.run(rounds * MESSAGES as u64)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    targets = pipeline_vs_raw_clamd, pipeline_null_scanner
}
criterion_main!(benches);

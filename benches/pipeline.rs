//! The pipeline's own cost.
//!
//! (b) `pipeline_vs_raw_clamd`: the whole pipeline on the in-memory queue, store and sinks with
//!     the real clamd of the local stack, against a baseline in the same run that streams
//!     objects of the same sizes through the same number of plain clamd sessions (no actors, no
//!     guard), every object of either side new to clamd. The ratio pipeline ÷ baseline
//!     throughput is printed per object size.
//! (c) `pipeline_null_scanner`: the pipeline with a scanner that answers clean at once:
//!     messages per second of pure polling, parsing, actor hops, routing, sending and acking.
//!
//! Pipelines and runtimes are built outside the measured loops. The batch linger is 2 ms here
//! (`avscan_actors::defaults::BATCH_LINGER_MS` in production): it delays a batch, it does not
//! limit throughput, but an iteration's last batch would otherwise wait it out.

mod support;

use std::sync::Arc;
use std::time::Duration;

use avscan_actors::ports::ScanEngine;
use avscan_actors::testsuite::NullScanner;
use avscan_actors::PipelineConfig;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use support::harness::{raw_clamd, Bench};

/// The binary's allocator, so that the bench measures what runs in production.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CONNECTIONS: usize = 4;
const CHUNK: usize = 128 * 1024;

/// The harness' settings with `CONNECTIONS` sessions, twice as many fetchers, `max_in_flight`.
fn config(max_in_flight: usize) -> PipelineConfig {
    let mut config = support::harness::config();
    config.scanner_connections = CONNECTIONS;
    config.fetch_concurrency = CONNECTIONS * 2;
    config.max_in_flight = max_in_flight;
    config
}

fn pipeline_vs_raw_clamd(c: &mut Criterion) {
    let runtime = support::runtime();
    let Some(clamd) = support::clamd(&runtime, CHUNK, "pipeline_vs_raw_clamd") else {
        return;
    };
    let address = support::clamd_address();
    let clamd: Arc<dyn ScanEngine> = Arc::new(clamd);
    let mut ratios = Vec::new();
    // Per iteration: 16 objects of 1 MiB, or 2,000 of 4 KiB (~0.7 s at clamd's rate; a run of
    // 256 lasted ~85 ms, a few of them the fill and drain).
    for (label, size, count) in [("1MiB", 1024 * 1024, 16usize), ("4KiB", 4 * 1024, 2000)] {
        let bodies = support::FreshBodies::new(size, count);
        let bench = runtime.block_on(Bench::start(clamd.clone(), config(64), None));
        let mut group = c.benchmark_group("pipeline_vs_raw_clamd");
        group.throughput(Throughput::Bytes((size * count) as u64));
        group.sample_size(10);
        let measured = support::harness::compare(
            &mut group,
            label,
            &bodies,
            ("raw_clamd", |bodies| {
                runtime.block_on(raw_clamd(&address, bodies, CONNECTIONS, CHUNK))
            }),
            ("pipeline", |bodies| runtime.block_on(bench.run_fresh(bodies))),
        );
        group.finish();
        if let Some(measured) = measured {
            // Whole runs: without latencies the pipeline fills and drains in a few milliseconds.
            let ratio = measured.raw / measured.pipeline_whole;
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
    let bench = runtime.block_on(Bench::start(Arc::new(NullScanner), config(256), None));
    let uploaded = bench.upload(&[support::content(7, 1024)]);
    let mut group = c.benchmark_group("pipeline_null_scanner");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    group.bench_function("messages", |b| {
        b.iter_custom(|rounds| {
            runtime
                .block_on(bench.run_timed(&uploaded, rounds * MESSAGES as u64))
                .whole
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    targets = pipeline_vs_raw_clamd, pipeline_null_scanner
}
criterion_main!(benches);

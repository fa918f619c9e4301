//! The pipeline where users run it: every S3, SQS and SNS call of the in-memory ports slowed to
//! what AWS answers from a region ([`AwsLatencies::IN_REGION`]: S3 first byte 30 ms and 100 MB/s
//! per stream, SQS 15 ms, SNS 20 ms, ±30 %), with production's default settings and the real
//! clamd of the local stack, against raw clamd streaming objects of the same sizes through as
//! many plain sessions (`CLAMD_CONNECTIONS`) in the same run, with no latency at all; every object
//! of either side new to clamd. The ratio pipeline ÷ raw clamd is printed per object size: how
//! busy avscan keeps its clamd. Target: ≥ 0.90.
//! `make bench` gives clamd and the bench CPUs of their own, as a deployment does; sharing them,
//! the pipeline's CPU is taken from clamd's (BENCHMARKS.md (e)).
//!
//! The pipeline's files/s are its steady rate, between the tenth and the ninetieth percent of a
//! run's messages deleted: a run also fills and drains the pipeline, one message's latency
//! (~80 ms of calls) during which clamd waits, whatever the design. The ratio of whole runs,
//! fill and drain included, is printed beside it.

mod support;

use std::sync::Arc;
use std::time::Duration;

use avscan_actors::defaults;
use avscan_actors::ports::ScanEngine;
use avscan_actors::testsuite::AwsLatencies;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use support::harness::{raw_clamd, Bench};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CHUNK: usize = 128 * 1024;

fn pipeline_at_aws_latencies(c: &mut Criterion) {
    let runtime = support::runtime();
    let Some(clamd) = support::clamd(&runtime, CHUNK, "latency") else {
        return;
    };
    let address = support::clamd_address();
    let clamd: Arc<dyn ScanEngine> = Arc::new(clamd);
    let connections = defaults::CLAMD_CONNECTIONS as usize;
    let mut ratios = Vec::new();
    // Per iteration: enough objects that the steady rate is measured past the fill (one message's
    // ~80 ms of calls): 400 × 4 KiB lasted ~100 ms at clamd's rate and never got there.
    for (label, size, count) in [
        ("4KiB", 4 * 1024, 2000usize),
        ("64KiB", 64 * 1024, 600),
        ("1MiB", 1024 * 1024, 40),
    ] {
        let bodies = support::FreshBodies::new(size, count);
        let bench = runtime.block_on(Bench::start(
            clamd.clone(),
            support::harness::config(),
            Some(AwsLatencies::IN_REGION),
        ));
        let mut group = c.benchmark_group("latency");
        group.throughput(Throughput::Elements(count as u64));
        group.sample_size(10);
        let measured = support::harness::compare(
            &mut group,
            label,
            &bodies,
            ("raw_clamd", |bodies| {
                runtime.block_on(raw_clamd(&address, bodies, connections, CHUNK))
            }),
            ("pipeline_at_aws_latencies", |bodies| {
                runtime.block_on(bench.run_fresh(bodies))
            }),
        );
        group.finish();
        if let Some(measured) = measured {
            let files = |per_round: f64| count as f64 / per_round;
            let (raw, pipeline) = (measured.raw, measured.pipeline);
            ratios.push(format!(
                "{label} objects: pipeline {:.0} files/s at AWS latencies (steady), raw clamd {:.0} files/s: \
                 {:.2} of raw clamd (whole runs, fill and drain included: {:.2})",
                files(pipeline),
                files(raw),
                raw / pipeline,
                raw / measured.pipeline_whole
            ));
        }
    }
    for line in ratios {
        println!("latency: {line}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(6)).warm_up_time(Duration::from_secs(1));
    targets = pipeline_at_aws_latencies
}
criterion_main!(benches);

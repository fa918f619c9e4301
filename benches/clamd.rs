//! (a) avscan's clamd client against the local stack's clamd: INSTREAM throughput by chunk size
//! (one connection), and by number of connections scanning at once (default chunk size).

mod support;

use std::time::{Duration, Instant};

use avscan_actors::ports::{ScanEngine, ScanSession};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const MIB: usize = 1024 * 1024;
const DEFAULT_CHUNK: usize = 128 * 1024;

fn chunk_size(c: &mut Criterion) {
    let runtime = support::runtime();
    let object = support::content(1, 4 * MIB);
    let mut group = c.benchmark_group("clamd_instream_by_chunk_size");
    group.throughput(Throughput::Bytes(object.len() as u64));
    group.sample_size(10);
    for chunk in [16 * 1024, 64 * 1024, 128 * 1024, 512 * 1024, 2 * MIB] {
        let Some(client) = support::clamd(&runtime, chunk, "clamd_instream_by_chunk_size") else {
            return;
        };
        let mut session = runtime.block_on(client.connect()).expect("session");
        group.bench_with_input(BenchmarkId::from_parameter(chunk / 1024), &chunk, |b, _| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let outcome = session.scan(support::body(&object)).await.expect("scan");
                        assert_eq!(outcome.verdict.label(), "clean");
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn connections(c: &mut Criterion) {
    let runtime = support::runtime();
    let mut group = c.benchmark_group("clamd_instream_by_connections");
    group.sample_size(10);
    let Some(client) = support::clamd(&runtime, DEFAULT_CHUNK, "clamd_instream_by_connections") else {
        return;
    };
    for (label, size) in [("1MiB", MIB), ("4KiB", 4 * 1024)] {
        let object = support::content(2, size);
        for connections in [1usize, 2, 4, 8] {
            let sessions: Vec<Box<dyn ScanSession>> = (0..connections)
                .map(|_| runtime.block_on(client.connect()).expect("session"))
                .collect();
            let mut sessions = Some(sessions);
            // Each iteration: every connection scans one object, all at once.
            group.throughput(Throughput::Bytes((connections * object.len()) as u64));
            group.bench_with_input(BenchmarkId::new(label, connections), &connections, |b, _| {
                b.iter_custom(|iters| {
                    let taken = sessions.take().expect("sessions");
                    let (elapsed, back) = runtime.block_on(async {
                        let started = Instant::now();
                        let tasks: Vec<_> = taken
                            .into_iter()
                            .map(|mut session| {
                                let object = object.clone();
                                tokio::spawn(async move {
                                    for _ in 0..iters {
                                        session.scan(support::body(&object)).await.expect("scan");
                                    }
                                    session
                                })
                            })
                            .collect();
                        let mut back = Vec::new();
                        for task in tasks {
                            back.push(task.await.unwrap());
                        }
                        (started.elapsed(), back)
                    });
                    sessions = Some(back);
                    elapsed
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = chunk_size, connections
}
criterion_main!(benches);

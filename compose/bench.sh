#!/usr/bin/env bash
# `make bench`: the criterion benches (benches/) with clamd and the bench process on CPUs of their
# own, as a deployment runs them (clamd's container has a CPU limit of its own). Sharing the
# cores, every CPU-second the bench's pipeline spends is taken from clamd, and the ratios measure
# the machine's cores rather than whether avscan keeps clamd busy (BENCHMARKS.md (e)). clamd gets
# the first half of the CPUs, the benches the rest; clamd's affinity is restored on exit.
# BENCH_SHARED_CORES=1 leaves both on every CPU. Arguments go to `cargo bench`.
set -euo pipefail
cd "$(dirname "$0")/.."

cpus=$(nproc)
pid=$(cat .stack/clamd.pid 2>/dev/null || true)
cargo bench --no-run "$@"
if [ "${BENCH_SHARED_CORES:-0}" = 1 ] || [ "$cpus" -lt 2 ] || [ -z "$pid" ] || ! command -v taskset > /dev/null; then
    echo "bench: clamd and the benches share all $cpus CPUs"
    exec cargo bench "$@"
fi
half=$((cpus / 2))
clamd_cpus="0-$((half - 1))"
bench_cpus="$half-$((cpus - 1))"
trap 'taskset -apc "0-$((cpus - 1))" "$pid" > /dev/null' EXIT
taskset -apc "$clamd_cpus" "$pid" > /dev/null
echo "bench: clamd (pid $pid) on CPUs $clamd_cpus, the benches on CPUs $bench_cpus"
taskset -c "$bench_cpus" cargo bench "$@"

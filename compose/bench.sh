#!/usr/bin/env bash
# `make bench`: the criterion benches (benches/) with clamd and the bench process on CPUs of their
# own, as a deployment runs them (clamd's container has a CPU limit of its own). Sharing the
# cores, every CPU-second the bench's pipeline spends is taken from clamd, and the ratios measure
# the machine's cores rather than whether avscan keeps clamd busy (BENCHMARKS.md (e)). clamd gets
# the first half of the CPUs this script may use, the benches the rest; clamd's affinity is
# restored on exit. BENCH_SHARED_CORES=1 leaves both on every CPU. Arguments go to `cargo bench`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --no-run "$@"

shared() {
    echo "bench: clamd and the benches share every CPU ($1)"
    shift
    exec cargo bench "$@"
}
pid=$(cat .stack/clamd.pid 2>/dev/null || true)
[ "${BENCH_SHARED_CORES:-0}" = 1 ] && shared "BENCH_SHARED_CORES=1" "$@"
command -v taskset > /dev/null || shared "no taskset" "$@"
if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != clamd ]; then
    shared "no clamd of the local stack running" "$@"
fi

# The CPUs we may use, e.g. "0-1" or "2,4-5", one by one.
cpus=()
IFS=, read -ra ranges <<< "$(taskset -pc $$ | sed 's/.*: //')"
for range in "${ranges[@]}"; do
    for ((cpu = ${range%-*}; cpu <= ${range#*-}; cpu++)); do cpus+=("$cpu"); done
done
[ "${#cpus[@]}" -ge 2 ] || shared "one CPU" "$@"
half=$((${#cpus[@]} / 2))
clamd_cpus=$(IFS=,; echo "${cpus[*]:0:half}")
bench_cpus=$(IFS=,; echo "${cpus[*]:half}")

original=$(taskset -pc "$pid" | sed 's/.*: //')
# A pool thread of clamd's may exit while taskset walks them: tolerated, the rest are set.
trap 'taskset -apc "$original" "$pid" > /dev/null 2>&1 || true' EXIT
taskset -apc "$clamd_cpus" "$pid" > /dev/null 2>&1 || taskset -apc "$clamd_cpus" "$pid" > /dev/null
echo "bench: clamd (pid $pid) on CPUs $clamd_cpus, the benches on CPUs $bench_cpus"
taskset -c "$bench_cpus" cargo bench "$@"

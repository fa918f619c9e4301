# avscan's two set-up commands (see README): `make run` and `make test`. Both install and start
# the local stack (clamd + moto on loopback) first; compose/stack.sh is idempotent.

CARGO ?= cargo
STACK_ENV := .stack/avscan.env

.PHONY: stack stack-down run test soak fuzz lint bench bench-e2e

# The emulator the stack runs and the tests and benches use: moto (127.0.0.1:4566) or ministack
# (127.0.0.1:4567), e.g. `EMULATOR=ministack make test`. Each has its own port, so both can run.
EMULATOR ?= moto
export EMULATOR

stack:
	bash compose/stack.sh up

stack-down:
	bash compose/stack.sh down

# Runs avscan in the foreground on the local stack and drops one clean and one EICAR object, so
# both routes show in the log within seconds. Ctrl-C stops it gracefully.
run: stack
	$(CARGO) build --bin avscan
	.venv/bin/python compose/demo.py --delay 3 &
	set -a && . ./$(STACK_ENV) && set +a && exec ./target/debug/avscan run

# The whole suite against the real clamd and emulator (EMULATOR): unit, actor, integration, the
# fault suite, the hostile-input corpus, property tests, a 300-object soak, the differential
# test (2,000 generated archive structures against a clamd of its own) and small runs of the
# benches and of bench-e2e. An assertion that needs what the emulator lacks of AWS is skipped
# there with a `skipped on <emulator>` line.
test: stack
	$(CARGO) test --workspace --all-targets

# The soak: SOAK_OBJECTS objects of mixed kinds through the real binary while clamd and avscan are
# killed and restarted and a share of the emulator's requests fail; prints one reconciliation
# line (lost and wrongly routed must be 0). `make test` runs the same test with 300 objects.
SOAK_OBJECTS ?= 10000
soak: stack
	AVSCAN_SOAK_OBJECTS=$(SOAK_OBJECTS) $(CARGO) test --test soak -- --nocapture; \
		status=$$?; bash compose/stack.sh reset; exit $$status

# The differential test at scale: FUZZ_OBJECTS generated archive structures from FUZZ_SEED (random
# unless given, and printed), each scanned by clamd alone and as avscan scans it (through the archive
# guard). Prints one summary line; on failure lists every kind of object avscan let through as clean,
# shrunk to a minimal repro for up to FUZZ_SHRINK_SECS. `make test` runs it with 2,000 objects from
# a fixed seed. Replay one object with FUZZ_REPLAY=<its seed> and `cargo test --test differential`.
FUZZ_OBJECTS ?= 20000
FUZZ_SEED ?=
FUZZ_SHRINK_SECS ?= 300
fuzz: stack
	FUZZ_OBJECTS=$(FUZZ_OBJECTS) FUZZ_SEED=$(FUZZ_SEED) FUZZ_SHRINK_SECS=$(FUZZ_SHRINK_SECS) \
		$(CARGO) test --test differential -- --nocapture

# The criterion benches (BENCHMARKS.md), clamd and the benches each on CPUs of their own as in a
# deployment (compose/bench.sh; BENCH_SHARED_CORES=1 shares them). BENCH_ARGS go to cargo bench,
# e.g. BENCH_ARGS="--bench latency".
BENCH_ARGS ?=
bench: stack
	bash compose/bench.sh $(BENCH_ARGS)

# The end-to-end benchmark: the release binary against the local stack (EMULATOR); prints
# files/s, MB/s, p50/p99, peak RSS, AWS calls per file and the CPU per file of avscan, clamd and
# the emulator, then the 1 GiB memory run (see tests/bench_e2e.rs for BENCH_OBJECTS, BENCH_MIX,
# BENCH_LARGE_MIB and the tuning knobs it passes on).
bench-e2e: stack
	$(CARGO) test --release --test bench_e2e -- --ignored --nocapture

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

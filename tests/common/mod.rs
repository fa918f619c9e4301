//! Shared set-up for the integration tests: per-test AWS resources on the local emulator (so
//! tests run in parallel without seeing each other's messages), the real `avscan` binary started
//! against them, and helpers that read outcomes back from the services.
//!
//! The stack comes from `make test` (compose/stack.sh): clamd, and the emulator `EMULATOR` names
//! (moto on 127.0.0.1:4566 by default, or ministack on 127.0.0.1:4567). Endpoints can be
//! overridden with AVSCAN_TEST_ENDPOINT and AVSCAN_TEST_CLAMD.
//!
//! Where each concern lives (the tests use everything as `common::X`, re-exported here):
//! - `environment`: the endpoints, which emulator answers there and what it lacks of AWS
//!   (`emulator`, `Gap`, `lacks`: a test skips only the assertion that needs it), the content
//!   clamd flags (`EICAR`, `TEST_MARKER`), and `TestEnv`, one test's buckets, queues and topic,
//!   with the variables that point avscan at them;
//! - `process`: the processes under test, `Avscan` and `LocalClamd`, and how to talk to them
//!   (`run_command`, `http_get`, `sample`);
//! - `readback`: putting objects and events in and reading outcomes back from the buckets and
//!   queues (`TestEnv::put`, `receive`, `drain_*`, …, `tally`, `Drainer`);
//! - `results`: result-event destinations (an EventBridge rule's queue, an SNS topic's queue);
//! - `archives`: archive files built byte by byte for the corpus;
//! - `archive_gen`: the differential test's seeded generator of archive structures;
//! - `definitions`: daily databases built with sigtool, a local mirror and freshclam;
//! - `faults`: fault-injecting proxies between avscan and clamd or the emulator;
//! - `iam`: the IAM policies in `deploy/` checked against the calls a run made.

// Each test binary uses a subset of the helpers.
#![allow(dead_code)]

pub mod archive_gen;
pub mod archives;
pub mod definitions;
pub mod faults;
pub mod iam;

mod environment;
mod process;
mod readback;
mod results;

// Which of these a test binary uses varies as much as which helpers it calls.
#[allow(unused_imports)]
pub use environment::{
    clamd_address, emulator, endpoint, lacks, queue_arn, s3_record, sha256_hex, Emulator, Gap, TestEnv, EICAR, REGION,
    TEST_MARKER,
};
#[allow(unused_imports)]
pub use process::{http_get, run_command, run_command_output, sample, Avscan, LocalClamd};
#[allow(unused_imports)]
pub use readback::{notified_key, record_keys, tally, Drainer};
#[allow(unused_imports)]
pub use results::{ResultDestinations, DETAIL_TYPE};

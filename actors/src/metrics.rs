//! The pipeline's metrics, through the `metrics` facade: the binary installs a Prometheus
//! recorder and serves `/metrics`; without a recorder (actor tests, benches) they cost nothing.
//! Chosen to answer "which pool do I grow?" (README, tuning): permits, pool occupancy and stage
//! latencies show where messages wait.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};

pub const MESSAGES_RECEIVED: &str = "avscan_messages_received_total";
pub const RECORDS: &str = "avscan_records_total";
pub const REJECTED: &str = "avscan_rejected_total";
pub const RETRIES: &str = "avscan_retries_total";
pub const RESTARTS: &str = "avscan_actor_restarts_total";
pub const STAGE_SECONDS: &str = "avscan_stage_seconds";
pub const BYTES_SCANNED: &str = "avscan_bytes_scanned_total";
pub const IN_FLIGHT: &str = "avscan_in_flight_messages";
pub const PERMITS_FREE: &str = "avscan_permits_free";
pub const POOL_BUSY: &str = "avscan_pool_busy";
pub const POOL_IDLE: &str = "avscan_pool_idle";
pub const VISIBILITY_EXTENSIONS: &str = "avscan_visibility_extensions_total";
pub const DELETES: &str = "avscan_messages_deleted_total";

/// Registers help texts; call once after installing a recorder.
pub fn describe() {
    describe_counter!(MESSAGES_RECEIVED, "SQS messages received from the inbound queue");
    describe_counter!(
        RECORDS,
        "records routed, by verdict: clean, infected, unscannable, gone"
    );
    describe_counter!(REJECTED, "invalid events (or records) rejected, by reason");
    describe_counter!(
        RETRIES,
        "records sent back for a retry, by cause: fetch, scan, forward, quarantine, restart, dropped"
    );
    describe_counter!(RESTARTS, "actor restarts, by actor");
    describe_histogram!(
        STAGE_SECONDS,
        Unit::Seconds,
        "time spent per stage: fetch, scan, quarantine, end_to_end"
    );
    describe_counter!(BYTES_SCANNED, Unit::Bytes, "object bytes streamed to clamd and judged");
    describe_gauge!(
        IN_FLIGHT,
        "SQS messages inside avscan (received, not yet deleted or released)"
    );
    describe_gauge!(
        PERMITS_FREE,
        "in-flight permits free: 0 means MAX_IN_FLIGHT is the limit"
    );
    describe_gauge!(POOL_BUSY, "workers busy, by pool: fetcher, scanner");
    describe_gauge!(POOL_IDLE, "workers idle, by pool: fetcher, scanner");
    describe_counter!(VISIBILITY_EXTENSIONS, "visibility timeouts extended by the heartbeat");
    describe_counter!(DELETES, "SQS messages deleted after every effect succeeded");
}

pub(crate) fn record(verdict: &'static str) {
    counter!(RECORDS, "verdict" => verdict).increment(1);
}

pub(crate) fn retry(cause: &'static str) {
    counter!(RETRIES, "cause" => cause).increment(1);
}

pub(crate) fn stage(stage: &'static str, took: Duration) {
    histogram!(STAGE_SECONDS, "stage" => stage).record(took.as_secs_f64());
}

pub(crate) fn pool(pool: &'static str, busy: usize, idle: usize) {
    gauge!(POOL_BUSY, "pool" => pool).set(busy as f64);
    gauge!(POOL_IDLE, "pool" => pool).set(idle as f64);
}

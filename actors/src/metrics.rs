//! The pipeline's metrics, through the `metrics` facade: the binary installs a Prometheus
//! recorder and serves `/metrics`; without a recorder (actor tests, benches) they cost nothing.
//! Chosen to answer "which pool do I grow?" (README, tuning): permits, pool occupancy and stage
//! latencies show where messages wait. Every label comes from a closed set: `Latency` here,
//! and the `label()` of `RetryCause`, `Rejection`, `WorkerKind`, `Stage` and `Route` where those
//! are defined.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};

/// SQS messages received.
pub(crate) const MESSAGES_RECEIVED: &str = "avscan_messages_received_total";
/// Records routed, by verdict.
pub(crate) const RECORDS: &str = "avscan_records_total";
/// Invalid events or records, by reason.
pub(crate) const REJECTED: &str = "avscan_rejected_total";
/// Records sent back for a retry, by cause.
pub(crate) const RETRIES: &str = "avscan_retries_total";
/// Copies of rejected events sent to the rejected-events queue, by copy: whole, truncated, refused.
pub(crate) const REJECTED_COPIES: &str = "avscan_rejected_copies_total";
/// Actor restarts, by actor.
pub(crate) const RESTARTS: &str = "avscan_actor_restarts_total";
/// Time per stage (histogram).
pub(crate) const STAGE_SECONDS: &str = "avscan_stage_seconds";
/// Object bytes judged by clamd.
pub(crate) const BYTES_SCANNED: &str = "avscan_bytes_scanned_total";
/// SQS messages inside avscan.
pub(crate) const IN_FLIGHT: &str = "avscan_in_flight_messages";
/// In-flight permits left.
pub(crate) const PERMITS_FREE: &str = "avscan_permits_free";
/// Workers busy, by pool.
pub(crate) const POOL_BUSY: &str = "avscan_pool_busy";
/// Workers idle, by pool.
pub(crate) const POOL_IDLE: &str = "avscan_pool_idle";
/// Visibility timeouts extended by the heartbeat.
pub(crate) const VISIBILITY_EXTENSIONS: &str = "avscan_visibility_extensions_total";
/// SQS messages deleted after every effect succeeded.
pub(crate) const DELETES: &str = "avscan_messages_deleted_total";
/// Result events, by outcome: `published` or `failed` (the message is handled again).
pub(crate) const RESULT_EVENTS: &str = "avscan_result_events_total";

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
        "records sent back for a retry, by cause: fetch, scan, forward, quarantine, restart, dropped, definitions"
    );
    describe_counter!(
        REJECTED_COPIES,
        "copies of rejected events kept on the rejected-events queue, by copy: whole, truncated (cut to fit, with size and SHA-256), refused (not kept; logged)"
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
    describe_counter!(
        RESULT_EVENTS,
        "result events by outcome: published (to every destination), failed (the message is handled again)"
    );
}

/// The stages whose latency [`STAGE_SECONDS`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Latency {
    /// The GET, until its headers.
    Fetch,
    /// Streaming into clamd until its verdict.
    Scan,
    /// Every step of a quarantine.
    Quarantine,
    /// From receive to delete.
    EndToEnd,
}

impl Latency {
    fn label(self) -> &'static str {
        match self {
            Latency::Fetch => "fetch",
            Latency::Scan => "scan",
            Latency::Quarantine => "quarantine",
            Latency::EndToEnd => "end_to_end",
        }
    }
}

/// Adds `took` to the latency histogram of `stage`.
pub(crate) fn observe_latency(stage: Latency, took: Duration) {
    histogram!(STAGE_SECONDS, "stage" => stage.label()).record(took.as_secs_f64());
}

/// Counts one record routed as `verdict` (a `Route::verdict_label`).
pub(crate) fn count_routed(verdict: &'static str) {
    counter!(RECORDS, "verdict" => verdict).increment(1);
}

/// Counts one retry of a record for `cause` (a `RetryCause::label`).
pub(crate) fn count_retry(cause: &'static str) {
    counter!(RETRIES, "cause" => cause).increment(1);
}

/// Counts one restart of `actor` (a `Stage::label` or `WorkerKind::label`).
pub(crate) fn count_restart(actor: &'static str) {
    counter!(RESTARTS, "actor" => actor).increment(1);
}

/// Creates the received series, the restart series of every actor and the retry series of
/// every cause at 0.
pub(crate) fn zero_series(
    actors: impl IntoIterator<Item = &'static str>,
    causes: impl IntoIterator<Item = &'static str>,
) {
    counter!(MESSAGES_RECEIVED).increment(0);
    for outcome in ["published", "failed"] {
        counter!(RESULT_EVENTS, "outcome" => outcome).increment(0);
    }
    for actor in actors {
        counter!(RESTARTS, "actor" => actor).increment(0);
    }
    for cause in causes {
        counter!(RETRIES, "cause" => cause).increment(0);
    }
}

/// Sets the occupancy gauges of the `pool` of workers (a `WorkerKind::label`).
pub(crate) fn set_pool_occupancy(pool: &'static str, busy: usize, idle: usize) {
    gauge!(POOL_BUSY, "pool" => pool).set(busy as f64);
    gauge!(POOL_IDLE, "pool" => pool).set(idle as f64);
}

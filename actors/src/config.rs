//! The pipeline's tuning and the names of its buckets: [`PipelineConfig`], whose defaults are
//! the ones written once in [`defaults`].

use std::time::Duration;

use crate::defaults::{self, MIB};
use crate::policy::Policies;
use crate::restart::RestartPolicy;

/// The pipeline's tuning and the names of its buckets. Built by the binary from its config.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// What to do with each source bucket's objects; events for any other bucket are rejected.
    pub policies: Policies,
    /// The KMS key quarantined copies and reports are encrypted with; unset, a copy keeps its
    /// source's KMS key (and reports get the bucket's default encryption).
    pub quarantine_kms_key_id: Option<String>,
    /// Bytes; larger objects are not scanned ("file too large", handled by their policy's
    /// action), unless their policy sets a limit of its own. clamd must admit streams this long.
    pub max_file_size: u64,
    /// Bytes; clamd's `MaxFileSize`. An archive member larger than this is skipped by clamd
    /// without an alert, so the [`ArchiveGuard`](crate::archive_guard) makes such an object
    /// unscannable instead of clean.
    pub archive_member_limit: u64,
    /// Bytes the archive guard may inflate per object, all nesting levels together (clamd's
    /// `MaxScanSize`): past it, the guard gives up and the object is unscannable.
    pub archive_inflate_budget: u64,
    /// SQS messages in the pipeline at once; bounds every queue inside it.
    pub max_in_flight: usize,
    /// Concurrent S3 GETs (each streams into a scanner).
    pub fetch_concurrency: usize,
    /// Pooled clamd connections, i.e. concurrent scans.
    pub scanner_connections: usize,
    /// Messages per receive, 1 to 10.
    pub receive_batch: usize,
    /// How long a finished message may wait for others to share its `SendMessageBatch` and
    /// `DeleteMessageBatch` call.
    pub batch_linger: Duration,
    /// What the inbound queue receives with and the heartbeat extends to.
    pub visibility_timeout: Duration,
    /// Backoff for a released message: doubles with each receive, capped at `retry_max`.
    pub retry_base: Duration,
    /// The longest a released message stays invisible.
    pub retry_max: Duration,
    /// When restarts become a storm that stops the pipeline.
    pub restart_policy: RestartPolicy,
    /// The oldest definitions allowed to call an object clean (`DEFINITIONS_MAX_AGE`); `None`:
    /// no freshness check.
    pub definitions_max_age: Option<Duration>,
}

impl PipelineConfig {
    /// [`defaults`] for everything but the buckets, with the old worker's policy: objects of
    /// `unprocessed_bucket` that are not clean are moved to `quarantine_bucket`.
    pub fn new(unprocessed_bucket: impl Into<String>, quarantine_bucket: impl Into<String>) -> Self {
        Self::with_policies(Policies::single(unprocessed_bucket, quarantine_bucket))
    }

    /// [`defaults`] for everything but the policies.
    pub fn with_policies(policies: Policies) -> Self {
        Self {
            policies,
            quarantine_kms_key_id: None,
            max_file_size: defaults::MAX_FILE_SIZE_MB * MIB,
            archive_member_limit: defaults::CLAMD_MAX_FILE_SIZE_MB * MIB,
            archive_inflate_budget: defaults::CLAMD_MAX_SCAN_SIZE_MB * MIB,
            max_in_flight: defaults::MAX_IN_FLIGHT as usize,
            fetch_concurrency: defaults::FETCH_CONCURRENCY as usize,
            scanner_connections: defaults::CLAMD_CONNECTIONS as usize,
            receive_batch: defaults::RECEIVE_BATCH_SIZE as usize,
            batch_linger: Duration::from_millis(defaults::BATCH_LINGER_MS),
            visibility_timeout: Duration::from_secs(defaults::VISIBILITY_TIMEOUT_SECS),
            retry_base: Duration::from_secs(defaults::RETRY_BACKOFF_BASE_SECS),
            retry_max: Duration::from_secs(defaults::RETRY_BACKOFF_MAX_SECS),
            restart_policy: RestartPolicy::default(),
            definitions_max_age: Some(Duration::from_secs(defaults::DEFINITIONS_MAX_AGE_SECS)),
        }
    }
}

//! Every default of the pipeline's tuning, written once, in the units the binary's variables
//! use (MB, seconds, milliseconds): [`PipelineConfig::new`](crate::PipelineConfig::new) and the
//! restart policy read them, and so do the binary's flags. Each says why it is what it is in
//! BENCHMARKS.md or the README's tuning guide.

/// A mebibyte; sizes are configured in MB (the old worker's unit) and used in bytes.
pub const MIB: u64 = 1024 * 1024;

/// `MAX_FILE_SIZE`, MB: larger objects are quarantined unscanned (the old worker's value).
pub const MAX_FILE_SIZE_MB: u64 = 400;
/// `CLAMD_MAX_FILE_SIZE`, MB: the `MaxFileSize` of Debian's stock clamd.conf.
pub const CLAMD_MAX_FILE_SIZE_MB: u64 = 25;
/// `CLAMD_MAX_SCAN_SIZE`, MB: clamd's compiled-in `MaxScanSize` (and the official image's).
pub const CLAMD_MAX_SCAN_SIZE_MB: u64 = 400;
/// `CLAMD_MAX_SCAN_TIME`, seconds: clamd's default `MaxScanTime` (120000 ms).
pub const CLAMD_MAX_SCAN_TIME_SECS: u64 = 120;
/// `MAX_IN_FLIGHT`: SQS messages inside avscan at once. At AWS' latencies a message spends
/// ~80 ms in calls (receive, first byte, send, delete): keeping four clamd sessions busy with
/// small objects (~4,000 a second here) takes about this many in flight (a waiting message
/// costs a few KB).
pub const MAX_IN_FLIGHT: u64 = 512;
/// `FETCH_CONCURRENCY`: concurrent S3 GETs. A fetcher waits ~30 ms for an object's first
/// byte, reads a small one whole and waits for its verdict: keeping four clamd sessions busy
/// with 4 KiB objects (~4,500 a second here) takes ~150 at once; a waiting fetcher costs a few
/// KB (large objects wait for a session first, see the fetcher).
pub const FETCH_CONCURRENCY: u64 = 256;
/// `CLAMD_CONNECTIONS`: pooled clamd sessions, i.e. concurrent scans.
pub const CLAMD_CONNECTIONS: u64 = 4;
/// `RECEIVE_BATCH_SIZE`: messages per receive (SQS' largest batch).
pub const RECEIVE_BATCH_SIZE: u64 = 10;
/// `BATCH_LINGER_MS`: how long a finished message may wait for company in a batch call.
pub const BATCH_LINGER_MS: u64 = 250;
/// `VIRUS_SCANNER_WORKER_MSG_VISIBILITY_TIMEOUT`, seconds.
pub const VISIBILITY_TIMEOUT_SECS: u64 = 120;
/// `RETRY_BACKOFF_BASE`, seconds: a released message's first invisibility.
pub const RETRY_BACKOFF_BASE_SECS: u64 = 5;
/// `RETRY_BACKOFF_MAX`, seconds.
pub const RETRY_BACKOFF_MAX_SECS: u64 = 300;
/// `RESTART_LIMIT`: more restarts than this within the window stop the pipeline.
pub const RESTART_LIMIT: u64 = 10;
/// `RESTART_WINDOW`, seconds.
pub const RESTART_WINDOW_SECS: u64 = 60;
/// `DEFINITIONS_MAX_AGE`, seconds: ClamAV's own warning ("The virus database is older than 7
/// days!").
pub const DEFINITIONS_MAX_AGE_SECS: u64 = 7 * 86_400;
/// `DEFINITIONS_CHECK_INTERVAL`, seconds: how often avscan asks clamd for its definitions.
pub const DEFINITIONS_CHECK_INTERVAL_SECS: u64 = 60;

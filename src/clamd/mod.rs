//! Our clamd client, the adapter behind the pipeline's [`ScanEngine`] port: sessions
//! (`zIDSESSION`) kept open per pooled scanner, INSTREAM framing that streams an object body in
//! fixed-size chunks, and the parsing of clamd's replies into verdicts. Only `stream: OK` is ever
//! reported clean; every reply it does not understand is an error, and errors are retried.
//!
//! - `mod.rs`: [`Clamd`], the client: where clamd is, how to talk to it, one-off commands (`PING`,
//!   `VERSION`, waiting for readiness) and opening sessions.
//! - `address.rs`: [`ClamdAddress`] and the TCP / unix-socket transport.
//! - `protocol.rs`: the wire protocol: command and INSTREAM framing, reading one reply, and
//!   [`parse_scan_reply`].
//! - `session.rs`: one session, which scans objects with INSTREAM.
//!
//! Built by `config.rs` from the settings; used by `run.rs` (the pipeline's scanners, waiting for
//! clamd), `ops.rs` (`/readyz`), `check.rs`, `scan.rs` (ad-hoc scans), `limits/` (the start-up
//! canaries), the benches and the tests against the real clamd.

mod address;
mod protocol;
mod session;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use avscan_actors::backoff::Backoff;
use avscan_actors::ports::{ScanEngine, ScanError, ScanSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use self::address::ClamdAddress;
use self::address::ClamdStream;
pub use self::protocol::parse_scan_reply;
use self::protocol::{
    command_frame, parse_stream_limit_reply, parse_version_reply, read_reply, stream_limit_probe_frame, with_timeout,
    SESSION_START,
};
use self::session::ClamdSession;

/// Pauses between PINGs while clamd is not ready: 100 ms, doubling up to 5 s.
const READY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// How to reach and use clamd.
#[derive(Debug, Clone)]
pub struct Clamd {
    /// Where to connect, for every session and one-off command.
    pub address: ClamdAddress,
    /// INSTREAM chunk size; clamd's per-chunk overhead makes small chunks slow (≥ 64 KiB).
    pub chunk_size: usize,
    /// The stall clock: the longest wait for any one read or write (and for the object's next
    /// chunk): a stalled clamd or S3 body becomes a retry.
    pub io_timeout: Duration,
    /// clamd's `MaxScanTime`. The scan clock: after the stream ended, clamd's answer is awaited
    /// this long plus `io_timeout`, so clamd's own limit (an answer, or its MaxScanTime alert)
    /// always comes first; past it the session is closed and the scan retried.
    pub max_scan_time: Duration,
    /// Shared by clones (the pool's sessions), so session ids are unique in logs and traces.
    next_connection_id: std::sync::Arc<AtomicU64>,
}

impl Clamd {
    /// A client for `address`; chunks smaller than 1 KiB are raised to 1 KiB. Connects lazily.
    pub fn new(address: ClamdAddress, chunk_size: usize, io_timeout: Duration) -> Self {
        Self {
            address,
            chunk_size: chunk_size.max(1024),
            io_timeout,
            max_scan_time: Duration::from_secs(avscan_actors::defaults::CLAMD_MAX_SCAN_TIME_SECS),
            next_connection_id: Default::default(),
        }
    }

    /// The same client with clamd's `MaxScanTime` set to `max_scan_time`.
    pub fn with_max_scan_time(mut self, max_scan_time: Duration) -> Self {
        self.max_scan_time = max_scan_time;
        self
    }

    async fn open(&self) -> Result<ClamdStream, ScanError> {
        match tokio::time::timeout(self.io_timeout, ClamdStream::connect(&self.address)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(err)) => Err(ScanError::Unavailable(format!("{}: {err}", self.address))),
            Err(_) => Err(ScanError::Timeout(format!("connecting to {}", self.address))),
        }
    }

    /// One command outside a session (`zPING`, `zVERSION`); returns the reply.
    pub async fn command(&self, command: &str) -> Result<String, ScanError> {
        let mut stream = self.open().await?;
        with_timeout(
            self.io_timeout,
            "writing command",
            stream.write_all(&command_frame(command)),
        )
        .await?;
        read_reply(&mut stream, self.io_timeout).await
    }

    /// Sends `PING` on a new connection; anything but `PONG` is an error.
    pub async fn ping(&self) -> Result<(), ScanError> {
        match self.command("PING").await?.as_str() {
            "PONG" => Ok(()),
            other => Err(ScanError::UnexpectedReply(other.to_owned())),
        }
    }

    /// Whether clamd's `StreamMaxLength` admits a stream of `len` bytes, asked without sending
    /// them: an INSTREAM whose one chunk header declares `len` bytes, then the end of our side of
    /// the connection. clamd checks the declared length before it reads the chunk: over its limit
    /// it answers `INSTREAM size limit exceeded` at once (`false`); within it, it waits for the
    /// bytes and closes without a word when the connection ends (`true`). A few hundred bytes on
    /// the wire whatever `len` is. Any other reply is an error.
    pub async fn stream_limit_admits(&self, len: u32) -> Result<bool, ScanError> {
        let mut stream = self.open().await?;
        with_timeout(
            self.io_timeout,
            "declaring a chunk",
            stream.write_all(&stream_limit_probe_frame(len)),
        )
        .await?;
        with_timeout(self.io_timeout, "ending the stream", stream.shutdown()).await?;
        let mut reply = Vec::new();
        let read = async {
            let mut buf = [0u8; 256];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(n) => reply.extend_from_slice(&buf[..n]),
                    // clamd may reset the connection after its reply; the reply decides.
                    Err(_) if !reply.is_empty() => return Ok(()),
                    Err(err) => return Err(err),
                }
                if reply.len() > 4096 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "clamd reply too long",
                    ));
                }
            }
        };
        with_timeout(self.io_timeout, "reading reply", read).await?;
        parse_stream_limit_reply(&reply)
    }

    /// Waits until clamd answers PING, logging while it waits, for at most `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> Result<(), ScanError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut failures = 0;
        loop {
            let pause = READY_BACKOFF.delay(failures);
            match self.ping().await {
                Ok(()) => return Ok(()),
                Err(err) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::info!(address = %self.address, error = %err, retry_in = ?pause, "waiting for clamd");
                    tokio::time::sleep(pause).await;
                    failures += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

#[async_trait]
impl ScanEngine for Clamd {
    async fn connect(&self) -> Result<Box<dyn ScanSession>, ScanError> {
        let mut stream = self.open().await?;
        with_timeout(self.io_timeout, "opening session", stream.write_all(SESSION_START)).await?;
        let engine = parse_version_reply(&read_reply(&mut stream, self.io_timeout).await?, 1)?;
        let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(connection = id, engine, "clamd session opened");
        Ok(Box::new(ClamdSession::new(
            stream,
            id,
            engine,
            self.chunk_size,
            self.io_timeout,
            self.max_scan_time + self.io_timeout,
        )))
    }
}

//! Our clamd client: sessions (`zIDSESSION`) kept open per pooled scanner, INSTREAM framing that
//! streams an object body in fixed-size chunks, and the parsing of clamd's replies into verdicts.
//! It implements the pipeline's [`ScanEngine`] port. Only `stream: OK` is ever reported clean;
//! every reply it does not understand is an error, and errors are retried.

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use avscan_actors::model::{QuarantineReason, ScanOutcome, Verdict};
use avscan_actors::ports::{ObjectBody, ScanEngine, ScanError, ScanSession};
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Where clamd listens: `tcp://host:port` or `unix:///path/to/socket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for ClamdAddress {
    type Err = String;

    fn from_str(address: &str) -> Result<Self, Self::Err> {
        if let Some(host_port) = address.strip_prefix("tcp://") {
            let valid = host_port
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            return if valid {
                Ok(Self::Tcp(host_port.to_owned()))
            } else {
                Err(format!("expected tcp://host:port, got {address:?}"))
            };
        }
        if let Some(path) = address.strip_prefix("unix://") {
            return if path.starts_with('/') {
                Ok(Self::Unix(path.into()))
            } else {
                Err(format!("expected unix:///absolute/path, got {address:?}"))
            };
        }
        Err(format!("expected tcp://host:port or unix:///path, got {address:?}"))
    }
}

impl fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(host_port) => write!(f, "tcp://{host_port}"),
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// A connection to clamd over TCP or a unix socket.
enum ClamdStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl ClamdStream {
    async fn connect(address: &ClamdAddress) -> std::io::Result<Self> {
        Ok(match address {
            ClamdAddress::Tcp(host_port) => {
                let stream = TcpStream::connect(host_port).await?;
                // Without it a scan written as command, chunks and terminator waits on Nagle and
                // delayed ACKs: ~44 ms instead of ~0.4 ms per small object (FACTS.md).
                stream.set_nodelay(true)?;
                Self::Tcp(stream)
            }
            ClamdAddress::Unix(path) => Self::Unix(UnixStream::connect(path).await?),
        })
    }

    /// Non-blocking look for a close (or stray bytes) from clamd since the last reply.
    fn is_idle_and_open(&self) -> bool {
        let mut probe = [0u8; 1];
        let result = match self {
            Self::Tcp(stream) => stream.try_read(&mut probe),
            Self::Unix(stream) => stream.try_read(&mut probe),
        };
        matches!(result, Err(err) if err.kind() == std::io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for ClamdStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClamdStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Unix(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Self::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// How to reach and use clamd.
#[derive(Debug, Clone)]
pub struct Clamd {
    pub address: ClamdAddress,
    /// INSTREAM chunk size; clamd's per-chunk overhead makes small chunks slow (≥ 64 KiB).
    pub chunk_size: usize,
    /// Longest wait for any one read or write: a stalled clamd becomes a retry, well before the
    /// message's visibility timeout.
    pub io_timeout: Duration,
    next_connection_id: std::sync::Arc<AtomicU64>,
}

/// Longest reply we accept; clamd's are one short line.
const MAX_REPLY: usize = 4096;

impl Clamd {
    pub fn new(address: ClamdAddress, chunk_size: usize, io_timeout: Duration) -> Self {
        Self {
            address,
            chunk_size: chunk_size.max(1024),
            io_timeout,
            next_connection_id: Default::default(),
        }
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
            stream.write_all(format!("z{command}\0").as_bytes()),
        )
        .await?;
        read_reply(&mut stream, self.io_timeout).await
    }

    pub async fn ping(&self) -> Result<(), ScanError> {
        match self.command("PING").await?.as_str() {
            "PONG" => Ok(()),
            other => Err(ScanError::UnexpectedReply(other.to_owned())),
        }
    }

    /// Waits until clamd answers PING, logging while it waits, for at most `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> Result<(), ScanError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.ping().await {
                Ok(()) => return Ok(()),
                Err(err) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::info!(address = %self.address, error = %err, retry_in = ?pause, "waiting for clamd");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(err) => return Err(err),
            }
        }
    }
}

async fn with_timeout<T>(
    limit: Duration,
    what: &str,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, ScanError> {
    match tokio::time::timeout(limit, io).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(ScanError::Io(format!("{what}: {err}"))),
        Err(_) => Err(ScanError::Timeout(what.to_owned())),
    }
}

/// Reads one reply: up to a NUL (z-mode), or a newline, which clamd uses for some errors
/// (`COMMAND READ TIMED OUT`) even in z-mode.
async fn read_reply(stream: &mut ClamdStream, limit: Duration) -> Result<String, ScanError> {
    let mut reply = Vec::with_capacity(64);
    let read = async {
        // One read per reply in practice: clamd sends nothing unasked between our commands, so
        // bytes after the terminator can only be a protocol error.
        let mut buf = [0u8; 256];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "clamd closed the connection",
                ));
            }
            reply.extend_from_slice(&buf[..n]);
            if let Some(end) = reply.iter().position(|b| *b == 0 || *b == b'\n') {
                if end + 1 != reply.len() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "clamd sent more than one reply",
                    ));
                }
                reply.truncate(end);
                return Ok(());
            }
            if reply.len() >= MAX_REPLY {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "clamd reply too long",
                ));
            }
        }
    };
    with_timeout(limit, "reading reply", read).await?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Parses a reply to INSTREAM. In a session replies are prefixed `<id>: `, and the id must be
/// the one of our command.
pub fn parse_scan_reply(reply: &str, session_id: Option<u64>) -> Result<Verdict, ScanError> {
    let unexpected = || ScanError::UnexpectedReply(reply.to_owned());
    let body = match session_id {
        Some(expected) => {
            let (id, rest) = reply.split_once(": ").ok_or_else(unexpected)?;
            if id.parse::<u64>().ok() != Some(expected) {
                return Err(unexpected());
            }
            rest
        }
        None => reply,
    };
    if body == "stream: OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(signature) = body
        .strip_prefix("stream: ")
        .and_then(|rest| rest.strip_suffix(" FOUND"))
    {
        if !signature.is_empty() && !signature.contains(['\0', '\n']) {
            return Ok(Verdict::from_signature(signature));
        }
    }
    if body.starts_with("INSTREAM size limit exceeded") {
        return Ok(Verdict::Unscannable {
            reason: QuarantineReason::FileTooLarge,
            signature: None,
        });
    }
    Err(unexpected())
}

/// Parses `zVERSION`'s reply, e.g. `ClamAV 1.4.6/27000/Sun Nov 29 …`.
fn parse_version_reply(reply: &str, session_id: u64) -> Result<String, ScanError> {
    let version = reply.strip_prefix(&format!("{session_id}: ")).unwrap_or(reply);
    if version.starts_with("ClamAV ") {
        Ok(version.to_owned())
    } else {
        Err(ScanError::UnexpectedReply(reply.to_owned()))
    }
}

/// One clamd session, owned by one scanner.
pub struct ClamdSession {
    stream: ClamdStream,
    id: u64,
    /// The id of the next command in this session (clamd numbers them from 1).
    next_command: u64,
    engine: String,
    chunk_size: usize,
    io_timeout: Duration,
    /// Set once clamd is known to close the connection (its size limit) or a write failed.
    closing: bool,
}

#[async_trait]
impl ScanEngine for Clamd {
    async fn connect(&self) -> Result<Box<dyn ScanSession>, ScanError> {
        let mut stream = self.open().await?;
        with_timeout(
            self.io_timeout,
            "opening session",
            stream.write_all(b"zIDSESSION\0zVERSION\0"),
        )
        .await?;
        let engine = parse_version_reply(&read_reply(&mut stream, self.io_timeout).await?, 1)?;
        let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(connection = id, %engine, "clamd session opened");
        Ok(Box::new(ClamdSession {
            stream,
            id,
            next_command: 2,
            engine,
            chunk_size: self.chunk_size,
            io_timeout: self.io_timeout,
            closing: false,
        }))
    }
}

impl ClamdSession {
    async fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), ScanError> {
        let header = (chunk.len() as u32).to_be_bytes();
        let mut frame = Buf::chain(&header[..], chunk);
        with_timeout(self.io_timeout, "streaming", self.stream.write_all_buf(&mut frame)).await
    }

    /// After a failed write: clamd may have stopped reading because the stream exceeded its
    /// limit, and said so before closing. Its reply decides; without one the write error stands.
    async fn reply_after_failed_write(&mut self, command: u64, write_error: ScanError) -> Result<Verdict, ScanError> {
        self.closing = true;
        match read_reply(&mut self.stream, Duration::from_secs(2).min(self.io_timeout)).await {
            Ok(reply) => match parse_scan_reply(&reply, Some(command)) {
                Ok(
                    verdict @ Verdict::Unscannable {
                        reason: QuarantineReason::FileTooLarge,
                        ..
                    },
                ) => Ok(verdict),
                _ => Err(write_error),
            },
            Err(_) => Err(write_error),
        }
    }

    async fn instream(&mut self, mut body: ObjectBody, command: u64) -> Result<Verdict, ScanError> {
        with_timeout(
            self.io_timeout,
            "starting INSTREAM",
            self.stream.write_all(b"zINSTREAM\0"),
        )
        .await?;
        let mut pending = BytesMut::with_capacity(self.chunk_size);
        let mut streamed: u64 = 0;
        loop {
            // A stalled source must not hold the scanner (and clamd's session) forever.
            let next = tokio::time::timeout(self.io_timeout, body.chunks.next()).await;
            let Some(piece) = next.map_err(|_| ScanError::Timeout("reading the object".into()))? else {
                break;
            };
            // A broken source aborts without the terminator: clamd must never judge a prefix.
            let piece = piece.map_err(ScanError::Source)?;
            streamed += piece.len() as u64;
            if streamed > body.content_length {
                return Err(ScanError::LengthMismatch {
                    expected: body.content_length,
                    streamed,
                });
            }
            pending.extend_from_slice(&piece);
            while pending.len() >= self.chunk_size {
                let chunk = pending.split_to(self.chunk_size);
                if let Err(err) = self.write_chunk(&chunk).await {
                    return self.reply_after_failed_write(command, err).await;
                }
            }
        }
        if streamed != body.content_length {
            return Err(ScanError::LengthMismatch {
                expected: body.content_length,
                streamed,
            });
        }
        if !pending.is_empty() {
            if let Err(err) = self.write_chunk(&pending).await {
                return self.reply_after_failed_write(command, err).await;
            }
        }
        if let Err(err) = with_timeout(self.io_timeout, "ending INSTREAM", self.stream.write_all(&[0, 0, 0, 0])).await {
            return self.reply_after_failed_write(command, err).await;
        }
        let reply = read_reply(&mut self.stream, self.io_timeout).await?;
        parse_scan_reply(&reply, Some(command))
    }
}

#[async_trait]
impl ScanSession for ClamdSession {
    async fn scan(&mut self, body: ObjectBody) -> Result<ScanOutcome, ScanError> {
        let command = self.next_command;
        self.next_command += 1;
        let verdict = self.instream(body, command).await?;
        if let Verdict::Unscannable {
            reason: QuarantineReason::FileTooLarge,
            ..
        } = verdict
        {
            // clamd closes the session after its size-limit reply.
            self.closing = true;
        }
        Ok(ScanOutcome {
            verdict,
            engine: Some(self.engine.clone()),
        })
    }

    fn is_reusable(&mut self) -> bool {
        !self.closing && self.stream.is_idle_and_open()
    }

    fn id(&self) -> u64 {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "tcp://127.0.0.1:3310".parse(),
            Ok(ClamdAddress::Tcp("127.0.0.1:3310".into()))
        );
        assert_eq!(
            "unix:///run/clamd.sock".parse(),
            Ok(ClamdAddress::Unix("/run/clamd.sock".into()))
        );
        assert!("127.0.0.1:3310".parse::<ClamdAddress>().is_err());
        assert!("tcp://host".parse::<ClamdAddress>().is_err());
        assert!("tcp://host:99999".parse::<ClamdAddress>().is_err());
        assert!("unix://relative".parse::<ClamdAddress>().is_err());
    }

    #[test]
    fn replies_map_to_verdicts_and_only_ok_is_clean() {
        assert_eq!(parse_scan_reply("2: stream: OK", Some(2)).unwrap(), Verdict::Clean);
        assert_eq!(parse_scan_reply("stream: OK", None).unwrap(), Verdict::Clean);
        assert_eq!(
            parse_scan_reply("3: stream: Eicar-Test-Signature.UNOFFICIAL FOUND", Some(3)).unwrap(),
            Verdict::Infected {
                signature: "Eicar-Test-Signature.UNOFFICIAL".into()
            }
        );
        assert_eq!(
            parse_scan_reply("2: stream: Heuristics.Encrypted.Zip FOUND", Some(2))
                .unwrap()
                .label(),
            "unscannable"
        );
        assert_eq!(
            parse_scan_reply("2: INSTREAM size limit exceeded. ERROR", Some(2))
                .unwrap()
                .quarantine_reason(),
            Some(QuarantineReason::FileTooLarge)
        );
        for bad in [
            "2: stream: OK ",
            "2: stream: ERROR",
            "2: stream:  FOUND",
            "2: Can't allocate memory ERROR",
            "COMMAND READ TIMED OUT",
            "3: stream: OK",
            "stream: OK",
            "",
            "2: UNKNOWN COMMAND",
        ] {
            assert!(parse_scan_reply(bad, Some(2)).is_err(), "{bad:?} must not be a verdict");
        }
    }

    fn body(parts: Vec<&'static [u8]>, content_length: u64) -> ObjectBody {
        ObjectBody {
            content_length,
            chunks: futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))).boxed(),
        }
    }

    /// A fake clamd on 127.0.0.1:0 that records what it reads and answers with `reply`.
    async fn fake_clamd(reply: &'static str) -> (Clamd, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = ClamdAddress::Tcp(listener.local_addr().unwrap().to_string());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            // Session start and VERSION.
            while !received.ends_with(b"zVERSION\0") {
                let n = socket.read(&mut buf).await.unwrap();
                received.extend_from_slice(&buf[..n]);
            }
            socket.write_all(b"1: ClamAV 1.4.6/1/today\0").await.unwrap();
            let start = received.len();
            while !received[start..].ends_with(&[0, 0, 0, 0]) {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buf[..n]);
            }
            socket.write_all(reply.as_bytes()).await.unwrap();
            received.split_off(start)
        });
        (Clamd::new(address, 1024, Duration::from_secs(5)), server)
    }

    #[tokio::test]
    async fn instream_frames_the_body_in_chunks_of_the_configured_size() {
        let (clamd, server) = fake_clamd("2: stream: OK\0").await;
        let mut session = clamd.connect().await.unwrap();
        let payload: &'static [u8] = Box::leak(vec![7u8; 2500].into_boxed_slice());
        let outcome = session
            .scan(body(vec![&payload[..100], &payload[100..]], 2500))
            .await
            .unwrap();
        assert_eq!(outcome.verdict, Verdict::Clean);
        assert_eq!(outcome.engine.as_deref(), Some("ClamAV 1.4.6/1/today"));
        let wire = server.await.unwrap();
        let mut expected = b"zINSTREAM\0".to_vec();
        for chunk in [1024usize, 1024, 452] {
            expected.extend_from_slice(&(chunk as u32).to_be_bytes());
            expected.extend(std::iter::repeat_n(7u8, chunk));
        }
        expected.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(wire, expected);
    }

    #[tokio::test]
    async fn a_short_body_is_an_error_not_a_verdict() {
        let (clamd, _server) = fake_clamd("2: stream: OK\0").await;
        let mut session = clamd.connect().await.unwrap();
        let result = session.scan(body(vec![b"abc"], 10)).await;
        assert!(
            matches!(
                result,
                Err(ScanError::LengthMismatch {
                    expected: 10,
                    streamed: 3
                })
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_stalled_object_stream_times_out_instead_of_holding_the_session() {
        let (mut clamd, _server) = fake_clamd("2: stream: OK\0").await;
        clamd.io_timeout = Duration::from_millis(200);
        let mut session = clamd.connect().await.unwrap();
        let stalled = ObjectBody {
            content_length: 10,
            chunks: futures::stream::pending().boxed(),
        };
        assert!(matches!(session.scan(stalled).await, Err(ScanError::Timeout(_))));
    }

    #[tokio::test]
    async fn a_reply_with_the_wrong_session_id_is_an_error() {
        let (clamd, _server) = fake_clamd("7: stream: OK\0").await;
        let mut session = clamd.connect().await.unwrap();
        assert!(session.scan(body(vec![b"abc"], 3)).await.is_err());
    }
}

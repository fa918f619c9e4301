//! One clamd session (`zIDSESSION`), owned by one pooled scanner through the pipeline's
//! [`ScanSession`] port: each scan is a VERSION command (naming the definitions that judge the
//! body) and an INSTREAM command that streams the object body in chunks of the configured size,
//! every step bounded by the io timeout. The client in `mod.rs` opens the
//! session; the framing and reply parsing it uses are in `protocol.rs`.

use std::time::Duration;

use async_trait::async_trait;
use avscan_actors::definitions::Definitions;
use avscan_actors::model::{QuarantineReason, ScanOutcome, Verdict};
use avscan_actors::ports::{ObjectBody, ScanError, ScanSession};
use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::address::ClamdStream;
use super::protocol::{
    chunk_frame, parse_scan_reply, parse_version_reply, with_timeout, Replies, INSTREAM_END, VERSION_THEN_INSTREAM,
};

/// One clamd session, owned by one scanner.
pub(super) struct ClamdSession {
    stream: ClamdStream,
    id: u64,
    /// The id of the next command in this session (clamd numbers them from 1).
    next_command: u64,
    /// clamd's replies, in order.
    replies: Replies,
    chunk_size: usize,
    /// The stall clock: any one read or write.
    io_timeout: Duration,
    /// The scan clock: clamd's answer after the stream ended.
    reply_timeout: Duration,
    /// Set once clamd is known to close the connection (its size limit) or a write failed.
    closing: bool,
}

impl ClamdSession {
    /// A session on `stream`, which has sent `zIDSESSION` and had `zVERSION` (command 1)
    /// answered; its scans' commands are numbered from 2.
    pub(super) fn new(
        stream: ClamdStream,
        id: u64,
        chunk_size: usize,
        io_timeout: Duration,
        reply_timeout: Duration,
    ) -> Self {
        Self {
            stream,
            id,
            next_command: 2,
            replies: Replies::default(),
            chunk_size,
            io_timeout,
            reply_timeout,
            closing: false,
        }
    }

    async fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), ScanError> {
        let mut frame = chunk_frame(chunk);
        with_timeout(self.io_timeout, "streaming", self.stream.write_all_buf(&mut frame)).await
    }

    /// After a failed write: clamd may have stopped reading because the stream exceeded its
    /// limit, and said so before closing. Its reply decides; without one the write error stands.
    async fn reply_after_failed_write(
        &mut self,
        command: Scan,
        version: Option<String>,
        write_error: ScanError,
    ) -> Result<Judged, ScanError> {
        self.closing = true;
        let limit = Duration::from_secs(2).min(self.io_timeout);
        let version = match version {
            Some(version) => version,
            None => match self.version_reply(command, limit).await {
                Ok(version) => version,
                Err(_) => return Err(write_error),
            },
        };
        match self.replies.next(&mut self.stream, limit).await {
            Ok(reply) => match parse_scan_reply(&reply, Some(command.instream)) {
                Ok(
                    verdict @ Verdict::Unscannable {
                        reason: QuarantineReason::FileTooLarge,
                        ..
                    },
                ) => Ok((verdict, version)),
                _ => Err(write_error),
            },
            Err(_) => Err(write_error),
        }
    }

    /// The scan's VERSION reply: the line, which must name the engine.
    async fn version_reply(&mut self, command: Scan, limit: Duration) -> Result<String, ScanError> {
        let reply = self.replies.next(&mut self.stream, limit).await?;
        parse_version_reply(&reply, command.version)
    }

    async fn instream(&mut self, mut body: ObjectBody, command: Scan) -> Result<Judged, ScanError> {
        with_timeout(
            self.io_timeout,
            "starting INSTREAM",
            self.stream.write_all(VERSION_THEN_INSTREAM),
        )
        .await?;
        // In a session clamd writes VERSION's reply in two parts, `<id>: ` and the text, and its
        // Nagle's algorithm holds back whatever it writes next until what it wrote is
        // acknowledged. Left to our delayed ACK that is 40 ms per scan (measured: 4 KiB objects
        // at 0.02 of raw clamd). So our packets carry the ACKs: the body goes out once the reply
        // has begun, and the terminator once the reply is whole; clamd's verdict then follows
        // without waiting. (An empty body has no packet between the two: it waits once.)
        self.replies.begun(&mut self.stream, self.io_timeout).await?;
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
                    return self.reply_after_failed_write(command, None, err).await;
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
                return self.reply_after_failed_write(command, None, err).await;
            }
        }
        let version = self.version_reply(command, self.io_timeout).await?;
        if let Err(err) = with_timeout(self.io_timeout, "ending INSTREAM", self.stream.write_all(&INSTREAM_END)).await {
            return self.reply_after_failed_write(command, Some(version), err).await;
        }
        // clamd scans only now, for up to its MaxScanTime: the scan clock, not the stall clock.
        let reply = self.replies.next(&mut self.stream, self.reply_timeout).await?;
        Ok((parse_scan_reply(&reply, Some(command.instream))?, version))
    }
}

/// The ids of one scan's two commands.
#[derive(Debug, Clone, Copy)]
struct Scan {
    version: u64,
    instream: u64,
}

/// A verdict and the VERSION line of the engine that gave it.
type Judged = (Verdict, String);

#[async_trait]
impl ScanSession for ClamdSession {
    async fn scan(&mut self, body: ObjectBody) -> Result<ScanOutcome, ScanError> {
        let command = Scan {
            version: self.next_command,
            instream: self.next_command + 1,
        };
        self.next_command += 2;
        let (verdict, version) = self.instream(body, command).await?;
        if let Verdict::Unscannable {
            reason: QuarantineReason::FileTooLarge,
            ..
        } = verdict
        {
            // clamd closes the session after its size-limit reply.
            self.closing = true;
        }
        let definitions = match Definitions::from_version_reply(&version) {
            Ok(definitions) => definitions,
            Err(err) => {
                // No definitions: a freshness check refuses the verdict if it is clean.
                tracing::warn!(connection = self.id, error = %err, "clamd's definitions unknown for this scan");
                None
            }
        };
        Ok(ScanOutcome {
            verdict,
            engine: Some(version),
            definitions,
            sha256: None,
            allowed_by: None,
        })
    }

    fn is_reusable(&mut self) -> bool {
        !self.closing && !self.replies.has_unread() && self.stream.is_idle_and_open()
    }

    fn id(&self) -> u64 {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use avscan_actors::ports::ScanEngine;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::clamd::{Clamd, ClamdAddress};

    fn body(parts: Vec<&'static [u8]>, content_length: u64) -> ObjectBody {
        ObjectBody {
            content_length,
            chunks: futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))).boxed(),
        }
    }

    /// What the fake clamd answers to a scan's VERSION: a reload since the session began.
    const SCAN_VERSION: &str = "2: ClamAV 1.4.6/27400/Sun Nov  1 10:00:00 2026\0";

    /// A fake clamd on 127.0.0.1:0 that records what it reads and answers with `reply`.
    async fn fake_clamd(reply: &'static str) -> (Clamd, tokio::task::JoinHandle<Vec<u8>>) {
        fake_clamd_scanning_for(reply, Duration::ZERO).await
    }

    /// As [`fake_clamd`], taking `scan_time` to answer after the stream ended, as a real clamd
    /// takes to scan a large object.
    async fn fake_clamd_scanning_for(
        reply: &'static str,
        scan_time: Duration,
    ) -> (Clamd, tokio::task::JoinHandle<Vec<u8>>) {
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
            socket
                .write_all(b"1: ClamAV 1.4.6/27399/Sat Oct 31 10:00:00 2026\0")
                .await
                .unwrap();
            let start = received.len();
            // The scan's VERSION (command 2) is answered at once, as clamd does; its verdict
            // (command 3) after the body and the scan.
            let mut answered = false;
            while !received[start..].ends_with(&[0, 0, 0, 0]) {
                if !answered && received[start..].starts_with(b"zVERSION\0zINSTREAM\0") {
                    socket.write_all(SCAN_VERSION.as_bytes()).await.unwrap();
                    answered = true;
                }
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buf[..n]);
            }
            tokio::time::sleep(scan_time).await;
            let _ = socket.write_all(reply.as_bytes()).await;
            received.split_off(start)
        });
        (Clamd::new(address, 1024, Duration::from_secs(5)), server)
    }

    #[tokio::test]
    async fn instream_frames_the_body_in_chunks_of_the_configured_size() {
        let (clamd, server) = fake_clamd("3: stream: OK\0").await;
        let mut session = clamd.connect().await.unwrap();
        let payload: &'static [u8] = Box::leak(vec![7u8; 2500].into_boxed_slice());
        let outcome = session
            .scan(body(vec![&payload[..100], &payload[100..]], 2500))
            .await
            .unwrap();
        assert_eq!(outcome.verdict, Verdict::Clean);
        // The definitions are the ones named in the scan itself, not at the session's start.
        assert_eq!(
            outcome.engine.as_deref(),
            Some("ClamAV 1.4.6/27400/Sun Nov  1 10:00:00 2026")
        );
        assert_eq!(outcome.definitions.map(|d| d.version), Some(27400));
        let wire = server.await.unwrap();
        let mut expected = b"zVERSION\0zINSTREAM\0".to_vec();
        for chunk in [1024usize, 1024, 452] {
            expected.extend_from_slice(&(chunk as u32).to_be_bytes());
            expected.extend(std::iter::repeat_n(7u8, chunk));
        }
        expected.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(wire, expected);
    }

    #[tokio::test]
    async fn a_short_body_is_an_error_not_a_verdict() {
        let (clamd, _server) = fake_clamd("3: stream: OK\0").await;
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
        let (mut clamd, _server) = fake_clamd("3: stream: OK\0").await;
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

    #[tokio::test]
    async fn a_scan_longer_than_the_stall_limit_but_within_max_scan_time_gets_its_verdict() {
        let (clamd, _server) = fake_clamd_scanning_for("3: stream: OK\0", Duration::from_millis(800)).await;
        let clamd = Clamd {
            io_timeout: Duration::from_millis(200),
            ..clamd
        }
        .with_max_scan_time(Duration::from_secs(2));
        let mut session = clamd.connect().await.unwrap();
        let outcome = session.scan(body(vec![b"abc"], 3)).await.unwrap();
        assert_eq!(outcome.verdict, Verdict::Clean);
    }

    #[tokio::test]
    async fn a_scan_past_max_scan_time_is_a_timeout_not_a_verdict() {
        let (clamd, _server) = fake_clamd_scanning_for("3: stream: OK\0", Duration::from_secs(3)).await;
        let clamd = Clamd {
            io_timeout: Duration::from_millis(200),
            ..clamd
        }
        .with_max_scan_time(Duration::from_millis(300));
        let mut session = clamd.connect().await.unwrap();
        let started = std::time::Instant::now();
        let result = session.scan(body(vec![b"abc"], 3)).await;
        assert!(matches!(result, Err(ScanError::Timeout(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "waited past the scan clock");
    }

    /// clamd as Nagle's algorithm makes it behave: its session VERSION reply comes in two parts,
    /// and nothing after an unacknowledged part goes out until the client sends something (the
    /// packet that carries the ACK). A client that waits for a whole reply before it sends again
    /// hangs here; on a real clamd it waits 40 ms of delayed ACK per scan.
    #[tokio::test]
    async fn the_client_sends_after_each_part_of_clamds_version_reply_so_nagle_never_holds_the_verdict() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = ClamdAddress::Tcp(listener.local_addr().unwrap().to_string());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            // Reads until `done` holds for what arrived after byte `from`.
            async fn until(
                socket: &mut tokio::net::TcpStream,
                received: &mut Vec<u8>,
                buf: &mut [u8],
                from: usize,
                done: impl Fn(&[u8]) -> bool,
            ) {
                while !done(&received[from..]) {
                    let n = socket.read(buf).await.unwrap();
                    assert!(n > 0, "the client hung up");
                    received.extend_from_slice(&buf[..n]);
                }
            }
            until(&mut socket, &mut received, &mut buf, 0, |r| r.ends_with(b"zVERSION\0")).await;
            socket.write_all(b"1: ClamAV 1.4.6\0").await.unwrap();
            let start = received.len();
            until(&mut socket, &mut received, &mut buf, start, |r| {
                r.starts_with(b"zVERSION\0zINSTREAM\0")
            })
            .await;
            socket.write_all(b"2: ").await.unwrap();
            // The rest of the reply only once the client sent something after the first part.
            let prefix_seen = received.len();
            until(&mut socket, &mut received, &mut buf, prefix_seen, |r| !r.is_empty()).await;
            assert!(
                !received.ends_with(&[0, 0, 0, 0]),
                "the terminator went out before clamd's VERSION reply was whole: Nagle would hold the verdict"
            );
            socket
                .write_all(b"ClamAV 1.4.6/27400/Sun Nov  1 10:00:00 2026\0")
                .await
                .unwrap();
            // The verdict only once the client sent something after the reply's second part.
            let text_seen = received.len();
            until(&mut socket, &mut received, &mut buf, text_seen, |r| !r.is_empty()).await;
            until(&mut socket, &mut received, &mut buf, start, |r| {
                r.ends_with(&[0, 0, 0, 0])
            })
            .await;
            socket.write_all(b"3: stream: OK\0").await.unwrap();
        });
        let clamd = Clamd::new(address, 1024, Duration::from_secs(2));
        let mut session = clamd.connect().await.unwrap();
        let payload: &'static [u8] = Box::leak(vec![7u8; 2500].into_boxed_slice());
        let outcome = session.scan(body(vec![payload], 2500)).await.unwrap();
        assert_eq!(outcome.verdict, Verdict::Clean);
        assert_eq!(outcome.definitions.map(|d| d.version), Some(27400));
        server.await.unwrap();
    }
}

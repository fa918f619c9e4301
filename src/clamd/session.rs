//! One clamd session (`zIDSESSION`), owned by one pooled scanner through the pipeline's
//! [`ScanSession`] port: each scan is an INSTREAM command that streams the object body in chunks
//! of the configured size, every step bounded by the io timeout.
//!
//! Which definitions judged a verdict is named by the session's VERSION commands around it: the
//! last one answered before the scan began and the first one asked after its verdict came. Equal,
//! they name the engine that judged the body (clamd swaps engines only between the two); unequal
//! (a reload in between), the verdict is not taken and its message is retried. Up to
//! [`CONFIRM_EVERY`] verdicts share one VERSION, asked before a scan (when that many wait, the
//! body is at least [`CONFIRM_BEFORE_BYTES`], or the last is [`NAMED_FRESH_FOR`] old) or when the
//! scanner idles ([`ScanSession::confirm`]): one per scan cost clamd 8 % more CPU per 4 KiB object
//! (BENCHMARKS.md (e)). Asked on the same connection, it names the clamd that scanned even when
//! several answer behind one address. The client in `mod.rs` opens the session; the framing and
//! reply parsing it uses are in `protocol.rs`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use avscan_actors::definitions::Definitions;
use avscan_actors::model::{QuarantineReason, Verdict};
use avscan_actors::ports::{Judge, JudgedBy, ObjectBody, ScanError, ScanSession, Scanned};
use bytes::Buf;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::address::ClamdStream;
use super::protocol::{
    chunk_frame, last_frame, parse_scan_reply, parse_version_reply, with_timeout, Pieces, Replies, INSTREAM_START,
    VERSION, VERSION_THEN_INSTREAM,
};

/// At most this many verdicts of a session wait for one VERSION to name their definitions; the
/// next scan asks it first. Bounds the wait to a few small scans.
pub(super) const CONFIRM_EVERY: usize = 16;

/// A body this long asks VERSION before it is streamed when verdicts are waiting: its scan takes
/// long enough that they should not wait behind it, one VERSION is little beside it, and a body
/// streamed from S3 (over 1 MiB) that breaks off ends the session before it could name theirs.
pub(super) const CONFIRM_BEFORE_BYTES: u64 = 256 * 1024;

/// A session whose last VERSION is older asks again before its next scan: a reload while it
/// idled then falls before the scan, instead of between the VERSIONs around it, which would
/// send the verdict back to be scanned again.
pub(super) const NAMED_FRESH_FOR: Duration = Duration::from_secs(1);

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
    /// The engine the session's last VERSION named: the one before every scan since.
    engine: String,
    /// When that VERSION was answered.
    named_at: Instant,
    /// Verdicts given since that VERSION, waiting for the next to name their definitions.
    unconfirmed: Vec<oneshot::Sender<Result<Judge, ScanError>>>,
    /// A VERSION sent and its reply not read yet: the command's id.
    version_unread: Option<u64>,
}

impl ClamdSession {
    /// A session on `stream`, which has sent `zIDSESSION` and had `zVERSION` (command 1)
    /// answered with `engine`; its scans' commands are numbered from 2.
    pub(super) fn new(
        stream: ClamdStream,
        id: u64,
        engine: String,
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
            engine,
            named_at: Instant::now(),
            unconfirmed: Vec::new(),
            version_unread: None,
        }
    }

    /// A VERSION answered after every waiting verdict came: each is named by it when it names
    /// the engine before them, and refused when clamd changed engines in between. It is the
    /// engine before the next scans.
    fn named(&mut self, engine: String) {
        let judge = match engine == self.engine {
            true => Ok(judge_of(&engine)),
            false => Err(ScanError::DefinitionsChanged {
                before: self.engine.clone(),
                after: engine.clone(),
            }),
        };
        for verdict in self.unconfirmed.drain(..) {
            // A fetcher that stopped waiting needs no name.
            let _ = verdict.send(judge.clone());
        }
        self.engine = engine;
        self.named_at = Instant::now();
    }

    /// Writes `command` (may be empty), then one chunk, without copying the chunk.
    async fn write_chunk(&mut self, command: &'static [u8], chunk: Pieces) -> Result<(), ScanError> {
        let mut frame = bytes::Buf::chain(command, chunk_frame(chunk));
        with_timeout(self.io_timeout, "streaming", self.stream.write_all_buf(&mut frame)).await
    }

    /// After a failed write: clamd may have stopped reading because the stream exceeded its
    /// limit, and said so before closing. Its reply decides; without one the write error stands.
    async fn reply_after_failed_write(&mut self, scan: Scan, write_error: ScanError) -> Result<Verdict, ScanError> {
        self.closing = true;
        let limit = Duration::from_secs(2).min(self.io_timeout);
        if !self.name_waiting_verdicts(limit).await {
            return Err(write_error);
        }
        match self.replies.next(&mut self.stream, limit).await {
            Ok(reply) => match parse_scan_reply(&reply, Some(scan.instream)) {
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

    /// Reads the reply of a VERSION sent and not read yet, and names the waiting verdicts with it,
    /// waiting at most `limit`: after a scan failed on our side (a broken or stalled source),
    /// they keep their names. Whether nothing is left unread.
    async fn name_waiting_verdicts(&mut self, limit: Duration) -> bool {
        let Some(version) = self.version_unread else {
            return true;
        };
        self.stream.acknowledge_at_once();
        match self.version_reply(version, limit).await {
            Ok(engine) => {
                self.named(engine);
                true
            }
            Err(_) => false,
        }
    }

    /// A VERSION reply: the line, which must name the engine.
    async fn version_reply(&mut self, command: u64, limit: Duration) -> Result<String, ScanError> {
        let reply = self.replies.next(&mut self.stream, limit).await?;
        self.version_unread = None;
        parse_version_reply(&reply, command)
    }

    /// Streams `body` as one INSTREAM and returns clamd's verdict. With `scan.version`, a VERSION
    /// goes first and names the verdicts waiting before the body is judged.
    async fn instream(&mut self, mut body: ObjectBody, scan: Scan) -> Result<Verdict, ScanError> {
        // What still has to go out before the first chunk.
        let mut command = INSTREAM_START;
        if scan.version.is_some() {
            self.version_unread = scan.version;
            with_timeout(
                self.io_timeout,
                "starting INSTREAM",
                self.stream.write_all(VERSION_THEN_INSTREAM),
            )
            .await?;
            command = b"";
            if body.content_length == 0 {
                // No body packet will carry the ACK (see below).
                self.stream.acknowledge_at_once();
            }
            // In a session clamd writes VERSION's reply in two parts, `<id>: ` and the text, and
            // its Nagle's algorithm holds back whatever it writes next until what it wrote is
            // acknowledged. Left to our delayed ACK that is 40 ms per scan (measured: 4 KiB
            // objects at 0.02 of raw clamd). So our packets carry the ACKs: the body goes out
            // once the reply has begun, and the terminator once the reply is whole; clamd's
            // verdict then follows without waiting. (An empty body has no packet between the
            // two: it waits once.)
            self.replies.begun(&mut self.stream, self.io_timeout).await?;
        }
        let mut pending = Pieces::default();
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
            pending.push(piece);
            while pending.remaining() >= self.chunk_size {
                let chunk = pending.split_to(self.chunk_size);
                if let Err(err) = self.write_chunk(command, chunk).await {
                    return self.reply_after_failed_write(scan, err).await;
                }
                command = b"";
            }
        }
        if streamed != body.content_length {
            return Err(ScanError::LengthMismatch {
                expected: body.content_length,
                streamed,
            });
        }
        if let Some(version) = scan.version {
            // The terminator only once VERSION's reply is whole (see above): the rest goes now.
            let rest = std::mem::take(&mut pending);
            if rest.has_remaining() {
                if let Err(err) = self.write_chunk(command, rest).await {
                    return self.reply_after_failed_write(scan, err).await;
                }
            }
            let engine = self.version_reply(version, self.io_timeout).await?;
            self.named(engine);
        }
        // The rest in one write: a small body goes out in one packet, command to terminator (the
        // body's pieces are written where they are: vectored, never copied; a body in more than
        // ~60 pieces takes more than one write call).
        let mut end = last_frame(command, pending);
        if let Err(err) = with_timeout(self.io_timeout, "ending INSTREAM", self.stream.write_all_buf(&mut end)).await {
            return self.reply_after_failed_write(scan, err).await;
        }
        // clamd scans only now, for up to its MaxScanTime: the scan clock, not the stall clock.
        let reply = self.replies.next(&mut self.stream, self.reply_timeout).await?;
        parse_scan_reply(&reply, Some(scan.instream))
    }
}

/// The engine and definitions a VERSION line names.
fn judge_of(engine: &str) -> Judge {
    let definitions = match Definitions::from_version_reply(engine) {
        Ok(definitions) => definitions,
        Err(err) => {
            // No definitions: a freshness check refuses the verdict if it is clean.
            tracing::warn!(error = %err, "clamd's definitions unknown for this scan");
            None
        }
    };
    Judge {
        engine: Some(engine.to_owned()),
        definitions,
    }
}

/// The ids of one scan's commands: a VERSION first, when it names waiting verdicts.
#[derive(Debug, Clone, Copy)]
struct Scan {
    version: Option<u64>,
    instream: u64,
}

#[async_trait]
impl ScanSession for ClamdSession {
    async fn scan(&mut self, body: ObjectBody) -> Result<Scanned, ScanError> {
        let ask_version = (!self.unconfirmed.is_empty()
            && (self.unconfirmed.len() >= CONFIRM_EVERY || body.content_length >= CONFIRM_BEFORE_BYTES))
            || self.named_at.elapsed() >= NAMED_FRESH_FOR;
        let version = ask_version.then(|| {
            self.next_command += 1;
            self.next_command - 1
        });
        let scan = Scan {
            version,
            instream: self.next_command,
        };
        self.next_command += 1;
        let verdict = match self.instream(body, scan).await {
            Ok(verdict) => verdict,
            Err(err) => {
                // The session ends; the verdicts waiting keep their names if its VERSION came.
                self.name_waiting_verdicts(Duration::from_secs(2).min(self.io_timeout))
                    .await;
                return Err(err);
            }
        };
        let judged_by = match verdict {
            // clamd refused the stream at its size limit before any definitions saw it, and
            // closes the session: nothing to confirm, no later VERSION.
            Verdict::Unscannable {
                reason: QuarantineReason::FileTooLarge,
                ..
            } => {
                self.closing = true;
                JudgedBy::Known(judge_of(&self.engine))
            }
            _ => {
                let (name, named) = oneshot::channel();
                self.unconfirmed.push(name);
                JudgedBy::Confirming(named)
            }
        };
        Ok(Scanned { verdict, judged_by })
    }

    async fn confirm(&mut self) -> Result<(), ScanError> {
        if self.unconfirmed.is_empty() {
            return Ok(());
        }
        let command = self.next_command;
        self.next_command += 1;
        with_timeout(self.io_timeout, "asking VERSION", self.stream.write_all(VERSION)).await?;
        // No packet of ours follows to acknowledge the first part of the two-part reply (see
        // `instream`): the kernel acknowledges it at once instead of delaying the ACK 40 ms.
        self.stream.acknowledge_at_once();
        let engine = self.version_reply(command, self.io_timeout).await?;
        self.named(engine);
        Ok(())
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
    use std::sync::{Arc, Mutex};

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

    const ENGINE: &str = "ClamAV 1.4.6/27399/Sat Oct 31 10:00:00 2026";
    const RELOADED: &str = "ClamAV 1.4.6/27400/Sun Nov  1 10:00:00 2026";

    /// How the fake clamd answers.
    struct Script {
        /// What VERSION answers; a test changes it to play a reload.
        engine: Arc<Mutex<&'static str>>,
        /// The verdict after `<id>: `.
        verdict: &'static str,
        /// Added to the id of the verdict: non-zero plays a session out of step.
        id_offset: u64,
        /// How long a scan takes after the stream ended.
        scan_time: Duration,
    }

    impl Default for Script {
        fn default() -> Self {
            Self {
                engine: Arc::new(Mutex::new(ENGINE)),
                verdict: "stream: OK",
                id_offset: 0,
                scan_time: Duration::ZERO,
            }
        }
    }

    /// A fake clamd on 127.0.0.1:0 serving one session as `script` says: VERSION answered in two
    /// writes as clamd does, INSTREAM read to its terminator and judged. Returns the commands it
    /// was sent after the session start (`VERSION`, `INSTREAM <bytes>`) and the wire bytes.
    async fn fake_clamd(script: Script) -> (Clamd, tokio::task::JoinHandle<(Vec<String>, Vec<u8>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = ClamdAddress::Tcp(listener.local_addr().unwrap().to_string());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut wire = Vec::new();
            let mut at = 0;
            let (mut commands, mut id) = (Vec::new(), 0u64);
            // Bytes `wire[at..at + n]`, reading as needed; `None` at the end of the connection.
            async fn take(
                socket: &mut tokio::net::TcpStream,
                wire: &mut Vec<u8>,
                at: &mut usize,
                n: usize,
            ) -> Option<Vec<u8>> {
                let mut buf = [0u8; 8192];
                while wire.len() < *at + n {
                    let read = socket.read(&mut buf).await.ok()?;
                    if read == 0 {
                        return None;
                    }
                    wire.extend_from_slice(&buf[..read]);
                }
                *at += n;
                Some(wire[*at - n..*at].to_vec())
            }
            let mut session_start = 0;
            loop {
                let mut name = Vec::new();
                loop {
                    let Some(byte) = take(&mut socket, &mut wire, &mut at, 1).await else {
                        return (commands, wire.split_off(session_start));
                    };
                    if byte[0] == 0 {
                        break;
                    }
                    name.push(byte[0]);
                }
                match &name[..] {
                    b"zIDSESSION" => {}
                    b"zVERSION" => {
                        id += 1;
                        let engine = *script.engine.lock().unwrap();
                        socket.write_all(format!("{id}: ").as_bytes()).await.unwrap();
                        socket.write_all(format!("{engine}\0").as_bytes()).await.unwrap();
                        if id == 1 {
                            session_start = at;
                        } else {
                            commands.push("VERSION".to_owned());
                        }
                    }
                    b"zINSTREAM" => {
                        id += 1;
                        let mut streamed = 0;
                        loop {
                            let Some(len) = take(&mut socket, &mut wire, &mut at, 4).await else {
                                return (commands, wire.split_off(session_start));
                            };
                            let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
                            if len == 0 {
                                break;
                            }
                            take(&mut socket, &mut wire, &mut at, len).await;
                            streamed += len;
                        }
                        commands.push(format!("INSTREAM {streamed}"));
                        tokio::time::sleep(script.scan_time).await;
                        let reply = format!("{}: {}\0", id + script.id_offset, script.verdict);
                        let _ = socket.write_all(reply.as_bytes()).await;
                    }
                    other => panic!("unexpected command {:?}", String::from_utf8_lossy(other)),
                }
            }
        });
        (Clamd::new(address, 1024, Duration::from_secs(5)), server)
    }

    #[tokio::test]
    async fn instream_frames_the_body_in_chunks_and_a_version_after_it_names_its_definitions() {
        let (clamd, server) = fake_clamd(Script::default()).await;
        let mut session = clamd.connect().await.unwrap();
        let payload: &'static [u8] = Box::leak(vec![7u8; 2500].into_boxed_slice());
        let scanned = session
            .scan(body(vec![&payload[..100], &payload[100..]], 2500))
            .await
            .unwrap();
        assert_eq!(scanned.verdict, Verdict::Clean);
        session.confirm().await.unwrap();
        let outcome = scanned.outcome().await.unwrap();
        assert_eq!(outcome.engine.as_deref(), Some(ENGINE));
        assert_eq!(outcome.definitions.map(|d| d.version), Some(27399));
        drop(session);
        let (commands, wire) = server.await.unwrap();
        assert_eq!(commands, ["INSTREAM 2500", "VERSION"]);
        let mut expected = b"zINSTREAM\0".to_vec();
        for chunk in [1024usize, 1024, 452] {
            expected.extend_from_slice(&(chunk as u32).to_be_bytes());
            expected.extend(std::iter::repeat_n(7u8, chunk));
        }
        expected.extend_from_slice(&[0, 0, 0, 0]);
        expected.extend_from_slice(b"zVERSION\0");
        assert_eq!(wire, expected);
    }

    #[tokio::test]
    async fn a_reload_between_the_versions_around_a_verdict_leaves_it_unnamed() {
        let script = Script::default();
        let engine = script.engine.clone();
        let (clamd, _server) = fake_clamd(script).await;
        let mut session = clamd.connect().await.unwrap();
        let before = session.scan(body(vec![b"abc"], 3)).await.unwrap();
        *engine.lock().unwrap() = RELOADED;
        session.confirm().await.unwrap();
        let result = before.outcome().await;
        assert!(
            matches!(&result, Err(ScanError::DefinitionsChanged { before, after }) if before == ENGINE && after == RELOADED),
            "{result:?}"
        );
        // The next verdict is named by the new engine.
        let after = session.scan(body(vec![b"abc"], 3)).await.unwrap();
        session.confirm().await.unwrap();
        assert_eq!(
            after.outcome().await.unwrap().definitions.map(|d| d.version),
            Some(27400)
        );
    }

    /// `scanned` still waits for a VERSION after it to name its definitions.
    fn assert_unnamed(scanned: &mut Scanned) {
        let JudgedBy::Confirming(named) = &mut scanned.judged_by else {
            panic!("named before a VERSION followed the verdict");
        };
        assert!(named.try_recv().is_err(), "named before a VERSION followed the verdict");
    }

    #[tokio::test]
    async fn verdicts_share_a_version_asked_before_a_later_scan() {
        let (clamd, server) = fake_clamd(Script::default()).await;
        let mut session = clamd.connect().await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..CONFIRM_EVERY {
            waiting.push(session.scan(body(vec![b"abc"], 3)).await.unwrap());
        }
        // Unnamed until a VERSION follows them.
        assert_unnamed(&mut waiting[0]);
        // The next scan asks first: every waiting verdict is named, its own waits.
        let mut last = session.scan(body(vec![b"abc"], 3)).await.unwrap();
        assert_unnamed(&mut last);
        for verdict in waiting {
            assert_eq!(verdict.outcome().await.unwrap().engine.as_deref(), Some(ENGINE));
        }
        // A long body asks first whenever a verdict waits.
        let long: &'static [u8] = Box::leak(vec![7u8; CONFIRM_BEFORE_BYTES as usize].into_boxed_slice());
        session.scan(body(vec![long], long.len() as u64)).await.unwrap();
        assert_eq!(last.outcome().await.unwrap().engine.as_deref(), Some(ENGINE));
        drop(session);
        let (commands, _) = server.await.unwrap();
        let mut expected = vec!["INSTREAM 3"; CONFIRM_EVERY];
        expected.extend(["VERSION", "INSTREAM 3", "VERSION"]);
        let long = format!("INSTREAM {CONFIRM_BEFORE_BYTES}");
        expected.push(&long);
        assert_eq!(commands, expected);
    }

    #[tokio::test]
    async fn a_session_idle_past_its_last_version_asks_again_before_it_scans() {
        let script = Script::default();
        let engine = script.engine.clone();
        let (clamd, server) = fake_clamd(script).await;
        let mut session = clamd.connect().await.unwrap();
        session.scan_and_confirm(body(vec![b"abc"], 3)).await.unwrap();
        // clamd reloads while the session idles.
        tokio::time::sleep(NAMED_FRESH_FOR + Duration::from_millis(100)).await;
        *engine.lock().unwrap() = RELOADED;
        let outcome = session.scan_and_confirm(body(vec![b"abc"], 3)).await.unwrap();
        assert_eq!(outcome.definitions.map(|d| d.version), Some(27400));
        drop(session);
        let (commands, _) = server.await.unwrap();
        assert_eq!(commands, ["INSTREAM 3", "VERSION", "VERSION", "INSTREAM 3", "VERSION"]);
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_after_its_version_leaves_the_waiting_verdicts_named() {
        let (clamd, _server) = fake_clamd(Script::default()).await;
        let mut session = clamd.connect().await.unwrap();
        let waiting = session.scan(body(vec![b"abc"], 3)).await.unwrap();
        // A long body asks VERSION first, then its source fails.
        let broken = ObjectBody {
            content_length: CONFIRM_BEFORE_BYTES,
            chunks: futures::stream::iter([
                Ok(Bytes::from_static(b"abc")),
                Err(avscan_actors::ports::StoreError::Failed {
                    operation: "GetObject",
                    bucket: "b".into(),
                    key: "k".into(),
                    detail: "connection reset".into(),
                }),
            ])
            .boxed(),
        };
        assert!(matches!(session.scan(broken).await, Err(ScanError::Source(_))));
        drop(session);
        assert_eq!(waiting.outcome().await.unwrap().engine.as_deref(), Some(ENGINE));
    }

    #[tokio::test]
    async fn verdicts_of_a_session_that_ends_before_naming_them_are_errors() {
        let (clamd, _server) = fake_clamd(Script::default()).await;
        let mut session = clamd.connect().await.unwrap();
        let scanned = session.scan(body(vec![b"abc"], 3)).await.unwrap();
        drop(session);
        assert!(scanned.outcome().await.is_err());
    }

    #[tokio::test]
    async fn a_short_body_is_an_error_not_a_verdict() {
        let (clamd, _server) = fake_clamd(Script::default()).await;
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
        let (mut clamd, _server) = fake_clamd(Script::default()).await;
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
        let (clamd, _server) = fake_clamd(Script {
            id_offset: 5,
            ..Script::default()
        })
        .await;
        let mut session = clamd.connect().await.unwrap();
        assert!(session.scan(body(vec![b"abc"], 3)).await.is_err());
    }

    #[tokio::test]
    async fn a_scan_longer_than_the_stall_limit_but_within_max_scan_time_gets_its_verdict() {
        let (clamd, _server) = fake_clamd(Script {
            scan_time: Duration::from_millis(800),
            ..Script::default()
        })
        .await;
        let clamd = Clamd {
            io_timeout: Duration::from_millis(200),
            ..clamd
        }
        .with_max_scan_time(Duration::from_secs(2));
        let mut session = clamd.connect().await.unwrap();
        let outcome = session.scan_and_confirm(body(vec![b"abc"], 3)).await.unwrap();
        assert_eq!(outcome.verdict, Verdict::Clean);
    }

    #[tokio::test]
    async fn a_scan_past_max_scan_time_is_a_timeout_not_a_verdict() {
        let (clamd, _server) = fake_clamd(Script {
            scan_time: Duration::from_secs(3),
            ..Script::default()
        })
        .await;
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
            socket.write_all(format!("1: {RELOADED}\0").as_bytes()).await.unwrap();
            // Scans whose verdicts wait for a VERSION.
            for id in 2..2 + CONFIRM_EVERY {
                let start = received.len();
                until(&mut socket, &mut received, &mut buf, start, |r| {
                    r.ends_with(&[0, 0, 0, 0])
                })
                .await;
                socket
                    .write_all(format!("{id}: stream: OK\0").as_bytes())
                    .await
                    .unwrap();
            }
            // The next scan asks VERSION first.
            let start = received.len();
            until(&mut socket, &mut received, &mut buf, start, |r| {
                r.starts_with(b"zVERSION\0zINSTREAM\0")
            })
            .await;
            let version = 2 + CONFIRM_EVERY;
            socket.write_all(format!("{version}: ").as_bytes()).await.unwrap();
            // The rest of the reply only once the client sent something after the first part:
            // the whole body, and not the terminator.
            let body_from = start + b"zVERSION\0zINSTREAM\0".len();
            until(&mut socket, &mut received, &mut buf, body_from, |r| r.len() >= 4 + 100).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let more = socket.try_read(&mut buf).unwrap_or(0);
            received.extend_from_slice(&buf[..more]);
            assert_eq!(
                received.len(),
                body_from + 4 + 100,
                "the terminator went out before clamd's VERSION reply was whole: Nagle would hold the verdict"
            );
            socket.write_all(format!("{RELOADED}\0").as_bytes()).await.unwrap();
            // The verdict only once the client sent the terminator after the reply's second part.
            let text_seen = received.len();
            until(&mut socket, &mut received, &mut buf, text_seen, |r| r == [0, 0, 0, 0]).await;
            socket
                .write_all(format!("{}: stream: OK\0", version + 1).as_bytes())
                .await
                .unwrap();
        });
        let clamd = Clamd::new(address, 1024, Duration::from_secs(2));
        let mut session = clamd.connect().await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..CONFIRM_EVERY {
            waiting.push(session.scan(body(vec![b"abc"], 3)).await.unwrap());
        }
        let small: &'static [u8] = &[7u8; 100];
        let last = session.scan(body(vec![small], 100)).await.unwrap();
        assert_eq!(last.verdict, Verdict::Clean);
        server.await.unwrap();
        for verdict in waiting {
            assert_eq!(
                verdict.outcome().await.unwrap().definitions.map(|d| d.version),
                Some(27400)
            );
        }
    }
}

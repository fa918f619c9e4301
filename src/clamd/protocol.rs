//! clamd's wire protocol in z-mode, apart from the session that drives it: the bytes of a command
//! (`z<COMMAND>\0`) and of an INSTREAM body (chunks of a 4-byte big-endian length and the bytes,
//! then a zero length), reading one reply, and parsing replies into verdicts. The framing and the
//! parsers are pure; `read_reply` reads a stream and `with_timeout` bounds any I/O step. Used by the client in
//! `mod.rs` (one-off commands, the session handshake) and by `session.rs` (INSTREAM);
//! [`parse_scan_reply`] is public for the property tests.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;

use avscan_actors::model::{QuarantineReason, Verdict};
use avscan_actors::ports::ScanError;
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest reply we accept; clamd's are one short line.
const MAX_REPLY: usize = 4096;

/// Starts a session and asks for the engine's version as the session's command 1.
pub(super) const SESSION_START: &[u8] = b"zIDSESSION\0zVERSION\0";

/// Starts streaming a body; chunks and the terminator follow.
pub(super) const INSTREAM_START: &[u8] = b"zINSTREAM\0";

/// Asks which engine (and definitions) clamd has loaded.
pub(super) const VERSION: &[u8] = b"zVERSION\0";

/// VERSION, then INSTREAM (chunks and the terminator follow): a scan that first names the
/// verdicts waiting in its session (see `session.rs`).
pub(super) const VERSION_THEN_INSTREAM: &[u8] = b"zVERSION\0zINSTREAM\0";

/// A zero-length chunk: the body is complete and clamd replies.
pub(super) const INSTREAM_END: [u8; 4] = [0, 0, 0, 0];

/// One command in z-mode, e.g. `zPING\0`.
pub(super) fn command_frame(command: &str) -> Vec<u8> {
    format!("z{command}\0").into_bytes()
}

/// An INSTREAM command followed by the header of one chunk of `len` bytes and nothing else:
/// clamd compares a chunk's declared length with what is left of its `StreamMaxLength` before it
/// reads the chunk (`handle_stream` in clamd's `server-th.c`), so this asks whether it would
/// take a stream that long without sending it.
pub(super) fn stream_limit_probe_frame(len: u32) -> Vec<u8> {
    let mut frame = INSTREAM_START.to_vec();
    frame.extend_from_slice(&len.to_be_bytes());
    frame
}

/// What clamd sent in answer to [`stream_limit_probe_frame`] before it closed the connection:
/// nothing (it waited for the chunk until we ended the connection: the length is admitted) or
/// its size-limit error (refused).
pub(super) fn parse_stream_limit_reply(reply: &[u8]) -> Result<bool, ScanError> {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n']);
    if text.is_empty() {
        Ok(true)
    } else if text.starts_with("INSTREAM size limit exceeded") {
        Ok(false)
    } else {
        Err(ScanError::UnexpectedReply(text.to_owned()))
    }
}

/// One INSTREAM chunk: its length as 4 big-endian bytes, then the bytes, without copying them.
pub(super) fn chunk_frame(chunk: Pieces) -> impl Buf {
    let header = (chunk.remaining() as u32).to_be_bytes();
    Buf::chain(std::io::Cursor::new(header), chunk)
}

/// `command` (may be empty), the body's last chunk (none when it is empty) and the terminator:
/// one write.
pub(super) fn last_frame(command: &'static [u8], rest: Pieces) -> impl Buf {
    let mut header = std::io::Cursor::new((rest.remaining() as u32).to_be_bytes());
    if !rest.has_remaining() {
        header.set_position(4);
    }
    Buf::chain(command, header).chain(rest).chain(&INSTREAM_END[..])
}

/// A body's bytes as they came, in pieces, and written as they are (vectored writes): a chunk
/// frame is cut from them without copying a byte. Every body used to be copied into one buffer,
/// and a small body (or a large one's last chunk) once more into its single write.
#[derive(Default)]
pub(super) struct Pieces {
    parts: VecDeque<Bytes>,
    len: usize,
}

impl Pieces {
    pub(super) fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.parts.push_back(piece);
        }
    }

    /// The first `at` bytes (at most all there are) as pieces of their own.
    pub(super) fn split_to(&mut self, at: usize) -> Pieces {
        let mut front = Pieces::default();
        while front.len < at {
            let Some(mut part) = self.parts.pop_front() else { break };
            let wanted = at - front.len;
            if part.len() > wanted {
                self.parts.push_front(part.split_off(wanted));
            }
            self.len -= part.len();
            front.push(part);
        }
        front
    }
}

impl Buf for Pieces {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |part| part)
    }

    fn advance(&mut self, mut count: usize) {
        while count > 0 {
            let part = self.parts.front_mut().expect("advanced past the end of the pieces");
            let step = count.min(part.len());
            part.advance(step);
            self.len -= step;
            count -= step;
            if part.is_empty() {
                self.parts.pop_front();
            }
        }
    }

    fn chunks_vectored<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slice, part) in slices.iter_mut().zip(&self.parts) {
            *slice = IoSlice::new(part);
            filled += 1;
        }
        filled
    }
}

/// Runs one I/O step for at most `limit`; `what` names the step in the error.
pub(super) async fn with_timeout<T>(
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
pub(super) async fn read_reply(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> Result<String, ScanError> {
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

/// The replies of one session, read in order. A read may return more than one reply (a scan's
/// VERSION and INSTREAM replies can arrive together): what follows the first is kept for the
/// next call.
#[derive(Debug, Default)]
pub(super) struct Replies {
    pending: Vec<u8>,
}

impl Replies {
    /// The next reply: up to a NUL or a newline, as [`read_reply`]; waits at most `limit`.
    pub(super) async fn next(
        &mut self,
        stream: &mut (impl AsyncRead + Unpin),
        limit: Duration,
    ) -> Result<String, ScanError> {
        let read = async {
            let mut buf = [0u8; 256];
            loop {
                if let Some(end) = self.pending.iter().position(|b| *b == 0 || *b == b'\n') {
                    let reply: Vec<u8> = self.pending.drain(..=end).collect();
                    return Ok(String::from_utf8_lossy(&reply[..end]).into_owned());
                }
                if self.pending.len() >= MAX_REPLY {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "clamd reply too long",
                    ));
                }
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "clamd closed the connection",
                    ));
                }
                self.pending.extend_from_slice(&buf[..n]);
            }
        };
        with_timeout(limit, "reading reply", read).await
    }

    /// Waits until the next reply has begun to arrive (at least one byte of it is here), for at
    /// most `limit`; reads nothing more.
    pub(super) async fn begun(
        &mut self,
        stream: &mut (impl AsyncRead + Unpin),
        limit: Duration,
    ) -> Result<(), ScanError> {
        if !self.pending.is_empty() {
            return Ok(());
        }
        let read = async {
            let mut buf = [0u8; 256];
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "clamd closed the connection",
                ));
            }
            self.pending.extend_from_slice(&buf[..n]);
            Ok(())
        };
        with_timeout(limit, "waiting for a reply", read).await
    }

    /// Whether bytes of a reply nobody asked for are waiting: the session is out of step.
    pub(super) fn has_unread(&self) -> bool {
        !self.pending.is_empty()
    }
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

/// Parses `zVERSION`'s reply in a session, e.g. `1: ClamAV 1.4.6/27000/Sun Nov 29 …`: the id
/// must be `command`'s.
pub(super) fn parse_version_reply(reply: &str, command: u64) -> Result<String, ScanError> {
    let version = reply.strip_prefix(&format!("{command}: ")).unwrap_or_default();
    if version.starts_with("ClamAV ") {
        Ok(version.to_owned())
    } else {
        Err(ScanError::UnexpectedReply(reply.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn version_replies_must_carry_their_command_id() {
        assert_eq!(
            parse_version_reply("4: ClamAV 1.4.6/27400/Sun Nov  1 10:00:00 2026", 4).unwrap(),
            "ClamAV 1.4.6/27400/Sun Nov  1 10:00:00 2026"
        );
        for bad in ["ClamAV 1.4.6", "3: ClamAV 1.4.6", "4: stream: OK", "4:ClamAV 1.4.6"] {
            assert!(parse_version_reply(bad, 4).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn replies_that_arrive_together_are_read_one_at_a_time() {
        let mut wire: &[u8] = b"2: ClamAV 1.4.6\x003: stream: OK\x00";
        let mut replies = Replies::default();
        let limit = Duration::from_secs(1);
        assert_eq!(replies.next(&mut wire, limit).await.unwrap(), "2: ClamAV 1.4.6");
        assert!(replies.has_unread());
        assert_eq!(replies.next(&mut wire, limit).await.unwrap(), "3: stream: OK");
        assert!(!replies.has_unread());
        assert!(
            replies.next(&mut wire, limit).await.is_err(),
            "end of stream is not a reply"
        );
    }

    #[test]
    fn the_stream_limit_probe_declares_one_chunk_and_reads_silence_as_admitted() {
        assert_eq!(
            stream_limit_probe_frame(0x0102_0304),
            b"zINSTREAM\0\x01\x02\x03\x04".to_vec()
        );
        assert!(parse_stream_limit_reply(b"").unwrap());
        assert!(!parse_stream_limit_reply(b"INSTREAM size limit exceeded. ERROR\0").unwrap());
        assert!(parse_stream_limit_reply(b"UNKNOWN COMMAND\0").is_err());
        assert!(parse_stream_limit_reply(b"COMMAND READ TIMED OUT\n").is_err());
    }

    /// Drains `frame` as a vectored writer would: up to `slices` slices a call (none: one
    /// `chunk()` at a time, as a writer without vectored writes), of which it takes at most
    /// `take` bytes.
    fn written(mut frame: impl Buf, slices: usize, take: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        while frame.has_remaining() {
            let mut io = vec![IoSlice::new(&[]); slices];
            let filled = match slices {
                0 => {
                    io.push(IoSlice::new(frame.chunk()));
                    1
                }
                _ => frame.chunks_vectored(&mut io),
            };
            assert!(filled > 0 && !io[0].is_empty(), "a frame with bytes left offers none");
            let before = wire.len();
            for slice in &io[..filled] {
                let room = take - (wire.len() - before);
                wire.extend_from_slice(&slice[..slice.len().min(room)]);
            }
            let step = wire.len() - before;
            frame.advance(step);
        }
        wire
    }

    proptest::proptest! {
        /// Cutting chunks from the pieces as the session does, and writing them in partial
        /// vectored writes, puts exactly INSTREAM's framing of the body on the wire.
        #[test]
        fn pieces_frame_the_body_exactly_however_it_arrived_and_is_written(
            sizes in proptest::collection::vec(0usize..300, 0..20),
            chunk_size in 1usize..700,
            slices in 0usize..6,
            take in 1usize..500,
        ) {
            let body: Vec<u8> = (0..sizes.iter().sum::<usize>()).map(|i| i as u8).collect();
            let mut pieces = Pieces::default();
            let mut wire = Vec::new();
            let (mut at, mut command) = (0, INSTREAM_START);
            for size in sizes {
                pieces.push(Bytes::copy_from_slice(&body[at..at + size]));
                at += size;
                while pieces.remaining() >= chunk_size {
                    let chunk = pieces.split_to(chunk_size);
                    wire.extend(written(Buf::chain(command, chunk_frame(chunk)), slices, take));
                    command = b"";
                }
            }
            wire.extend(written(last_frame(command, pieces), slices, take));

            let mut expected = INSTREAM_START.to_vec();
            let mut rest = &body[..];
            while !rest.is_empty() {
                let (chunk, after) = rest.split_at(rest.len().min(chunk_size));
                expected.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
                expected.extend_from_slice(chunk);
                rest = after;
            }
            expected.extend_from_slice(&INSTREAM_END);
            proptest::prop_assert_eq!(wire, expected);
        }
    }
}

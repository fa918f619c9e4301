//! A defence against a known clamd hole (Cisco-Talos/clamav#633): a zip member whose inflated
//! size exceeds clamd's `MaxFileSize` is skipped silently, and the scan answers `stream: OK` even
//! with `AlertExceedsMax yes`. It holds wherever clamd meets such a zip: at the top, after junk,
//! inside a tar, a gzip or another zip.
//!
//! The guard watches the bytes on their way to clamd, as the scanner streams them, and finds
//! every zip entry clamd could reach: local file headers anywhere in the stream, and, because a
//! deflated member or a gzip stream hides what is inside, in their inflated output too (nested
//! up to `MAX_DEPTH`). A member that declares, or inflates to, more than the limit makes the
//! object unscannable. The scanner only consults it when clamd said clean, so it can turn a
//! clean verdict into "unscannable", never a detection into clean.
//!
//! Not covered: containers other than zip and gzip (bzip2, xz, 7z, rar, ...) that hold such a
//! zip, and zip members compressed with other methods than deflate (only their declared size is
//! checked). The README lists this under "Guarantees".

use std::sync::{Arc, Mutex};

use flate2::{Decompress, FlushDecompress, Status};
use futures::StreamExt;

use crate::model::{QuarantineReason, ScanOutcome, Verdict};
use crate::ports::ObjectBody;

/// Deeper nesting than this is not followed (clamd's own default MaxRecursion is 17).
pub(crate) const MAX_DEPTH: usize = 8;

const LOCAL_HEADER: &[u8; 4] = b"PK\x03\x04";
const LOCAL_HEADER_LEN: usize = 30;
const CENTRAL_HEADER: &[u8; 4] = b"PK\x01\x02";
const CENTRAL_HEADER_LEN: usize = 46;
const GZIP_MAGIC: &[u8; 3] = b"\x1f\x8b\x08";
/// Zip compression methods clamd knows; anything else after "PK\x03\x04" is not a header.
const KNOWN_METHODS: [u16; 9] = [0, 8, 9, 12, 14, 93, 95, 98, 99];

/// Why the guard will not let a clean verdict stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFinding {
    /// How deep the member sits: 0 in the object itself, 1 inside a member or gzip, ….
    pub depth: usize,
    /// Declared or inflated size of the member, at least.
    pub size: u64,
}

impl ArchiveFinding {
    /// Reported as the signature of the unscannable verdict.
    pub const SIGNATURE: &'static str = "Avscan.Archive.MemberExceedsLimit";
}

/// Watches one object's bytes; feed every chunk in order, then ask [`ArchiveGuard::finding`].
pub struct ArchiveGuard {
    level: Level,
    finding: Option<ArchiveFinding>,
}

impl ArchiveGuard {
    /// `member_limit`: the largest member clamd scans completely (its `MaxFileSize`).
    pub fn new(member_limit: u64) -> Self {
        Self {
            level: Level::new(0, member_limit),
            finding: None,
        }
    }

    /// Looks at the next bytes of the object.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.finding.is_none() {
            self.finding = self.level.feed(bytes);
        }
    }

    /// What the guard found so far that clamd would skip, if anything.
    pub fn finding(&self) -> Option<&ArchiveFinding> {
        self.finding.as_ref()
    }
}

/// Wraps `body` so that every chunk passes a guard on its way to the engine; the returned
/// [`ArchiveCheck`] then applies what the guard saw to the engine's verdict. One way for the
/// pipeline's scanners and for `avscan scan` alike.
pub fn check_while_streaming(body: ObjectBody, member_limit: u64) -> (ObjectBody, ArchiveCheck) {
    let guard = Arc::new(Mutex::new(ArchiveGuard::new(member_limit)));
    let chunks = body
        .chunks
        .inspect({
            let guard = guard.clone();
            move |chunk| {
                if let Ok(bytes) = chunk {
                    guard.lock().unwrap_or_else(|p| p.into_inner()).feed(bytes);
                }
            }
        })
        .boxed();
    let guarded = ObjectBody {
        content_length: body.content_length,
        chunks,
    };
    (guarded, ArchiveCheck(guard))
}

/// What the guard saw of one body, to be applied to the engine's verdict on it.
pub struct ArchiveCheck(Arc<Mutex<ArchiveGuard>>);

impl ArchiveCheck {
    /// A clean verdict does not stand when the guard saw a member the engine skips.
    pub fn apply(&self, mut outcome: ScanOutcome) -> ScanOutcome {
        let finding = self.0.lock().unwrap_or_else(|p| p.into_inner()).finding().cloned();
        if let (Verdict::Clean, Some(finding)) = (&outcome.verdict, finding) {
            tracing::warn!(
                depth = finding.depth,
                size = finding.size,
                "archive member larger than clamd scans; unscannable, not clean"
            );
            outcome.verdict = Verdict::Unscannable {
                reason: QuarantineReason::Unscannable,
                signature: Some(ArchiveFinding::SIGNATURE.into()),
            };
        }
        outcome
    }
}

/// One byte stream: the object itself, or the inflated output of a member or gzip inside it.
struct Level {
    depth: usize,
    limit: u64,
    /// Bytes held back until a possible header in them is complete.
    pending: Vec<u8>,
    /// The member or gzip stream being inflated, if any.
    inflating: Option<Box<Inflating>>,
}

struct Inflating {
    decompress: Decompress,
    /// Only zip members are held to the limit: clamd alerts for a gzip over it itself.
    limited: bool,
    inner: Level,
}

/// What the bytes at some offset are.
enum Header {
    /// Not a header, or too short to tell yet (`None` from [`Level::header_at`] means that).
    No,
    Zip {
        len: usize,
        method: u16,
        declared: u64,
    },
    /// A zip central directory entry: sizes known even when the local header had none.
    Central {
        len: usize,
        declared: u64,
    },
    Gzip {
        len: usize,
    },
}

impl Level {
    fn new(depth: usize, limit: u64) -> Self {
        Self {
            depth,
            limit,
            pending: Vec::new(),
            inflating: None,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Option<ArchiveFinding> {
        if let Some(found) = self.inflate(bytes) {
            return Some(found);
        }
        self.scan_raw(bytes)
    }

    /// Looks for headers in the raw bytes of this level, starting an inflater for a deflated
    /// member or a gzip stream when none is running.
    fn scan_raw(&mut self, bytes: &[u8]) -> Option<ArchiveFinding> {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        // Up to here the bytes are done with; a signature may still start in the last three.
        let mut done = self.pending.len().saturating_sub(3);
        while let Some(offset) = memchr::memchr2(b'P', 0x1f, &self.pending[at..]) {
            let start = at + offset;
            let (len, inflate, declared) = match Self::header_at(&self.pending[start..]) {
                None => {
                    // A header cut by the chunk boundary: keep it for the next chunk.
                    done = start;
                    at = start;
                    break;
                }
                Some(Header::No) => {
                    at = start + 1;
                    continue;
                }
                Some(Header::Zip { len, method, declared }) => (len, (method == 8).then_some(true), declared),
                Some(Header::Central { len, declared }) => (len, None, declared),
                Some(Header::Gzip { len }) => (len, Some(false), 0),
            };
            if declared > self.limit {
                return Some(ArchiveFinding {
                    depth: self.depth,
                    size: declared,
                });
            }
            at = start + len;
            if let Some(limited) = inflate {
                if self.inflating.is_none() && self.depth < MAX_DEPTH {
                    self.inflating = Some(Box::new(Inflating {
                        decompress: Decompress::new(false),
                        limited,
                        inner: Level::new(self.depth + 1, self.limit),
                    }));
                    let data = self.pending[at..].to_vec();
                    if let Some(found) = self.inflate(&data) {
                        return Some(found);
                    }
                }
            }
            if at >= self.pending.len() {
                break;
            }
        }
        self.pending.drain(..done.max(at).min(self.pending.len()));
        if self.pending.len() > 64 * 1024 {
            // A "header" whose name never ends: not a header.
            self.pending.clear();
        }
        None
    }

    /// Runs the current inflater over `bytes`; returns a finding from it or its inner level.
    fn inflate(&mut self, mut bytes: &[u8]) -> Option<ArchiveFinding> {
        let inflating = self.inflating.as_mut()?;
        let mut out = [0u8; 32 * 1024];
        while !bytes.is_empty() {
            let before_in = inflating.decompress.total_in();
            let before_out = inflating.decompress.total_out();
            let status = inflating.decompress.decompress(bytes, &mut out, FlushDecompress::None);
            let consumed = (inflating.decompress.total_in() - before_in) as usize;
            let produced = (inflating.decompress.total_out() - before_out) as usize;
            bytes = &bytes[consumed..];
            if inflating.limited && inflating.decompress.total_out() > self.limit {
                return Some(ArchiveFinding {
                    depth: self.depth,
                    size: inflating.decompress.total_out(),
                });
            }
            if let Some(found) = inflating.inner.feed(&out[..produced]) {
                return Some(found);
            }
            match status {
                Ok(Status::StreamEnd) | Err(_) => {
                    // The member ended, or was not deflate after all: back to raw scanning,
                    // which the caller does over the same bytes anyway.
                    self.inflating = None;
                    return None;
                }
                Ok(_) if consumed == 0 && produced == 0 => return None,
                Ok(_) => {}
            }
        }
        None
    }

    /// Parses the header starting at `bytes[0]`; `None` when more bytes are needed to tell.
    fn header_at(bytes: &[u8]) -> Option<Header> {
        if bytes[0] == b'P' {
            Self::zip_header_at(bytes)
        } else {
            Self::gzip_header_at(bytes)
        }
    }

    fn zip_header_at(bytes: &[u8]) -> Option<Header> {
        let signature = &bytes[..bytes.len().min(4)];
        let central = CENTRAL_HEADER.starts_with(signature);
        if !LOCAL_HEADER.starts_with(signature) && !central {
            return Some(Header::No);
        }
        let fixed = if central { CENTRAL_HEADER_LEN } else { LOCAL_HEADER_LEN };
        if bytes.len() < fixed {
            return None;
        }
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        // Field offsets differ by the central entry's "version made by" (two bytes) and, after
        // the name lengths, its comment length, disk, attributes and offset.
        let shift = if central { 2 } else { 0 };
        let version = u16_at(4 + shift);
        let method = u16_at(8 + shift);
        let name_len = u16_at(26 + shift) as usize;
        let extra_len = u16_at(28 + shift) as usize;
        let comment_len = if central { u16_at(32) as usize } else { 0 };
        // Plausibility, so that random bytes are not taken for a header.
        if version > 63 || !KNOWN_METHODS.contains(&method) || name_len == 0 {
            return Some(Header::No);
        }
        let len = fixed + name_len + extra_len + comment_len;
        if bytes.len() < len {
            return None;
        }
        let mut declared = u64::from(u32_at(22 + shift));
        if declared == u64::from(u32::MAX) {
            // Zip64: the real size is in the extra field 0x0001; absent means unknown.
            let extra = &bytes[fixed + name_len..fixed + name_len + extra_len];
            declared = zip64_size(extra).unwrap_or(u64::MAX);
        }
        Some(if central {
            Header::Central { len, declared }
        } else {
            Header::Zip { len, method, declared }
        })
    }

    /// gzip: magic and deflate, then flags; the header may carry extra, name, comment, crc.
    fn gzip_header_at(bytes: &[u8]) -> Option<Header> {
        let signature = &bytes[..bytes.len().min(3)];
        if !GZIP_MAGIC.starts_with(signature) {
            return Some(Header::No);
        }
        if bytes.len() < 10 {
            return None;
        }
        let flags = bytes[3];
        if flags & 0xe0 != 0 {
            return Some(Header::No);
        }
        let mut len = 10;
        if flags & 0x04 != 0 {
            let extra = bytes.get(10..12)?;
            len += 2 + u16::from_le_bytes([extra[0], extra[1]]) as usize;
        }
        for flag in [0x08, 0x10] {
            if flags & flag != 0 {
                let end = memchr::memchr(0, bytes.get(len..)?)?;
                len += end + 1;
            }
        }
        if flags & 0x02 != 0 {
            len += 2;
        }
        (bytes.len() >= len).then_some(Header::Gzip { len })
    }
}

fn zip64_size(mut extra: &[u8]) -> Option<u64> {
    while extra.len() >= 4 {
        let id = u16::from_le_bytes([extra[0], extra[1]]);
        let size = u16::from_le_bytes([extra[2], extra[3]]) as usize;
        let data = extra.get(4..4 + size)?;
        if id == 1 && data.len() >= 8 {
            return Some(u64::from_le_bytes(data[..8].try_into().ok()?));
        }
        extra = &extra[4 + size..];
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const LIMIT: u64 = 1024 * 1024;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// A zip local entry (header + data) with `declared` as its uncompressed size.
    fn zip_entry(name: &str, data: &[u8], method: u16, declared: u32) -> Vec<u8> {
        let payload = if method == 8 { deflate(data) } else { data.to_vec() };
        let mut entry = Vec::new();
        entry.extend_from_slice(LOCAL_HEADER);
        entry.extend_from_slice(&20u16.to_le_bytes()); // version needed
        entry.extend_from_slice(&0u16.to_le_bytes()); // flags
        entry.extend_from_slice(&method.to_le_bytes());
        entry.extend_from_slice(&[0; 8]); // time, date, crc
        entry.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        entry.extend_from_slice(&declared.to_le_bytes());
        entry.extend_from_slice(&(name.len() as u16).to_le_bytes());
        entry.extend_from_slice(&0u16.to_le_bytes());
        entry.extend_from_slice(name.as_bytes());
        entry.extend_from_slice(&payload);
        entry
    }

    fn honest_zip(data: &[u8]) -> Vec<u8> {
        zip_entry("member.bin", data, 8, data.len() as u32)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn over_limit() -> Vec<u8> {
        vec![0u8; LIMIT as usize + 1]
    }

    fn check(bytes: &[u8], chunk: usize) -> Option<ArchiveFinding> {
        let mut guard = ArchiveGuard::new(LIMIT);
        for piece in bytes.chunks(chunk) {
            guard.feed(piece);
        }
        guard.finding().cloned()
    }

    fn found_in_every_chunking(bytes: &[u8]) -> bool {
        [1, 7, 4096, 65536, bytes.len().max(1)]
            .into_iter()
            .all(|chunk| check(bytes, chunk).is_some())
    }

    #[test]
    fn a_deflated_member_over_the_limit_is_found_by_its_declared_size() {
        assert!(found_in_every_chunking(&honest_zip(&over_limit())));
    }

    #[test]
    fn a_member_that_lies_about_its_size_is_found_by_inflating_it() {
        let lying = zip_entry("member.bin", &over_limit(), 8, 1000);
        assert!(found_in_every_chunking(&lying));
        // Sizes only in a data descriptor: the local header says zero.
        let streamed = zip_entry("member.bin", &over_limit(), 8, 0);
        assert!(found_in_every_chunking(&streamed));
    }

    #[test]
    fn a_stored_member_declaring_more_than_the_limit_is_found() {
        let mut entry = zip_entry("member.bin", b"short", 0, u32::MAX - 1);
        entry.extend_from_slice(&[b'x'; 100]);
        assert!(found_in_every_chunking(&entry));
    }

    #[test]
    fn hole_zips_are_found_after_junk_inside_zips_and_inside_gzip() {
        let hole = zip_entry("member.bin", &over_limit(), 8, 1000);
        let after_junk = [vec![b'P'; 1001], hole.clone()].concat();
        assert!(found_in_every_chunking(&after_junk));
        let nested_deflated = honest_zip(&hole);
        assert!(found_in_every_chunking(&nested_deflated));
        let nested_twice = honest_zip(&honest_zip(&hole));
        assert!(found_in_every_chunking(&nested_twice));
        assert!(found_in_every_chunking(&gzip(&hole)));
        assert!(found_in_every_chunking(&gzip(&honest_zip(&hole))));
    }

    #[test]
    fn zips_with_members_within_the_limit_and_plain_data_pass() {
        let small = [
            honest_zip(&vec![0u8; LIMIT as usize]),
            honest_zip(b"hello"),
            gzip(&vec![0u8; 4 * LIMIT as usize]), // clamd itself alerts on an oversized gzip
            zip_entry("a.txt", b"abc", 0, 3),
            b"PK\x03\x04 looks like a header but is text".to_vec(),
        ];
        for bytes in small {
            for chunk in [1, 7, 65536] {
                assert_eq!(check(&bytes, chunk), None);
            }
        }
    }

    #[test]
    fn random_bytes_are_not_taken_for_archives() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..16 * 1024 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        assert_eq!(check(&random, 65536), None);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_not_followed_but_does_not_fail() {
        let mut bytes = b"clean".to_vec();
        for _ in 0..MAX_DEPTH + 2 {
            bytes = honest_zip(&bytes);
        }
        assert_eq!(check(&bytes, 4096), None);
    }
}

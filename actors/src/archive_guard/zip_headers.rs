//! The zip records the guard reads, parsed as clamd parses them (libclamav `unzip.c`): local file
//! headers (sizes, method and flags taken from here unless bit 3 is set), central directory
//! headers and the end-of-central-directory record, and what in a local header alone makes its
//! member content clamd skips or cuts. No field is checked for plausibility: clamd checks none
//! (not "version needed", not an empty name), so neither may the guard.

use super::finding::{ArchiveFinding, FindingKind};

/// `PK\3\4`.
pub(super) const LOCAL: [u8; 4] = *b"PK\x03\x04";
/// `PK\1\2`.
pub(super) const CENTRAL: [u8; 4] = *b"PK\x01\x02";
/// `PK\5\6`.
pub(super) const EOCD: [u8; 4] = *b"PK\x05\x06";
/// `PK\6\6` and `PK\6\7`: zip64's records, which clamd 1.4 does not read.
pub(super) const ZIP64_EOCD: [u8; 4] = *b"PK\x06\x06";
pub(super) const ZIP64_LOCATOR: [u8; 4] = *b"PK\x06\x07";
/// `PK\7\8`: the optional signature of a data descriptor.
pub(super) const DESCRIPTOR: [u8; 4] = *b"PK\x07\x08";

const LOCAL_FIXED: usize = 30;
const CENTRAL_FIXED: usize = 46;
const EOCD_FIXED: usize = 22;

/// General purpose flags.
pub(super) const FLAG_ENCRYPTED: u16 = 1;
pub(super) const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
pub(super) const FLAG_MASKED: u16 = 1 << 13;

/// Methods: the two the guard follows, and the ones clamd extracts that the guard cannot.
pub(super) const STORED: u16 = 0;
pub(super) const DEFLATED: u16 = 8;

/// What a parse of the bytes at some offset found.
pub(super) enum Parsed<T> {
    /// The record and its length.
    Record(T, usize),
    /// Not enough bytes yet.
    NeedMore,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// A local file header.
#[derive(Debug, Clone)]
pub(super) struct LocalHeader {
    pub(super) flags: u16,
    pub(super) method: u16,
    /// The CRC-32 of the member's content, as its writer declares it.
    pub(super) crc: u32,
    pub(super) csize: u32,
    pub(super) usize: u32,
}

impl LocalHeader {
    /// Parses the header starting at `bytes[0]` (which must be [`LOCAL`]).
    pub(super) fn parse(bytes: &[u8]) -> Parsed<LocalHeader> {
        if bytes.len() < LOCAL_FIXED {
            return Parsed::NeedMore;
        }
        let name_len = usize::from(u16_at(bytes, 26));
        let extra_len = usize::from(u16_at(bytes, 28));
        let len = LOCAL_FIXED + name_len + extra_len;
        if bytes.len() < len {
            return Parsed::NeedMore;
        }
        let header = LocalHeader {
            flags: u16_at(bytes, 6),
            method: u16_at(bytes, 8),
            crc: u32_at(bytes, 14),
            csize: u32_at(bytes, 18),
            usize: u32_at(bytes, 22),
        };
        Parsed::Record(header, len)
    }

    pub(super) fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Zip64 puts 0xFFFFFFFF in the sizes; clamd 1.4 reads no zip64 field and skips the member.
    pub(super) fn is_zip64(&self) -> bool {
        self.csize == u32::MAX || self.usize == u32::MAX
    }
}

/// A central directory header.
#[derive(Debug, Clone)]
pub(super) struct CentralHeader {
    /// The CRC-32 of the member's content, as the directory declares it.
    pub(super) crc: u32,
    pub(super) csize: u32,
    pub(super) local_offset: u32,
}

impl CentralHeader {
    /// Parses the header starting at `bytes[0]` (which must be [`CENTRAL`]).
    pub(super) fn parse(bytes: &[u8]) -> Parsed<CentralHeader> {
        if bytes.len() < CENTRAL_FIXED {
            return Parsed::NeedMore;
        }
        let name_len = usize::from(u16_at(bytes, 28));
        let len = CENTRAL_FIXED + name_len + usize::from(u16_at(bytes, 30)) + usize::from(u16_at(bytes, 32));
        if bytes.len() < len {
            return Parsed::NeedMore;
        }
        let header = CentralHeader {
            crc: u32_at(bytes, 16),
            csize: u32_at(bytes, 20),
            local_offset: u32_at(bytes, 42),
        };
        Parsed::Record(header, len)
    }
}

/// The end-of-central-directory record: where the central directory starts, and its length.
#[derive(Debug, Clone)]
pub(super) struct EndOfCentralDirectory {
    pub(super) cd_size: u32,
    pub(super) cd_offset: u32,
}

impl EndOfCentralDirectory {
    /// Parses the record starting at `bytes[0]` (which must be [`EOCD`]).
    pub(super) fn parse(bytes: &[u8]) -> Parsed<EndOfCentralDirectory> {
        if bytes.len() < EOCD_FIXED {
            return Parsed::NeedMore;
        }
        let len = EOCD_FIXED + usize::from(u16_at(bytes, 20));
        if bytes.len() < len {
            return Parsed::NeedMore;
        }
        match Self::parse_fixed(bytes) {
            Some(end) => Parsed::Record(end, len),
            None => Parsed::NeedMore,
        }
    }

    /// The record's fixed part alone (its comment may run on past the bytes at hand).
    pub(super) fn parse_fixed(bytes: &[u8]) -> Option<EndOfCentralDirectory> {
        (bytes.len() >= EOCD_FIXED).then(|| EndOfCentralDirectory {
            cd_size: u32_at(bytes, 12),
            cd_offset: u32_at(bytes, 16),
        })
    }
}

/// The length of the data descriptor at `bytes[0]`, with or without its signature.
pub(super) fn descriptor_len(bytes: &[u8]) -> Parsed<()> {
    if bytes.len() < 4 {
        return Parsed::NeedMore;
    }
    let len = if bytes[..4] == DESCRIPTOR { 16 } else { 12 };
    Parsed::Record((), len)
}

/// The next offset at or after `from` where a zip signature could start ("PK" and two bytes).
pub(super) fn next_signature(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(found) = memchr::memchr(b'P', bytes.get(at..)?) {
        let start = at + found;
        match bytes.get(start + 1..start + 4) {
            Some([b'K', a, b]) if matches!((a, b), (3, 4) | (1, 2) | (5, 6) | (6, 6) | (6, 7)) => return Some(start),
            Some(_) => at = start + 1,
            // Too close to the end to tell: the caller keeps these bytes for the next chunk.
            None => {
                let tail = &bytes[start..];
                let may_be =
                    tail.get(1).is_none_or(|k| *k == b'K') && tail.get(2).is_none_or(|c| matches!(c, 1 | 3 | 5 | 6));
                if may_be {
                    return Some(start);
                }
                at = start + 1;
            }
        }
    }
    None
}

/// Methods clamd extracts besides stored and deflate: implode, deflate64, bzip2. It cuts them at
/// `MaxFileSize` without an alert as it cuts deflate, and the guard cannot inflate them.
pub(super) const CLAMD_ONLY_METHODS: [u16; 3] = [6, 9, 12];

pub(super) fn finding(kind: FindingKind, depth: usize, detail: impl Into<String>) -> ArchiveFinding {
    ArchiveFinding::new(kind, depth, detail)
}

/// What in a local header alone makes its member content clamd skips or cuts.
pub(super) fn header_problem(header: &LocalHeader, depth: usize, member_limit: u64) -> Option<ArchiveFinding> {
    let has_content = header.csize > 0 || header.has(FLAG_DATA_DESCRIPTOR);
    let describe = |what: &str| format!("zip member (method {}): {what}", header.method);
    if header.method != STORED && header.csize == 0 && !header.has(FLAG_DATA_DESCRIPTOR) {
        // clamd extracts nothing; a streaming unzip decodes the stream that follows anyway.
        return Some(finding(
            FindingKind::Malformed,
            depth,
            describe("compressed, with no compressed bytes"),
        ));
    }
    if !has_content {
        return None;
    }
    if header.has(FLAG_MASKED) || header.has(FLAG_ENCRYPTED) {
        return Some(finding(FindingKind::Encrypted, depth, describe("encrypted")));
    }
    if header.is_zip64() {
        return Some(finding(
            FindingKind::Malformed,
            depth,
            describe("zip64 sizes, which clamd does not read"),
        ));
    }
    if header.method != STORED && header.method != DEFLATED {
        return Some(finding(
            FindingKind::UnsupportedMethod,
            depth,
            describe("a method the guard cannot inflate"),
        ));
    }
    if header.method == STORED && header.has(FLAG_DATA_DESCRIPTOR) {
        return Some(finding(
            FindingKind::Malformed,
            depth,
            describe("stored with a data descriptor"),
        ));
    }
    if header.method == STORED && header.csize != header.usize {
        return Some(finding(
            FindingKind::Malformed,
            depth,
            describe("stored, but its two sizes differ"),
        ));
    }
    if u64::from(header.usize) > member_limit {
        return Some(finding(
            FindingKind::MemberExceedsLimit,
            depth,
            describe(&format!(
                "declares {} bytes (clamd cuts it at {member_limit})",
                header.usize
            )),
        ));
    }
    None
}

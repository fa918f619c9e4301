//! Containers by their magic: the ones the guard follows are typed in `layer.rs`; these are
//! the ones it does not follow, their headers proven (inside other data, where a magic alone
//! is as likely a constant in a program that reads the format), and the search for any
//! container in data that should hold none.

use flate2::Crc;

use super::zip_headers::LOCAL;

/// Containers clamd opens that the guard does not follow, by their magic.
pub(super) const UNFOLLOWED: [(&str, &[u8]); 5] = [
    ("xz", b"\xfd7zXZ\x00"),
    ("7z", b"7z\xbc\xaf\x27\x1c"),
    ("rar", b"Rar!\x1a\x07"),
    ("cab", b"MSCF\x00\x00\x00\x00"),
    ("bzip2", b"BZh"),
];

/// The container that `bytes` start with, of those the guard does not follow.
pub(super) fn unfollowed_container(bytes: &[u8]) -> Option<&'static str> {
    let (name, _) = UNFOLLOWED.iter().find(|(_, magic)| bytes.starts_with(magic))?;
    if *name == "bzip2" {
        // "BZh" starts text too: a bzip2 stream has a block size digit and then a block (or
        // end-of-stream) magic.
        let digit = bytes.get(3).is_some_and(|d| (b'1'..=b'9').contains(d));
        let block = bytes.get(4..10).is_some_and(|m| m == b"1AY&SY" || m == b"\x17rE8P\x90");
        return (digit && block).then_some(name);
    }
    Some(name)
}

/// The container that `bytes` start with, of those the guard does not follow, when its header
/// holds as a writer writes it (a CRC that matches, fields only one value is valid for), so
/// that chance never makes one: bzip2 by its 48-bit block magic, xz and 7z by the CRC of their
/// stream header, RAR by the CRC of its archive header, CAB by its reserved fields and version.
pub(super) fn proven_container(bytes: &[u8]) -> Option<&'static str> {
    let name = unfollowed_container(bytes)?;
    let proven = match name {
        "xz" => bytes.len() >= 12 && bytes[6] == 0 && bytes[7] & 0xf0 == 0 && crc32(&bytes[6..8]) == u32_at(bytes, 8),
        "7z" => bytes.len() >= 32 && crc32(&bytes[12..32]) == u32_at(bytes, 8),
        "rar" => rar_header_holds(bytes),
        "cab" => {
            bytes.len() >= 26
                && u32_at(bytes, 12) == 0
                && u32_at(bytes, 20) == 0
                && bytes[24..26] == [3, 1]
                && u32_at(bytes, 16) < u32_at(bytes, 8)
        }
        _ => true,
    };
    proven.then_some(name)
}

/// RAR 4 (`Rar!\x1a\x07\x00`): the archive header after the marker, its CRC16 (the low half of
/// a CRC32) over its type to its end. RAR 5 (`Rar!\x1a\x07\x01\x00`): the main header's CRC32
/// over its size (a vint) and data.
fn rar_header_holds(bytes: &[u8]) -> bool {
    match bytes.get(6) {
        Some(0) => {
            let Some(header) = bytes.get(7..14) else {
                return false;
            };
            let size = usize::from(u16::from_le_bytes([header[5], header[6]]));
            header[2] == 0x73
                && size >= 7
                && bytes.get(9..7 + size).is_some_and(|covered| {
                    crc32(covered) & 0xffff == u32::from(u16::from_le_bytes([header[0], header[1]]))
                })
        }
        Some(1) if bytes.get(7) == Some(&0) => {
            let Some(rest) = bytes.get(12..) else {
                return false;
            };
            // The header size: a vint of at most three bytes here.
            let Some(vint_len) = rest.iter().take(3).position(|byte| byte & 0x80 == 0).map(|at| at + 1) else {
                return false;
            };
            let size = rest[..vint_len]
                .iter()
                .rev()
                .fold(0usize, |size, byte| size << 7 | usize::from(byte & 0x7f));
            size > 0
                && rest
                    .get(..vint_len + size)
                    .is_some_and(|covered| crc32(covered) == u32_at(bytes, 8))
        }
        _ => false,
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc::new();
    crc.update(bytes);
    crc.sum()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The first container magic anywhere in `bytes` (a zip local header, gzip, or one the guard
/// does not follow), for data that should hold none: names and pax records.
pub(super) fn container_in(bytes: &[u8]) -> Option<&'static str> {
    (0..bytes.len()).find_map(|at| {
        let rest = &bytes[at..];
        if rest.starts_with(&LOCAL) {
            Some("zip")
        } else if rest.starts_with(&[0x1f, 0x8b, 8]) {
            Some("gzip")
        } else {
            unfollowed_container(rest)
        }
    })
}

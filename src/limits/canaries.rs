//! The start-up canaries, built in memory and small on the wire whatever they stand for: a gzip
//! of any number of zero bytes, a gzip nested deeper than any sane `MaxRecursion`, a tar whose
//! header declares a member of any size without carrying it, and a zip whose one member is
//! marked encrypted. Pure functions; `mod.rs` scans them and reads clamd's answers.

use std::hash::BuildHasher;
use std::io::Write;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress};

const BLOCK: usize = 1 << 20;

/// A gzip file of `len` zero bytes, built from one deflated megabyte repeated, so that even a
/// canary of gigabytes costs nothing to make: about 1 KB per MB on the wire.
pub fn zeros_gzip(len: u64) -> Vec<Bytes> {
    let zeros = vec![0u8; BLOCK];
    let mut compress = Compress::new(Compression::best(), false);
    let mut deflate = |input: &[u8], flush: FlushCompress| -> Bytes {
        let mut out = Vec::with_capacity(input.len() / 100 + 1024);
        let start = compress.total_in();
        loop {
            let consumed = (compress.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            compress
                .compress_vec(&input[consumed..], &mut out, flush)
                .expect("deflating zeros cannot fail");
            let done = (compress.total_in() - start) as usize == input.len();
            if done && out.len() < out.capacity() {
                return Bytes::from(out);
            }
        }
    };
    let blocks = len / BLOCK as u64;
    let remainder = (len % BLOCK as u64) as usize;
    let mut parts = vec![Bytes::from_static(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])];
    if blocks > 0 {
        parts.push(deflate(&zeros, FlushCompress::Sync));
    }
    if blocks > 1 {
        // After the first megabyte the window holds only zeros: every further megabyte encodes
        // to the same bytes.
        let steady = deflate(&zeros, FlushCompress::Sync);
        parts.extend(std::iter::repeat_n(steady, blocks as usize - 1));
    }
    parts.push(deflate(&zeros[..remainder], FlushCompress::Sync));
    parts.push(deflate(&[], FlushCompress::Finish));

    let mut block_crc = Crc::new();
    block_crc.update(&zeros);
    let mut crc = Crc::new();
    for _ in 0..blocks {
        crc.combine(&block_crc);
    }
    crc.update(&zeros[..remainder]);
    let mut trailer = crc.sum().to_le_bytes().to_vec();
    trailer.extend_from_slice(&(len as u32).to_le_bytes());
    parts.push(Bytes::from(trailer));
    parts
}

/// How deep [`nested_gzip`] nests: deeper than any sane `MaxRecursion` (clamd's default is 17).
pub const NESTING: usize = 64;

/// A gzip of a gzip of … (`levels` deep) of 16 bytes never used before, 23 bytes per level
/// (stored deflate blocks: compressing compressed bytes only grows them). The bytes are new on every call because clamd caches what it found clean by hash: a
/// canary whose inner layers it had seen before would stop recursing at the first of them and
/// never reach its recursion limit.
pub fn nested_gzip(levels: usize) -> Bytes {
    let mut content = unique_bytes().to_vec();
    for _ in 0..levels {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::none());
        encoder.write_all(&content).expect("writing to memory");
        content = encoder.finish().expect("writing to memory");
    }
    Bytes::from(content)
}

/// 16 bytes no earlier call returned (in practice): the standard library's random hash keys.
fn unique_bytes() -> [u8; 16] {
    let state = std::collections::hash_map::RandomState::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&state.hash_one(nanos).to_le_bytes());
    bytes[8..].copy_from_slice(&state.hash_one((nanos, std::process::id())).to_le_bytes());
    bytes
}

/// The largest member size a tar header can declare to clamd, which reads the octal size field
/// into a signed 32-bit int (libclamav `untar.c`).
pub const TAR_DECLARABLE: u64 = i32::MAX as u64;

/// A POSIX tar whose one member's header declares `size` bytes (at most [`TAR_DECLARABLE`])
/// but carries none: 1.5 KB whatever `size` is. clamd compares the declared size with its
/// limits before it reads a byte of the member (`cli_checklimits` in `cli_untar`), with the
/// same comparison the gzip path uses, so the answer is `Heuristics.Limits.Exceeded.MaxFileSize`
/// (or `.MaxScanSize`) exactly when a file of `size` bytes would exceed them.
pub fn tar_declaring(size: u64) -> Bytes {
    assert!(size <= TAR_DECLARABLE, "clamd reads tar sizes into an int");
    let mut header = [0u8; 512];
    let field = |header: &mut [u8; 512], offset: usize, value: &[u8]| {
        header[offset..offset + value.len()].copy_from_slice(value)
    };
    field(&mut header, 0, b"avscan-canary");
    field(&mut header, 100, b"0000644\0");
    field(&mut header, 108, b"0000000\0");
    field(&mut header, 116, b"0000000\0");
    field(&mut header, 124, format!("{size:011o}\0").as_bytes());
    field(&mut header, 136, b"00000000000\0");
    field(&mut header, 156, b"0");
    field(&mut header, 257, b"ustar\0");
    field(&mut header, 263, b"00");
    // The checksum counts its own field as eight spaces.
    field(&mut header, 148, b"        ");
    let checksum: u32 = header.iter().map(|&byte| u32::from(byte)).sum();
    field(&mut header, 148, format!("{checksum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    // End of archive: two zero blocks.
    tar.extend_from_slice(&[0u8; 1024]);
    Bytes::from(tar)
}

/// A zip (local header, central directory, end record) of one 13-byte member whose flags say
/// "encrypted". clamd reports `Heuristics.Encrypted.Zip` for it when encrypted archives are
/// alerted, and otherwise skips the member and answers OK.
pub fn encrypted_zip() -> Bytes {
    const ENCRYPTED: u16 = 1;
    let name = b"secret";
    // A ZipCrypto member starts with a 12-byte encryption header.
    let data = [0x5au8; 13];
    let size = (data.len() as u32).to_le_bytes();
    let mut zip = Vec::new();
    // Local file header.
    zip.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    zip.extend_from_slice(&20u16.to_le_bytes()); // version needed
    zip.extend_from_slice(&ENCRYPTED.to_le_bytes());
    zip.extend_from_slice(&[0; 2 + 2 + 2 + 4]); // stored, time, date, crc
    zip.extend_from_slice(&size);
    zip.extend_from_slice(&size);
    zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes()); // extra field
    zip.extend_from_slice(name);
    zip.extend_from_slice(&data);
    // Central directory: clamd alerts on encrypted members only when it found one.
    let directory_offset = zip.len() as u32;
    zip.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    zip.extend_from_slice(&20u16.to_le_bytes()); // version made by
    zip.extend_from_slice(&20u16.to_le_bytes()); // version needed
    zip.extend_from_slice(&ENCRYPTED.to_le_bytes());
    zip.extend_from_slice(&[0; 2 + 2 + 2 + 4]); // stored, time, date, crc
    zip.extend_from_slice(&size);
    zip.extend_from_slice(&size);
    zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
    zip.extend_from_slice(&[0; 2 + 2 + 2 + 2 + 4]); // extra, comment, disk, attributes
    zip.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    zip.extend_from_slice(name);
    let directory_size = zip.len() as u32 - directory_offset;
    // End of central directory.
    zip.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    zip.extend_from_slice(&[0; 4]); // disk numbers
    zip.extend_from_slice(&1u16.to_le_bytes());
    zip.extend_from_slice(&1u16.to_le_bytes());
    zip.extend_from_slice(&directory_size.to_le_bytes());
    zip.extend_from_slice(&directory_offset.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes()); // comment
    Bytes::from(zip)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn the_zeros_canary_is_a_valid_gzip_of_exactly_so_many_zeros() {
        for len in [0, 1, BLOCK as u64 - 1, BLOCK as u64, 3 * BLOCK as u64 + 5] {
            let bytes: Vec<u8> = zeros_gzip(len).concat();
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut decoded)
                .unwrap();
            assert_eq!(decoded.len() as u64, len);
            assert!(decoded.iter().all(|&b| b == 0));
        }
        // Small on the wire, whatever the size it stands for.
        let large: usize = zeros_gzip(400 * BLOCK as u64).iter().map(Bytes::len).sum();
        assert!(large < 1024 * 1024, "{large} bytes");
    }

    #[test]
    fn the_nested_canary_unwraps_level_by_level_and_is_new_every_time() {
        let canary = nested_gzip(NESTING);
        assert!(canary.len() < 2048, "{} bytes", canary.len());
        let mut content = canary.to_vec();
        for _ in 0..NESTING {
            assert_eq!(&content[..2], &[0x1f, 0x8b]);
            let mut inner = Vec::new();
            flate2::read::GzDecoder::new(&content[..])
                .read_to_end(&mut inner)
                .unwrap();
            content = inner;
        }
        assert_eq!(content.len(), 16);
        assert_ne!(nested_gzip(NESTING), canary);
    }

    #[test]
    fn the_tar_canary_declares_the_size_in_a_header_whose_checksum_holds() {
        for size in [0, 1, 400 * BLOCK as u64 + 1, TAR_DECLARABLE] {
            let tar = tar_declaring(size);
            assert_eq!(tar.len(), 1536);
            let declared = std::str::from_utf8(&tar[124..135]).unwrap();
            assert_eq!(u64::from_str_radix(declared, 8).unwrap(), size);
            assert_eq!(&tar[257..262], b"ustar");
            let stored = std::str::from_utf8(&tar[148..154]).unwrap();
            let mut blank = tar[..512].to_vec();
            blank[148..156].copy_from_slice(b"        ");
            let sum: u32 = blank.iter().map(|&b| u32::from(b)).sum();
            assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        }
    }

    #[test]
    #[should_panic(expected = "int")]
    fn the_tar_canary_cannot_declare_more_than_clamd_reads() {
        tar_declaring(TAR_DECLARABLE + 1);
    }

    #[test]
    fn the_encrypted_canary_has_its_flag_in_both_headers_and_a_consistent_end_record() {
        let zip = encrypted_zip();
        let flags = |at: usize| u16::from_le_bytes([zip[at], zip[at + 1]]);
        assert_eq!(flags(6) & 1, 1, "local header");
        let directory = zip.len() - 22;
        let offset = u32::from_le_bytes(zip[directory + 16..directory + 20].try_into().unwrap()) as usize;
        assert_eq!(&zip[offset..offset + 4], &[0x50, 0x4b, 1, 2]);
        assert_eq!(flags(offset + 8) & 1, 1, "central directory");
        let size = u32::from_le_bytes(zip[directory + 12..directory + 16].try_into().unwrap()) as usize;
        assert_eq!(offset + size, directory);
    }
}

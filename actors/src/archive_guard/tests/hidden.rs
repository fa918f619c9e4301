//! Content clamd never opens where it sits: a stream inside other data, an archive after the
//! end of a gzip or tar stream, a gap in a zip, a tar's padding and metadata. Each is found when
//! it is real, and each has its look-alike that chance (or a program's constants) produces,
//! which passes.

use super::*;

/// Deterministic noise, like compressed or encrypted data.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ len as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

/// `lzma.compress(b"x")`: a whole xz stream.
const XZ: &str = "fd377a585a000004e6d6b4460200210116000000742fe5a3010000780000000045aeef83f8ee160a00011901a52c81cc1fb6f37d010000000004595a";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

fn inside_noise(content: &[u8]) -> Vec<u8> {
    [noise(1000), content.to_vec(), noise(1000)].concat()
}

#[test]
fn a_gzip_stream_inside_other_data_is_found_when_its_trailer_proves_it() {
    assert_eq!(
        found(&inside_noise(&gzip(b"payload"))),
        Some(FindingKind::MemberNotExtracted)
    );
    // A size that lies: the CRC alone proves it.
    let mut isize_lies = gzip(b"payload");
    let at = isize_lies.len() - 4;
    isize_lies[at..].copy_from_slice(&999u32.to_le_bytes());
    assert_eq!(found(&inside_noise(&isize_lies)), Some(FindingKind::MemberNotExtracted));
    // A gzip inside a zip member's content, after other bytes.
    assert_eq!(
        found(&zip_of(&[b"header ".to_vec(), gzip(b"payload")].concat())),
        Some(FindingKind::MemberNotExtracted)
    );
    // gzip's magic followed by noise is no stream.
    let mut magic_then_noise = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03".to_vec();
    magic_then_noise.extend(noise(5000));
    assert_eq!(found(&inside_noise(&magic_then_noise)), None);
}

#[test]
fn archives_after_the_end_of_a_gzip_or_tar_stream_are_found() {
    let member = entry("after.bin", b"payload", 8);
    let mut locals_only = local_header(&member);
    locals_only.extend(&member.data);
    let (zip, tar_archive) = (zip_of(b"payload"), tar(&[("t", b"payload")]));
    // (A gzip member after a gzip stream is its next member, inflated into the same layer.)
    for after in [&zip, &locals_only, &tar_archive] {
        assert_eq!(
            found(&[gzip(b"clean"), after.clone()].concat()),
            Some(FindingKind::MemberNotExtracted)
        );
    }
    for after in [zip, locals_only, tar_archive, gzip(b"payload")] {
        assert_eq!(
            found(&[tar(&[("clean", b"clean")]), after].concat()),
            Some(FindingKind::MemberNotExtracted)
        );
    }
    // Zeros or a few stray bytes after a stream hide nothing.
    assert_eq!(found(&[gzip(b"clean"), vec![0; 4096]].concat()), None);
    assert_eq!(found(&[gzip(b"clean"), b"PK".to_vec()].concat()), None);
    assert_eq!(found(&[tar(&[("clean", b"clean")]), vec![0; 9216]].concat()), None);
}

#[test]
fn a_gzip_stream_in_a_zip_gap_is_found() {
    let bytes = [zip_of(b"clean"), gzip(b"payload")].concat();
    assert_eq!(found(&bytes), Some(FindingKind::MemberNotExtracted));
}

#[test]
fn a_tar_inside_other_data_is_found_by_its_magic_and_checksum() {
    assert_eq!(
        found(&inside_noise(&tar(&[("t", b"payload")]))),
        Some(FindingKind::MemberNotExtracted)
    );
    let mut bad_checksum = tar(&[("t", b"payload")]);
    bad_checksum[148] = b'7';
    assert_eq!(found(&inside_noise(&bad_checksum)), None);
}

#[test]
fn containers_the_guard_does_not_follow_count_inside_other_data_only_with_a_header_that_holds() {
    assert_eq!(found(&inside_noise(&hex(XZ))), Some(FindingKind::UnsupportedContainer));
    let mut seven_zip = b"7z\xbc\xaf\x27\x1c\x00\x04".to_vec();
    let start_header = [noise(20)].concat();
    seven_zip.extend(crc32(&start_header).to_le_bytes());
    seven_zip.extend(&start_header);
    assert_eq!(
        found(&inside_noise(&seven_zip)),
        Some(FindingKind::UnsupportedContainer)
    );
    let mut rar5 = b"Rar!\x1a\x07\x01\x00".to_vec();
    let main_header = [3u8, 1, 0, 0];
    rar5.extend(crc32(&main_header).to_le_bytes());
    rar5.extend(main_header);
    assert_eq!(found(&inside_noise(&rar5)), Some(FindingKind::UnsupportedContainer));
    let mut cab = b"MSCF\x00\x00\x00\x00".to_vec();
    cab.extend(1000u32.to_le_bytes());
    cab.extend([0; 4]);
    cab.extend(44u32.to_le_bytes());
    cab.extend([0; 4]);
    cab.extend([3, 1]);
    assert_eq!(found(&inside_noise(&cab)), Some(FindingKind::UnsupportedContainer));
    // The magics alone, as a program that reads these formats holds them.
    for magic in [
        &b"\xfd7zXZ\x00"[..],
        b"7z\xbc\xaf\x27\x1c",
        b"Rar!\x1a\x07\x00",
        b"Rar!\x1a\x07\x01\x00",
        b"MSCF\x00\x00\x00\x00",
    ] {
        assert_eq!(found(&inside_noise(magic)), None, "{magic:?}");
    }
}

#[test]
fn tar_metadata_padding_and_blocks_between_members_hide_nothing() {
    // A long name that is a zip.
    let mut long_name = tar(&[("././@LongLink", &zip_of(b"payload")), ("real", b"clean")]);
    long_name[156] = b'L';
    set_checksum(&mut long_name[..512]);
    assert_eq!(found(&long_name), Some(FindingKind::Malformed));
    // A long name that is a tar.
    let mut tar_name = tar(&[("././@LongLink", &tar(&[("t", b"payload")])), ("real", b"clean")]);
    tar_name[156] = b'L';
    set_checksum(&mut tar_name[..512]);
    assert_eq!(found(&tar_name), Some(FindingKind::Malformed));
    // A long name cut short by the end of the object, holding a gzip stream.
    let mut cut_name = tar(&[("././@LongLink", &gzip(b"payload"))]);
    cut_name[156] = b'L';
    cut_name[124..136].copy_from_slice(format!("{:011o}\0", 5000).as_bytes());
    set_checksum(&mut cut_name[..512]);
    cut_name.truncate(512 + 100);
    assert_eq!(found(&cut_name), Some(FindingKind::Malformed));
    // Bytes in a member's padding.
    let mut padded = tar(&[("a", b"clean")]);
    padded[512 + 100..512 + 100 + 7].copy_from_slice(b"payload");
    assert_eq!(found(&padded), Some(FindingKind::Malformed));
    // A header whose checksum is wrong.
    let mut bad_checksum = tar(&[("a", b"clean"), ("b", b"payload")]);
    bad_checksum[1024 + 148] = b'7';
    assert_eq!(found(&bad_checksum), Some(FindingKind::Malformed));
    // A block that is not a header where one should be (a size that lies).
    let mut short = tar(&[("a", &[b'x'; 2000])]);
    short[124..136].copy_from_slice(format!("{:011o}\0", 100).as_bytes());
    set_checksum(&mut short[..512]);
    assert_eq!(found(&short), Some(FindingKind::Malformed));
}

#[test]
fn data_typed_tar_by_a_chance_checksum_is_read_as_clamd_reads_it() {
    // Noise whose first block's checksum happens to hold; its fields are not a header's.
    let mut bytes = noise(8192);
    bytes[124..136].copy_from_slice(b"zzzzzzzzzzzz");
    set_checksum(&mut bytes[..512]);
    assert_eq!(found(&bytes), None);
}

#[test]
fn zip_members_whose_compressed_size_clamd_reads_differently_are_malformed() {
    // Deflated, with no compressed bytes: clamd extracts nothing, a streaming unzip inflates.
    let mut empty = entry("m", b"payload", 8);
    empty.csize = 0;
    let mut bytes = local_header(&empty);
    bytes.extend(&empty.data);
    let cd_offset = bytes.len() as u32;
    let mut central = central_header(&empty, 0);
    central[20..24].copy_from_slice(&0u32.to_le_bytes());
    bytes.extend(central);
    bytes.extend_from_slice(b"PK\x05\x06");
    bytes.extend_from_slice(&[0; 12]);
    bytes.extend_from_slice(&cd_offset.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    assert_eq!(found(&bytes), Some(FindingKind::Malformed));
    // The central directory's compressed size is not the local header's.
    let mut member = entry("m", &[3u8; 5000], 8);
    member.csize -= 1;
    member.data.truncate(member.csize as usize);
    let mut lying = zip(&[member.clone()]);
    let cd = lying.len() - 22 - central_header(&member, 0).len();
    lying[cd + 20..cd + 24].copy_from_slice(&(member.csize + 1).to_le_bytes());
    assert_eq!(found(&lying), Some(FindingKind::Malformed));
}

#[test]
fn embedded_zip_headers_count_only_when_a_central_header_names_their_member() {
    // A program holding zip's signatures as constants, each followed by the same table bytes
    // (empty names): neither an empty member nor a stored one that lies is taken for a member.
    let table = b"\x00\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xe4\x00\x00\x00\x00\x00\x00\x00";
    let program = [
        noise(700),
        b"PK\x03\x04".to_vec(),
        table.to_vec(),
        noise(700),
        b"PK\x01\x02".to_vec(),
        table.to_vec(),
        noise(700),
    ]
    .concat();
    assert_eq!(found(&program), None);
    let mut stored_lying = entry("s", b"short", 0);
    stored_lying.usize = 100;
    let mut lone = noise(700);
    lone.extend(local_header(&stored_lying));
    lone.extend(&stored_lying.data);
    lone.extend(noise(700));
    assert_eq!(found(&lone), None);
    // The same member, in an embedded zip whose central directory names it.
    assert_eq!(
        found(&inside_noise(&zip(&[stored_lying]))),
        Some(FindingKind::Malformed)
    );
    // A member without a name, named by a central header without one.
    let mut nameless = entry("", &over_limit(), 8);
    nameless.usize = 10;
    assert_eq!(
        found(&inside_noise(&zip(&[nameless]))),
        Some(FindingKind::MemberExceedsLimit)
    );
}

#[test]
fn the_guard_inflates_as_clamds_zlib_does() {
    // A fixed-Huffman block whose first symbol copies from before the stream's start: zlib
    // stops there ("invalid distance too far back"), so clamd drops the member. (miniz_oxide
    // would copy zeros and go on.)
    let far_back = [0x03, 0x02, 0x00];
    let mut member = entry("m", b"", 8);
    member.data = far_back.to_vec();
    member.csize = 3;
    member.usize = 3;
    assert_eq!(found(&zip(&[member])), Some(FindingKind::Malformed));
}

/// A one-member zip whose method says stored while `data` is what it holds, declaring `sizes`
/// (both) and the CRC `crc` in its local header, its central header, or both.
fn stored_in_name(data: &[u8], sizes: u32, crc: u32, local: bool, central: bool) -> Vec<u8> {
    let mut member = entry("m", b"", 0);
    member.data = data.to_vec();
    member.csize = sizes;
    member.usize = sizes;
    let mut bytes = zip(&[member]);
    if local {
        bytes[14..18].copy_from_slice(&crc.to_le_bytes());
    }
    if central {
        let at = bytes.windows(4).rposition(|window| window == b"PK\x01\x02").unwrap();
        bytes[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

/// `content` deflated, then a block of the reserved type: the stream breaks after the content.
fn broken_deflate(content: &[u8]) -> Vec<u8> {
    let mut compress = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(content.len() + 1024);
    compress
        .compress_vec(content, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    out.push(0xff);
    out
}

#[test]
fn a_member_stored_in_name_only_is_found_by_the_crc_of_its_inflated_bytes() {
    // The escape of the differential test (seed 0x2826804c6d62e6c1, minimal
    // `zip[m0=deflate: gz{hcrc}(tar[tar[zip[m8 n0 x15 dd: gz(…M…)]]])]`): the method field says
    // stored, the bytes are the content deflated, and both sizes give the bytes' length, as they
    // do when incompressible content deflates to exactly its own length. clamd scans the bytes
    // compressed, an unzip extracts them compressed: no one sees the content.
    let mut dd = entry("", &[vec![0u8; 169], b"payload".to_vec(), vec![0u8; 831]].concat(), 8);
    dd.flags = 8;
    let content = gzip(&tar(&[("t.tar", &tar(&[("m.zip", &zip(&[dd]))]))]));
    let deflated = deflate(&content);
    let sizes = deflated.len() as u32;
    let escape = stored_in_name(&deflated, sizes, crc32(&content), true, true);
    assert_eq!(found(&escape), Some(FindingKind::Malformed));
    // Wherever the zip sits: inside a gzip and a zip, after other bytes (an embedded zip).
    assert_eq!(found(&gzip(&zip_of(&escape))), Some(FindingKind::Malformed));
    assert_eq!(found(&inside_noise(&escape)), Some(FindingKind::Malformed));
    // Any content, any sizes; the CRC in either header; a stream that breaks after the content.
    let text = b"payload ".repeat(100);
    for (data, local, central) in [
        (deflate(&text), true, false),
        (deflate(&text), false, true),
        (broken_deflate(&text), true, true),
    ] {
        let bytes = stored_in_name(&data, data.len() as u32, crc32(&text), local, central);
        assert_eq!(found(&bytes), Some(FindingKind::Malformed));
        assert_eq!(found(&inside_noise(&bytes)), Some(FindingKind::Malformed));
    }
    // Honest stored members pass, their CRC the one of their bytes: compressed data, which
    // breaks as a deflate stream at once, and a raw deflate stream kept as a file. (A gzip
    // stream inside other data is found as such, zip or not.)
    for (data, embedded) in [
        (noise(5000), true),
        (deflated.clone(), true),
        (deflate(&text), true),
        (content.clone(), false),
        (gzip(&text), false),
    ] {
        let honest = stored_in_name(&data, data.len() as u32, crc32(&data), true, true);
        assert_eq!(found(&honest), None);
        if embedded {
            assert_eq!(found(&inside_noise(&honest)), None);
        }
    }
}

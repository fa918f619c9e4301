//! The guard against hand-built archives: every case where clamd skips content silently is
//! found, in every chunking; honest archives and plain data pass. Content clamd never opens
//! where it sits (inside other data, after a stream's end, in tar's padding) is `hidden.rs`.

use std::io::Write;

use super::*;

mod hidden;

const LIMIT: u64 = 1024 * 1024;
const LIMITS: GuardLimits = GuardLimits {
    member_limit: LIMIT,
    inflate_budget: 64 * LIMIT,
};

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// One zip member as written: its local header fields and data.
#[derive(Clone)]
struct Entry {
    name: String,
    method: u16,
    flags: u16,
    /// The compressed data as stored.
    data: Vec<u8>,
    csize: u32,
    usize: u32,
}

fn entry(name: &str, content: &[u8], method: u16) -> Entry {
    let data = if method == 8 {
        deflate(content)
    } else {
        content.to_vec()
    };
    Entry {
        name: name.into(),
        method,
        flags: 0,
        csize: data.len() as u32,
        usize: content.len() as u32,
        data,
    }
}

fn local_header(entry: &Entry) -> Vec<u8> {
    let mut header = b"PK\x03\x04".to_vec();
    header.extend_from_slice(&20u16.to_le_bytes());
    header.extend_from_slice(&entry.flags.to_le_bytes());
    header.extend_from_slice(&entry.method.to_le_bytes());
    header.extend_from_slice(&[0; 4]); // time, date
    header.extend_from_slice(&0u32.to_le_bytes()); // crc
    header.extend_from_slice(&entry.csize.to_le_bytes());
    header.extend_from_slice(&entry.usize.to_le_bytes());
    header.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(entry.name.as_bytes());
    header
}

fn central_header(entry: &Entry, offset: u32) -> Vec<u8> {
    let mut header = b"PK\x01\x02".to_vec();
    header.extend_from_slice(&20u16.to_le_bytes()); // made by
    header.extend_from_slice(&20u16.to_le_bytes());
    header.extend_from_slice(&entry.flags.to_le_bytes());
    header.extend_from_slice(&entry.method.to_le_bytes());
    header.extend_from_slice(&[0; 4]);
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
    header.extend_from_slice(&entry.usize.to_le_bytes());
    header.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
    header.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
    header.extend_from_slice(&offset.to_le_bytes());
    header.extend_from_slice(entry.name.as_bytes());
    header
}

/// A whole zip: members, central directory (naming `named` of them, all when `None`), end record.
fn zip_naming(entries: &[Entry], named: Option<&[usize]>) -> Vec<u8> {
    let mut zip = Vec::new();
    let mut offsets = Vec::new();
    for entry in entries {
        offsets.push(zip.len() as u32);
        zip.extend(local_header(entry));
        zip.extend(&entry.data);
        if entry.flags & 8 != 0 {
            zip.extend_from_slice(b"PK\x07\x08");
            zip.extend_from_slice(&[0; 12]);
        }
    }
    let cd_offset = zip.len() as u32;
    for (index, entry) in entries.iter().enumerate() {
        if named.is_none_or(|named| named.contains(&index)) {
            zip.extend(central_header(entry, offsets[index]));
        }
    }
    let count = (entries.len() as u16).to_le_bytes();
    let cd_size = zip.len() as u32 - cd_offset;
    zip.extend_from_slice(b"PK\x05\x06");
    zip.extend_from_slice(&[0; 4]); // disk numbers
    zip.extend_from_slice(&count);
    zip.extend_from_slice(&count);
    zip.extend_from_slice(&cd_size.to_le_bytes());
    zip.extend_from_slice(&cd_offset.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip
}

fn zip(entries: &[Entry]) -> Vec<u8> {
    zip_naming(entries, None)
}

fn zip_of(content: &[u8]) -> Vec<u8> {
    zip(&[entry("member.bin", content, 8)])
}

fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, data) in members {
        let mut header = vec![0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..108].copy_from_slice(b"0000644\0");
        header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        set_checksum(&mut header);
        tar.extend(header);
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend(vec![0u8; 1024]);
    tar
}

/// Writes a tar header's checksum field for its bytes.
fn set_checksum(header: &mut [u8]) {
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn over_limit() -> Vec<u8> {
    vec![0u8; LIMIT as usize + 1]
}

fn check(bytes: &[u8], chunk: usize) -> Option<ArchiveFinding> {
    let mut guard = ArchiveGuard::new(LIMITS);
    for piece in bytes.chunks(chunk.max(1)) {
        guard.feed(piece);
    }
    guard.finish()
}

/// The kind found, the same in every chunking (none: `None`).
fn found(bytes: &[u8]) -> Option<FindingKind> {
    let kinds: Vec<Option<FindingKind>> = [1, 7, 511, 4096, 65536, bytes.len()]
        .into_iter()
        .map(|chunk| check(bytes, chunk).map(|finding| finding.kind))
        .collect();
    assert!(
        kinds.windows(2).all(|pair| pair[0] == pair[1]),
        "chunking changes the finding: {kinds:?}"
    );
    kinds[0]
}

#[test]
fn a_deflated_member_over_the_limit_is_found_by_its_declared_size_or_by_inflating_it() {
    assert_eq!(found(&zip_of(&over_limit())), Some(FindingKind::MemberExceedsLimit));
    let mut lying = entry("member.bin", &over_limit(), 8);
    lying.usize = 1000;
    assert_eq!(found(&zip(&[lying])), Some(FindingKind::MemberExceedsLimit));
}

#[test]
fn hole_zips_are_found_after_junk_inside_zips_gzip_and_tar() {
    let mut lying = entry("member.bin", &over_limit(), 8);
    lying.usize = 1000;
    let hole = zip(&[lying]);
    assert_eq!(
        found(&[vec![b'P'; 1001], hole.clone()].concat()),
        Some(FindingKind::MemberExceedsLimit)
    );
    assert_eq!(found(&zip_of(&hole)), Some(FindingKind::MemberExceedsLimit));
    assert_eq!(found(&zip_of(&zip_of(&hole))), Some(FindingKind::MemberExceedsLimit));
    assert_eq!(found(&gzip(&hole)), Some(FindingKind::MemberExceedsLimit));
    assert_eq!(
        found(&gzip(&tar(&[("a.zip", &hole)]))),
        Some(FindingKind::MemberExceedsLimit)
    );
    assert_eq!(
        found(&zip(&[entry("stored.zip", &hole, 0)])),
        Some(FindingKind::MemberExceedsLimit)
    );
}

#[test]
fn honest_archives_within_the_limits_and_plain_data_pass() {
    let at_limit = vec![0u8; LIMIT as usize];
    for bytes in [
        zip_of(&at_limit),
        zip_of(b"hello"),
        zip(&[
            entry("a.txt", b"abc", 0),
            entry("b.txt", &[7u8; 3000], 8),
            entry("empty", b"", 0),
        ]),
        zip(&[entry("inner.zip", &zip_of(b"nested"), 0)]),
        gzip(&at_limit),
        gzip(&zip_of(b"x")),
        tar(&[("a", b"abc"), ("b.zip", &zip_of(b"in tar"))]),
        [vec![b'x'; 5000], zip_of(b"after junk")].concat(),
        b"PK\x03\x04 looks like a header but is text".to_vec(),
        b"plain text".to_vec(),
        Vec::new(),
    ] {
        assert_eq!(found(&bytes), None);
    }
}

#[test]
fn a_data_descriptor_member_is_followed_to_its_stream_end() {
    let mut member = entry("dd.bin", &[1u8; 5000], 8);
    member.flags = 8;
    member.csize = 0;
    member.usize = 0;
    let mut bytes = zip(&[member.clone()]);
    assert_eq!(found(&bytes), None);
    let mut big = entry("dd.bin", &over_limit(), 8);
    big.flags = 8;
    big.csize = 0;
    big.usize = 0;
    assert_eq!(found(&zip(&[big])), Some(FindingKind::MemberExceedsLimit));
    // The central directory giving another compressed size: clamd reads another range.
    let cd = bytes.len() - 22 - central_header(&member, 0).len();
    bytes[cd + 20..cd + 24].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(found(&bytes), Some(FindingKind::Malformed));
}

#[test]
fn members_clamd_skips_or_cuts_make_the_object_unscannable() {
    // Methods clamd does not extract, or extracts but the guard cannot inflate.
    for method in [6, 9, 12, 14, 93, 95, 98, 99, 1234] {
        assert_eq!(
            found(&zip(&[entry("m", b"data", method)])),
            Some(FindingKind::UnsupportedMethod),
            "{method}"
        );
    }
    let mut encrypted = entry("e", b"data", 0);
    encrypted.flags = 1;
    assert_eq!(found(&zip(&[encrypted])), Some(FindingKind::Encrypted));
    let mut stored_lying = entry("s", b"short", 0);
    stored_lying.usize = 100;
    assert_eq!(found(&zip(&[stored_lying])), Some(FindingKind::Malformed));
    let mut zip64 = entry("z", b"data", 8);
    zip64.usize = u32::MAX;
    assert_eq!(found(&zip(&[zip64])), Some(FindingKind::Malformed));
    // A deflate stream longer than its compressed size: clamd scans a prefix.
    let mut cut = entry("c", &[5u8; 100_000], 8);
    cut.csize /= 2;
    cut.data.truncate(cut.csize as usize);
    assert_eq!(found(&zip(&[cut])), Some(FindingKind::Malformed));
    // A broken stream: clamd drops the member.
    let mut broken = entry("b", &[5u8; 1000], 8);
    broken.data = vec![0xff; 64];
    broken.csize = 64;
    assert_eq!(found(&zip(&[broken])), Some(FindingKind::Malformed));
}

#[test]
fn headers_clamd_reads_are_read_whatever_their_version_name_or_length() {
    let mut no_name = entry("", &over_limit(), 8);
    no_name.usize = 10;
    assert_eq!(found(&zip(&[no_name])), Some(FindingKind::MemberExceedsLimit));
    let long_name = "n".repeat(65_535);
    let mut long = entry(&long_name, &over_limit(), 8);
    long.usize = 10;
    assert_eq!(found(&zip(&[long])), Some(FindingKind::MemberExceedsLimit));
    let mut header = local_header(&entry("v", b"", 0));
    header[4..6].copy_from_slice(&999u16.to_le_bytes());
    let mut bytes = zip_of(&over_limit());
    bytes.splice(0..0, header);
    assert_ne!(found(&bytes), None);
}

#[test]
fn members_the_central_directory_does_not_name_are_not_extracted_by_clamd() {
    let entries = [entry("named", b"a", 0), entry("hidden", b"payload", 8)];
    assert_eq!(
        found(&zip_naming(&entries, Some(&[0]))),
        Some(FindingKind::MemberNotExtracted)
    );
    // No central directory at all: clamd extracts nothing.
    let mut only_locals = local_header(&entries[1]);
    only_locals.extend(&entries[1].data);
    assert_eq!(found(&only_locals), Some(FindingKind::MemberNotExtracted));
}

#[test]
fn skipped_members_of_an_embedded_zip_count_only_when_its_central_directory_names_them() {
    let mut encrypted = entry("e", b"secret", 0);
    encrypted.flags = 1;
    let sfx = [b"MZ stub ".repeat(100), zip(&[encrypted.clone()])].concat();
    assert_eq!(found(&sfx), Some(FindingKind::Encrypted));
    let mut lone = b"MZ stub ".repeat(100);
    lone.extend(local_header(&encrypted));
    lone.extend(&encrypted.data);
    assert_eq!(found(&lone), None, "without a central header naming it, it is noise");
}

#[test]
fn nesting_deeper_than_the_guard_follows_is_unscannable() {
    // The object is layer 0: wrapped MAX_DEPTH times, the content sits at layer MAX_DEPTH.
    let mut deepest = b"clean".to_vec();
    for _ in 0..MAX_DEPTH {
        deepest = gzip(&deepest);
    }
    assert_eq!(found(&deepest), None);
    assert_eq!(found(&gzip(&deepest)), Some(FindingKind::TooDeep));
    let mut zips = b"clean".to_vec();
    for _ in 0..=MAX_DEPTH {
        zips = zip_of(&zips);
    }
    assert_eq!(found(&zips), Some(FindingKind::TooDeep));
}

#[test]
fn the_inflate_budget_bounds_the_work_of_a_bomb() {
    // Members within the limit, but more in all than the budget.
    let member = deflate(&vec![0u8; LIMIT as usize]);
    assert_eq!(found(&zip_of_members(&member, 70)), Some(FindingKind::ScanSizeExceeded));
}

/// A zip of `count` deflated members, each `member` (LIMIT bytes inflated).
fn zip_of_members(member: &[u8], count: usize) -> Vec<u8> {
    let entries: Vec<Entry> = (0..count)
        .map(|i| Entry {
            name: format!("m{i}"),
            method: 8,
            flags: 0,
            csize: member.len() as u32,
            usize: LIMIT as u32,
            data: member.to_vec(),
        })
        .collect();
    zip(&entries)
}

#[test]
fn gzip_headers_are_read_whatever_their_length_and_rejected_ones_are_unscannable() {
    let body = gzip(&zip_of(&over_limit()));
    let mut long = body[..3].to_vec();
    long.push(0x08 | 0x04 | 0x10); // FNAME, FEXTRA, FCOMMENT
    long.extend_from_slice(&body[4..10]);
    long.extend_from_slice(&65_535u16.to_le_bytes());
    long.extend(vec![b'e'; 65_535]);
    long.extend(vec![b'n'; 200_000]);
    long.push(0);
    long.extend(vec![b'c'; 100_000]);
    long.push(0);
    long.extend_from_slice(&body[10..]);
    assert_eq!(found(&long), Some(FindingKind::MemberExceedsLimit));
    let mut reserved = gzip(b"x");
    reserved[3] |= 0x20;
    assert_eq!(found(&reserved), Some(FindingKind::Malformed));
    let mut bad_crc = gzip(b"x");
    bad_crc[3] |= 0x02;
    bad_crc.splice(10..10, [0u8, 0]);
    assert_eq!(found(&bad_crc), Some(FindingKind::Malformed));
}

#[test]
fn tar_headers_clamd_misreads_are_unscannable() {
    let mut base256 = tar(&[("a", b"data")]);
    base256[124] = 0x80;
    // The checksum no longer holds: clamd skips the block; fix it to get the case we mean.
    set_checksum(&mut base256[..512]);
    assert_eq!(found(&base256), Some(FindingKind::Malformed));
    assert_eq!(
        found(&tar(&[("big", &over_limit())])),
        Some(FindingKind::MemberExceedsLimit)
    );
}

#[test]
fn containers_the_guard_does_not_follow_are_unscannable() {
    for head in [
        b"\xfd7zXZ\x00\x00\x04".to_vec(),
        b"7z\xbc\xaf\x27\x1c\x00\x04".to_vec(),
        b"Rar!\x1a\x07\x01\x00".to_vec(),
        b"BZh91AY&SY........".to_vec(),
    ] {
        assert_eq!(found(&head), Some(FindingKind::UnsupportedContainer));
    }
    assert_eq!(found(b"BZh is how this text starts"), None);
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

/// `bytes` as a body of `content_length` (a lie when they differ), in chunks of 1000.
fn streamed_body(bytes: &[u8], content_length: u64) -> ObjectBody {
    use futures::StreamExt;
    ObjectBody {
        content_length,
        chunks: futures::stream::iter(
            bytes
                .chunks(1000)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )
        .boxed(),
    }
}

#[tokio::test]
async fn a_clean_verdict_does_not_stand_when_the_streamed_guard_found_something() {
    use futures::StreamExt;
    let body = |bytes: Vec<u8>| streamed_body(&bytes, bytes.len() as u64);
    let clean = ScanOutcome {
        verdict: Verdict::Clean,
        engine: None,
        definitions: None,
        sha256: None,
        allowed_by: None,
    };
    let drain = |mut body: ObjectBody| async move { while body.chunks.next().await.is_some() {} };
    let (guarded, check) = check_while_streaming(body(zip_of(&over_limit())), LIMITS);
    drain(guarded).await;
    let outcome = check.apply(clean.clone()).await;
    assert_eq!(
        outcome.verdict.signature(),
        Some(FindingKind::MemberExceedsLimit.signature())
    );
    let (guarded, check) = check_while_streaming(body(zip_of(b"fine")), LIMITS);
    drain(guarded).await;
    assert_eq!(check.apply(clean).await.verdict, Verdict::Clean);
}

#[tokio::test]
async fn the_sha256_of_the_whole_body_comes_with_every_verdict_and_never_of_a_part() {
    use futures::StreamExt;
    use sha2::Digest;
    let body = streamed_body;
    let outcome = |verdict| ScanOutcome {
        verdict,
        engine: None,
        definitions: None,
        sha256: None,
        allowed_by: None,
    };
    let drain = |mut body: ObjectBody| async move { while body.chunks.next().await.is_some() {} };
    // Over the guard's member limit, so the guard stops early: the digest still covers it all.
    let bytes = zip_of(&over_limit());
    let expected: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for verdict in [Verdict::Clean, Verdict::Infected { signature: "x".into() }] {
        let (guarded, check) = check_while_streaming(body(&bytes, bytes.len() as u64), LIMITS);
        drain(guarded).await;
        assert_eq!(
            check.apply(outcome(verdict)).await.sha256.as_deref(),
            Some(expected.as_str())
        );
    }
    // A body cut short (what clamd's stream limit does) has no digest.
    let (guarded, check) = check_while_streaming(body(&bytes[..5000], bytes.len() as u64), LIMITS);
    drain(guarded).await;
    let infected = Verdict::Infected { signature: "x".into() };
    assert_eq!(check.apply(outcome(infected)).await.sha256, None);
}

/// A body held whole gets what the streamed check gives it, whether it is checked on the spot
/// or (a small archive that extracts more than the on-the-spot budget) on a thread with the
/// full budget: a small bomb within the budget stays clean, one past it does not.
#[tokio::test]
async fn a_body_held_whole_is_judged_as_the_streamed_guard_judges_it() {
    use futures::StreamExt;
    let clean = || ScanOutcome {
        verdict: Verdict::Clean,
        engine: None,
        definitions: None,
        sha256: None,
        allowed_by: None,
    };
    let member = {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; LIMIT as usize]).unwrap();
        encoder.finish().unwrap()
    };
    let bomb = |members: usize| zip_of_members(&member, members);
    // Within the budget (4 MiB extracted) but past the on-the-spot one, and past the budget.
    let within = bomb(4);
    let past = bomb(70);
    assert!((within.len() as u64) < INLINE_CHECK_BYTES && (past.len() as u64) < INLINE_CHECK_BYTES);
    let large_random: Vec<u8> = (0..INLINE_CHECK_BYTES as usize + 10_000)
        .map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes()[3])
        .collect();
    let cases: [&[u8]; 5] = [b"plain", &zip_of(&over_limit()), &within, &past, &large_random];
    for bytes in cases {
        let chunks: Vec<bytes::Bytes> = bytes.chunks(1000).map(bytes::Bytes::copy_from_slice).collect();
        let held = check_buffered(&chunks, bytes.len() as u64, LIMITS).apply(clean()).await;
        let (mut guarded, streamed) = check_while_streaming(streamed_body(bytes, bytes.len() as u64), LIMITS);
        while guarded.chunks.next().await.is_some() {}
        // The guard's thread ends when the body (and its sender) is gone.
        drop(guarded);
        let streamed = streamed.apply(clean()).await;
        assert_eq!(held, streamed, "{} bytes", bytes.len());
    }
    let verdict = |bytes: &[u8]| {
        let chunks = vec![bytes::Bytes::copy_from_slice(bytes)];
        check_buffered(&chunks, bytes.len() as u64, LIMITS)
    };
    assert_eq!(verdict(&within).apply(clean()).await.verdict, Verdict::Clean);
    assert_eq!(
        verdict(&past).apply(clean()).await.verdict.signature(),
        Some(FindingKind::ScanSizeExceeded.signature())
    );
}

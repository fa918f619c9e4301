//! tar, as clamd reads it (libclamav `untar.c`): 512-byte headers with octal sizes, each regular
//! member's data a layer of its own. clamd ends the archive at a header whose first byte is NUL;
//! what follows is searched for content a tool would find there (`scavenge.rs`).
//!
//! Where clamd's walk would lose its place while a tar tool's would not, or where neither looks,
//! content goes unscanned, and the object is unscannable: a header whose checksum is wrong, or a
//! block that is not a header where one should be (clamd skips it and reads the next block as a
//! header: a size that lies, data hidden between members); bytes in a member's padding; a POSIX
//! archive's header without the `ustar` magic (clamd stops); a size in base-256 or of 2 GiB or
//! more (clamd reads the member's data as headers); a link entry with data; a pax header that
//! sets a size (clamd ignores pax); a metadata entry (long name, pax record), which clamd does not
//! scan, holding a container. Data typed tar only by a chance checksum (its first block is not
//! laid out as a header) is read as clamd reads it: blocks that are not headers are skipped.

use super::context::{Context, Extracted, Found, Region};
use super::finding::{ArchiveFinding, FindingKind};
use super::magic::container_in;

/// A tar header, and the unit data is padded to.
pub(super) const BLOCK: usize = 512;

/// Metadata entries (long names, pax records) larger than this are not read: unscannable.
const MAX_METADATA: u64 = 64 * 1024;

/// True when `head` is typed tar by clamd: the POSIX magic at 257, or a header whose checksum
/// holds (`is_tar`).
pub(super) fn looks_like_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar") || head.get(..BLOCK).is_some_and(checksum_holds)
}

/// True when `block` is a POSIX or GNU header: the `ustar` magic, and a checksum that holds.
pub(super) fn is_ustar_header(block: &[u8]) -> bool {
    block.get(257..262) == Some(b"ustar") && checksum_holds(block)
}

/// True when `block` is laid out as a header, whatever its checksum: the `ustar` magic, or mode
/// and size fields of octal digits (which chance does not give).
fn looks_like_header(block: &[u8]) -> bool {
    let octal_field = |field: &[u8]| {
        field.iter().all(|byte| matches!(byte, b'0'..=b'7' | b' ' | 0)) && field.iter().any(u8::is_ascii_digit)
    };
    &block[257..262] == b"ustar" || (octal_field(&block[100..108]) && octal_field(&block[124..136]))
}

/// True when `bytes` hold a `ustar` header whose checksum holds, at any offset.
fn holds_tar(bytes: &[u8]) -> bool {
    bytes.windows(5).enumerate().any(|(at, window)| {
        window == b"ustar"
            && at
                .checked_sub(257)
                .and_then(|start| bytes.get(start..start + BLOCK))
                .is_some_and(is_ustar_header)
    })
}

/// The header's checksum field matches its bytes (summed unsigned or signed, the field itself
/// counted as spaces).
fn checksum_holds(header: &[u8]) -> bool {
    let Some(expected) = octal(&header[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (at, byte) in header.iter().enumerate() {
        let byte = if (148..156).contains(&at) { b' ' } else { *byte };
        unsigned += u64::from(byte);
        signed += i64::from(byte as i8);
    }
    expected == unsigned || i64::try_from(expected).is_ok_and(|expected| expected == signed)
}

/// An octal field as `sscanf("%o")` reads it: leading spaces, then octal digits; `None` without
/// any digit.
fn octal(field: &[u8]) -> Option<u64> {
    let digits = field.iter().skip_while(|b| **b == b' ');
    let mut value: Option<u64> = None;
    for byte in digits {
        if !(b'0'..=b'7').contains(byte) {
            break;
        }
        value = Some(value.unwrap_or(0).checked_mul(8)? + u64::from(byte - b'0'));
    }
    value
}

enum State {
    Header,
    /// A regular member's data, then the padding to the next block.
    Data {
        remaining: u64,
        padding: u64,
        content: Option<Box<dyn Extracted>>,
    },
    /// A metadata entry (long names, pax records), which clamd does not scan, then its padding.
    Metadata {
        remaining: u64,
        padding: u64,
        pax: bool,
        record: Vec<u8>,
    },
    /// After the end-of-archive header, where clamd reads no further: searched.
    End(Box<dyn Extracted>),
}

/// A layer clamd types as tar.
pub(super) struct TarLayer {
    depth: usize,
    state: State,
    header: Vec<u8>,
    /// Whether the first header carried the POSIX magic; clamd then demands it of every header.
    posix: Option<bool>,
    /// Whether the first header is laid out as one: a real archive, not data typed tar by a
    /// chance checksum. A real archive has nothing where tar tools do not look: no block that is
    /// not a header where one should be, no bytes in a member's padding.
    real: Option<bool>,
}

impl TarLayer {
    pub(super) fn new(depth: usize) -> Self {
        Self {
            depth,
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            posix: None,
            real: None,
        }
    }

    fn malformed(&self, what: &str) -> ArchiveFinding {
        malformed(self.depth, what)
    }

    pub(super) fn feed(&mut self, mut input: &[u8], context: &mut Context) -> Found {
        while !input.is_empty() {
            match &mut self.state {
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(input.len());
                    self.header.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.header.len() == BLOCK {
                        let header = std::mem::replace(&mut self.header, Vec::with_capacity(BLOCK));
                        self.state = self.read_header(&header, context)?;
                    }
                }
                State::Data {
                    remaining,
                    padding,
                    content,
                } => {
                    let take = usize::try_from(*remaining + *padding)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let data = usize::try_from(*remaining).unwrap_or(usize::MAX).min(take);
                    if data > 0 {
                        let layer = match content {
                            Some(layer) => layer,
                            None => content.insert(context.open_layer(self.depth + 1)?),
                        };
                        layer.feed(&input[..data], context)?;
                    }
                    *remaining -= data as u64;
                    *padding -= (take - data) as u64;
                    let pad = &input[data..take];
                    input = &input[take..];
                    if *remaining == 0 && *padding == 0 {
                        if let Some(layer) = content {
                            layer.finish(context)?;
                        }
                        self.state = State::Header;
                    }
                    if hides_in_padding(self.real, pad) {
                        return Err(malformed(self.depth, PADDING));
                    }
                }
                State::Metadata {
                    remaining,
                    padding,
                    pax,
                    record,
                } => {
                    let take = usize::try_from(*remaining + *padding)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let data = usize::try_from(*remaining).unwrap_or(usize::MAX).min(take);
                    record.extend_from_slice(&input[..data]);
                    *remaining -= data as u64;
                    *padding -= (take - data) as u64;
                    let pad = &input[data..take];
                    input = &input[take..];
                    if hides_in_padding(self.real, pad) {
                        return Err(malformed(self.depth, PADDING));
                    }
                    if *remaining == 0 && *padding == 0 {
                        if let Some(problem) = metadata_problem(*pax, record) {
                            return Err(self.malformed(&problem));
                        }
                        self.state = State::Header;
                    }
                }
                State::End(after) => return after.feed(input, context),
            }
        }
        Ok(())
    }

    /// What follows `header`, as clamd's walk takes it.
    fn read_header(&mut self, header: &[u8], context: &mut Context) -> Result<State, ArchiveFinding> {
        if header[0] == 0 {
            let mut after = context.open_region(self.depth, Region::AfterTheEnd);
            after.feed(header, context)?;
            return Ok(State::End(after));
        }
        let real = *self.real.get_or_insert_with(|| looks_like_header(header));
        if !checksum_holds(header) {
            if looks_like_header(header) {
                return Err(self.malformed("a header whose checksum is wrong (clamd skips the block)"));
            }
            if real {
                return Err(self.malformed(
                    "a block that is not a header where one should be (clamd and tar tools skip it): \
                     a size that lies, or data hidden between members",
                ));
            }
            // Data that only looked like tar by a chance checksum: clamd skips the block.
            return Ok(State::Header);
        }
        let posix = &header[257..262] == b"ustar";
        if *self.posix.get_or_insert(posix) && !posix {
            return Err(self.malformed("a header without the ustar magic in a POSIX archive (clamd stops there)"));
        }
        if header[124] & 0x80 != 0 {
            return Err(self.malformed("a base-256 size (clamd loses its place)"));
        }
        let size = octal(&header[124..136]).unwrap_or(0);
        if size >= 1 << 31 {
            return Err(self.malformed("a size of 2 GiB or more (clamd loses its place)"));
        }
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        match header[156] {
            b'1'..=b'6' | b'V' if size > 0 => {
                Err(self.malformed("a link or directory entry with data (clamd reads it as headers)"))
            }
            b'1'..=b'6' | b'V' => Ok(State::Header),
            b'x' | b'g' | b'X' | b'K' | b'L' | b'N' | b'A' | b'E' | b'I' if size > MAX_METADATA => {
                Err(self.malformed("a metadata entry too large to read"))
            }
            kind @ (b'x' | b'g' | b'X' | b'K' | b'L' | b'N' | b'A' | b'E' | b'I') => Ok(State::Metadata {
                remaining: size,
                padding,
                pax: matches!(kind, b'x' | b'g' | b'X'),
                record: Vec::new(),
            }),
            _ => {
                context.count_member(self.depth)?;
                if size > context.limits.member_limit {
                    return Err(ArchiveFinding::new(
                        FindingKind::MemberExceedsLimit,
                        self.depth + 1,
                        format!("a tar member of {size} bytes"),
                    ));
                }
                Ok(State::Data {
                    remaining: size,
                    padding,
                    content: None,
                })
            }
        }
    }

    pub(super) fn finish(&mut self, context: &mut Context) -> Found {
        // A member cut short is scanned by clamd as far as it goes; a metadata entry cut short
        // hides what it holds as a whole one does.
        match &mut self.state {
            State::Data {
                content: Some(layer), ..
            } => layer.finish(context),
            State::Metadata { pax, record, .. } => match metadata_problem(*pax, record) {
                Some(problem) => Err(self.malformed(&problem)),
                None => Ok(()),
            },
            State::End(after) => after.finish(context),
            _ => Ok(()),
        }
    }
}

fn malformed(depth: usize, what: &str) -> ArchiveFinding {
    ArchiveFinding::new(FindingKind::Malformed, depth, format!("tar: {what}"))
}

/// Padding bytes: zeros in a real archive (a tar writer's), whatever in data typed tar by
/// chance.
fn hides_in_padding(real: Option<bool>, padding: &[u8]) -> bool {
    real == Some(true) && padding.iter().any(|byte| *byte != 0)
}

const PADDING: &str = "bytes in a member's padding, where clamd and tar tools do not look";

/// What in a metadata entry (whole, or cut short by the end of the layer) hides content.
fn metadata_problem(pax: bool, record: &[u8]) -> Option<String> {
    if pax && contains(record, b" size=") {
        return Some("a pax header sets a size, which clamd ignores".into());
    }
    let container = container_in(record).or_else(|| holds_tar(record).then_some("tar"))?;
    Some(format!(
        "a metadata entry, which clamd does not scan, holds a {container} magic"
    ))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

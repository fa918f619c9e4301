//! tar, as clamd reads it (libclamav `untar.c`): 512-byte headers with octal sizes, each regular
//! member's data a layer of its own. clamd ends the archive at a header whose first byte is NUL
//! and skips a block whose checksum is wrong, as the guard does. Where clamd's walk would lose
//! its place while a tar tool's would not, content goes unscanned: a POSIX archive's header
//! without the `ustar` magic (clamd stops), a size in base-256 or of 2 GiB or more (clamd reads
//! the member's data as headers), a link entry with data, a pax header that sets a size (clamd
//! ignores pax). Those make the object unscannable.

use super::context::{Context, Extracted, Found};
use super::finding::{ArchiveFinding, FindingKind};

const BLOCK: usize = 512;
/// pax records larger than this are not read for a `size=`: unscannable.
const MAX_PAX: u64 = 64 * 1024;

/// True when `head` is typed tar by clamd: the POSIX magic at 257, or a header whose checksum
/// holds (`is_tar`).
pub(super) fn looks_like_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar") || head.get(..BLOCK).is_some_and(checksum_holds)
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
    /// Data that is not a member (long names, pax records), then its padding.
    Skip {
        remaining: u64,
        pax: Option<Vec<u8>>,
    },
    /// After the end-of-archive header: clamd reads no further.
    End,
}

/// A layer clamd types as tar.
pub(super) struct TarLayer {
    depth: usize,
    state: State,
    header: Vec<u8>,
    /// Whether the first header carried the POSIX magic; clamd then demands it of every header.
    posix: Option<bool>,
}

impl TarLayer {
    pub(super) fn new(depth: usize) -> Self {
        Self {
            depth,
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            posix: None,
        }
    }

    fn malformed(&self, what: &str) -> ArchiveFinding {
        ArchiveFinding::new(FindingKind::Malformed, self.depth, format!("tar: {what}"))
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
                    input = &input[take..];
                    if *remaining == 0 && *padding == 0 {
                        if let Some(layer) = content {
                            layer.finish(context)?;
                        }
                        self.state = State::Header;
                    }
                }
                State::Skip { remaining, pax } => {
                    let take = usize::try_from(*remaining).unwrap_or(usize::MAX).min(input.len());
                    if let Some(record) = pax {
                        record.extend_from_slice(&input[..take]);
                    }
                    *remaining -= take as u64;
                    input = &input[take..];
                    if *remaining == 0 {
                        if pax.as_ref().is_some_and(|record| contains(record, b" size=")) {
                            return Err(self.malformed("a pax header sets a size, which clamd ignores"));
                        }
                        self.state = State::Header;
                    }
                }
                State::End => return Ok(()),
            }
        }
        Ok(())
    }

    /// What follows `header`, as clamd's walk takes it.
    fn read_header(&mut self, header: &[u8], context: &mut Context) -> Result<State, ArchiveFinding> {
        if header[0] == 0 {
            return Ok(State::End);
        }
        if !checksum_holds(header) {
            // clamd skips the block and reads the next one as a header.
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
            b'x' | b'g' | b'X' if size > MAX_PAX => Err(self.malformed("a pax header too large to read")),
            b'x' | b'g' | b'X' => Ok(State::Skip {
                remaining: size + padding,
                pax: Some(Vec::new()),
            }),
            b'K' | b'L' | b'N' | b'A' | b'E' | b'I' => Ok(State::Skip {
                remaining: size + padding,
                pax: None,
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
        // A member cut short is scanned by clamd as far as it goes.
        if let State::Data {
            content: Some(layer), ..
        } = &mut self.state
        {
            layer.finish(context)?;
        }
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

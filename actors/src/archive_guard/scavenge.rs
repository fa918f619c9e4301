//! Regions of a layer clamd extracts nothing from — inside other data, between zip members,
//! after the end of a gzip or tar stream — searched for content clamd therefore never scans:
//!
//! - a gzip stream: clamd opens gzip only at the start of a layer. A `1f 8b 08` counts only when
//!   a [probe](GzipLayer::probe) proves it real (its first member's trailer matches what it
//!   inflated), so a chance match in random bytes never does;
//! - a tar archive: a `ustar` header whose checksum holds (clamd types tar only at offset 0);
//! - a container the guard does not follow (bzip2, xz, 7z, RAR, CAB), by a header that
//!   [holds](proven_container) (clamd finds some of these itself; the guard cannot tell
//!   whether it scanned them whole);
//! - after the end of a gzip or tar stream, a zip member with content: clamd's embedded zip scan
//!   does not reach there, a streaming unzip does. (Inside other data, zips are clamd's own
//!   embedded scan's, followed by `zip_embedded.rs`.)
//!
//! Any of these makes the object unscannable: what no tool would open is not looked for, what
//! one would open is not let through unscanned.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};

use super::context::{Context, Extracted, Found, Region, MAX_FOLLOWERS};
use super::finding::{ArchiveFinding, FindingKind};
use super::gzip::GzipLayer;
use super::magic::{proven_container, UNFOLLOWED};
use super::tar::{is_ustar_header, BLOCK};
use super::zip_headers::{LocalHeader, Parsed, FLAG_DATA_DESCRIPTOR, LOCAL};

/// The longest header looked for (tar's): bytes kept between chunks.
const KEEP: usize = BLOCK;

/// Where tar's `ustar` magic sits in its header.
const USTAR_AT: usize = 257;

/// What a magic found in a region may start.
#[derive(Debug, Clone, Copy)]
enum Magic {
    Gzip,
    ZipLocal,
    Tar,
    Unfollowed,
}

/// The magics searched for, in one pass (Aho-Corasick): gzip's, a zip local header's, tar's,
/// then those of the containers the guard does not follow.
static MAGICS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    let followed: [&[u8]; 3] = [&[0x1f, 0x8b, 8], &LOCAL, b"ustar"];
    let unfollowed = UNFOLLOWED.iter().map(|(_, magic)| *magic);
    // Leftmost-first: the semantics under which the SIMD prefilter (Teddy) runs.
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build(followed.into_iter().chain(unfollowed))
        .expect("the magics build an automaton")
});

/// What the magic of pattern `index` of [`MAGICS`] may start.
fn magic_of(index: usize) -> Magic {
    match index {
        0 => Magic::Gzip,
        1 => Magic::ZipLocal,
        2 => Magic::Tar,
        _ => Magic::Unfollowed,
    }
}

/// Searched bytes are dropped from the window once there are this many.
const DRAIN_AT: usize = 64 * 1024;

/// A gzip candidate: a probe and the region offset of the next byte it needs.
struct Candidate {
    probe: GzipLayer,
    next: u64,
}

/// The search of one region.
pub(super) struct Scavenger {
    depth: usize,
    region: Region,
    /// The region offset of `window[0]`.
    base: u64,
    window: Vec<u8>,
    /// Where the search goes on, in the window.
    cursor: usize,
    candidates: Vec<Candidate>,
}

impl Scavenger {
    pub(super) fn new(depth: usize, region: Region) -> Self {
        Self {
            depth,
            region,
            base: 0,
            window: Vec::new(),
            cursor: 0,
            candidates: Vec::new(),
        }
    }

    fn place(&self) -> &'static str {
        match self.region {
            Region::AfterTheEnd => "after the end of a gzip or tar stream",
            Region::Inside => "inside other data",
        }
    }

    /// Content clamd never opens here.
    fn hidden(&self, what: &str) -> ArchiveFinding {
        let detail = format!("{what} {}: clamd does not open it", self.place());
        ArchiveFinding::new(FindingKind::MemberNotExtracted, self.depth, detail)
    }

    /// Searches the window from the cursor; `at_end`: no more bytes will come. Positions up to
    /// `KEEP` bytes before the window's end wait for the next chunk (a header may go on there).
    fn search(&mut self, context: &mut Context, at_end: bool) -> Found {
        let len = self.window.len();
        let limit = if at_end { len } else { len.saturating_sub(KEEP - 1) };
        if self.cursor >= limit {
            return Ok(());
        }
        // Where each magic starts, and for tar where its header starts, in [cursor, limit).
        let haystack = &self.window[self.cursor..len.min(limit + USTAR_AT + 8)];
        let mut found: Vec<(usize, Magic)> = MAGICS
            .find_iter(haystack)
            .filter_map(|hit| {
                let magic = magic_of(hit.pattern().as_usize());
                let at = match magic {
                    Magic::Tar => (self.cursor + hit.start()).checked_sub(USTAR_AT)?,
                    _ => self.cursor + hit.start(),
                };
                (self.cursor..limit).contains(&at).then_some((at, magic))
            })
            .collect();
        found.sort_unstable_by_key(|(at, _)| *at);
        for (at, magic) in found {
            let rest = &self.window[at..];
            match magic {
                Magic::Gzip if context.followers < MAX_FOLLOWERS => {
                    context.followers += 1;
                    self.candidates.push(Candidate {
                        probe: GzipLayer::probe(self.depth),
                        next: self.base + at as u64,
                    });
                }
                Magic::Gzip => {}
                Magic::ZipLocal if self.region == Region::AfterTheEnd => match LocalHeader::parse(rest) {
                    Parsed::Record(header, _) if header.csize > 0 || header.has(FLAG_DATA_DESCRIPTOR) => {
                        return Err(self.hidden("a zip member"));
                    }
                    Parsed::Record(..) => {}
                    // A name or extra field longer than the window: wait for it.
                    Parsed::NeedMore if !at_end => {
                        self.cursor = at;
                        return Ok(());
                    }
                    Parsed::NeedMore => {}
                },
                Magic::ZipLocal => {}
                Magic::Tar if rest.len() >= BLOCK && is_ustar_header(&rest[..BLOCK]) => {
                    return Err(self.hidden("a tar archive"));
                }
                Magic::Tar => {}
                Magic::Unfollowed => {
                    if let Some(name) = proven_container(rest) {
                        let detail = format!("a {name} container {}, which the guard does not follow", self.place());
                        return Err(ArchiveFinding::new(
                            FindingKind::UnsupportedContainer,
                            self.depth,
                            detail,
                        ));
                    }
                }
            }
        }
        self.cursor = limit;
        Ok(())
    }

    /// Feeds every candidate what it is due; proven ones are hidden content.
    fn probe(&mut self, context: &mut Context) -> Found {
        let mut index = 0;
        while index < self.candidates.len() {
            let candidate = &mut self.candidates[index];
            let from = usize::try_from(candidate.next.saturating_sub(self.base)).unwrap_or(usize::MAX);
            if let Some(bytes) = self.window.get(from..) {
                candidate.probe.feed(bytes, context)?;
                candidate.next += bytes.len() as u64;
            }
            if candidate.probe.is_verified() {
                return Err(self.hidden("a gzip stream"));
            }
            if candidate.probe.is_done() {
                context.followers -= 1;
                self.candidates.swap_remove(index);
            } else {
                index += 1;
            }
        }
        Ok(())
    }
}

impl Extracted for Scavenger {
    fn feed(&mut self, bytes: &[u8], context: &mut Context) -> Found {
        self.window.extend_from_slice(bytes);
        self.search(context, false)?;
        self.probe(context)?;
        // Everything before the cursor is searched, and every candidate has taken its bytes:
        // dropped once there is enough of it that moving what remains is cheap.
        if self.cursor >= DRAIN_AT {
            self.window.drain(..self.cursor);
            self.base += self.cursor as u64;
            self.cursor = 0;
        }
        Ok(())
    }

    fn finish(&mut self, context: &mut Context) -> Found {
        // The last bytes, searched as far as they go.
        self.search(context, true)?;
        self.probe(context)?;
        for _ in self.candidates.drain(..) {
            context.followers -= 1;
        }
        Ok(())
    }
}

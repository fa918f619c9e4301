//! Zip, as clamd reads it.
//!
//! A layer that starts with a local header is a zip layer ([`ZipLayer`]). clamd extracts exactly
//! the members its central directory names (the last end record whose directory fits in the
//! layer), with sizes, method and flags from each member's local header (from the central entry
//! under a data descriptor); a zip without a central directory yields nothing. The guard walks
//! the members from offset 0 as they stream by, follows each one's data into a layer of its
//! own, and at the end checks the walk against the central directory: a member clamd would not
//! extract, or one it names that the guard did not follow, makes the object unscannable. Where
//! the walk meets bytes that are not a header (a gap), it searches them and follows every local
//! header it finds as a candidate, whose findings only count if the directory names it; the
//! gap's bytes are also searched for content clamd never opens there (a gzip stream).
//!
//! Zips embedded in other data are `zip_embedded.rs`; both take a member's data through
//! `zip_member.rs`.

use std::collections::HashSet;

use super::context::{Context, Extracted, Found, Region, MAX_FOLLOWERS};
use super::finding::{ArchiveFinding, FindingKind};
use super::zip_headers::{
    descriptor_len, finding, header_problem, next_signature, CentralHeader, EndOfCentralDirectory, LocalHeader, Parsed,
    CENTRAL, EOCD, FLAG_DATA_DESCRIPTOR, LOCAL, ZIP64_EOCD, ZIP64_LOCATOR,
};
use super::zip_member::{disguised, ending_problem, follow, Ending, Follower, Member, MemberData};

/// Where the walk is.
enum Walk {
    /// At a header (or what should be one).
    Header,
    /// In the data of a walked member.
    Data { member: usize, data: Box<MemberData> },
    /// After a data-descriptor member's stream: its descriptor.
    Descriptor,
    /// In a gap: searching for the next signature.
    Search,
}

/// A layer that starts with a local header.
pub(super) struct ZipLayer {
    depth: usize,
    /// The layer offset of `window[0]`.
    base: u64,
    window: Vec<u8>,
    walk: Walk,
    members: Vec<Member>,
    /// Central entries: their offset, length and header.
    centrals: Vec<(u64, u64, CentralHeader)>,
    /// End records: their offset and contents.
    ends: Vec<(u64, EndOfCentralDirectory)>,
    followers: Vec<Follower>,
    length: u64,
    /// The search of the gaps' bytes, opened with the first gap.
    gap: Option<Box<dyn Extracted>>,
    /// The layer offset up to which gap bytes went to that search.
    gap_searched: u64,
}

impl ZipLayer {
    pub(super) fn new(depth: usize) -> Self {
        Self {
            depth,
            base: 0,
            window: Vec::new(),
            walk: Walk::Header,
            members: Vec::new(),
            centrals: Vec::new(),
            ends: Vec::new(),
            followers: Vec::new(),
            length: 0,
            gap: None,
            gap_searched: 0,
        }
    }

    /// Sends the gap's bytes up to layer offset `upto` (those in the window) to the gap's search.
    fn search_gap(&mut self, upto: u64, context: &mut Context) -> Found {
        let from = self.gap_searched.max(self.base);
        if upto <= from {
            return Ok(());
        }
        self.gap_searched = upto;
        let window = &self.window[(from - self.base) as usize..(upto - self.base) as usize];
        let depth = self.depth;
        let gap = self
            .gap
            .get_or_insert_with(|| context.open_region(depth, Region::Inside));
        gap.feed(window, context)
    }

    pub(super) fn feed(&mut self, bytes: &[u8], context: &mut Context) -> Found {
        self.window.extend_from_slice(bytes);
        self.length += bytes.len() as u64;
        let mut at = 0;
        let result = self.walk(&mut at, context);
        let followed = follow(
            &mut self.followers,
            &mut self.members,
            self.base,
            &self.window,
            context,
            true,
        );
        self.window.drain(..at);
        self.base += at as u64;
        result.and(followed)
    }

    /// Advances the walk over `window[*at..]` as far as the bytes allow.
    fn walk(&mut self, at: &mut usize, context: &mut Context) -> Found {
        let depth = self.depth;
        loop {
            if let Walk::Data { member, data } = &mut self.walk {
                let taken = data.feed(&self.window[*at..], context)?;
                *at += taken;
                let ending = data.ending();
                if ending == Ending::Open {
                    return Ok(());
                }
                if let Some(problem) = ending_problem(ending, depth + 1) {
                    return Err(problem);
                }
                data.finish(context)?;
                let member = &mut self.members[*member];
                member.compressed = Some(data.consumed);
                member.inflated_crc = data.inflated_crc();
                self.walk = match member.header.has(FLAG_DATA_DESCRIPTOR) {
                    true => Walk::Descriptor,
                    false => Walk::Header,
                };
                continue;
            }
            if let Walk::Descriptor = self.walk {
                match descriptor_len(&self.window[*at..]) {
                    Parsed::Record((), len) if self.window.len() - *at >= len => {
                        *at += len;
                        self.walk = Walk::Header;
                        continue;
                    }
                    _ => return Ok(()),
                }
            }
            let searching = matches!(self.walk, Walk::Search);
            let start = match searching {
                false => *at,
                true => match next_signature(&self.window, *at) {
                    Some(found) => {
                        self.search_gap(self.base + found as u64, context)?;
                        found
                    }
                    None => {
                        // Keep the last three bytes, which may start a signature.
                        *at = (*at).max(self.window.len().saturating_sub(3));
                        return self.search_gap(self.base + *at as u64, context);
                    }
                },
            };
            let record = &self.window[start..];
            if record.len() < 4 {
                *at = start;
                return Ok(());
            }
            let offset = self.base + start as u64;
            let moved = match [record[0], record[1], record[2], record[3]] {
                LOCAL => match LocalHeader::parse(record) {
                    Parsed::NeedMore => None,
                    Parsed::Record(header, len) => {
                        context.count_member(depth)?;
                        Some(self.local(header, offset, len, !searching, context)?)
                    }
                },
                CENTRAL => match CentralHeader::parse(record) {
                    Parsed::NeedMore => None,
                    Parsed::Record(header, len) => {
                        context.count_member(depth)?;
                        self.centrals.push((offset, len as u64, header));
                        self.walk = Walk::Header;
                        Some(len)
                    }
                },
                EOCD => match EndOfCentralDirectory::parse(record) {
                    Parsed::NeedMore => None,
                    Parsed::Record(end, len) => {
                        self.ends.push((offset, end));
                        self.walk = Walk::Header;
                        Some(len)
                    }
                },
                ZIP64_EOCD | ZIP64_LOCATOR => {
                    return Err(finding(
                        FindingKind::Malformed,
                        depth,
                        "a zip64 archive, which clamd does not read",
                    ))
                }
                _ if searching => Some(1),
                _ => {
                    // Not a header where one should be: a gap, searched from here on.
                    self.walk = Walk::Search;
                    self.gap_searched = offset;
                    Some(0)
                }
            };
            match moved {
                // A record cut by the chunk's end: wait for the rest.
                None => {
                    *at = start;
                    return Ok(());
                }
                Some(moved) => *at = start + moved,
            }
        }
    }

    /// A local header at `offset`, `len` bytes long; returns how far the walk moves on.
    fn local(
        &mut self,
        header: LocalHeader,
        offset: u64,
        len: usize,
        walked: bool,
        context: &mut Context,
    ) -> Result<usize, ArchiveFinding> {
        let depth = self.depth;
        let problem = header_problem(&header, depth + 1, context.limits.member_limit);
        let index = self.members.len();
        let follow = problem.is_none() && (header.csize > 0 || header.has(FLAG_DATA_DESCRIPTOR));
        let data = MemberData::new(&header, depth + 1);
        self.members.push(Member {
            offset,
            header,
            walked,
            problem: problem.clone(),
            compressed: None,
            inflated_crc: None,
        });
        if walked {
            if let Some(problem) = problem {
                return Err(problem);
            }
            if follow {
                self.walk = Walk::Data {
                    member: index,
                    data: Box::new(data),
                };
            } else {
                self.members[index].compressed = Some(0);
            }
            return Ok(len);
        }
        // A candidate: followed beside the search, which goes on right after its signature.
        if follow {
            if context.followers < MAX_FOLLOWERS {
                context.followers += 1;
                self.followers.push(Follower {
                    member: index,
                    next: offset + len as u64,
                    data,
                });
            } else {
                self.members[index].problem = Some(finding(
                    FindingKind::TooManyMembers,
                    depth + 1,
                    "more zip members than the guard follows at once",
                ));
            }
        } else if problem.is_none() {
            self.members[index].compressed = Some(0);
        }
        Ok(4)
    }

    pub(super) fn finish(&mut self, context: &mut Context) -> Found {
        let depth = self.depth;
        if let Walk::Data { member, data } = &mut self.walk {
            data.finish(context)?;
            if self.members[*member].has_content() {
                return Err(finding(
                    FindingKind::Malformed,
                    depth + 1,
                    "zip member whose data runs past the end of the archive (clamd skips it)",
                ));
            }
        }
        for follower in &mut self.followers {
            let _ = follower.data.finish(context);
            context.followers -= 1;
        }
        self.followers.clear();
        if let Walk::Search = self.walk {
            self.search_gap(self.base + self.window.len() as u64, context)?;
        }
        if let Some(gap) = &mut self.gap {
            gap.finish(context)?;
        }
        self.check_central_directory()
    }

    /// Compares what the walk followed with what clamd extracts: the members the central
    /// directory names.
    fn check_central_directory(&self) -> Found {
        let depth = self.depth;
        let walked_content = self.members.iter().any(|m| m.walked && m.has_content());
        // clamd takes the last end record whose directory offset leaves room for an entry.
        let end = self
            .ends
            .iter()
            .rev()
            .find(|(_, end)| u64::from(end.cd_offset) + 46 <= self.length);
        let Some((_, end)) = end else {
            return match walked_content {
                true => Err(finding(
                    FindingKind::MemberNotExtracted,
                    depth + 1,
                    "a zip without a central directory: clamd extracts none of its members",
                )),
                false => Ok(()),
            };
        };
        let mut named = Vec::new();
        let mut next = u64::from(end.cd_offset);
        while let Some((offset, len, entry)) = self.centrals.iter().find(|(offset, _, _)| *offset == next) {
            named.push(entry);
            next = offset + len;
        }
        if named.is_empty() && walked_content {
            return Err(finding(
                FindingKind::MemberNotExtracted,
                depth + 1,
                "the central directory is not where its end record says: clamd extracts nothing",
            ));
        }
        let mut extracted = HashSet::new();
        for entry in named {
            let offset = u64::from(entry.local_offset);
            let Some((index, member)) = self.members.iter().enumerate().find(|(_, m)| m.offset == offset) else {
                return Err(finding(
                    FindingKind::Malformed,
                    depth + 1,
                    format!("the central directory names a member at {offset} that the guard did not follow"),
                ));
            };
            if let Some(problem) = &member.problem {
                return Err(problem.clone());
            }
            if member.inflated_crc == Some(entry.crc) {
                return Err(disguised(depth + 1));
            }
            if !member.header.has(FLAG_DATA_DESCRIPTOR) && member.header.csize != entry.csize {
                return Err(finding(
                    FindingKind::Malformed,
                    depth + 1,
                    format!(
                        "the central directory gives the member at {offset} another compressed size than its \
                         local header, which clamd reads"
                    ),
                ));
            }
            match member.compressed {
                None if member.has_content() => {
                    return Err(finding(
                        FindingKind::Malformed,
                        depth + 1,
                        "zip member whose data runs past the end of the archive (clamd skips it)",
                    ))
                }
                Some(compressed) if member.header.has(FLAG_DATA_DESCRIPTOR) && compressed != u64::from(entry.csize) => {
                    return Err(finding(
                        FindingKind::Malformed,
                        depth + 1,
                        "the central directory gives a data-descriptor member another size than its stream",
                    ))
                }
                _ => {}
            }
            extracted.insert(index);
        }
        match self
            .members
            .iter()
            .enumerate()
            .find(|(index, m)| m.walked && m.has_content() && !extracted.contains(index))
        {
            Some((_, member)) => Err(finding(
                FindingKind::MemberNotExtracted,
                depth + 1,
                format!(
                    "zip member at {} is not in the central directory: clamd skips it",
                    member.offset
                ),
            )),
            None => Ok(()),
        }
    }
}

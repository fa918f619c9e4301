//! Zips embedded in any other layer (an SFX archive, a zip appended to an image or a
//! document), found and followed as clamd's embedded-type scan does: clamd extracts every local
//! header at an offset above 0 on its own, with no central directory, except data-descriptor,
//! encrypted, masked, zip64, unsupported-method and compressed-but-empty members, which it skips
//! without an alert. Those, and whatever the guard finds in a member it follows, count only when
//! the zip's central directory names the member, as an unzip tool finds it: an end record, the
//! central headers it spans, and their local header offsets, shifted by the bytes before the
//! zip (what Info-ZIP calls "extra bytes" at the start of an SFX archive). So random bytes, or
//! a program that holds zip's signatures as constants, never look like a member.

use std::collections::HashMap;

use super::context::{Context, Found, MAX_FOLLOWERS};
use super::finding::{ArchiveFinding, FindingKind};
use super::zip_headers::{
    finding, header_problem, next_signature, CentralHeader, EndOfCentralDirectory, LocalHeader, Parsed, CENTRAL,
    CLAMD_ONLY_METHODS, DEFLATED, EOCD, FLAG_DATA_DESCRIPTOR, FLAG_ENCRYPTED, FLAG_MASKED, LOCAL, STORED,
};
use super::zip_member::{disguised, follow, Follower, Member, MemberData};

/// Zips embedded in any other layer, found and followed as clamd's embedded-type scan does.
pub(super) struct EmbeddedZips {
    depth: usize,
    base: u64,
    window: Vec<u8>,
    /// Where the search goes on, in the window.
    cursor: usize,
    members: Vec<Member>,
    followers: Vec<Follower>,
    /// Members clamd skips without an alert or cuts, at their offset: counted only if a central
    /// header names them.
    skipped: Vec<(u64, LocalHeader, ArchiveFinding)>,
    /// Central headers: where each is, and the header.
    centrals: Vec<(u64, CentralHeader)>,
    /// End records: where each is, and the central directory's length and offset it gives.
    ends: Vec<(u64, EndOfCentralDirectory)>,
}

impl EmbeddedZips {
    pub(super) fn new(depth: usize) -> Self {
        Self {
            depth,
            base: 0,
            window: Vec::new(),
            cursor: 0,
            members: Vec::new(),
            followers: Vec::new(),
            skipped: Vec::new(),
            centrals: Vec::new(),
            ends: Vec::new(),
        }
    }

    pub(super) fn feed(&mut self, bytes: &[u8], context: &mut Context) -> Found {
        self.window.extend_from_slice(bytes);
        let searched = self.search(context);
        let followed = follow(
            &mut self.followers,
            &mut self.members,
            self.base,
            &self.window,
            context,
            true,
        );
        self.window.drain(..self.cursor);
        self.base += self.cursor as u64;
        self.cursor = 0;
        searched.and(followed)
    }

    fn search(&mut self, context: &mut Context) -> Found {
        let depth = self.depth;
        while let Some(found) = next_signature(&self.window, self.cursor) {
            let record = &self.window[found..];
            if record.len() < 4 {
                self.cursor = found;
                return Ok(());
            }
            let offset = self.base + found as u64;
            match [record[0], record[1], record[2], record[3]] {
                // clamd's embedded scan only acts on offsets above 0 (a zip at 0 is a zip layer).
                LOCAL if offset > 0 => match LocalHeader::parse(record) {
                    Parsed::NeedMore => {
                        self.cursor = found;
                        return Ok(());
                    }
                    Parsed::Record(header, len) => {
                        context.count_member(depth)?;
                        self.embedded(header, offset, len, context)?;
                    }
                },
                CENTRAL => match CentralHeader::parse(record) {
                    Parsed::NeedMore => {
                        self.cursor = found;
                        return Ok(());
                    }
                    Parsed::Record(header, _) => {
                        context.count_member(depth)?;
                        self.centrals.push((offset, header));
                    }
                },
                EOCD => match EndOfCentralDirectory::parse_fixed(record) {
                    None => {
                        self.cursor = found;
                        return Ok(());
                    }
                    Some(end) => {
                        context.count_member(depth)?;
                        self.ends.push((offset, end));
                    }
                },
                _ => {}
            }
            self.cursor = found + 4;
        }
        // No signature left; keep the last three bytes, which may start one.
        self.cursor = self.cursor.max(self.window.len().saturating_sub(3));
        Ok(())
    }

    /// An embedded local header, as `cli_unzip_single` takes it.
    fn embedded(&mut self, header: LocalHeader, offset: u64, len: usize, context: &mut Context) -> Found {
        let depth = self.depth + 1;
        let clamd_skips = (header.csize == 0 && header.method != STORED)
            || header.has(FLAG_DATA_DESCRIPTOR)
            || header.has(FLAG_ENCRYPTED)
            || header.has(FLAG_MASKED)
            || header.is_zip64()
            || !(header.method == STORED || header.method == DEFLATED || CLAMD_ONLY_METHODS.contains(&header.method));
        if clamd_skips {
            if let Some(problem) = header_problem(&header, depth, context.limits.member_limit).or_else(|| {
                header.has(FLAG_DATA_DESCRIPTOR).then(|| {
                    finding(
                        FindingKind::MemberNotExtracted,
                        depth,
                        "embedded zip member with a data descriptor: clamd skips it",
                    )
                })
            }) {
                self.skipped.push((offset, header.clone(), problem));
            }
            return Ok(());
        }
        if header.csize == 0 {
            return Ok(());
        }
        if let Some(problem) = header_problem(&header, depth, context.limits.member_limit) {
            self.skipped.push((offset, header.clone(), problem));
            return Ok(());
        }
        if context.followers >= MAX_FOLLOWERS {
            return Err(finding(
                FindingKind::TooManyMembers,
                depth,
                "more embedded zip members than the guard follows at once",
            ));
        }
        context.followers += 1;
        self.members.push(Member {
            offset,
            header: header.clone(),
            walked: false,
            problem: None,
            compressed: None,
            inflated_crc: None,
        });
        self.followers.push(Follower {
            member: self.members.len() - 1,
            next: offset + len as u64,
            data: MemberData::new(&header, depth),
        });
        Ok(())
    }

    pub(super) fn finish(&mut self, context: &mut Context) -> Found {
        let followers = std::mem::take(&mut self.followers);
        let named = self.named();
        for mut follower in followers {
            // Data past the layer's end: clamd skips such a member ("stream out of file"); it
            // counts only if a central header names it.
            let _ = follower.data.finish(context);
            context.followers -= 1;
            if named.contains_key(&self.members[follower.member].offset) {
                return Err(finding(
                    FindingKind::MemberNotExtracted,
                    follower.data_depth(),
                    "embedded zip member whose data runs past the end: clamd skips it",
                ));
            }
        }
        let followed = self
            .members
            .iter()
            .filter_map(|member| Some((member.offset, &member.header, member.problem.as_ref()?)));
        let skipped = self
            .skipped
            .iter()
            .map(|(offset, header, problem)| (*offset, header, problem));
        let counted = followed.chain(skipped).find(|(offset, header, _)| {
            // A compressed member with no compressed bytes counts only if the central header
            // gives it some: an unzip tool extracts nothing otherwise.
            let empty = header.method != STORED && header.csize == 0 && !header.has(FLAG_DATA_DESCRIPTOR);
            named.get(offset).is_some_and(|entry| !empty || entry.csize > 0)
        });
        if let Some((_, _, problem)) = counted {
            return Err(problem.clone());
        }
        // A stored member whose bytes inflate to what its central header's CRC is for.
        let disguised_member = self.members.iter().any(|member| {
            member.inflated_crc.is_some() && named.get(&member.offset).map(|entry| entry.crc) == member.inflated_crc
        });
        match disguised_member {
            true => Err(disguised(self.depth + 1)),
            false => Ok(()),
        }
    }

    /// The local headers the layer's central directories name: their offset in the layer, and
    /// the central header that names them. Each central header belongs to the first
    /// end record after it whose directory spans it; the directory's start less the offset the
    /// end record gives is where the zip starts, which every local header offset is relative to.
    fn named(&self) -> HashMap<u64, &CentralHeader> {
        let mut named = HashMap::new();
        for (at, entry) in &self.centrals {
            let at = *at;
            let after = self.ends.partition_point(|(end_at, _)| *end_at <= at);
            let Some((end_at, end)) = self.ends.get(after) else {
                continue;
            };
            let Some(start) = end_at.checked_sub(u64::from(end.cd_size)).filter(|start| *start <= at) else {
                continue;
            };
            if let Some(zip_start) = start.checked_sub(u64::from(end.cd_offset)) {
                named.insert(zip_start + u64::from(entry.local_offset), entry);
            }
        }
        named
    }
}

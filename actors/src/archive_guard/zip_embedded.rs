//! Zips embedded in any other layer (an SFX archive, a zip appended to an image or a
//! document), found and followed as clamd's embedded-type scan does: clamd extracts every local
//! header at an offset above 0 on its own, with no central directory, except data-descriptor,
//! encrypted, masked, zip64 and unsupported-method members, which it skips without an alert.
//! Those count only when a central header in the same layer names them (an archive an unzip
//! tool would open), so that random bytes never look like a skipped member.

use std::collections::HashSet;

use super::context::{Context, Found, MAX_FOLLOWERS};
use super::finding::{ArchiveFinding, FindingKind};
use super::zip::{finding, header_problem, CLAMD_ONLY_METHODS};
use super::zip_headers::{
    next_signature, CentralHeader, LocalHeader, Parsed, CENTRAL, DEFLATED, FLAG_DATA_DESCRIPTOR, FLAG_ENCRYPTED,
    FLAG_MASKED, LOCAL, STORED,
};
use super::zip_member::{decoder, follow, Follower, Member, MemberData};

/// Zips embedded in any other layer, found and followed as clamd's embedded-type scan does.
pub(super) struct EmbeddedZips {
    depth: usize,
    base: u64,
    window: Vec<u8>,
    /// Where the search goes on, in the window.
    cursor: usize,
    members: Vec<Member>,
    followers: Vec<Follower>,
    /// Members clamd skips without an alert, counted only if a central header names them.
    skipped: Vec<(u64, u32, ArchiveFinding)>,
    /// (name, crc) of every central header in the layer.
    named: HashSet<(u64, u32)>,
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
            named: HashSet::new(),
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
            false,
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
                        self.named.insert((header.name, header.crc));
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
        let clamd_skips = header.has(FLAG_DATA_DESCRIPTOR)
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
                self.skipped.push((header.name, header.crc, problem));
            }
            return Ok(());
        }
        if header.csize == 0 {
            return Ok(());
        }
        if let Some(problem) = header_problem(&header, depth, context.limits.member_limit) {
            return Err(problem);
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
        });
        self.followers.push(Follower {
            member: self.members.len() - 1,
            next: offset + len as u64,
            data: MemberData::new(decoder(header.method), Some(u64::from(header.csize)), depth),
        });
        Ok(())
    }

    pub(super) fn finish(&mut self, context: &mut Context) -> Found {
        for follower in &mut self.followers {
            // Data past the layer's end: clamd skips such a member ("stream out of file"); it
            // counts only if a central header names it.
            let _ = follower.data.finish(context);
            context.followers -= 1;
            let member = &self.members[follower.member];
            if self.named.contains(&(member.header.name, member.header.crc)) {
                return Err(finding(
                    FindingKind::MemberNotExtracted,
                    follower.data_depth(),
                    "embedded zip member whose data runs past the end: clamd skips it",
                ));
            }
        }
        self.followers.clear();
        match self
            .skipped
            .iter()
            .find(|(name, crc, _)| self.named.contains(&(*name, *crc)))
        {
            Some((_, _, problem)) => Err(problem.clone()),
            None => Ok(()),
        }
    }
}

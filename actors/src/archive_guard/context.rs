//! What one object may cost the guard ([`Context`]), and the one interface through which a
//! container hands the content it extracts to a layer of its own ([`Extracted`]): containers
//! open layers through the context, never by naming the layer type, so that the layer, which
//! holds containers, and the containers, which hold layers, do not import each other.

use super::finding::{ArchiveFinding, FindingKind, GuardLimits, MAX_DEPTH, MAX_MEMBERS};

/// What every step of the guard returns: nothing, or what it found.
pub(super) type Found = Result<(), ArchiveFinding>;

/// Zip members followed at once per object when their place in the archive is not yet known
/// (candidates in a gap, zips embedded in other data); more are not followed and, if they turn
/// out to be real members, make the object unscannable.
pub(super) const MAX_FOLLOWERS: usize = 64;

/// Content extracted from a container: a layer clamd scans as a file of its own.
pub(super) trait Extracted: Send {
    /// The content's next bytes.
    fn feed(&mut self, bytes: &[u8], context: &mut Context) -> Found;
    /// The content's end.
    fn finish(&mut self, context: &mut Context) -> Found;
}

/// Opens the layer for content extracted at a depth.
pub(super) type OpenLayer = fn(usize) -> Box<dyn Extracted>;

/// Bytes of a layer that clamd extracts nothing from, searched for content it misses there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Region {
    /// After the end of a gzip or tar stream, where clamd stops reading: a zip member (which a
    /// streaming unzip finds) as well as a gzip stream, a tar or another container.
    AfterTheEnd,
    /// Inside other data, or in a zip's gaps: clamd's embedded scan finds zips there itself (or
    /// the zip layer checks them), but never opens a gzip stream, a tar or another container.
    Inside,
}

/// Opens the search of a region at a depth.
pub(super) type OpenRegion = fn(usize, Region) -> Box<dyn Extracted>;

/// What one object may cost the guard, and what it has cost so far.
pub(super) struct Context {
    pub(super) limits: GuardLimits,
    /// How extracted content gets its layer.
    open: OpenLayer,
    /// How a region clamd extracts nothing from gets its search.
    open_region: OpenRegion,
    /// Bytes fed to layers below the object: clamd's scan size, less the object itself.
    extracted: u64,
    members: usize,
    /// Candidate members being followed now.
    pub(super) followers: usize,
}

impl Context {
    pub(super) fn new(limits: GuardLimits, open: OpenLayer, open_region: OpenRegion) -> Self {
        Self {
            limits,
            open,
            open_region,
            extracted: 0,
            members: 0,
            followers: 0,
        }
    }

    /// A layer for content extracted at `depth`, unless that is deeper than the guard follows.
    pub(super) fn open_layer(&self, depth: usize) -> Result<Box<dyn Extracted>, ArchiveFinding> {
        if depth > MAX_DEPTH {
            return Err(ArchiveFinding::new(
                FindingKind::TooDeep,
                depth,
                format!("nested deeper than {MAX_DEPTH} layers"),
            ));
        }
        Ok((self.open)(depth))
    }

    /// The search of a region at `depth` that clamd extracts nothing from.
    pub(super) fn open_region(&self, depth: usize, region: Region) -> Box<dyn Extracted> {
        (self.open_region)(depth, region)
    }

    /// Counts `bytes` extracted into a layer at `depth`.
    pub(super) fn extract(&mut self, bytes: usize, depth: usize) -> Found {
        self.extracted += bytes as u64;
        if self.extracted > self.limits.inflate_budget {
            return Err(ArchiveFinding::new(
                FindingKind::ScanSizeExceeded,
                depth,
                format!("more than {} bytes extracted", self.limits.inflate_budget),
            ));
        }
        Ok(())
    }

    /// Counts one member (or central directory entry) seen at `depth`.
    pub(super) fn count_member(&mut self, depth: usize) -> Found {
        self.members += 1;
        if self.members > MAX_MEMBERS {
            return Err(ArchiveFinding::new(
                FindingKind::TooManyMembers,
                depth,
                format!("more than {MAX_MEMBERS} members"),
            ));
        }
        Ok(())
    }
}

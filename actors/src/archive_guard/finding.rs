//! What the guard reports, and the limits it follows an object within.

/// Deeper nesting than this many layers (the object is layer 0) is not followed: unscannable.
/// Above clamd's own default `MaxRecursion` (17), beyond which clamd alerts itself.
pub const MAX_DEPTH: usize = 32;

/// Zip and tar members (and central directory entries) the guard keeps track of per object;
/// more is unscannable. Above clamd's default `MaxFiles` (10,000), beyond which clamd alerts.
pub const MAX_MEMBERS: usize = 20_000;

/// How far the guard follows an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// clamd's `MaxFileSize`, bytes: a member larger than this is cut by clamd without an alert.
    pub member_limit: u64,
    /// clamd's `MaxScanSize`, bytes: the most the guard extracts (inflates or copies out of
    /// containers) from one object, all layers together.
    pub inflate_budget: u64,
}

/// Why the guard will not let a clean verdict stand. Each kind is reported with its own
/// signature, so an operator sees what made an object unscannable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// A member declares, holds or inflates to more than `MaxFileSize`.
    MemberExceedsLimit,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More extracted than the inflate budget (clamd's `MaxScanSize`).
    ScanSizeExceeded,
    /// More members than [`MAX_MEMBERS`].
    TooManyMembers,
    /// A zip member compressed with a method the guard cannot inflate.
    UnsupportedMethod,
    /// An encrypted (or masked) zip member.
    Encrypted,
    /// A zip member clamd would not extract although an unzip tool would.
    MemberNotExtracted,
    /// A header or stream clamd would misread, so that part of the content goes unscanned.
    Malformed,
    /// A container clamd opens that the guard cannot follow (bzip2, xz, 7z, RAR, CAB).
    UnsupportedContainer,
}

impl FindingKind {
    /// The signature of the unscannable verdict.
    pub fn signature(self) -> &'static str {
        match self {
            FindingKind::MemberExceedsLimit => "Avscan.Archive.MemberExceedsLimit",
            FindingKind::TooDeep => "Avscan.Archive.TooDeep",
            FindingKind::ScanSizeExceeded => "Avscan.Archive.ScanSizeExceeded",
            FindingKind::TooManyMembers => "Avscan.Archive.TooManyMembers",
            FindingKind::UnsupportedMethod => "Avscan.Archive.UnsupportedMethod",
            FindingKind::Encrypted => "Avscan.Archive.Encrypted",
            FindingKind::MemberNotExtracted => "Avscan.Archive.MemberNotExtracted",
            FindingKind::Malformed => "Avscan.Archive.Malformed",
            FindingKind::UnsupportedContainer => "Avscan.Archive.UnsupportedContainer",
        }
    }
}

/// What the guard found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFinding {
    /// What it is.
    pub kind: FindingKind,
    /// The layer it is in: 0 the object itself, 1 a member of it, ….
    pub depth: usize,
    /// What was seen, for the log line.
    pub detail: String,
}

impl ArchiveFinding {
    pub(crate) fn new(kind: FindingKind, depth: usize, detail: impl Into<String>) -> Self {
        Self {
            kind,
            depth,
            detail: detail.into(),
        }
    }
}

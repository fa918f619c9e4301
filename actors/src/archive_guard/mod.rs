//! The archive guard: it watches the bytes on their way to clamd and turns a clean verdict into
//! unscannable wherever clamd would not have looked at everything without saying so. clamd
//! answers `stream: OK` for content it silently skipped (read from libclamav 1.4's `unzip.c`,
//! `untar.c`, `scanners.c`; the README's Guarantees list the cases):
//!
//! - a zip member larger than `MaxFileSize` is cut at the limit and the rest never scanned, even
//!   with `AlertExceedsMax yes` (Cisco-Talos/clamav#633), wherever the zip sits;
//! - zip members clamd does not extract: methods other than stored, deflate, deflate64, implode
//!   and bzip2; encrypted, masked, zip64 or data-descriptor members of an embedded zip; members
//!   no central directory names (a zip without one yields nothing); a deflate stream that breaks
//!   off, or ends past its compressed size; a stored member whose sizes disagree, or one stored
//!   in name only: its bytes are its content deflated, which clamd scans compressed
//!   (`zip_disguised.rs`);
//! - tar members hidden from its header walk (a POSIX header without its magic, a size it cannot
//!   read, data behind a link entry, a header whose checksum is wrong), and whatever sits where
//!   it does not look (a member's padding, long names and pax records);
//! - containers it opens but the guard cannot follow (bzip2, xz, 7z, RAR, CAB);
//! - content it never opens where it sits: a gzip stream, a tar or a container inside other
//!   data or in a zip's gaps, a zip after the end of a gzip or tar stream.
//!
//! The guard models what clamd extracts, layer by layer (`layer.rs`): the object, then every
//! member or decompressed stream clamd would scan as a file of its own, typed from its first
//! bytes as clamd types it. It follows zip (`zip.rs`: stored and deflated members, through the
//! central directory as clamd does, and zips embedded after other bytes), gzip (`gzip.rs`) and
//! tar (`tar.rs`), inflating as clamd's zlib does (flate2 on zlib-rs), and searches the bytes
//! clamd extracts nothing from for content it would miss there (`scavenge.rs`, proving each
//! find real by its own check so that chance and programs' constants never count). Whatever it
//! cannot follow to the end makes the object unscannable, each case
//! with a signature of its own ([`FindingKind`]): nesting deeper than [`MAX_DEPTH`], more than
//! the inflate budget (clamd's `MaxScanSize`), a member method it cannot inflate, a header that
//! clamd would misread.
//!
//! Its work per object is bounded (bytes inflated, depth, members) and, through
//! [`check_while_streaming`], runs on a blocking thread of its own beside the stream, so no
//! object can stall other scans, heartbeats or deletes. It only ever turns clean into
//! unscannable, never a detection into clean.

mod context;
mod finding;
mod gzip;
mod layer;
mod magic;
mod scavenge;
mod tar;
mod zip;
mod zip_disguised;
mod zip_embedded;
mod zip_headers;
mod zip_member;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::model::{QuarantineReason, ScanOutcome, Verdict};
use crate::ports::ObjectBody;
use context::Context;
pub use finding::{ArchiveFinding, FindingKind, GuardLimits, MAX_DEPTH, MAX_MEMBERS};
use layer::Layer;

/// Watches one object's bytes: [`feed`](Self::feed) every chunk in order, then
/// [`finish`](Self::finish): some findings (a zip's central directory) are only known at the end.
pub struct ArchiveGuard {
    context: Context,
    root: Layer,
    finding: Option<ArchiveFinding>,
}

impl ArchiveGuard {
    /// A guard for one object.
    pub fn new(limits: GuardLimits) -> Self {
        Self {
            context: Context::new(limits, layer::open, layer::open_region),
            root: Layer::new(0),
            finding: None,
        }
    }

    /// Looks at the next bytes of the object; after a finding, nothing more is done.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.finding.is_none() {
            if let Err(finding) = self.root.feed(bytes, &mut self.context) {
                self.finding = Some(finding);
            }
        }
    }

    /// The end of the object: what the guard found, if anything.
    pub fn finish(mut self) -> Option<ArchiveFinding> {
        if self.finding.is_none() {
            if let Err(finding) = self.root.finish(&mut self.context) {
                self.finding = Some(finding);
            }
        }
        self.finding
    }

    /// True once something was found: the rest of the object need not be looked at.
    pub fn has_finding(&self) -> bool {
        self.finding.is_some()
    }
}

/// Chunks waiting for the guard's thread; the stream to clamd waits when it falls behind.
const GUARD_QUEUE: usize = 8;

/// Bodies up to this size that the fetcher holds whole are checked on the spot
/// ([`check_buffered`]): a thread of its own costs more than the check of a small object.
pub const INLINE_CHECK_BYTES: u64 = 256 * 1024;

/// What an on-the-spot check may extract before it hands the object to a blocking thread with
/// the full budget: it bounds the time a small archive can hold an async worker (~1 ms).
const INLINE_INFLATE_BUDGET: u64 = 1024 * 1024;

/// One object's guard and digest, fed its chunks in order.
struct Watcher {
    guard: Option<ArchiveGuard>,
    finding: Option<ArchiveFinding>,
    sha256: sha2::Sha256,
    seen: u64,
    content_length: u64,
}

impl Watcher {
    fn new(limits: GuardLimits, content_length: u64) -> Self {
        use sha2::Digest;
        Self {
            guard: Some(ArchiveGuard::new(limits)),
            finding: None,
            sha256: sha2::Sha256::new(),
            seen: 0,
            content_length,
        }
    }

    /// The guard stops once it found something or is `cancelled` (the verdict is not clean);
    /// the digest goes on to the end.
    fn feed(&mut self, chunk: &[u8], cancelled: bool) {
        use sha2::Digest;
        self.sha256.update(chunk);
        self.seen += chunk.len() as u64;
        if cancelled {
            self.guard = None;
        }
        if let Some(working) = self.guard.as_mut() {
            working.feed(chunk);
            if working.has_finding() {
                self.finding = self.guard.take().and_then(ArchiveGuard::finish);
            }
        }
    }

    fn finish(self) -> GuardOutcome {
        use sha2::Digest;
        let finding = self.finding.or_else(|| self.guard.and_then(ArchiveGuard::finish));
        // A body cut short (clamd's stream limit) has no digest of the whole object.
        let digest = (self.seen == self.content_length).then(|| hex(&self.sha256.finalize()));
        (finding, digest)
    }
}

/// What the guard found and the body's SHA-256 (when the whole body was seen).
type GuardOutcome = (Option<ArchiveFinding>, Option<String>);

fn check_whole(chunks: &[bytes::Bytes], content_length: u64, limits: GuardLimits) -> GuardOutcome {
    let mut watcher = Watcher::new(limits, content_length);
    for chunk in chunks {
        watcher.feed(chunk, false);
    }
    watcher.finish()
}

/// Wraps `body` so that every chunk also goes to a blocking thread of its own, where a guard
/// follows it and its SHA-256 is computed (no second read of the object); the returned
/// [`ArchiveCheck`] then applies what the guard found to the engine's verdict and names the
/// digest. One way for the pipeline's scanners and for `avscan scan` alike. Needs a Tokio
/// runtime.
pub fn check_while_streaming(body: ObjectBody, limits: GuardLimits) -> (ObjectBody, ArchiveCheck) {
    let (sender, mut receiver) = mpsc::channel::<bytes::Bytes>(GUARD_QUEUE);
    let cancelled = Arc::new(AtomicBool::new(false));
    let content_length = body.content_length;
    let guard = tokio::task::spawn_blocking({
        let cancelled = cancelled.clone();
        move || {
            let mut watcher = Watcher::new(limits, content_length);
            while let Some(chunk) = receiver.blocking_recv() {
                watcher.feed(&chunk, cancelled.load(Ordering::Relaxed));
            }
            watcher.finish()
        }
    });
    let chunks = body
        .chunks
        .then(move |chunk| {
            let sender = sender.clone();
            async move {
                if let Ok(bytes) = &chunk {
                    let _ = sender.send(bytes.clone()).await;
                }
                chunk
            }
        })
        .boxed();
    let guarded = ObjectBody {
        content_length: body.content_length,
        chunks,
    };
    (
        guarded,
        ArchiveCheck {
            state: CheckState::Running(guard),
            cancelled,
        },
    )
}

/// Checks a body held whole (`chunks`, in order), before or while it is scanned. Up to
/// [`INLINE_CHECK_BYTES`] the check runs here and now, within a small extraction budget; an
/// object that needs more (or a larger one) is checked on a blocking thread with the full
/// `limits`, so the work any one object costs an async worker stays bounded. Needs a Tokio
/// runtime.
pub fn check_buffered(chunks: &[bytes::Bytes], content_length: u64, limits: GuardLimits) -> ArchiveCheck {
    let cancelled = Arc::new(AtomicBool::new(false));
    if content_length <= INLINE_CHECK_BYTES {
        let quick = GuardLimits {
            inflate_budget: limits.inflate_budget.min(INLINE_INFLATE_BUDGET),
            ..limits
        };
        let outcome = check_whole(chunks, content_length, quick);
        // Only the smaller budget can make the quick check differ from the full one: every
        // other finding was met before the budget ran out, and would be met again.
        let budget_ran_out = matches!(&outcome.0, Some(finding) if finding.kind == FindingKind::ScanSizeExceeded);
        if !(budget_ran_out && quick.inflate_budget < limits.inflate_budget) {
            return ArchiveCheck {
                state: CheckState::Done(outcome),
                cancelled,
            };
        }
    }
    let chunks = chunks.to_vec();
    let guard = tokio::task::spawn_blocking(move || check_whole(&chunks, content_length, limits));
    ArchiveCheck {
        state: CheckState::Running(guard),
        cancelled,
    }
}

/// The guard of one body, running or done; [`apply`](ArchiveCheck::apply) waits for it once
/// the engine answered.
pub struct ArchiveCheck {
    state: CheckState,
    cancelled: Arc<AtomicBool>,
}

enum CheckState {
    Running(JoinHandle<GuardOutcome>),
    Done(GuardOutcome),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl ArchiveCheck {
    /// A clean verdict does not stand when the guard found content the engine skipped; the
    /// outcome also gets the body's SHA-256. Call it after the body was streamed to the end
    /// (the engine's answer means it was).
    pub async fn apply(self, mut outcome: ScanOutcome) -> ScanOutcome {
        let clean = outcome.verdict == Verdict::Clean;
        if !clean {
            self.cancelled.store(true, Ordering::Relaxed);
        }
        let guarded = match self.state {
            CheckState::Done(guarded) => Ok(guarded),
            CheckState::Running(guard) => guard.await,
        };
        let finding = match guarded {
            Ok((finding, sha256)) => {
                outcome.sha256 = sha256;
                finding
            }
            // The guard panicked: what it would have said is unknown, so nothing is clean.
            Err(err) => Some(ArchiveFinding::new(
                FindingKind::Malformed,
                0,
                format!("guard failed: {err}"),
            )),
        };
        if !clean {
            return outcome;
        }
        if let Some(finding) = finding {
            tracing::warn!(
                signature = finding.kind.signature(),
                depth = finding.depth,
                detail = %finding.detail,
                "the archive guard saw content clamd skips; unscannable, not clean"
            );
            outcome.verdict = Verdict::Unscannable {
                reason: QuarantineReason::Unscannable,
                signature: Some(finding.kind.signature().into()),
            };
        }
        outcome
    }
}

#[cfg(test)]
mod tests;

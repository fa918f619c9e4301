//! clamd's configuration, proven at start-up rather than assumed. clamd skips in silence what
//! passes its limits unless told otherwise, and avscan's promises rest on five of its settings;
//! each is proven with a canary small on the wire, and a wrong one stops avscan naming the
//! clamd.conf option to change:
//!
//! - `AlertExceedsMax` (off in ClamAV's stock configuration): a gzip nested
//!   [`NESTING`](canaries::NESTING) deep must answer `Heuristics.Limits.Exceeded.MaxRecursion`.
//!   OK means clamd skips what passes any limit without a word (or ScanArchive is off, or
//!   MaxRecursion is above the nesting). The size limits below can only be read with it on.
//! - `MaxFileSize`: the archive guard flags a member larger than `CLAMD_MAX_FILE_SIZE`, because
//!   clamd truncates such members silently (Cisco-Talos/clamav#633), so the two must be equal.
//!   Set: a gzip of exactly that many zero bytes must scan OK, and one byte more must hit
//!   MaxFileSize. Unset: discovered ([`search`]) to 1 MB with tar headers that declare a size
//!   without carrying it, then proven on both sides the same way.
//! - `MaxScanSize`: clamd checks it before MaxFileSize; the at-limit gzip hitting it means it is
//!   below MaxFileSize, and members avscan promises to pass would be unscannable.
//! - `StreamMaxLength`: objects up to `MAX_FILE_SIZE` are streamed to clamd whole; a lower limit
//!   would quarantine clean ones as too large. An INSTREAM chunk header declaring
//!   `MAX_FILE_SIZE` bytes, sent without them, is refused at once when the limit is lower.
//! - `AlertEncryptedArchive` (or `AlertEncrypted`): a zip whose member is marked encrypted must
//!   answer `Heuristics.Encrypted.Zip`, not OK.
//!
//! `run.rs` proves all this before the pipeline starts (retrying while clamd cannot answer yet)
//! and hands the proven `MaxFileSize` to the archive guard; `check.rs` prints one line per
//! setting; `scan.rs` proves it before scanning. `canaries.rs` builds the canaries; `search.rs`
//! is the discovery's search.

mod canaries;
mod search;

use std::fmt;
use std::time::{Duration, Instant};

use avscan_actors::defaults::MIB;
use avscan_actors::model::{QuarantineReason, Verdict};
use avscan_actors::ports::{ObjectBody, ScanEngine, ScanError};
use bytes::Bytes;
use futures::StreamExt;

pub use self::canaries::zeros_gzip;
use self::canaries::{NESTING, TAR_DECLARABLE};
use self::search::{Found, Reach, SearchError, SizeLimit, SizeProbe};
use crate::clamd::Clamd;

/// The largest `CLAMD_MAX_FILE_SIZE`, MB, and where discovery stops. (libclamav itself caps
/// MaxFileSize just below 2 GiB unless it is 0, i.e. off.)
pub const MAX_MEMBER_LIMIT_MB: u64 = 4095;

/// The clamd.conf options avscan proves, in the order it proves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Alerts for whatever passes a limit, instead of silence.
    AlertExceedsMax,
    /// The largest file (archive member included) clamd scans completely.
    MaxFileSize,
    /// The most clamd scans of one object, all members together.
    MaxScanSize,
    /// The longest INSTREAM clamd accepts.
    StreamMaxLength,
    /// Alerts for encrypted archive members, instead of skipping them.
    AlertEncryptedArchive,
}

impl Setting {
    /// Every setting, in the order they are proven and printed.
    pub const ALL: [Setting; 5] = [
        Setting::AlertExceedsMax,
        Setting::MaxFileSize,
        Setting::MaxScanSize,
        Setting::StreamMaxLength,
        Setting::AlertEncryptedArchive,
    ];

    /// The option's name in clamd.conf.
    pub fn label(self) -> &'static str {
        match self {
            Setting::AlertExceedsMax => "AlertExceedsMax",
            Setting::MaxFileSize => "MaxFileSize",
            Setting::MaxScanSize => "MaxScanSize",
            Setting::StreamMaxLength => "StreamMaxLength",
            Setting::AlertEncryptedArchive => "AlertEncryptedArchive",
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What avscan's settings need of clamd.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    /// `CLAMD_MAX_FILE_SIZE` in bytes, to verify; `None` to discover clamd's MaxFileSize.
    pub member_limit: Option<u64>,
    /// `MAX_FILE_SIZE` in bytes: objects up to it are streamed to clamd whole.
    pub max_file_size: u64,
}

/// How one setting fared.
#[derive(Debug, Clone)]
pub enum Finding {
    /// As avscan needs it; says what proved it.
    Proven(String),
    /// Definitely not: what clamd answered and what to change.
    Wrong(String),
    /// Not checked, because that other setting is not proven and this one cannot be read
    /// without it.
    Blocked(Setting),
    /// clamd did not answer (still loading, restarting): ask again later.
    Unanswered(ScanError),
}

impl Finding {
    /// Whether the setting is proven.
    pub fn is_proven(&self) -> bool {
        matches!(self, Finding::Proven(_))
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Proven(detail) | Finding::Wrong(detail) => f.write_str(detail),
            Finding::Blocked(setting) => write!(f, "not checked while {setting} is not proven"),
            Finding::Unanswered(err) => write!(f, "could not check: {err}"),
        }
    }
}

/// How clamd's MaxFileSize was discovered.
#[derive(Debug, Clone, Copy)]
pub struct Discovery {
    /// The value found, MB (rounded down).
    pub mb: u64,
    /// Sizes probed.
    pub probes: u32,
    /// The search and its proof together.
    pub took: Duration,
}

/// Every setting's finding, and what the proof found out.
#[derive(Debug, Clone)]
pub struct Report {
    /// One per [`Setting`], in [`Setting::ALL`]'s order.
    pub findings: Vec<(Setting, Finding)>,
    /// The largest archive member clamd is proven to scan completely, in bytes.
    pub member_limit: Option<u64>,
    /// Set when MaxFileSize was discovered rather than verified.
    pub discovery: Option<Discovery>,
    /// The whole proof.
    pub took: Duration,
}

/// clamd's configuration, proven.
#[derive(Debug, Clone)]
pub struct Proven {
    /// The archive guard's member limit: clamd's MaxFileSize, in bytes.
    pub member_limit: u64,
    /// Set when MaxFileSize was discovered rather than verified.
    pub discovery: Option<Discovery>,
    /// The whole proof.
    pub took: Duration,
    /// What proved each setting.
    pub findings: Vec<(Setting, String)>,
}

/// Why clamd's configuration is not proven.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting is definitely wrong: avscan must not run with this clamd.
    #[error("clamd.conf {setting}: {detail}")]
    Wrong {
        /// The option to change.
        setting: Setting,
        /// What clamd answered and what to change.
        detail: String,
    },
    /// clamd did not answer a canary: it may not be ready yet.
    #[error("could not check clamd's {setting}: {source}")]
    Unanswered {
        /// The setting whose canary went unanswered.
        setting: Setting,
        /// Why.
        source: ScanError,
    },
}

impl Report {
    /// The first wrong setting, else the first unanswered one, else the proven configuration.
    pub fn outcome(self) -> Result<Proven, ConfigError> {
        for (setting, finding) in &self.findings {
            if let Finding::Wrong(detail) = finding {
                return Err(ConfigError::Wrong {
                    setting: *setting,
                    detail: detail.clone(),
                });
            }
        }
        let mut proven = Vec::new();
        for (setting, finding) in self.findings {
            match finding {
                Finding::Proven(detail) => proven.push((setting, detail)),
                Finding::Unanswered(source) => return Err(ConfigError::Unanswered { setting, source }),
                Finding::Blocked(_) | Finding::Wrong(_) => {
                    unreachable!("blocked only behind a wrong or unanswered one")
                }
            }
        }
        Ok(Proven {
            member_limit: self.member_limit.expect("MaxFileSize proven"),
            discovery: self.discovery,
            took: self.took,
            findings: proven,
        })
    }
}

/// Proves every setting against `clamd`; never stops early, so `avscan check` can show them
/// all. The size limits are only read once `AlertExceedsMax` is proven: without alerts, a
/// file over a limit answers OK like one within.
pub async fn prove(clamd: &Clamd, expected: &Expected) -> Report {
    let started = Instant::now();
    let alerts = alert_exceeds_max(clamd).await;
    let sizes = if alerts.is_proven() {
        match expected.member_limit {
            Some(limit) => verify_member_limit(clamd, limit).await,
            None => discover_member_limit(clamd).await,
        }
    } else {
        Sizes::blocked(Setting::AlertExceedsMax)
    };
    let stream = stream_max_length(clamd, expected.max_file_size).await;
    let encrypted = alert_encrypted(clamd).await;
    Report {
        findings: vec![
            (Setting::AlertExceedsMax, alerts),
            (Setting::MaxFileSize, sizes.max_file_size),
            (Setting::MaxScanSize, sizes.max_scan_size),
            (Setting::StreamMaxLength, stream),
            (Setting::AlertEncryptedArchive, encrypted),
        ],
        member_limit: sizes.member_limit,
        discovery: sizes.discovery,
        took: started.elapsed(),
    }
}

/// What clamd answered a canary.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// `stream: OK`.
    Ok,
    /// `stream: <signature> FOUND`.
    Found(String),
    /// `INSTREAM size limit exceeded`.
    TooLarge,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Ok => f.write_str("OK"),
            Answer::Found(signature) => write!(f, "{signature} FOUND"),
            Answer::TooLarge => f.write_str("INSTREAM size limit exceeded"),
        }
    }
}

/// Scans one canary in a session of its own.
async fn scan(clamd: &Clamd, parts: Vec<Bytes>) -> Result<Answer, ScanError> {
    let content_length = parts.iter().map(|part| part.len() as u64).sum();
    let mut session = clamd.connect().await?;
    let outcome = session
        .scan(ObjectBody {
            content_length,
            chunks: futures::stream::iter(parts.into_iter().map(Ok)).boxed(),
        })
        .await?;
    Ok(match outcome.verdict {
        Verdict::Clean => Answer::Ok,
        Verdict::Infected { signature }
        | Verdict::Unscannable {
            signature: Some(signature),
            ..
        } => Answer::Found(signature),
        Verdict::Unscannable {
            reason: QuarantineReason::FileTooLarge,
            signature: None,
        } => Answer::TooLarge,
        Verdict::Unscannable {
            reason,
            signature: None,
        } => Answer::Found(reason.as_str().to_owned()),
    })
}

async fn alert_exceeds_max(clamd: &Clamd) -> Finding {
    let canary = format!("a gzip nested {NESTING} deep");
    match scan(clamd, vec![canaries::nested_gzip(NESTING)]).await {
        Err(err) => Finding::Unanswered(err),
        // With alerts on, whichever limit clamd meets first names itself (one per scan).
        Ok(Answer::Found(signature)) if signature.starts_with("Heuristics.Limits.Exceeded.") => {
            Finding::Proven(format!("yes ({canary} answered {signature})"))
        }
        Ok(Answer::Ok) => Finding::Wrong(format!(
            "clamd answered OK to {canary}, so it passes whatever exceeds its limits without a word: \
             set AlertExceedsMax yes (with ScanArchive yes, and MaxRecursion at most {NESTING})"
        )),
        Ok(other) => Finding::Wrong(format!(
            "clamd answered {other} to {canary}, where it must answer Heuristics.Limits.Exceeded.MaxRecursion: \
             set AlertExceedsMax yes"
        )),
    }
}

async fn stream_max_length(clamd: &Clamd, max_file_size: u64) -> Finding {
    // One chunk header can declare at most 4 GiB - 1; larger MAX_FILE_SIZEs are proven that far.
    let declared = u32::try_from(max_file_size).unwrap_or(u32::MAX);
    let what = format!("MAX_FILE_SIZE ({})", describe(max_file_size));
    match clamd.stream_limit_admits(declared).await {
        Err(err) => Finding::Unanswered(err),
        Ok(true) => Finding::Proven(format!(
            "at least {what}: clamd took the header of a chunk of {} and waited for its bytes",
            describe(u64::from(declared))
        )),
        Ok(false) => Finding::Wrong(format!(
            "below {what}: clamd refused an INSTREAM chunk of {} (INSTREAM size limit exceeded), so it would \
             refuse clean objects up to MAX_FILE_SIZE as too large: set StreamMaxLength {}M or more, or lower \
             MAX_FILE_SIZE",
            describe(u64::from(declared)),
            max_file_size.div_ceil(MIB)
        )),
    }
}

async fn alert_encrypted(clamd: &Clamd) -> Finding {
    match scan(clamd, vec![canaries::encrypted_zip()]).await {
        Err(err) => Finding::Unanswered(err),
        Ok(Answer::Found(signature)) if signature.starts_with("Heuristics.Encrypted.") => {
            Finding::Proven(format!("yes (a zip with an encrypted member answered {signature})"))
        }
        Ok(Answer::Ok) => Finding::Wrong(
            "clamd answered OK to a zip whose member is encrypted, so it passes what it cannot decrypt without a \
             word: set AlertEncryptedArchive yes (or AlertEncrypted yes)"
                .into(),
        ),
        Ok(other) => Finding::Wrong(format!(
            "clamd answered {other} to a zip whose member is encrypted, where it must answer \
             Heuristics.Encrypted.Zip: set AlertEncryptedArchive yes"
        )),
    }
}

/// The MaxFileSize and MaxScanSize findings, and the member limit they prove.
struct Sizes {
    max_file_size: Finding,
    max_scan_size: Finding,
    member_limit: Option<u64>,
    discovery: Option<Discovery>,
}

impl Sizes {
    fn blocked(by: Setting) -> Sizes {
        Sizes {
            max_file_size: Finding::Blocked(by),
            max_scan_size: Finding::Blocked(by),
            member_limit: None,
            discovery: None,
        }
    }

    fn unanswered(err: ScanError) -> Sizes {
        Sizes {
            max_file_size: Finding::Unanswered(err.clone()),
            max_scan_size: Finding::Unanswered(err),
            member_limit: None,
            discovery: None,
        }
    }
}

/// Asks with a gzip of that many zero bytes: clamd inflates at most the smaller of the size and
/// its MaxFileSize (then scans what it inflated, if within), about 1 KB per MB on the wire.
struct GzipProbe<'a>(&'a Clamd);

impl SizeProbe for GzipProbe<'_> {
    async fn reach(&mut self, size: u64) -> Result<Reach, ScanError> {
        scan(self.0, zeros_gzip(size)).await.map(reach)
    }
}

/// Asks with a tar header declaring the size (1.5 KB, nothing inflated, about a millisecond);
/// sizes a tar header cannot declare to clamd are asked with a gzip.
struct TarProbe<'a>(&'a Clamd);

impl SizeProbe for TarProbe<'_> {
    async fn reach(&mut self, size: u64) -> Result<Reach, ScanError> {
        if size > TAR_DECLARABLE {
            return GzipProbe(self.0).reach(size).await;
        }
        scan(self.0, vec![canaries::tar_declaring(size)]).await.map(reach)
    }
}

fn reach(answer: Answer) -> Reach {
    match answer {
        Answer::Ok => Reach::Within,
        Answer::Found(signature) => match SizeLimit::from_signature(&signature) {
            Some(limit) => Reach::Over(limit),
            None => Reach::Other(Answer::Found(signature).to_string()),
        },
        other => Reach::Other(other.to_string()),
    }
}

/// `10 MB`, or the exact byte count when it is not whole megabytes.
fn describe(bytes: u64) -> String {
    if bytes % MIB == 0 {
        format!("{} MB", bytes / MIB)
    } else if bytes % MIB == 1 {
        format!("{} MB + 1 byte", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// What clamd answered on each side of a member limit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sides {
    /// A gzip of exactly the limit.
    at: Reach,
    /// The smallest size over it (`None` when the limit is the search's maximum): a tar header
    /// declaring it, confirmed with a gzip when the tar's answer is not a size limit.
    over: Option<Reach>,
}

/// Asks clamd on both sides of `at` (`over` is the first size that must be over it).
async fn ask_sides(clamd: &Clamd, at: u64, over: Option<u64>) -> Result<Sides, ScanError> {
    let at = GzipProbe(clamd).reach(at).await?;
    let over = match (at == Reach::Within, over) {
        (true, Some(over)) => Some(match TarProbe(clamd).reach(over).await? {
            limit @ Reach::Over(_) => limit,
            // Not what clamd's tar code should answer: the gzip, the path the guard follows,
            // decides.
            _ => GzipProbe(clamd).reach(over).await?,
        }),
        _ => None,
    };
    Ok(Sides { at, over })
}

/// Whether the answers on both sides agree with a member limit of exactly `at`.
fn agree(sides: &Sides) -> bool {
    sides.at == Reach::Within && matches!(sides.over, None | Some(Reach::Over(_)))
}

/// The findings for a member limit of `at` bytes, from clamd's answers on both sides of it.
/// `what` names the limit ("CLAMD_MAX_FILE_SIZE (10 MB)", "the discovered 400 MB"); `over` is
/// the size probed over it; `proven` describes a proven MaxFileSize.
fn judge(sides: &Sides, at: u64, over: Option<u64>, what: &str, proven: String) -> Sizes {
    let at_text = format!("a gzip of {}", describe(at));
    let mb = at / MIB;
    let raise_scan_size = "raise MaxScanSize well above MaxFileSize (ClamAV's default is four times it)";
    let mut sizes = Sizes {
        max_file_size: Finding::Blocked(Setting::MaxScanSize),
        max_scan_size: Finding::Proven(format!("above {what}: {at_text} passed it")),
        member_limit: None,
        discovery: None,
    };
    match &sides.at {
        Reach::Within => {}
        Reach::Over(SizeLimit::MaxFileSize) => {
            sizes.max_file_size = Finding::Wrong(format!(
                "below {what}: {at_text} answered Heuristics.Limits.Exceeded.MaxFileSize, so clamd would truncate \
                 archive members the archive guard lets through: set MaxFileSize {mb}M in clamd.conf (and \
                 MaxScanSize above it), or CLAMD_MAX_FILE_SIZE to clamd's MaxFileSize"
            ));
            return sizes;
        }
        Reach::Over(SizeLimit::MaxScanSize) => {
            sizes.max_scan_size = Finding::Wrong(format!(
                "below {what}: {at_text} answered Heuristics.Limits.Exceeded.MaxScanSize: {raise_scan_size}"
            ));
            return sizes;
        }
        Reach::Other(answer) => {
            sizes.max_file_size = Finding::Wrong(format!("{at_text} answered {answer}, where it must scan OK"));
            sizes.max_scan_size = Finding::Blocked(Setting::MaxFileSize);
            return sizes;
        }
    }
    let over_text = over.map(describe).unwrap_or_default();
    sizes.max_file_size = match &sides.over {
        None | Some(Reach::Over(SizeLimit::MaxFileSize)) => {
            sizes.member_limit = Some(at);
            Finding::Proven(proven)
        }
        Some(Reach::Over(SizeLimit::MaxScanSize)) => {
            sizes.max_scan_size = Finding::Wrong(format!(
                "barely above {what}: a file of {over_text} answered Heuristics.Limits.Exceeded.MaxScanSize \
                 before MaxFileSize: {raise_scan_size}"
            ));
            Finding::Blocked(Setting::MaxScanSize)
        }
        Some(Reach::Within) => Finding::Wrong(format!(
            "above {what}: a gzip of {over_text} scanned completely, so the archive guard would make members \
             clamd scans unscannable: set CLAMD_MAX_FILE_SIZE to clamd's MaxFileSize, or MaxFileSize {mb}M in \
             clamd.conf"
        )),
        Some(Reach::Other(answer)) => Finding::Wrong(format!(
            "a file of {over_text} answered {answer}, where it must answer Heuristics.Limits.Exceeded.MaxFileSize"
        )),
    };
    sizes
}

async fn verify_member_limit(clamd: &Clamd, limit: u64) -> Sizes {
    let over = limit + 1;
    match ask_sides(clamd, limit, Some(over)).await {
        Err(err) => Sizes::unanswered(err),
        Ok(sides) => judge(
            &sides,
            limit,
            Some(over),
            &format!("CLAMD_MAX_FILE_SIZE ({})", describe(limit)),
            format!(
                "{}, as CLAMD_MAX_FILE_SIZE says: a gzip of {} scanned completely, one byte more answered \
                 Heuristics.Limits.Exceeded.MaxFileSize",
                describe(limit),
                describe(limit)
            ),
        ),
    }
}

async fn discover_member_limit(clamd: &Clamd) -> Sizes {
    let started = Instant::now();
    let mut found = match search::search(&mut TarProbe(clamd), MAX_MEMBER_LIMIT_MB).await {
        Ok(found) => found,
        Err(err) => return search_failed(err),
    };
    let mut sides = None;
    if found.within_mb > 0 && !matches!(found.over, Some((_, SizeLimit::MaxScanSize))) {
        let (at, over) = bounds(&found);
        match ask_sides(clamd, at, over).await {
            Err(err) => return Sizes::unanswered(err),
            Ok(answers) if agree(&answers) => sides = Some(answers),
            Ok(answers) => {
                // The tar headers and the gzip disagree (clamd's tar parsing off?): search
                // again with gzips, the path the archive guard follows, however long it takes.
                tracing::warn!(
                    ?answers,
                    within_mb = found.within_mb,
                    "clamd's tar and gzip limits disagree; discovering MaxFileSize with gzips"
                );
                found = match search::search(&mut GzipProbe(clamd), MAX_MEMBER_LIMIT_MB).await {
                    Ok(found) => found,
                    Err(err) => return search_failed(err),
                };
            }
        }
    }
    let mb = found.within_mb;
    if mb == 0 {
        let (_, limit) = found.over.expect("1 MB was over a limit");
        let what = "1 MB: a file of 1 MB answered Heuristics.Limits.Exceeded";
        return match limit {
            SizeLimit::MaxFileSize => Sizes {
                max_file_size: Finding::Wrong(format!("below {what}.MaxFileSize")),
                max_scan_size: Finding::Proven("not below 1 MB".into()),
                member_limit: None,
                discovery: None,
            },
            SizeLimit::MaxScanSize => Sizes {
                max_file_size: Finding::Blocked(Setting::MaxScanSize),
                max_scan_size: Finding::Wrong(format!("below {what}.MaxScanSize")),
                member_limit: None,
                discovery: None,
            },
        };
    }
    if let Some((over_mb, SizeLimit::MaxScanSize)) = found.over {
        return Sizes {
            max_file_size: Finding::Blocked(Setting::MaxScanSize),
            max_scan_size: Finding::Wrong(format!(
                "below MaxFileSize: clamd stops at {mb} MB, where a file of {over_mb} MB answered \
                 Heuristics.Limits.Exceeded.MaxScanSize: raise MaxScanSize well above MaxFileSize (ClamAV's \
                 default is four times it)"
            )),
            member_limit: None,
            discovery: None,
        };
    }
    let (at, over) = bounds(&found);
    let sides = match sides {
        Some(sides) => sides,
        None => match ask_sides(clamd, at, over).await {
            Ok(sides) => sides,
            Err(err) => return Sizes::unanswered(err),
        },
    };
    let took = started.elapsed();
    let proven = match over {
        Some(over) => format!(
            "{mb} MB, discovered in {} ms ({} probes): a gzip of {mb} MB scanned completely, one of {} answered \
             Heuristics.Limits.Exceeded.MaxFileSize; set CLAMD_MAX_FILE_SIZE={mb} to verify it instead",
            took.as_millis(),
            found.probes,
            describe(over)
        ),
        None => format!(
            "at least {mb} MB (MaxFileSize 0, no limit?), discovered in {} ms ({} probes); set \
             CLAMD_MAX_FILE_SIZE={mb} to verify it instead",
            took.as_millis(),
            found.probes
        ),
    };
    let mut sizes = judge(&sides, at, over, &format!("the discovered {mb} MB"), proven);
    if sizes.member_limit.is_some() {
        sizes.discovery = Some(Discovery {
            mb,
            probes: found.probes,
            took,
        });
    }
    sizes
}

/// The size to prove scanned completely and the first one that must be over, in bytes.
fn bounds(found: &Found) -> (u64, Option<u64>) {
    (found.within_mb * MIB, found.over.map(|(mb, _)| mb * MIB))
}

fn search_failed(err: SearchError) -> Sizes {
    match err {
        SearchError::Scan(err) => Sizes::unanswered(err),
        SearchError::Unexpected { .. } => Sizes {
            max_file_size: Finding::Wrong(format!(
                "discovery stopped: {err}, where it must answer OK or Heuristics.Limits.Exceeded.MaxFileSize"
            )),
            max_scan_size: Finding::Blocked(Setting::MaxFileSize),
            member_limit: None,
            discovery: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sides(at: Reach, over: Option<Reach>) -> Sides {
        Sides { at, over }
    }

    fn judged(sides: &Sides) -> Sizes {
        judge(
            sides,
            10 * MIB,
            Some(10 * MIB + 1),
            "CLAMD_MAX_FILE_SIZE (10 MB)",
            "10 MB, proven".into(),
        )
    }

    #[test]
    fn exactly_at_the_limit_is_proven_and_gives_the_member_limit() {
        let sizes = judged(&sides(Reach::Within, Some(Reach::Over(SizeLimit::MaxFileSize))));
        assert!(sizes.max_file_size.is_proven() && sizes.max_scan_size.is_proven());
        assert_eq!(sizes.member_limit, Some(10 * MIB));
    }

    #[test]
    fn each_wrong_side_names_the_option_to_change() {
        let below = judged(&sides(Reach::Over(SizeLimit::MaxFileSize), None));
        assert!(
            matches!(&below.max_file_size, Finding::Wrong(text) if text.starts_with("below CLAMD_MAX_FILE_SIZE (10 MB)") && text.contains("MaxFileSize 10M"))
        );
        assert!(below.max_scan_size.is_proven());
        let above = judged(&sides(Reach::Within, Some(Reach::Within)));
        assert!(
            matches!(&above.max_file_size, Finding::Wrong(text) if text.starts_with("above") && text.contains("10 MB + 1 byte"))
        );
        let scan_size = judged(&sides(Reach::Over(SizeLimit::MaxScanSize), None));
        assert!(matches!(&scan_size.max_scan_size, Finding::Wrong(text) if text.starts_with("below")));
        assert!(matches!(
            scan_size.max_file_size,
            Finding::Blocked(Setting::MaxScanSize)
        ));
        let barely = judged(&sides(Reach::Within, Some(Reach::Over(SizeLimit::MaxScanSize))));
        assert!(matches!(&barely.max_scan_size, Finding::Wrong(text) if text.starts_with("barely above")));
        for sizes in [below, above, scan_size, barely] {
            assert_eq!(sizes.member_limit, None);
        }
    }

    #[test]
    fn the_first_wrong_setting_wins_over_an_unanswered_one() {
        let report = Report {
            findings: vec![
                (
                    Setting::AlertExceedsMax,
                    Finding::Unanswered(ScanError::Unavailable("down".into())),
                ),
                (Setting::MaxFileSize, Finding::Blocked(Setting::AlertExceedsMax)),
                (Setting::MaxScanSize, Finding::Blocked(Setting::AlertExceedsMax)),
                (Setting::StreamMaxLength, Finding::Wrong("below".into())),
                (Setting::AlertEncryptedArchive, Finding::Proven("yes".into())),
            ],
            member_limit: None,
            discovery: None,
            took: Duration::ZERO,
        };
        let err = report.clone().outcome().unwrap_err();
        assert_eq!(err.to_string(), "clamd.conf StreamMaxLength: below");
        let mut report = report;
        report.findings[3].1 = Finding::Proven("ok".into());
        let err = report.outcome().unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Unanswered {
                    setting: Setting::AlertExceedsMax,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn sizes_are_described_as_configured() {
        assert_eq!(describe(400 * MIB), "400 MB");
        assert_eq!(describe(10 * MIB + 1), "10 MB + 1 byte");
        assert_eq!(describe(12_345), "12345 bytes");
    }
}

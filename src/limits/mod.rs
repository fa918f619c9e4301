//! clamd's configuration, proven at start-up rather than assumed. clamd skips in silence what
//! passes its limits unless told otherwise, and avscan's promises rest on five of its settings;
//! each is proven with a canary small on the wire, and a wrong one stops avscan naming the
//! clamd.conf option to change:
//!
//! - `AlertExceedsMax` (off in ClamAV's stock configuration): a gzip nested
//!   `NESTING` (64) deep must answer `Heuristics.Limits.Exceeded.MaxRecursion`.
//!   OK means clamd skips what passes any limit without a word (or ScanArchive is off, or
//!   MaxRecursion is above the nesting). The size limits below can only be read with it on.
//! - `MaxFileSize`: the archive guard flags a member larger than `CLAMD_MAX_FILE_SIZE`, because
//!   clamd truncates such members silently (Cisco-Talos/clamav#633), so the two must be equal.
//!   Set: a gzip of exactly that many zero bytes must scan OK, and one byte more must hit
//!   MaxFileSize. Unset: discovered (`search.rs`) to 1 MB with tar headers that declare a size
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
mod sizes;

use std::fmt;
use std::time::{Duration, Instant};

use avscan_actors::defaults::MIB;
use avscan_actors::model::{QuarantineReason, Verdict};
use avscan_actors::ports::{ObjectBody, ScanEngine, ScanError};
use bytes::Bytes;
use futures::StreamExt;

pub use self::canaries::zeros_gzip;
use self::canaries::NESTING;
use self::sizes::{describe, discover_member_limit, verify_member_limit, Sizes};
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
    /// `MAX_FILE_SIZE` in bytes (or a policy's larger `max_file_size_mb`): objects up to it are
    /// streamed to clamd whole.
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

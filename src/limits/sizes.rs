//! The two size limits of `limits`: `MaxFileSize`, verified on both sides of `CLAMD_MAX_FILE_SIZE`
//! or discovered (`search.rs`) when it is unset, and `MaxScanSize`, which clamd
//! checks first and which must not be below it. Each probe is a canary small on the wire: a gzip
//! of zeros clamd inflates, or a tar header that declares a size without carrying it.

use avscan_actors::defaults::MIB;
use avscan_actors::ports::ScanError;

use std::time::Instant;

use super::canaries::{self, zeros_gzip, TAR_DECLARABLE};
use super::search;
use super::search::{Found, Reach, SearchError, SizeLimit, SizeProbe};
use super::{scan, Answer, Discovery, Finding, Setting, MAX_MEMBER_LIMIT_MB};
use crate::clamd::Clamd;

/// The MaxFileSize and MaxScanSize findings, and the member limit they prove.
pub(super) struct Sizes {
    pub(super) max_file_size: Finding,
    pub(super) max_scan_size: Finding,
    pub(super) member_limit: Option<u64>,
    pub(super) discovery: Option<Discovery>,
}

impl Sizes {
    pub(super) fn blocked(by: Setting) -> Sizes {
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

pub(super) fn reach(answer: Answer) -> Reach {
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
pub(super) fn describe(bytes: u64) -> String {
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
pub(super) struct Sides {
    /// A gzip of exactly the limit.
    at: Reach,
    /// The smallest size over it (`None` when the limit is the search's maximum): a tar header
    /// declaring it, confirmed with a gzip when the tar's answer is not a size limit.
    over: Option<Reach>,
}

/// Asks clamd on both sides of `at` (`over` is the first size that must be over it).
pub(super) async fn ask_sides(clamd: &Clamd, at: u64, over: Option<u64>) -> Result<Sides, ScanError> {
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
pub(super) fn agree(sides: &Sides) -> bool {
    sides.at == Reach::Within && matches!(sides.over, None | Some(Reach::Over(_)))
}

/// The findings for a member limit of `at` bytes, from clamd's answers on both sides of it.
/// `what` names the limit ("CLAMD_MAX_FILE_SIZE (10 MB)", "the discovered 400 MB"); `over` is
/// the size probed over it; `proven` describes a proven MaxFileSize.
pub(super) fn judge(sides: &Sides, at: u64, over: Option<u64>, what: &str, proven: String) -> Sizes {
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

pub(super) async fn verify_member_limit(clamd: &Clamd, limit: u64) -> Sizes {
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

pub(super) async fn discover_member_limit(clamd: &Clamd) -> Sizes {
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
pub(super) fn bounds(found: &Found) -> (u64, Option<u64>) {
    (found.within_mb * MIB, found.over.map(|(mb, _)| mb * MIB))
}

pub(super) fn search_failed(err: SearchError) -> Sizes {
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
    use std::time::Duration;

    use crate::limits::{ConfigError, Report};

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

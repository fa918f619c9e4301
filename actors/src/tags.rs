//! The tags avscan writes on an object it judged and left in place, per [`TagMode`]: its own
//! (`avscan-status`, `avscan-signature`, `avscan-definitions`, `avscan-scanned-at`) or GuardDuty
//! Malware Protection for S3's `GuardDutyMalwareScanStatus` with GuardDuty's values, so that a
//! bucket policy written for GuardDuty's tag-based access control works unchanged. The object's
//! other tags are kept; S3 allows ten in all.

use crate::definitions::Definitions;
use crate::model::{QuarantineReason, Verdict};
use crate::policy::TagMode;

/// avscan's verdict: `clean`, `infected`, `unscannable` or `too-large`.
pub const STATUS: &str = "avscan-status";
/// The signature clamd (or the archive guard) found.
pub const SIGNATURE: &str = "avscan-signature";
/// The daily database version that judged the object.
pub const DEFINITIONS: &str = "avscan-definitions";
/// When the verdict was given, RFC 3339.
pub const SCANNED_AT: &str = "avscan-scanned-at";
/// GuardDuty Malware Protection for S3's tag.
pub const GUARDDUTY_STATUS: &str = "GuardDutyMalwareScanStatus";

/// Every key avscan writes in any mode: replaced (or removed) whenever avscan tags.
const OURS: [&str; 5] = [STATUS, SIGNATURE, DEFINITIONS, SCANNED_AT, GUARDDUTY_STATUS];

/// S3's limit of tags per object.
pub const MAX_TAGS: usize = 10;

/// The object has so many tags of its own that avscan's verdict does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the object has {own} tags of its own; with avscan's status it would have more than {MAX_TAGS}")]
pub struct NoRoomForStatus {
    /// The object's own tags.
    pub own: usize,
}

/// GuardDuty's value for `verdict`: `NO_THREATS_FOUND`, `THREATS_FOUND`, or `UNSUPPORTED` for
/// what could not be scanned whole (too large, encrypted, past clamd's limits, skipped by
/// clamd). avscan retries failures rather than tagging them, so `ACCESS_DENIED` and `FAILED`
/// are never written: such objects stay untagged, which a deny-unless-clean policy keeps closed.
pub fn guardduty_status(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Clean => "NO_THREATS_FOUND",
        Verdict::Infected { .. } => "THREATS_FOUND",
        Verdict::Unscannable { .. } => "UNSUPPORTED",
    }
}

/// avscan's status value for `verdict`.
pub fn status(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Unscannable {
            reason: QuarantineReason::FileTooLarge,
            ..
        } => "too-large",
        other => other.label(),
    }
}

/// A tag value S3 accepts: at most 256 characters of letters, digits, spaces and `+-=._:/@`;
/// anything else becomes `_`.
fn tag_value(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || " +-=._:/@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

/// avscan's tags for a verdict, most important first.
pub fn verdict_tags(
    mode: TagMode,
    verdict: &Verdict,
    definitions: Option<&Definitions>,
    scanned_at: &str,
) -> Vec<(String, String)> {
    match mode {
        TagMode::Off => Vec::new(),
        TagMode::GuardDuty => vec![(GUARDDUTY_STATUS.to_owned(), guardduty_status(verdict).to_owned())],
        TagMode::Avscan => {
            let mut tags = vec![(STATUS.to_owned(), status(verdict).to_owned())];
            if let Some(signature) = verdict.signature() {
                tags.push((SIGNATURE.to_owned(), tag_value(signature)));
            }
            if let Some(definitions) = definitions {
                tags.push((DEFINITIONS.to_owned(), definitions.version.to_string()));
            }
            tags.push((SCANNED_AT.to_owned(), tag_value(scanned_at)));
            tags
        }
    }
}

/// The object's tags with avscan's replaced by `ours`: its other tags kept, avscan's from any
/// mode removed first. When all do not fit in ten, avscan's least important go; the status
/// (the first of `ours`) always stays, or the merge fails.
pub fn merge(
    existing: &[(String, String)],
    ours: &[(String, String)],
) -> Result<Vec<(String, String)>, NoRoomForStatus> {
    let mut merged = without_ours(existing);
    let own = merged.len();
    if !ours.is_empty() && own + 1 > MAX_TAGS {
        return Err(NoRoomForStatus { own });
    }
    merged.extend(ours.iter().take(MAX_TAGS - own).cloned());
    Ok(merged)
}

/// Whether `tags` say clean in either mode.
pub fn says_clean(tags: &[(String, String)]) -> bool {
    tags.iter().any(|(key, value)| {
        (key == STATUS && value == status(&Verdict::Clean))
            || (key == GUARDDUTY_STATUS && value == guardduty_status(&Verdict::Clean))
    })
}

/// The object's tags without any of avscan's.
pub fn without_ours(existing: &[(String, String)]) -> Vec<(String, String)> {
    existing
        .iter()
        .filter(|(key, _)| !OURS.contains(&key.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn guardduty_values_for_each_verdict() {
        assert_eq!(guardduty_status(&Verdict::Clean), "NO_THREATS_FOUND");
        assert_eq!(
            guardduty_status(&Verdict::Infected { signature: "x".into() }),
            "THREATS_FOUND"
        );
        let too_large = Verdict::Unscannable {
            reason: QuarantineReason::FileTooLarge,
            signature: None,
        };
        assert_eq!(guardduty_status(&too_large), "UNSUPPORTED");
        assert_eq!(status(&too_large), "too-large");
        assert_eq!(
            verdict_tags(TagMode::GuardDuty, &Verdict::Clean, None, "t"),
            pairs(&[(GUARDDUTY_STATUS, "NO_THREATS_FOUND")])
        );
    }

    #[test]
    fn avscan_tags_name_status_signature_definitions_and_time() {
        let definitions = Definitions {
            version: 27400,
            built_at: std::time::UNIX_EPOCH,
        };
        let infected = Verdict::Infected {
            signature: "Win.Test.EICAR_HDB-1 (odd)".into(),
        };
        assert_eq!(
            verdict_tags(
                TagMode::Avscan,
                &infected,
                Some(&definitions),
                "2026-11-30T06:00:00.000Z"
            ),
            pairs(&[
                (STATUS, "infected"),
                (SIGNATURE, "Win.Test.EICAR_HDB-1 _odd_"),
                (DEFINITIONS, "27400"),
                (SCANNED_AT, "2026-11-30T06:00:00.000Z"),
            ])
        );
        assert!(verdict_tags(TagMode::Off, &infected, None, "t").is_empty());
    }

    #[test]
    fn merging_keeps_other_tags_replaces_ours_and_fails_only_without_room_for_the_status() {
        let existing = pairs(&[("team", "a"), (STATUS, "clean"), (GUARDDUTY_STATUS, "NO_THREATS_FOUND")]);
        let ours = pairs(&[(STATUS, "infected"), (SIGNATURE, "x"), (SCANNED_AT, "t")]);
        assert_eq!(
            merge(&existing, &ours).unwrap(),
            pairs(&[("team", "a"), (STATUS, "infected"), (SIGNATURE, "x"), (SCANNED_AT, "t")])
        );
        let eight: Vec<(String, String)> = (0..8).map(|i| (format!("k{i}"), "v".into())).collect();
        let merged = merge(&eight, &ours).unwrap();
        assert_eq!(merged.len(), MAX_TAGS);
        assert!(merged.contains(&(STATUS.into(), "infected".into())));
        let ten: Vec<(String, String)> = (0..10).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(merge(&ten, &ours), Err(NoRoomForStatus { own: 10 }));
    }
}

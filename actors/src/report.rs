//! The quarantine report: one JSON document that is both the SNS message and the
//! `<key>.report.json` object beside the quarantined copy. Its first three fields are the old
//! worker's (`key`, `time`, `reason`).
//!
//! Also the report's codec in S3 user metadata: the quarantined copy and the report object carry
//! metadata naming their source object (and, on the copy, the verdict), so that a redelivery can
//! tell "written for this very object" from "left by an earlier upload under the same key", and
//! can finish a quarantine from the copy alone once the original is gone.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::definitions::Definitions;
use crate::incident::{copy_key, report_key};
use crate::model::{now_rfc3339, ObjectRecord, ObjectRef, QuarantineReason, ScanOutcome, Verdict};
use crate::ports::{Notification, ObjectMeta};
use crate::result_event::{ResultEvent, ResultVerdict};

/// Fixed on purpose: subjects show up in e-mail subscriptions, and keys are user data.
pub(crate) const NOTIFICATION_SUBJECT: &str = "avscan: object quarantined";

/// The report's `reason` when the infected object was gone before it could be copied.
pub(crate) const REMOVED_BEFORE_QUARANTINE: &str = "removed before quarantine";

/// What was quarantined, why, and where it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineReport {
    /// The source object's key.
    pub key: String,
    /// The event's time.
    pub time: String,
    /// The old worker's reason: `virus detected`, `file too large`, `unscannable`; or `removed
    /// before quarantine` when the object was gone before it could be copied (no copy exists).
    pub reason: String,
    /// The source bucket.
    pub bucket: String,
    /// The source version, in a versioned bucket.
    pub version_id: Option<String>,
    /// The source ETag, without quotes.
    pub etag: Option<String>,
    /// The event's sequencer: with the ETag, it identifies the upload where there is no version.
    pub sequencer: Option<String>,
    /// The size the event announced.
    pub size: u64,
    /// The object's SHA-256 (lowercase hex), computed while it was scanned; absent when it was not
    /// read whole (too large).
    #[serde(default)]
    pub sha256: Option<String>,
    /// `infected` or `unscannable`.
    pub verdict: String,
    /// What the policy did: `quarantine` (moved: the copy is at `quarantine_key`), `tag`,
    /// `delete` or `report` (no copy: the report is at `<quarantine_key>.report.json` when
    /// `quarantine_bucket` is set, else only notified).
    #[serde(default = "quarantine_action")]
    pub action: String,
    /// What clamd (or the archive guard) found.
    pub signature: Option<String>,
    /// Where the copy is.
    pub quarantine_bucket: String,
    /// The copy's key: the source key for a key's first incident (with `~` appended to a key
    /// ending in `.report.json` or `~`), `<that>~<upload id>~` for a later one.
    pub quarantine_key: String,
    /// When the verdict was given, RFC 3339.
    pub scanned_at: String,
    /// clamd's VERSION line.
    pub engine: Option<String>,
    /// The version of the daily database that judged the object (none: custom databases only,
    /// or not scanned: too large).
    #[serde(default)]
    pub definitions_version: Option<u64>,
    /// When that database was built, RFC 3339.
    #[serde(default)]
    pub definitions_built_at: Option<String>,
    /// The source's user metadata (`x-amz-meta-*`): the copy carries avscan's instead.
    #[serde(default)]
    pub source_metadata: BTreeMap<String, String>,
    /// The KMS key the source was encrypted with (SSE-KMS), which a release restores it with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kms_key_id: Option<String>,
}

impl QuarantineReport {
    /// The report for `record` judged as `outcome` says.
    pub(crate) fn new(
        record: &ObjectRecord,
        outcome: &ScanOutcome,
        scanned_at: String,
        quarantine_bucket: &str,
    ) -> Self {
        let object = &record.object;
        let verdict = &outcome.verdict;
        Self {
            key: object.key.clone(),
            time: record.event_time.clone(),
            reason: verdict
                .quarantine_reason()
                .unwrap_or(QuarantineReason::Unscannable)
                .as_str()
                .to_owned(),
            bucket: object.bucket.clone(),
            version_id: object.version_id.clone(),
            etag: object.etag.clone(),
            sequencer: object.sequencer.clone(),
            size: object.size,
            sha256: outcome.sha256.clone(),
            verdict: verdict.label().to_owned(),
            action: quarantine_action(),
            signature: verdict.signature().map(str::to_owned),
            quarantine_bucket: quarantine_bucket.to_owned(),
            quarantine_key: copy_key(&object.key),
            scanned_at,
            engine: outcome.engine.clone(),
            definitions_version: outcome.definitions.map(|d| d.version),
            definitions_built_at: outcome.definitions.map(|d| d.built_at_rfc3339()),
            source_metadata: BTreeMap::new(),
            source_kms_key_id: None,
        }
    }

    /// The result event of the quarantine, tag, delete or report this report describes; the
    /// evidence is in `quarantine_bucket` when there is one.
    pub(crate) fn result_event(&self, quarantine_bucket: Option<&str>, message_id: &str) -> ResultEvent {
        let verdict = match (self.verdict.as_str(), self.reason.as_str()) {
            ("infected", _) => ResultVerdict::Infected,
            (_, reason) if reason == QuarantineReason::FileTooLarge.as_str() => ResultVerdict::TooLarge,
            _ => ResultVerdict::Unscannable,
        };
        // The copy where there is one, else the report.
        let location = match (self.action.as_str(), self.reason.as_str()) {
            ("quarantine", reason) if reason != REMOVED_BEFORE_QUARANTINE => self.quarantine_key.clone(),
            _ => self.report_key(),
        };
        ResultEvent {
            bucket: Some(self.bucket.clone()),
            key: Some(self.key.clone()),
            version_id: self.version_id.clone(),
            etag: self.etag.clone(),
            size: Some(self.size),
            verdict,
            signature: self.signature.clone(),
            reason: Some(self.reason.clone()),
            action: self.action.clone(),
            quarantine: quarantine_bucket.map(|bucket| (bucket.to_owned(), location)),
            sha256: self.sha256.clone(),
            engine: self.engine.clone(),
            definitions: self.definitions(),
            allowed_by: None,
            scanned_at: self.scanned_at.clone(),
            message_id: message_id.to_owned(),
        }
    }

    /// The definitions that judged the object, as the report names them.
    pub(crate) fn definitions(&self) -> Option<Definitions> {
        let built_at = humantime::parse_rfc3339(self.definitions_built_at.as_deref()?).ok()?;
        Some(Definitions {
            version: self.definitions_version?,
            built_at,
        })
    }

    /// Where the report object goes: `<quarantine key>.report.json`.
    pub fn report_key(&self) -> String {
        report_key(&self.quarantine_key)
    }

    /// The document, pretty-printed.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The SNS notification: the report itself as the plain message.
    pub(crate) fn notification(&self) -> Notification {
        Notification {
            subject: NOTIFICATION_SUBJECT.to_owned(),
            message: self.to_json(),
            attributes: vec![
                ("verdict".to_owned(), self.verdict.clone()),
                ("reason".to_owned(), self.reason.clone()),
                ("bucket".to_owned(), self.bucket.clone()),
            ],
        }
    }
}

fn quarantine_action() -> String {
    "quarantine".to_owned()
}

// User metadata on the quarantined copy and its report: ties them to their source object, and
// keeps the verdict on the copy, so a redelivery can finish the quarantine without the original.
const META_SOURCE_ETAG: &str = "avscan-source-etag";
const META_SOURCE_VERSION: &str = "avscan-source-version";
const META_SOURCE_SEQUENCER: &str = "avscan-source-sequencer";
const META_VERDICT: &str = "avscan-verdict";
const META_REASON: &str = "avscan-reason";
const META_SIGNATURE: &str = "avscan-signature";
const META_SCANNED_AT: &str = "avscan-scanned-at";
const META_ENGINE: &str = "avscan-engine";
const META_DEFINITIONS_VERSION: &str = "avscan-definitions-version";
const META_DEFINITIONS_BUILT_AT: &str = "avscan-definitions-built-at";
const META_SHA256: &str = "avscan-sha256";

impl QuarantineReport {
    /// Metadata naming the source object; written on the report as well as on the copy.
    pub(crate) fn source_metadata(&self) -> Vec<(String, String)> {
        let source = [
            (META_SOURCE_ETAG, &self.etag),
            (META_SOURCE_VERSION, &self.version_id),
            (META_SOURCE_SEQUENCER, &self.sequencer),
        ];
        source
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?)))
            .collect()
    }

    /// Metadata of the quarantined copy: the source, and the verdict to finish a quarantine from.
    pub(crate) fn copy_metadata(&self) -> Vec<(String, String)> {
        let mut metadata = self.source_metadata();
        metadata.extend([
            (META_VERDICT.to_owned(), self.verdict.clone()),
            (META_REASON.to_owned(), self.reason.clone()),
            (META_SCANNED_AT.to_owned(), self.scanned_at.clone()),
        ]);
        let optional = [
            (META_SIGNATURE, &self.signature),
            (META_ENGINE, &self.engine),
            (
                META_DEFINITIONS_VERSION,
                &self.definitions_version.map(|v| v.to_string()),
            ),
            (META_DEFINITIONS_BUILT_AT, &self.definitions_built_at),
            (META_SHA256, &self.sha256),
        ];
        metadata.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?))),
        );
        metadata
    }

    /// The report of an earlier attempt's quarantine of `record`, rebuilt from the metadata of
    /// its copy at `quarantine_key` (the original is gone by now).
    pub(crate) fn from_copy(
        record: &ObjectRecord,
        copy: &ObjectMeta,
        quarantine_bucket: &str,
        quarantine_key: &str,
    ) -> Self {
        let meta = |name| copy.metadata.get(name);
        let definitions = match (meta(META_DEFINITIONS_VERSION), meta(META_DEFINITIONS_BUILT_AT)) {
            (Some(version), Some(built_at)) => Some(Definitions {
                version: version.parse().unwrap_or_default(),
                built_at: humantime::parse_rfc3339(built_at).unwrap_or(std::time::UNIX_EPOCH),
            }),
            _ => None,
        };
        let outcome = ScanOutcome {
            verdict: verdict_from_metadata(&copy.metadata),
            engine: meta(META_ENGINE).cloned(),
            definitions,
            sha256: meta(META_SHA256).cloned(),
            allowed_by: None,
        };
        let scanned_at = meta(META_SCANNED_AT).cloned().unwrap_or_else(now_rfc3339);
        let mut report = QuarantineReport::new(record, &outcome, scanned_at, quarantine_bucket);
        report.signature = copy.metadata.get(META_SIGNATURE).cloned();
        report.quarantine_key = quarantine_key.to_owned();
        report
    }
}

/// True when `stored` (a quarantined copy or a report) was written for exactly the upload
/// `object` names: the same version; or, without one, the same ETag and the same sequencer, so
/// that the same bytes uploaded again are a new incident while the same event delivered again is
/// not.
pub(crate) fn written_for(stored: &ObjectMeta, object: &ObjectRef) -> bool {
    let meta = |name| stored.metadata.get(name);
    let etag_matches = object
        .etag
        .as_ref()
        .is_none_or(|etag| meta(META_SOURCE_ETAG) == Some(etag));
    match (&object.version_id, &object.etag) {
        (Some(version), _) => meta(META_SOURCE_VERSION) == Some(version) && etag_matches,
        (None, Some(_)) => etag_matches && meta(META_SOURCE_SEQUENCER) == object.sequencer.as_ref(),
        (None, None) => false,
    }
}

/// Rebuilds the verdict an earlier attempt stored on the copy. Unknown values fail closed to
/// "unscannable": the object stays quarantined either way.
fn verdict_from_metadata(metadata: &HashMap<String, String>) -> Verdict {
    let signature = metadata.get(META_SIGNATURE).cloned();
    match (
        metadata.get(META_VERDICT).map(String::as_str),
        metadata.get(META_REASON).map(String::as_str),
    ) {
        (Some("infected"), _) => Verdict::Infected {
            signature: signature.unwrap_or_default(),
        },
        (_, Some(reason)) if reason == QuarantineReason::FileTooLarge.as_str() => Verdict::Unscannable {
            reason: QuarantineReason::FileTooLarge,
            signature,
        },
        _ => Verdict::Unscannable {
            reason: QuarantineReason::Unscannable,
            signature,
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::EventShape;

    #[test]
    fn report_has_the_old_fields_and_the_new_ones_and_is_the_sns_message() {
        let record = ObjectRecord {
            object: ObjectRef {
                bucket: "unprocessed".into(),
                key: "guid/evil file.txt".into(),
                version_id: Some("v1".into()),
                etag: Some("e".into()),
                size: 68,
                sequencer: Some("0A".into()),
            },
            event_time: "2026-11-29T12:00:00.000Z".into(),
            shape: EventShape::S3Record(json!({})),
        };
        let verdict = Verdict::Infected {
            signature: "Eicar-Test-Signature.UNOFFICIAL".into(),
        };
        let outcome = ScanOutcome {
            verdict,
            engine: Some("ClamAV 1.4.6/27400/Sun Nov  1 10:00:00 2026".into()),
            definitions: Definitions::from_version_reply("ClamAV 1.4.6/27400/Sun Nov  1 10:00:00 2026").unwrap(),
            sha256: Some("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f".into()),
            allowed_by: None,
        };
        let report = QuarantineReport::new(&record, &outcome, "2026-11-29T12:00:01.000Z".into(), "quarantine");
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(
            value,
            json!({
                "key": "guid/evil file.txt", "time": "2026-11-29T12:00:00.000Z", "reason": "virus detected",
                "bucket": "unprocessed", "version_id": "v1", "etag": "e", "sequencer": "0A", "size": 68,
                "sha256": "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
                "verdict": "infected", "action": "quarantine", "signature": "Eicar-Test-Signature.UNOFFICIAL",
                "quarantine_bucket": "quarantine", "quarantine_key": "guid/evil file.txt",
                "scanned_at": "2026-11-29T12:00:01.000Z", "engine": "ClamAV 1.4.6/27400/Sun Nov  1 10:00:00 2026",
                "definitions_version": 27400, "definitions_built_at": "2026-11-01T10:00:00Z", "source_metadata": {}
            })
        );
        assert_eq!(report.report_key(), "guid/evil file.txt.report.json");
        let notification = report.notification();
        assert_eq!(notification.message, report.to_json());
        assert!(!notification.subject.contains(&record.object.key));
        assert_eq!(
            notification.attributes,
            vec![
                ("verdict".to_owned(), "infected".to_owned()),
                ("reason".to_owned(), "virus detected".to_owned()),
                ("bucket".to_owned(), "unprocessed".to_owned())
            ]
        );
    }

    fn object(etag: Option<&str>, version: Option<&str>) -> ObjectRef {
        ObjectRef {
            bucket: "b".into(),
            key: "g/k".into(),
            etag: etag.map(Into::into),
            version_id: version.map(Into::into),
            size: 1,
            sequencer: None,
        }
    }

    fn copy_with(pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            metadata: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn copies_and_reports_match_only_their_own_source() {
        let copy = copy_with(&[(META_SOURCE_ETAG, "e1"), (META_SOURCE_VERSION, "v1")]);
        assert!(written_for(&copy, &object(Some("e1"), Some("v1"))));
        assert!(written_for(&copy, &object(Some("e1"), None)));
        assert!(!written_for(&copy, &object(Some("e2"), None)));
        assert!(!written_for(&copy, &object(Some("e1"), Some("v2"))));
        assert!(!written_for(&copy, &object(None, None)));
        assert!(!written_for(&copy_with(&[]), &object(Some("e1"), None)));
    }

    #[test]
    fn without_a_version_the_same_bytes_uploaded_again_are_another_upload() {
        let copy = copy_with(&[(META_SOURCE_ETAG, "e1"), (META_SOURCE_SEQUENCER, "0A")]);
        let upload = |sequencer: &str| ObjectRef {
            sequencer: Some(sequencer.into()),
            ..object(Some("e1"), None)
        };
        assert!(written_for(&copy, &upload("0A")), "the same event, delivered again");
        assert!(!written_for(&copy, &upload("0B")), "a new upload of the same bytes");
    }

    #[test]
    fn stored_verdicts_round_trip_and_unknown_ones_fail_closed() {
        let infected = copy_with(&[(META_VERDICT, "infected"), (META_SIGNATURE, "Eicar")]);
        assert_eq!(
            verdict_from_metadata(&infected.metadata),
            Verdict::Infected {
                signature: "Eicar".into()
            }
        );
        let too_large = copy_with(&[(META_VERDICT, "unscannable"), (META_REASON, "file too large")]);
        assert_eq!(
            verdict_from_metadata(&too_large.metadata).quarantine_reason(),
            Some(QuarantineReason::FileTooLarge)
        );
        let garbage = copy_with(&[(META_VERDICT, "clean")]);
        assert_eq!(verdict_from_metadata(&garbage.metadata).label(), "unscannable");
    }
}

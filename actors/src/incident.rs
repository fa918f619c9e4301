//! What identifies an incident, and where its evidence goes.
//!
//! An upload is identified by its version id, else by its ETag with the event's `sequencer`
//! (which orders the uploads of one key): the same event delivered twice is one incident, the
//! same bytes uploaded again are a new one. Each incident's copy and report are its own and are
//! never overwritten: the first incident of a key is quarantined under the key itself, a later
//! one under the key with its upload's id, and both are written only if absent.
//!
//! Quarantine keys are derived so that no source key can ever address a report, nor a report
//! a copy: a copy's key never ends in `.report.json` or `.release.json` (a source key that does,
//! or that ends in `~`, gets a `~` appended), a report's (or release report's) always does, and a later incident's key ends in
//! `~<upload id>~`, where the id (24 hex digits of a digest of the upload's identity) holds no
//! `~`. The mapping is one-to-one (up to a 96-bit digest), so two incidents, of the same or of
//! different keys, never share a key; and it stays within S3's 1,024 bytes for every source key
//! the event parser accepts (`MAX_SOURCE_KEY_BYTES`, the parser's [`MAX_KEY_BYTES`](crate::event::MAX_KEY_BYTES)).

use sha2::{Digest, Sha256};

use crate::model::ObjectRef;

/// Suffix of the report object stored beside the quarantined copy.
pub(crate) const REPORT_SUFFIX: &str = ".report.json";
/// Suffix of the release report `avscan release` stores beside it (the longer of the two).
pub const RELEASE_SUFFIX: &str = ".release.json";

/// Hex digits of a later incident's upload id.
const UPLOAD_ID_LEN: usize = 24;

/// The longest source key whose every quarantine key, and its report's and release report's,
/// fits S3's 1,024 bytes: the release suffix, the `~` of an escaped key and a later incident's
/// `~<id>~` on top.
pub(crate) const MAX_SOURCE_KEY_BYTES: usize = 1024 - RELEASE_SUFFIX.len() - 1 - (UPLOAD_ID_LEN + 2);

/// What identifies the upload an event announced: its version, else its sequencer and ETag.
fn identity(object: &ObjectRef) -> String {
    match (&object.version_id, &object.sequencer, &object.etag) {
        (Some(version), _, _) => format!("version {version}"),
        (None, sequencer, etag) => format!(
            "sequencer {} etag {}",
            sequencer.as_deref().unwrap_or(""),
            etag.as_deref().unwrap_or("")
        ),
    }
}

/// The upload's id in a later incident's key: hex digits of a digest of its identity.
pub(crate) fn upload_id(object: &ObjectRef) -> String {
    let digest = Sha256::digest(identity(object).as_bytes());
    digest
        .iter()
        .take(UPLOAD_ID_LEN / 2)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The key of a copy of `source_key`: the key itself, unless it ends in `.report.json`,
/// `.release.json` or `~`.
pub(crate) fn copy_key(source_key: &str) -> String {
    if source_key.ends_with(REPORT_SUFFIX) || source_key.ends_with(RELEASE_SUFFIX) || source_key.ends_with('~') {
        format!("{source_key}~")
    } else {
        source_key.to_owned()
    }
}

/// Where an incident of `object` may be quarantined, in order: under its key if no earlier
/// incident holds it, else under the key with the upload's id.
pub(crate) fn quarantine_keys(object: &ObjectRef) -> [String; 2] {
    let first = copy_key(&object.key);
    let later = format!("{first}~{}~", upload_id(object));
    [first, later]
}

/// The key of the report for a copy at `quarantine_key`.
pub(crate) fn report_key(quarantine_key: &str) -> String {
    format!("{quarantine_key}{REPORT_SUFFIX}")
}

/// The key of the release report for a copy at `quarantine_key`.
pub fn release_key(quarantine_key: &str) -> String {
    format!("{quarantine_key}{RELEASE_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn object(key: &str, version: Option<&str>, sequencer: Option<&str>, etag: Option<&str>) -> ObjectRef {
        ObjectRef {
            bucket: "b".into(),
            key: key.into(),
            version_id: version.map(Into::into),
            etag: etag.map(Into::into),
            size: 1,
            sequencer: sequencer.map(Into::into),
        }
    }

    #[test]
    fn an_upload_is_its_version_else_its_sequencer_and_etag() {
        let id = |version, sequencer, etag| upload_id(&object("g/k", version, sequencer, etag));
        assert_eq!(
            id(Some("v1"), Some("0A"), Some("e")),
            id(Some("v1"), Some("0B"), Some("f"))
        );
        assert_ne!(
            id(None, Some("0A"), Some("e")),
            id(None, Some("0B"), Some("e")),
            "the same bytes uploaded again are another upload"
        );
        assert_ne!(id(None, Some("0A"), Some("e")), id(None, Some("0A"), Some("f")));
        let long = id(Some(&"~".repeat(1000)), None, None);
        assert_eq!(long.len(), UPLOAD_ID_LEN);
        assert!(long.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn every_quarantine_key_of_an_accepted_source_key_fits_s3() {
        for source in [
            "g/".to_owned() + &"k".repeat(MAX_SOURCE_KEY_BYTES - 2),
            format!("g/{}.report.json", "k".repeat(MAX_SOURCE_KEY_BYTES - 14)),
            format!("g/{}.release.json", "k".repeat(MAX_SOURCE_KEY_BYTES - 15)),
        ] {
            assert_eq!(source.len(), MAX_SOURCE_KEY_BYTES);
            for key in quarantine_keys(&object(&source, None, Some("0A"), Some("e"))) {
                assert!(release_key(&key).len() <= 1024, "{} bytes", release_key(&key).len());
                assert!(report_key(&key).len() <= 1024, "{} bytes", report_key(&key).len());
            }
        }
    }

    #[test]
    fn no_source_key_addresses_a_report_and_no_two_incidents_share_a_key() {
        let sources = [
            "g/k",
            "g/k.report.json",
            "g/k.report.json~",
            "g/k~",
            "g/k~~",
            "g/k~v1~",
            "g/k~vv1~",
            "g/k~vv1~.report.json",
            "g/k.report.json.report.json",
            "g/k.release.json",
            "g/k.release.json~",
        ];
        let mut reports = HashSet::new();
        let mut copies = HashSet::new();
        for source in sources {
            for version in ["v1", "v2"] {
                for key in quarantine_keys(&object(source, Some(version), None, None)) {
                    assert!(!key.ends_with(REPORT_SUFFIX), "{key} could be taken for a report");
                    assert!(
                        !key.ends_with(RELEASE_SUFFIX),
                        "{key} could be taken for a release report"
                    );
                    copies.insert(key.clone());
                    reports.insert(report_key(&key));
                    reports.insert(release_key(&key));
                }
            }
        }
        // Every source's first key, and each (source, upload) later key, is distinct.
        assert_eq!(copies.len(), sources.len() * 3);
        assert!(copies.is_disjoint(&reports));
        // The case that bit: an infected `K.report.json` taken for `K`'s report.
        assert_ne!(copy_key("g/k.report.json"), report_key(&copy_key("g/k")));
        assert_ne!(copy_key("g/k.release.json"), release_key(&copy_key("g/k")));
    }
}

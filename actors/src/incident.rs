//! What identifies an incident, and where its evidence goes.
//!
//! An upload is identified by its version id, else by its ETag with the event's `sequencer`
//! (which orders the uploads of one key): the same event delivered twice is one incident, the
//! same bytes uploaded again are a new one. Each incident's copy and report are its own and are
//! never overwritten: the first incident of a key is quarantined under the key itself, a later
//! one under the key with its upload's id, and both are written only if absent.
//!
//! Quarantine keys are derived so that no source key can ever address a report, nor a report
//! a copy: a copy's key never ends in `.report.json` (a source key that does, or that ends in
//! `~`, gets a `~` appended), a report's always does, and a later incident's key ends in
//! `~<upload id>~`, where the id holds no `~`. The mapping is one-to-one, so two incidents
//! (of the same or of different keys) never share a key.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::model::ObjectRef;

/// Suffix of the report object stored beside the quarantined copy.
pub(crate) const REPORT_SUFFIX: &str = ".report.json";

/// Characters an upload id keeps as they are: what S3 version ids, sequencers and ETags use.
/// Everything else (`~` and `%` included) is percent-encoded, so the id holds no `~`.
const ID_KEEPS: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// The identity of the upload an event announced.
pub(crate) fn upload_id(object: &ObjectRef) -> String {
    let id = match (&object.version_id, &object.sequencer, &object.etag) {
        (Some(version), _, _) => format!("v{version}"),
        (None, Some(sequencer), Some(etag)) => format!("s{sequencer}-{etag}"),
        (None, Some(sequencer), None) => format!("s{sequencer}"),
        (None, None, Some(etag)) => format!("e{etag}"),
        (None, None, None) => "unknown".to_owned(),
    };
    utf8_percent_encode(&id, ID_KEEPS).to_string()
}

/// The key of a copy of `source_key`: the key itself, unless it ends in `.report.json` or `~`.
pub(crate) fn copy_key(source_key: &str) -> String {
    if source_key.ends_with(REPORT_SUFFIX) || source_key.ends_with('~') {
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
        assert_eq!(upload_id(&object("g/k", Some("v1"), Some("0A"), Some("e"))), "vv1");
        assert_eq!(upload_id(&object("g/k", None, Some("0A"), Some("e"))), "s0A-e");
        assert_ne!(
            upload_id(&object("g/k", None, Some("0A"), Some("e"))),
            upload_id(&object("g/k", None, Some("0B"), Some("e"))),
            "the same bytes uploaded again are another upload"
        );
        assert!(!upload_id(&object("g/k", Some("a~b%"), None, None)).contains('~'));
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
        ];
        let mut reports = HashSet::new();
        let mut copies = HashSet::new();
        for source in sources {
            for version in ["v1", "v2"] {
                for key in quarantine_keys(&object(source, Some(version), None, None)) {
                    assert!(!key.ends_with(REPORT_SUFFIX), "{key} could be taken for a report");
                    copies.insert(key.clone());
                    reports.insert(report_key(&key));
                }
            }
        }
        // Every source's first key, and each (source, upload) later key, is distinct.
        assert_eq!(copies.len(), sources.len() * 3);
        assert!(copies.is_disjoint(&reports));
        // The case that bit: an infected `K.report.json` taken for `K`'s report.
        assert_ne!(copy_key("g/k.report.json"), report_key(&copy_key("g/k")));
    }
}

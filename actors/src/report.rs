//! The quarantine report: one JSON document that is both the SNS message and the
//! `<key>.report.json` object beside the quarantined copy. Its first three fields are the old
//! worker's (`key`, `time`, `reason`).

use serde::{Deserialize, Serialize};

use crate::model::{ObjectRecord, QuarantineReason, Verdict};
use crate::ports::Notification;

/// Fixed on purpose: subjects show up in e-mail subscriptions, and keys are user data.
pub const NOTIFICATION_SUBJECT: &str = "avscan: object quarantined";

/// Suffix of the report object stored beside the quarantined copy.
pub const REPORT_SUFFIX: &str = ".report.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineReport {
    pub key: String,
    /// The event's time.
    pub time: String,
    pub reason: String,
    pub bucket: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub size: u64,
    pub verdict: String,
    pub signature: Option<String>,
    pub quarantine_bucket: String,
    pub quarantine_key: String,
    pub scanned_at: String,
    pub engine: Option<String>,
}

impl QuarantineReport {
    pub fn new(
        record: &ObjectRecord,
        verdict: &Verdict,
        engine: Option<String>,
        scanned_at: String,
        quarantine_bucket: &str,
    ) -> Self {
        let object = &record.object;
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
            size: object.size,
            verdict: verdict.label().to_owned(),
            signature: verdict.signature().map(str::to_owned),
            quarantine_bucket: quarantine_bucket.to_owned(),
            quarantine_key: object.key.clone(),
            scanned_at,
            engine,
        }
    }

    pub fn report_key(&self) -> String {
        report_key(&self.quarantine_key)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The SNS notification: the report itself as the plain message.
    pub fn notification(&self) -> Notification {
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

pub fn report_key(quarantine_key: &str) -> String {
    format!("{quarantine_key}{REPORT_SUFFIX}")
}

/// Now, as RFC 3339 with milliseconds (`scanned_at`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{EventShape, ObjectRef};

    #[test]
    fn report_has_the_old_fields_and_the_new_ones_and_is_the_sns_message() {
        let record = ObjectRecord {
            object: ObjectRef {
                bucket: "unprocessed".into(),
                key: "guid/evil file.txt".into(),
                version_id: Some("v1".into()),
                etag: Some("e".into()),
                size: 68,
            },
            event_time: "2026-11-29T12:00:00.000Z".into(),
            shape: EventShape::S3Record(json!({})),
        };
        let verdict = Verdict::Infected {
            signature: "Eicar-Test-Signature.UNOFFICIAL".into(),
        };
        let report = QuarantineReport::new(
            &record,
            &verdict,
            Some("ClamAV 1.4.6".into()),
            "2026-11-29T12:00:01.000Z".into(),
            "quarantine",
        );
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(
            value,
            json!({
                "key": "guid/evil file.txt", "time": "2026-11-29T12:00:00.000Z", "reason": "virus detected",
                "bucket": "unprocessed", "version_id": "v1", "etag": "e", "size": 68, "verdict": "infected",
                "signature": "Eicar-Test-Signature.UNOFFICIAL", "quarantine_bucket": "quarantine",
                "quarantine_key": "guid/evil file.txt", "scanned_at": "2026-11-29T12:00:01.000Z",
                "engine": "ClamAV 1.4.6"
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
}

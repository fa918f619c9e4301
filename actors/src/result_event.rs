//! The result event: one per record that finished, whatever its verdict (clean, infected,
//! unscannable, too large, rejected, stale), published before its message is deleted. Its
//! `detail` has GuardDuty Malware Protection for S3's "Object Scan Result" shape (`scanStatus`,
//! `resourceType`, `s3ObjectDetails`, `scanResultDetails`), so consumers written for GuardDuty's
//! events keep working, plus avscan's own fields under `avscan` (verdict, reason, SHA-256, size,
//! definitions, what was done). The envelope (EventBridge's or SNS') is the adapter's business.

use serde_json::{json, Map, Value};

use crate::definitions::Definitions;
use crate::model::{now_rfc3339, ObjectRecord, QuarantineReason, ScanOutcome, Verdict};

/// GuardDuty's `detail-type`, kept so that rules matching on it keep matching.
pub const DETAIL_TYPE: &str = "GuardDuty Malware Protection Object Scan Result";

/// Text fields an uploader controls (a rejection quotes event fields) are cut here.
const MAX_TEXT_BYTES: usize = 1024;

/// avscan's verdict on one record, as its result event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultVerdict {
    /// clamd's `OK` (or a detection an allow-list entry overruled).
    Clean,
    /// A signature matched.
    Infected,
    /// Not scanned whole: encrypted, past clamd's limits, something clamd skips.
    Unscannable,
    /// Larger than the policy's size limit: not scanned.
    TooLarge,
    /// The event is not one avscan acts on (its key, its bucket, its shape): nothing was read.
    Rejected,
    /// The announced upload is gone or replaced: a newer event judges what is there now.
    Stale,
}

impl ResultVerdict {
    /// The name in `detail.avscan.verdict` and the `verdict` attribute.
    pub fn label(&self) -> &'static str {
        match self {
            ResultVerdict::Clean => "clean",
            ResultVerdict::Infected => "infected",
            ResultVerdict::Unscannable => "unscannable",
            ResultVerdict::TooLarge => "too large",
            ResultVerdict::Rejected => "rejected",
            ResultVerdict::Stale => "stale",
        }
    }

    /// GuardDuty's `scanStatus` and `scanResultStatus`: a finished scan is `COMPLETED` with
    /// `NO_THREATS_FOUND` or `THREATS_FOUND`; everything not scanned whole is `SKIPPED` with
    /// `UNSUPPORTED`, which a consumer written for GuardDuty treats as not clean.
    pub fn guardduty_status(&self) -> (&'static str, &'static str) {
        match self {
            ResultVerdict::Clean => ("COMPLETED", "NO_THREATS_FOUND"),
            ResultVerdict::Infected => ("COMPLETED", "THREATS_FOUND"),
            ResultVerdict::Unscannable | ResultVerdict::TooLarge | ResultVerdict::Rejected | ResultVerdict::Stale => {
                ("SKIPPED", "UNSUPPORTED")
            }
        }
    }

    fn of(verdict: &Verdict) -> Self {
        match verdict {
            Verdict::Clean => ResultVerdict::Clean,
            Verdict::Infected { .. } => ResultVerdict::Infected,
            Verdict::Unscannable {
                reason: QuarantineReason::FileTooLarge,
                ..
            } => ResultVerdict::TooLarge,
            Verdict::Unscannable { .. } => ResultVerdict::Unscannable,
        }
    }
}

/// What one record's event says; rendered by [`detail`](Self::detail).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultEvent {
    /// The object's bucket, when the event named one.
    pub bucket: Option<String>,
    /// The object's key (decoded), when the event named a usable one.
    pub key: Option<String>,
    /// The announced version.
    pub version_id: Option<String>,
    /// The announced ETag, without quotes.
    pub etag: Option<String>,
    /// The announced size.
    pub size: Option<u64>,
    /// The verdict.
    pub verdict: ResultVerdict,
    /// What clamd (or the archive guard) found.
    pub signature: Option<String>,
    /// Why: the quarantine reason, the rejection, why it is stale.
    pub reason: Option<String>,
    /// What avscan did: `forwarded`, `none`, `tagged`, or the policy's action (`quarantine`,
    /// `tag`, `delete`, `report`).
    pub action: String,
    /// Where the evidence is: the quarantine bucket and the copy's (or report's) key.
    pub quarantine: Option<(String, String)>,
    /// The SHA-256 of the bytes scanned.
    pub sha256: Option<String>,
    /// clamd's VERSION line.
    pub engine: Option<String>,
    /// The daily database that judged it.
    pub definitions: Option<Definitions>,
    /// The allow-list entry that overruled a detection.
    pub allowed_by: Option<String>,
    /// When the verdict was given, RFC 3339.
    pub scanned_at: String,
    /// The SQS message the record came in.
    pub message_id: String,
}

impl ResultEvent {
    /// The event of `record` judged as `outcome`, after avscan did `action` with it.
    pub(crate) fn judged(record: &ObjectRecord, outcome: &ScanOutcome, action: &str, message_id: &str) -> Self {
        let reason = outcome
            .verdict
            .quarantine_reason()
            .map(|reason| reason.as_str().to_owned());
        Self {
            signature: outcome.verdict.signature().map(str::to_owned),
            reason,
            action: action.to_owned(),
            sha256: outcome.sha256.clone(),
            engine: outcome.engine.clone(),
            definitions: outcome.definitions,
            allowed_by: outcome.allowed_by.clone(),
            ..Self::about(record, ResultVerdict::of(&outcome.verdict), message_id)
        }
    }

    /// The event of a record whose upload is gone or replaced: nothing was judged.
    pub(crate) fn stale(record: &ObjectRecord, message_id: &str) -> Self {
        Self {
            reason: Some("gone or replaced since the event; a newer event judges what is there".to_owned()),
            ..Self::about(record, ResultVerdict::Stale, message_id)
        }
    }

    /// An event of `verdict` about `record`'s object, saying nothing else yet.
    fn about(record: &ObjectRecord, verdict: ResultVerdict, message_id: &str) -> Self {
        let object = &record.object;
        Self {
            bucket: Some(object.bucket.clone()),
            key: Some(object.key.clone()),
            version_id: object.version_id.clone(),
            etag: object.etag.clone(),
            size: Some(object.size),
            ..Self::blank(verdict, message_id)
        }
    }

    /// An event of `verdict` that names nothing yet.
    fn blank(verdict: ResultVerdict, message_id: &str) -> Self {
        Self {
            bucket: None,
            key: None,
            version_id: None,
            etag: None,
            size: None,
            verdict,
            signature: None,
            reason: None,
            action: "none".to_owned(),
            quarantine: None,
            sha256: None,
            engine: None,
            definitions: None,
            allowed_by: None,
            scanned_at: now_rfc3339(),
            message_id: message_id.to_owned(),
        }
    }

    /// The event of a rejected record (or message): `object` is the bucket and key it named,
    /// where it named them.
    pub(crate) fn rejected(object: (Option<String>, Option<String>), reason: &str, message_id: &str) -> Self {
        Self {
            bucket: object.0,
            key: object.1,
            reason: Some(reason.to_owned()),
            ..Self::blank(ResultVerdict::Rejected, message_id)
        }
    }

    /// The event's `detail`: GuardDuty's fields, then avscan's under `avscan`.
    pub fn detail(&self) -> Value {
        let (scan_status, result_status) = self.verdict.guardduty_status();
        let threats = match (&self.verdict, &self.signature) {
            (ResultVerdict::Infected, Some(signature)) => json!([{ "name": capped(signature) }]),
            _ => Value::Null,
        };
        let mut object = Map::new();
        insert(&mut object, "bucketName", self.bucket.as_deref());
        insert(&mut object, "objectKey", self.key.as_deref());
        insert(&mut object, "eTag", self.etag.as_deref());
        insert(&mut object, "versionId", self.version_id.as_deref());
        object.insert("s3Throttled".into(), Value::Bool(false));
        let mut ours = Map::new();
        ours.insert("verdict".into(), self.verdict.label().into());
        insert(&mut ours, "signature", self.signature.as_deref().map(capped).as_deref());
        insert(&mut ours, "reason", self.reason.as_deref().map(capped).as_deref());
        ours.insert("action".into(), self.action.clone().into());
        if let Some((bucket, key)) = &self.quarantine {
            ours.insert("quarantineBucket".into(), bucket.clone().into());
            ours.insert("quarantineKey".into(), key.clone().into());
        }
        insert(&mut ours, "sha256", self.sha256.as_deref());
        if let Some(size) = self.size {
            ours.insert("size".into(), size.into());
        }
        if let Some(definitions) = &self.definitions {
            ours.insert("definitionsVersion".into(), definitions.version.into());
            ours.insert("definitionsBuiltAt".into(), definitions.built_at_rfc3339().into());
        }
        insert(&mut ours, "engine", self.engine.as_deref().map(capped).as_deref());
        insert(
            &mut ours,
            "allowedBy",
            self.allowed_by.as_deref().map(capped).as_deref(),
        );
        ours.insert("scannedAt".into(), self.scanned_at.clone().into());
        ours.insert("messageId".into(), capped(&self.message_id).into());
        json!({
            "schemaVersion": "1.0",
            "scanStatus": scan_status,
            "resourceType": "S3_OBJECT",
            "s3ObjectDetails": object,
            "scanResultDetails": { "scanResultStatus": result_status, "threats": threats },
            "avscan": ours,
        })
    }

    /// Attributes for subscription filter policies (SNS): the verdict and GuardDuty's status.
    pub fn attributes(&self) -> Vec<(String, String)> {
        let mut attributes = vec![
            ("verdict".to_owned(), self.verdict.label().to_owned()),
            (
                "scanResultStatus".to_owned(),
                self.verdict.guardduty_status().1.to_owned(),
            ),
        ];
        if let Some(bucket) = &self.bucket {
            attributes.push(("bucket".to_owned(), bucket.clone()));
        }
        attributes
    }
}

fn insert(map: &mut Map<String, Value>, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        map.insert(name.to_owned(), Value::String(value.to_owned()));
    }
}

/// `text` cut to [`MAX_TEXT_BYTES`].
fn capped(text: &str) -> String {
    crate::model::capped(text, MAX_TEXT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventShape, ObjectRef};

    fn record() -> ObjectRecord {
        ObjectRecord {
            object: ObjectRef {
                bucket: "uploads".into(),
                key: "g/f.txt".into(),
                version_id: Some("v1".into()),
                etag: Some("e1".into()),
                size: 68,
                sequencer: None,
            },
            event_time: "t".into(),
            shape: EventShape::S3Record(Value::Null),
        }
    }

    fn outcome(verdict: Verdict) -> ScanOutcome {
        ScanOutcome {
            verdict,
            engine: Some("ClamAV 1.4.3/27400/…".into()),
            definitions: None,
            sha256: Some("ab".repeat(32)),
            allowed_by: None,
        }
    }

    #[test]
    fn an_infected_object_reads_as_guardduty_says_threats_found() {
        let infected = outcome(Verdict::Infected {
            signature: "Eicar-Test-Signature".into(),
        });
        let detail = ResultEvent::judged(&record(), &infected, "quarantine", "m1").detail();
        assert_eq!(detail["scanStatus"], "COMPLETED");
        assert_eq!(detail["resourceType"], "S3_OBJECT");
        assert_eq!(detail["s3ObjectDetails"]["bucketName"], "uploads");
        assert_eq!(detail["s3ObjectDetails"]["objectKey"], "g/f.txt");
        assert_eq!(detail["s3ObjectDetails"]["eTag"], "e1");
        assert_eq!(detail["s3ObjectDetails"]["versionId"], "v1");
        assert_eq!(detail["scanResultDetails"]["scanResultStatus"], "THREATS_FOUND");
        assert_eq!(
            detail["scanResultDetails"]["threats"][0]["name"],
            "Eicar-Test-Signature"
        );
        assert_eq!(detail["avscan"]["verdict"], "infected");
        assert_eq!(detail["avscan"]["sha256"], "ab".repeat(32));
        assert_eq!(detail["avscan"]["size"], 68);
    }

    #[test]
    fn everything_not_scanned_whole_is_skipped_unsupported() {
        let too_large = outcome(Verdict::Unscannable {
            reason: QuarantineReason::FileTooLarge,
            signature: None,
        });
        let event = ResultEvent::judged(&record(), &too_large, "tag", "m");
        assert_eq!(event.verdict, ResultVerdict::TooLarge);
        for event in [
            event,
            ResultEvent::stale(&record(), "m"),
            ResultEvent::rejected((None, None), "not an s3 event notification", "m"),
        ] {
            let detail = event.detail();
            assert_eq!(detail["scanStatus"], "SKIPPED", "{detail}");
            assert_eq!(detail["scanResultDetails"]["scanResultStatus"], "UNSUPPORTED");
            assert_eq!(detail["scanResultDetails"]["threats"], Value::Null);
        }
        let clean = ResultEvent::judged(&record(), &outcome(Verdict::Clean), "forwarded", "m").detail();
        assert_eq!(clean["scanResultDetails"]["scanResultStatus"], "NO_THREATS_FOUND");
    }

    #[test]
    fn text_an_uploader_controls_is_bounded() {
        let long = "é".repeat(5000);
        let detail = ResultEvent::rejected((Some("b".into()), None), &long, "m").detail();
        let reason = detail["avscan"]["reason"].as_str().unwrap();
        assert!(reason.len() <= MAX_TEXT_BYTES && reason.starts_with('é'));
        assert!(detail["s3ObjectDetails"].get("objectKey").is_none());
    }
}

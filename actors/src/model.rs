//! The domain: the object an event points at, the record that names it, and the verdicts a scan
//! can end in. (The job that carries a record through the stages is `stages::RecordJob`; the
//! fetcher's answer to the router, `Inspection`, lives beside the router's message.)

use serde_json::Value;

use crate::definitions::Definitions;
use crate::ports::ScanError;

/// The exact object version an event announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The bucket the event named.
    pub bucket: String,
    /// Decoded key (events carry it form-encoded).
    pub key: String,
    /// Pins the GET, copy and delete to the announced version in a versioned bucket.
    pub version_id: Option<String>,
    /// Without quotes; pins the GET (If-Match) when there is no version id.
    pub etag: Option<String>,
    /// Size as announced by the event; the GET's own length is checked again.
    pub size: u64,
    /// The event's `sequencer`, which orders the uploads of one key: where there is no version
    /// id, it tells a new upload of the same bytes (same ETag) from a redelivery of one event.
    pub sequencer: Option<String>,
}

/// How the event reached us, which decides what is forwarded for a clean object.
#[derive(Debug, Clone, PartialEq)]
pub enum EventShape {
    /// An S3 notification record (bare or inside an SNS envelope): forwarded as
    /// `{"Records":[record]}`.
    S3Record(Value),
    /// An EventBridge "Object Created" event: forwarded unchanged.
    EventBridge(Value),
}

/// One valid ObjectCreated record, ready to be fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRecord {
    /// The object to scan.
    pub object: ObjectRef,
    /// The event's own time, reported as `time` (the old worker's field).
    pub event_time: String,
    /// How the event arrived, which decides what is forwarded.
    pub shape: EventShape,
}

impl ObjectRecord {
    /// The body sent to the outbound queue when the object is clean.
    pub(crate) fn outbound_body(&self) -> String {
        match &self.shape {
            // Written around the record rather than through `json!`, which would copy it first.
            EventShape::S3Record(record) => format!(r#"{{"Records":[{record}]}}"#),
            EventShape::EventBridge(event) => event.to_string(),
        }
    }
}

/// Why an object goes to quarantine; the strings are the old worker's `reason` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineReason {
    /// clamd found a signature.
    VirusDetected,
    /// Larger than `MAX_FILE_SIZE` or than clamd's stream limit: not scanned.
    FileTooLarge,
    /// clamd (or the archive guard) could not look at everything.
    Unscannable,
}

impl QuarantineReason {
    /// The old worker's `reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineReason::VirusDetected => "virus detected",
            QuarantineReason::FileTooLarge => "file too large",
            QuarantineReason::Unscannable => "unscannable",
        }
    }
}

/// A certain answer about an object's content. Anything uncertain is a scan error instead and
/// leads to a retry, so `Clean` is only ever built from clamd's `OK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// clamd's exact `stream: OK`, and the archive guard found nothing clamd skips.
    Clean,
    /// A signature matched.
    Infected {
        /// clamd's name for what it found.
        signature: String,
    },
    /// Not known to be infected, not known to be clean: quarantined.
    Unscannable {
        /// Why it could not be judged.
        reason: QuarantineReason,
        /// The heuristic that said so, when clamd or the guard named one.
        signature: Option<String>,
    },
}

/// Signatures clamd reports when it could not look at everything (limits, encryption): the file
/// is not known to be infected, but it is not known to be clean either.
const UNSCANNABLE_SIGNATURE_PREFIXES: [&str; 2] = ["Heuristics.Limits.Exceeded", "Heuristics.Encrypted"];

impl Verdict {
    /// The verdict for a `<signature> FOUND` reply.
    pub fn from_signature(signature: &str) -> Verdict {
        if UNSCANNABLE_SIGNATURE_PREFIXES
            .iter()
            .any(|prefix| signature.starts_with(prefix))
        {
            Verdict::Unscannable {
                reason: QuarantineReason::Unscannable,
                signature: Some(signature.to_owned()),
            }
        } else {
            Verdict::Infected {
                signature: signature.to_owned(),
            }
        }
    }

    /// The name used in reports and message attributes.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Infected { .. } => "infected",
            Verdict::Unscannable { .. } => "unscannable",
        }
    }

    /// Why the object is quarantined; `None` for clean.
    pub fn quarantine_reason(&self) -> Option<QuarantineReason> {
        match self {
            Verdict::Clean => None,
            Verdict::Infected { .. } => Some(QuarantineReason::VirusDetected),
            Verdict::Unscannable { reason, .. } => Some(*reason),
        }
    }

    /// The signature found, if any.
    pub fn signature(&self) -> Option<&str> {
        match self {
            Verdict::Clean => None,
            Verdict::Infected { signature } => Some(signature),
            Verdict::Unscannable { signature, .. } => signature.as_deref(),
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
pub(crate) fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Now, as RFC 3339 with milliseconds (`scanned_at`).
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// What a scanner answers for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// The certain answer.
    pub verdict: Verdict,
    /// clamd's VERSION line (engine and signature database), reported downstream.
    pub engine: Option<String>,
    /// The daily database that judged the object, named by the VERSIONs clamd answered around
    /// the scan in its own session; `None` when clamd named none (custom databases only) or did
    /// not scan.
    pub definitions: Option<Definitions>,
    /// The object's SHA-256 (lowercase hex), computed while it streamed to clamd; `None` when it
    /// was not streamed whole (too large, cut by clamd's stream limit).
    pub sha256: Option<String>,
    /// Set when an allow-list entry turned a detection into clean: the entry and the verdict it
    /// overruled, for logs and the outbound message.
    pub allowed_by: Option<String>,
}

/// A verdict from [`ScanSession::scan`](crate::ports::ScanSession::scan), and who gave it.
#[derive(Debug)]
pub struct Scanned {
    /// The certain answer for the whole body.
    pub verdict: Verdict,
    /// The engine and definitions that gave it.
    pub judged_by: JudgedBy,
}

/// The engine and definitions that gave a verdict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judge {
    /// How the engine names itself (clamd: its VERSION line), reported downstream.
    pub engine: Option<String>,
    /// Its daily database; `None` when it names none (custom databases only).
    pub definitions: Option<Definitions>,
}

/// Who gave a verdict: known with it, or once the session confirms it.
#[derive(Debug)]
pub enum JudgedBy {
    /// Known when the verdict came.
    Known(Judge),
    /// Named by a later `VERSION` of the session: before one of its next scans, or on
    /// [`ScanSession::confirm`](crate::ports::ScanSession::confirm). An error, or the session
    /// ending first, leaves the verdict without a judge: it is no verdict, and retried.
    Confirming(tokio::sync::oneshot::Receiver<Result<Judge, ScanError>>),
}

impl JudgedBy {
    /// The judge, once named.
    pub async fn named(self) -> Result<Judge, ScanError> {
        match self {
            JudgedBy::Known(judge) => Ok(judge),
            JudgedBy::Confirming(named) => named
                .await
                .map_err(|_| ScanError::Io("the session ended before it named the definitions of a verdict".into()))?,
        }
    }
}

impl Scanned {
    /// The verdict with its engine and definitions, once they are named.
    pub async fn outcome(self) -> Result<ScanOutcome, ScanError> {
        let judge = self.judged_by.named().await?;
        Ok(ScanOutcome {
            verdict: self.verdict,
            engine: judge.engine,
            definitions: judge.definitions,
            sha256: None,
            allowed_by: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_and_encryption_signatures_are_unscannable_not_infected() {
        assert_eq!(
            Verdict::from_signature("Heuristics.Limits.Exceeded.MaxFileSize"),
            Verdict::Unscannable {
                reason: QuarantineReason::Unscannable,
                signature: Some("Heuristics.Limits.Exceeded.MaxFileSize".into())
            }
        );
        assert_eq!(
            Verdict::from_signature("Heuristics.Encrypted.Zip").label(),
            "unscannable"
        );
        assert_eq!(
            Verdict::from_signature("Eicar-Test-Signature.UNOFFICIAL"),
            Verdict::Infected {
                signature: "Eicar-Test-Signature.UNOFFICIAL".into()
            }
        );
        // A heuristic that is about content, not limits, is an infection.
        assert_eq!(Verdict::from_signature("Heuristics.Phishing.Email").label(), "infected");
    }

    #[test]
    fn reasons_keep_the_old_workers_strings() {
        assert_eq!(
            Verdict::Infected { signature: "x".into() }
                .quarantine_reason()
                .unwrap()
                .as_str(),
            "virus detected"
        );
        assert_eq!(QuarantineReason::FileTooLarge.as_str(), "file too large");
        assert_eq!(Verdict::Clean.quarantine_reason(), None);
    }

    #[test]
    fn s3_records_are_forwarded_alone_in_a_records_array() {
        let raw = serde_json::json!({"eventName": "ObjectCreated:Put", "s3": {}});
        let record = ObjectRecord {
            object: ObjectRef {
                bucket: "b".into(),
                key: "g/f".into(),
                version_id: None,
                etag: None,
                size: 1,
                sequencer: None,
            },
            event_time: "t".into(),
            shape: EventShape::S3Record(raw.clone()),
        };
        let body: Value = serde_json::from_str(&record.outbound_body()).unwrap();
        assert_eq!(body, serde_json::json!({ "Records": [raw] }));
    }
}

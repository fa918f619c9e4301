//! Parsing of inbound SQS bodies into object records: S3 notifications (bare or inside an SNS
//! envelope), EventBridge "Object Created" events and S3's test event. Pure functions, called by
//! the poller; every input ends in records, a test event or a typed rejection, never a panic.

use percent_encoding::percent_decode_str;
use serde_json::Value;

use crate::model::{EventShape, ObjectRecord, ObjectRef};

/// The longest key accepted: S3 allows 1,024 bytes, and every quarantine key of the object, with
/// its report's `.report.json`, must fit too (a later incident's key adds `~<24-digit id>~`), or
/// the object could be scanned but its evidence never stored.
pub const MAX_KEY_BYTES: usize = crate::incident::MAX_SOURCE_KEY_BYTES;

/// What one SQS message body turned out to be.
#[derive(Debug, PartialEq)]
pub enum ParsedMessage {
    /// S3's `s3:TestEvent`, sent when a notification is configured: acknowledged and ignored.
    TestEvent,
    /// One entry per record, in order; never empty.
    Records(Vec<Result<ObjectRecord, RejectedRecord>>),
    /// The body as a whole is not an event we can act on.
    Invalid(Rejection),
}

/// Why a message or a record is not processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The body (or an SNS envelope's message) is not JSON.
    #[error("malformed json: {0}")]
    MalformedJson(String),
    /// JSON of some other shape.
    #[error("not an s3 event notification")]
    NotAnEvent,
    /// `Records` is an empty array.
    #[error("event has no records")]
    NoRecords,
    /// Another event (a delete, a restore…), named.
    #[error("event {0:?} is not ObjectCreated")]
    NotObjectCreated(String),
    /// A bucket avscan does not serve, named.
    #[error("bucket {0:?} is not the unprocessed bucket")]
    WrongBucket(String),
    /// A field avscan needs, named.
    #[error("field {0} is missing or has the wrong type")]
    MissingField(&'static str),
    /// The key is not `<submission_guid>/<filename>`.
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyProblem),
}

impl Rejection {
    /// A short stable label, for logs and counters.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Rejection::MalformedJson(_) => "malformed_json",
            Rejection::NotAnEvent => "not_an_event",
            Rejection::NoRecords => "no_records",
            Rejection::NotObjectCreated(_) => "not_object_created",
            Rejection::WrongBucket(_) => "wrong_bucket",
            Rejection::MissingField(_) => "missing_field",
            Rejection::InvalidKey(_) => "invalid_key",
        }
    }
}

/// A record that is not processed: why, and the object it named, as far as it named one
/// (for its result event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// Why.
    pub rejection: Rejection,
    /// The bucket the record named, if it named one.
    pub bucket: Option<String>,
    /// The key the record named, decoded, if it named one that decodes.
    pub key: Option<String>,
}

impl RejectedRecord {
    /// `rejection` of a record whose bucket and key are at `bucket_at` and `key_at` (`key_at`
    /// form-encoded when `encoded`).
    /// Names only what could be a real bucket and key (their result event quotes them): a
    /// bucket name of S3's characters and length, a key of at most S3's 1,024 bytes.
    fn naming(rejection: Rejection, record: &Value, bucket_at: &str, key_at: &str, encoded: bool) -> Self {
        let key = record.pointer(key_at).and_then(Value::as_str);
        let key = match key {
            Some(key) if encoded => decode_event_key(key).ok(),
            other => other.map(str::to_owned),
        };
        let bucket = record.pointer(bucket_at).and_then(Value::as_str).filter(|bucket| {
            (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        });
        Self {
            rejection,
            bucket: bucket.map(str::to_owned),
            key: key.filter(|key| key.len() <= 1024),
        }
    }
}

/// Why a key is not `<submission_guid>/<filename>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Its percent-escapes decode to bytes that are not UTF-8.
    #[error("not valid utf-8 once decoded")]
    NotUtf8,
    /// Its report key would not fit S3's 1,024 bytes.
    #[error("longer than {MAX_KEY_BYTES} bytes")]
    TooLong,
    /// It holds a control character (logs and reports must stay readable).
    #[error("contains a control character")]
    ControlCharacter,
    /// No `/`: no submission folder.
    #[error("not <submission_guid>/<filename>")]
    TooFewSegments,
    /// `//`, or a leading or trailing `/`.
    #[error("has an empty segment")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("has a . or .. segment")]
    DotSegment,
}

/// Which buckets records may point at: a bucket's name (only that one), or the pipeline's
/// policies (the buckets they name).
pub trait SourceBuckets {
    /// Whether records for `bucket` are accepted.
    fn accepts(&self, bucket: &str) -> bool;
}

impl SourceBuckets for str {
    fn accepts(&self, bucket: &str) -> bool {
        self == bucket
    }
}

/// Parses an SQS message body. Records for buckets `unprocessed_bucket` does not accept are
/// rejected.
pub fn parse_message<B: SourceBuckets + ?Sized>(body: &str, unprocessed_bucket: &B) -> ParsedMessage {
    let value: Value = match serde_json::from_str(body) {
        Ok(value) => value,
        Err(err) => return ParsedMessage::Invalid(Rejection::MalformedJson(err.to_string())),
    };
    parse_value(value, unprocessed_bucket, true)
}

fn parse_value<B: SourceBuckets + ?Sized>(
    mut value: Value,
    unprocessed_bucket: &B,
    may_unwrap_sns: bool,
) -> ParsedMessage {
    // An SNS envelope (subscription without raw delivery): the event is the string `Message`.
    if may_unwrap_sns && value.get("Type").and_then(Value::as_str) == Some("Notification") {
        return match value.get("Message").and_then(Value::as_str) {
            Some(inner) => match serde_json::from_str(inner) {
                Ok(inner) => parse_value(inner, unprocessed_bucket, false),
                Err(err) => ParsedMessage::Invalid(Rejection::MalformedJson(err.to_string())),
            },
            None => ParsedMessage::Invalid(Rejection::MissingField("Message")),
        };
    }
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return ParsedMessage::TestEvent;
    }
    if let Some(records) = value.get_mut("Records") {
        // Taken out, not copied: each record is kept whole for forwarding.
        let Value::Array(records) = records.take() else {
            return ParsedMessage::Invalid(Rejection::MissingField("Records"));
        };
        if records.is_empty() {
            return ParsedMessage::Invalid(Rejection::NoRecords);
        }
        return ParsedMessage::Records(
            records
                .into_iter()
                .map(|record| parse_s3_record(record, unprocessed_bucket))
                .collect(),
        );
    }
    if value.get("source").and_then(Value::as_str) == Some("aws.s3") && value.get("detail-type").is_some() {
        return ParsedMessage::Records(vec![parse_eventbridge(value, unprocessed_bucket)]);
    }
    ParsedMessage::Invalid(Rejection::NotAnEvent)
}

fn str_at<'a>(value: &'a Value, pointer: &str, field: &'static str) -> Result<&'a str, Rejection> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or(Rejection::MissingField(field))
}

fn optional_str(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn parse_s3_record<B: SourceBuckets + ?Sized>(
    record: Value,
    unprocessed_bucket: &B,
) -> Result<ObjectRecord, RejectedRecord> {
    let (object, event_time) = s3_record_fields(&record, unprocessed_bucket)
        .map_err(|rejection| RejectedRecord::naming(rejection, &record, "/s3/bucket/name", "/s3/object/key", true))?;
    Ok(ObjectRecord {
        object,
        event_time,
        shape: EventShape::S3Record(record),
    })
}

fn s3_record_fields<B: SourceBuckets + ?Sized>(
    record: &Value,
    unprocessed_bucket: &B,
) -> Result<(ObjectRef, String), Rejection> {
    let event_name = str_at(record, "/eventName", "eventName")?;
    // AWS writes `ObjectCreated:Put`; some S3-compatible stores prefix it with `s3:`.
    if !event_name.trim_start_matches("s3:").starts_with("ObjectCreated:") {
        return Err(Rejection::NotObjectCreated(event_name.to_owned()));
    }
    let bucket = str_at(record, "/s3/bucket/name", "s3.bucket.name")?;
    if !unprocessed_bucket.accepts(bucket) {
        return Err(Rejection::WrongBucket(bucket.to_owned()));
    }
    let key = decode_event_key(str_at(record, "/s3/object/key", "s3.object.key")?)?;
    validate_key(&key)?;
    let size = record
        .pointer("/s3/object/size")
        .and_then(Value::as_u64)
        .ok_or(Rejection::MissingField("s3.object.size"))?;
    let event_time = str_at(record, "/eventTime", "eventTime")?.to_owned();
    let object = ObjectRef {
        bucket: bucket.to_owned(),
        key,
        version_id: optional_str(record, "/s3/object/versionId"),
        etag: optional_str(record, "/s3/object/eTag").map(|etag| unquote_etag(&etag).to_owned()),
        size,
        sequencer: optional_str(record, "/s3/object/sequencer"),
    };
    Ok((object, event_time))
}

/// EventBridge delivers the key as it is, not form-encoded like S3 notifications.
fn parse_eventbridge<B: SourceBuckets + ?Sized>(
    event: Value,
    unprocessed_bucket: &B,
) -> Result<ObjectRecord, RejectedRecord> {
    let (object, event_time) = eventbridge_fields(&event, unprocessed_bucket).map_err(|rejection| {
        RejectedRecord::naming(rejection, &event, "/detail/bucket/name", "/detail/object/key", false)
    })?;
    Ok(ObjectRecord {
        object,
        event_time,
        shape: EventShape::EventBridge(event),
    })
}

fn eventbridge_fields<B: SourceBuckets + ?Sized>(
    event: &Value,
    unprocessed_bucket: &B,
) -> Result<(ObjectRef, String), Rejection> {
    let detail_type = str_at(event, "/detail-type", "detail-type")?;
    if detail_type != "Object Created" {
        return Err(Rejection::NotObjectCreated(detail_type.to_owned()));
    }
    let bucket = str_at(event, "/detail/bucket/name", "detail.bucket.name")?;
    if !unprocessed_bucket.accepts(bucket) {
        return Err(Rejection::WrongBucket(bucket.to_owned()));
    }
    let key = str_at(event, "/detail/object/key", "detail.object.key")?.to_owned();
    validate_key(&key)?;
    let size = event
        .pointer("/detail/object/size")
        .and_then(Value::as_u64)
        .ok_or(Rejection::MissingField("detail.object.size"))?;
    let object = ObjectRef {
        bucket: bucket.to_owned(),
        key,
        version_id: optional_str(event, "/detail/object/version-id"),
        etag: optional_str(event, "/detail/object/etag").map(|etag| unquote_etag(&etag).to_owned()),
        size,
        sequencer: optional_str(event, "/detail/object/sequencer"),
    };
    Ok((object, str_at(event, "/time", "time")?.to_owned()))
}

/// Encodes a key the way S3 writes it into events: URL-encoding with `+` for spaces.
pub fn encode_event_key(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(key, KEEP)
        .to_string()
        .replace("%20", "+")
}

/// S3 event keys are form-encoded: `+` is a space, then `%XX` escapes (`a b+c` arrives as
/// `a+b%2Bc`).
pub fn decode_event_key(encoded: &str) -> Result<String, KeyProblem> {
    let spaced = encoded.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| KeyProblem::NotUtf8)
}

/// Accepts `<submission_guid>/<filename>` keys: two or more segments, none empty, none `.` or
/// `..`, no control characters, at most [`MAX_KEY_BYTES`] (984) bytes. Nested folders, spaces and Unicode are fine.
pub fn validate_key(key: &str) -> Result<(), KeyProblem> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyProblem::TooLong);
    }
    if key.chars().any(char::is_control) {
        return Err(KeyProblem::ControlCharacter);
    }
    let segments: Vec<&str> = key.split('/').collect();
    if segments.len() < 2 {
        return Err(KeyProblem::TooFewSegments);
    }
    if segments.iter().any(|segment| segment.is_empty()) {
        return Err(KeyProblem::EmptySegment);
    }
    if segments.iter().any(|segment| *segment == "." || *segment == "..") {
        return Err(KeyProblem::DotSegment);
    }
    Ok(())
}

/// ETags come quoted from S3's API and bare in events; we keep them bare.
pub fn unquote_etag(etag: &str) -> &str {
    etag.trim_matches('"')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const BUCKET: &str = "unprocessed";

    fn s3_record(key: &str) -> Value {
        json!({
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventTime": "2026-11-29T12:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": { "name": BUCKET },
                "object": { "key": key, "size": 68, "eTag": "44d88612fea8a8f36de82e1278abb02f", "sequencer": "0A" }
            }
        })
    }

    fn only_record(parsed: ParsedMessage) -> Result<ObjectRecord, Rejection> {
        match parsed {
            ParsedMessage::Records(mut records) => {
                assert_eq!(records.len(), 1);
                records.remove(0).map_err(|rejected| rejected.rejection)
            }
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[test]
    fn s3_notification_record_is_parsed_and_its_key_decoded() {
        let body = json!({ "Records": [s3_record("guid-1/a+b%2Bc.txt")] }).to_string();
        let record = only_record(parse_message(&body, BUCKET)).unwrap();
        assert_eq!(record.object.key, "guid-1/a b+c.txt");
        assert_eq!(record.object.size, 68);
        assert_eq!(record.object.etag.as_deref(), Some("44d88612fea8a8f36de82e1278abb02f"));
        assert_eq!(record.object.version_id, None);
        assert_eq!(record.object.sequencer.as_deref(), Some("0A"));
        assert_eq!(record.event_time, "2026-11-29T12:00:00.000Z");
    }

    #[test]
    fn slashes_encoded_as_percent_2f_are_decoded() {
        let body = json!({ "Records": [s3_record("guid%2Fsub%2Ffile.bin")] }).to_string();
        assert_eq!(
            only_record(parse_message(&body, BUCKET)).unwrap().object.key,
            "guid/sub/file.bin"
        );
    }

    #[test]
    fn every_record_of_a_message_is_returned() {
        let mut wrong = s3_record("g/x");
        wrong["eventName"] = json!("ObjectRemoved:Delete");
        let body = json!({ "Records": [s3_record("g/one"), wrong, s3_record("g/two")] }).to_string();
        let ParsedMessage::Records(records) = parse_message(&body, BUCKET) else {
            panic!("records expected")
        };
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].as_ref().unwrap().object.key, "g/one");
        assert_eq!(
            records[1],
            Err(RejectedRecord {
                rejection: Rejection::NotObjectCreated("ObjectRemoved:Delete".into()),
                bucket: Some(BUCKET.into()),
                key: Some("g/x".into()),
            })
        );
        assert_eq!(records[2].as_ref().unwrap().object.key, "g/two");
    }

    #[test]
    fn sns_envelope_is_unwrapped_once() {
        let inner = json!({ "Records": [s3_record("g/f")] }).to_string();
        let body = json!({ "Type": "Notification", "MessageId": "m", "TopicArn": "arn", "Message": inner }).to_string();
        assert_eq!(only_record(parse_message(&body, BUCKET)).unwrap().object.key, "g/f");
        let nested = json!({ "Type": "Notification", "Message": body }).to_string();
        assert_eq!(
            parse_message(&nested, BUCKET),
            ParsedMessage::Invalid(Rejection::NotAnEvent)
        );
    }

    #[test]
    fn eventbridge_object_created_is_parsed_with_its_raw_key() {
        let event = json!({
            "version": "0", "id": "e1", "detail-type": "Object Created", "source": "aws.s3",
            "time": "2026-11-29T12:00:00Z",
            "detail": { "bucket": { "name": BUCKET },
                        "object": { "key": "g/a+b.txt", "size": 3, "etag": "abc", "version-id": "v1" } }
        });
        let record = only_record(parse_message(&event.to_string(), BUCKET)).unwrap();
        assert_eq!(record.object.key, "g/a+b.txt");
        assert_eq!(record.object.version_id.as_deref(), Some("v1"));
        assert_eq!(record.outbound_body(), event.to_string());
        let mut deleted = event.clone();
        deleted["detail-type"] = json!("Object Deleted");
        assert_eq!(
            only_record(parse_message(&deleted.to_string(), BUCKET)),
            Err(Rejection::NotObjectCreated("Object Deleted".into()))
        );
    }

    #[test]
    fn test_event_is_recognised() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"t","Bucket":"unprocessed"}"#;
        assert_eq!(parse_message(body, BUCKET), ParsedMessage::TestEvent);
    }

    #[test]
    fn malformed_and_shapeless_bodies_are_invalid() {
        assert!(matches!(
            parse_message("{not json", BUCKET),
            ParsedMessage::Invalid(Rejection::MalformedJson(_))
        ));
        assert_eq!(
            parse_message("{}", BUCKET),
            ParsedMessage::Invalid(Rejection::NotAnEvent)
        );
        assert_eq!(
            parse_message("[1,2]", BUCKET),
            ParsedMessage::Invalid(Rejection::NotAnEvent)
        );
        assert_eq!(
            parse_message(r#"{"Records":[]}"#, BUCKET),
            ParsedMessage::Invalid(Rejection::NoRecords)
        );
        assert_eq!(
            parse_message(r#"{"Records":{}}"#, BUCKET),
            ParsedMessage::Invalid(Rejection::MissingField("Records"))
        );
    }

    #[test]
    fn records_with_wrong_bucket_or_missing_fields_are_rejected() {
        let mut other_bucket = s3_record("g/f");
        other_bucket["s3"]["bucket"]["name"] = json!("elsewhere");
        let mut no_size = s3_record("g/f");
        no_size["s3"]["object"].as_object_mut().unwrap().remove("size");
        let mut string_size = s3_record("g/f");
        string_size["s3"]["object"]["size"] = json!("68");
        let body = json!({ "Records": [other_bucket, no_size, string_size] }).to_string();
        let ParsedMessage::Records(records) = parse_message(&body, BUCKET) else {
            panic!("records expected")
        };
        let rejections: Vec<Rejection> = records
            .into_iter()
            .map(|record| record.unwrap_err().rejection)
            .collect();
        assert_eq!(
            rejections,
            [
                Rejection::WrongBucket("elsewhere".into()),
                Rejection::MissingField("s3.object.size"),
                Rejection::MissingField("s3.object.size")
            ]
        );
    }

    #[test]
    fn a_rejected_record_names_only_a_plausible_bucket_and_key() {
        let mut forged = s3_record("g/x");
        forged["eventName"] = json!("ObjectRemoved:Delete");
        forged["s3"]["bucket"]["name"] = json!("b".repeat(200_000));
        forged["s3"]["object"]["key"] = json!("k".repeat(2000));
        let body = json!({ "Records": [forged] }).to_string();
        let ParsedMessage::Records(records) = parse_message(&body, BUCKET) else {
            panic!("records expected")
        };
        let rejected = records[0].clone().unwrap_err();
        assert_eq!((rejected.bucket, rejected.key), (None, None));
    }

    #[test]
    fn key_rules() {
        assert_eq!(validate_key("guid/file.txt"), Ok(()));
        assert_eq!(validate_key("guid/nested/dir/file name ü.txt"), Ok(()));
        assert_eq!(validate_key("file.txt"), Err(KeyProblem::TooFewSegments));
        assert_eq!(validate_key("guid/"), Err(KeyProblem::EmptySegment));
        assert_eq!(validate_key("/guid/file"), Err(KeyProblem::EmptySegment));
        assert_eq!(validate_key("guid//file"), Err(KeyProblem::EmptySegment));
        assert_eq!(validate_key("../../x"), Err(KeyProblem::DotSegment));
        assert_eq!(validate_key("./x"), Err(KeyProblem::DotSegment));
        assert_eq!(validate_key("g/a\nb"), Err(KeyProblem::ControlCharacter));
        assert_eq!(validate_key("g/a\0b"), Err(KeyProblem::ControlCharacter));
        assert_eq!(validate_key("g/a\u{7f}b"), Err(KeyProblem::ControlCharacter));
        let at_limit = format!("g/{}", "x".repeat(MAX_KEY_BYTES - 2));
        assert_eq!(validate_key(&at_limit), Ok(()));
        assert_eq!(validate_key(&format!("{at_limit}x")), Err(KeyProblem::TooLong));
    }

    #[test]
    fn decoding_rejects_invalid_utf8_and_keeps_stray_percent() {
        assert_eq!(decode_event_key("g/%FF"), Err(KeyProblem::NotUtf8));
        assert_eq!(decode_event_key("g/100%"), Ok("g/100%".into()));
        assert_eq!(decode_event_key("g/%25+%2B"), Ok("g/% +".into()));
    }

    #[test]
    fn encoded_control_characters_and_dot_segments_are_caught_after_decoding() {
        for encoded in ["g/a%0Ab", "g%2F..%2Fx", "g/%00"] {
            let body = json!({ "Records": [s3_record(encoded)] }).to_string();
            assert!(
                matches!(only_record(parse_message(&body, BUCKET)), Err(Rejection::InvalidKey(_))),
                "{encoded} must be rejected"
            );
        }
    }
}

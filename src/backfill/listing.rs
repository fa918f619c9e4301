//! Where a backfill's objects come from, as one stream of objects each with the position a
//! resumed run starts after: ListObjectsV2 (keys in order: the position is the last key), or an
//! S3 Inventory manifest (CSV files, gzipped: the position is a file and a row). For an audit,
//! [`without_verdict_tags`] marks the stale objects that already carry a verdict tag.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Cursor};
use std::time::SystemTime;

use aws_sdk_s3::error::DisplayErrorContext;
use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};

use super::Failed;

/// One object to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Decoded.
    pub key: String,
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    pub last_modified: SystemTime,
    /// The listed version, in a versioned bucket: the event pins the fleet's GET and delete to it.
    pub version_id: Option<String>,
    /// Why an audit leaves it alone, found while listing (a verdict tag; gone since the listing).
    pub audit_skip: Option<&'static str>,
}

impl Listed {
    /// An object as a listing (of objects or of versions) describes it.
    fn from_s3(
        key: String,
        size: Option<i64>,
        etag: Option<String>,
        last_modified: Option<aws_sdk_s3::primitives::DateTime>,
        version_id: Option<String>,
    ) -> Listed {
        Listed {
            key,
            size: size.unwrap_or(0).max(0) as u64,
            etag: etag.unwrap_or_default().trim_matches('"').to_owned(),
            last_modified: last_modified
                .and_then(|time| SystemTime::try_from(time).ok())
                .unwrap_or(SystemTime::UNIX_EPOCH),
            version_id,
            audit_skip: None,
        }
    }
}

/// Where a resumed run starts: after this key (a listing), or at this row of this file of the
/// manifest (an inventory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    AfterKey(String),
    InventoryRow { file: usize, row: u64 },
}

/// The objects, in order, each with the position after it.
pub type Objects = BoxStream<'static, Result<(Listed, Position), Failed>>;

fn failed(what: &str, err: impl std::fmt::Display) -> Failed {
    Failed(format!("{what}: {err}"))
}

/// Every object of `bucket` under `prefix`, after the `start` key when resuming: the current
/// version of each (ListObjectVersions) when the bucket has versioning, so that every event names
/// the version the fleet must judge, and delete; else ListObjectsV2. A thousand per page.
pub async fn list(
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    start: Option<Position>,
) -> Result<Objects, Failed> {
    let versioning = crate::aws::versioning_status(&s3, &bucket).await.map_err(Failed)?;
    Ok(match versioning {
        Some(_) => list_versions(s3, bucket, prefix, start),
        None => list_objects(s3, bucket, prefix, start),
    })
}

/// The current versions of `bucket`'s objects under `prefix` (delete markers and older versions
/// are not objects to scan).
fn list_versions(s3: aws_sdk_s3::Client, bucket: String, prefix: String, start: Option<Position>) -> Objects {
    let key_marker = match start {
        Some(Position::AfterKey(key)) => Some(key),
        _ => None,
    };
    struct State {
        s3: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
        key_marker: Option<String>,
        version_marker: Option<String>,
        page: VecDeque<Listed>,
        done: bool,
    }
    let state = State {
        s3,
        bucket,
        prefix,
        key_marker,
        version_marker: None,
        page: VecDeque::new(),
        done: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(listed) = state.page.pop_front() {
                let position = Position::AfterKey(listed.key.clone());
                return Some((Ok((listed, position)), state));
            }
            if state.done {
                return None;
            }
            let page = state
                .s3
                .list_object_versions()
                .bucket(&state.bucket)
                .prefix(&state.prefix)
                .set_key_marker(state.key_marker.take())
                .set_version_id_marker(state.version_marker.take())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    state.done = true;
                    let what = format!("ListObjectVersions s3://{}/{}", state.bucket, state.prefix);
                    return Some((Err(failed(&what, DisplayErrorContext(err))), state));
                }
            };
            state.key_marker = page.next_key_marker.clone();
            state.version_marker = page.next_version_id_marker.clone();
            state.done = !page.is_truncated.unwrap_or(false) || state.key_marker.is_none();
            state.page = page
                .versions
                .unwrap_or_default()
                .into_iter()
                .filter(|version| version.is_latest == Some(true))
                .filter_map(|version| {
                    let version_id = version.version_id.filter(|id| id != "null");
                    Some(Listed::from_s3(
                        version.key?,
                        version.size,
                        version.e_tag,
                        version.last_modified,
                        version_id,
                    ))
                })
                .collect();
        }
    })
    .boxed()
}

/// Every object of an unversioned `bucket` under `prefix` (ListObjectsV2).
fn list_objects(s3: aws_sdk_s3::Client, bucket: String, prefix: String, start: Option<Position>) -> Objects {
    let start_after = match start {
        Some(Position::AfterKey(key)) => Some(key),
        _ => None,
    };
    struct State {
        s3: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
        start_after: Option<String>,
        token: Option<String>,
        page: VecDeque<Listed>,
        done: bool,
    }
    let state = State {
        s3,
        bucket,
        prefix,
        start_after,
        token: None,
        page: VecDeque::new(),
        done: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(listed) = state.page.pop_front() {
                let position = Position::AfterKey(listed.key.clone());
                return Some((Ok((listed, position)), state));
            }
            if state.done {
                return None;
            }
            let page = state
                .s3
                .list_objects_v2()
                .bucket(&state.bucket)
                .prefix(&state.prefix)
                .set_start_after(state.start_after.clone())
                .set_continuation_token(state.token.take())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    state.done = true;
                    let what = format!("ListObjectsV2 s3://{}/{}", state.bucket, state.prefix);
                    return Some((Err(failed(&what, DisplayErrorContext(err))), state));
                }
            };
            state.token = page.next_continuation_token.clone();
            state.done = !page.is_truncated.unwrap_or(false) || state.token.is_none();
            state.page = page
                .contents
                .unwrap_or_default()
                .into_iter()
                .filter_map(|object| {
                    Some(Listed::from_s3(
                        object.key?,
                        object.size,
                        object.e_tag,
                        object.last_modified,
                        None,
                    ))
                })
                .collect();
        }
    })
    .boxed()
}

/// An S3 Inventory manifest: the CSV files and their columns.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    source_bucket: String,
    /// `arn:aws:s3:::<bucket>`: where the files are.
    destination_bucket: String,
    file_format: String,
    file_schema: String,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    key: String,
}

/// The columns a backfill needs, by position in the file schema.
#[derive(Debug, Clone, Copy)]
struct Columns {
    key: usize,
    size: usize,
    last_modified: usize,
    etag: usize,
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
    version_id: Option<usize>,
}

impl Columns {
    fn of(schema: &str) -> Result<Columns, Failed> {
        let names: Vec<&str> = schema.split(',').map(str::trim).collect();
        let at = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
        let need = |name: &str| {
            at(name).ok_or_else(|| Failed(format!("the inventory's fileSchema {schema:?} has no {name} column")))
        };
        Ok(Columns {
            key: need("Key")?,
            size: need("Size")?,
            last_modified: need("LastModifiedDate")?,
            etag: need("ETag")?,
            is_latest: at("IsLatest"),
            is_delete_marker: at("IsDeleteMarker"),
            version_id: at("VersionId"),
        })
    }

    /// The object a row names, `None` for a row of an older version or a delete marker.
    fn listed(&self, fields: &[String]) -> Result<Option<Listed>, String> {
        let field = |index: usize| fields.get(index).map(String::as_str).ok_or("a column is missing");
        if self
            .is_latest
            .is_some_and(|i| fields.get(i).is_some_and(|v| v == "false"))
            || self
                .is_delete_marker
                .is_some_and(|i| fields.get(i).is_some_and(|v| v == "true"))
        {
            return Ok(None);
        }
        // Inventory keys are URL-encoded; a literal `+` is `%2B` either way.
        let key = avscan_actors::event::decode_event_key(field(self.key)?).map_err(|err| err.to_string())?;
        let size = field(self.size)?.parse().map_err(|_| "Size is not a number")?;
        let last_modified = humantime::parse_rfc3339_weak(field(self.last_modified)?)
            .map_err(|err| format!("LastModifiedDate: {err}"))?;
        Ok(Some(Listed {
            key,
            size,
            etag: field(self.etag)?.trim_matches('"').to_owned(),
            last_modified,
            version_id: self
                .version_id
                .and_then(|i| fields.get(i))
                .filter(|id| !id.is_empty() && *id != "null")
                .cloned(),
            audit_skip: None,
        }))
    }
}

/// One CSV line as S3 Inventory writes it: every field quoted, `""` for a quote inside.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// `s3://bucket/key` → (bucket, key).
fn split_address(address: &str) -> Option<(String, String)> {
    let (bucket, key) = address.strip_prefix("s3://")?.split_once('/')?;
    Some((bucket.to_owned(), key.to_owned()))
}

/// A manifest, or one of its (gzipped) files: at most this large.
const MAX_INVENTORY_OBJECT_BYTES: usize = 1 << 30;

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<bytes::Bytes, Failed> {
    crate::aws::read_object(s3, bucket, key, MAX_INVENTORY_OBJECT_BYTES)
        .await
        .map_err(Failed)
}

/// The objects of `bucket` under `prefix` that the inventory at `manifest_address` lists,
/// from the `start` row when resuming. Refuses a manifest of another bucket or format.
pub async fn inventory(
    s3: aws_sdk_s3::Client,
    manifest_address: &str,
    bucket: &str,
    prefix: &str,
    start: Option<Position>,
) -> Result<Objects, Failed> {
    let (manifest_bucket, manifest_key) = split_address(manifest_address)
        .ok_or_else(|| Failed(format!("--inventory {manifest_address:?} is not s3://bucket/key")))?;
    let manifest: Manifest = serde_json::from_slice(&get(&s3, &manifest_bucket, &manifest_key).await?)
        .map_err(|err| failed(&format!("{manifest_address} is not an S3 Inventory manifest"), err))?;
    if manifest.source_bucket != bucket {
        return Err(Failed(format!(
            "the inventory lists {}, not {bucket}",
            manifest.source_bucket
        )));
    }
    if !manifest.file_format.eq_ignore_ascii_case("CSV") {
        return Err(Failed(format!(
            "the inventory is {}; only CSV is read",
            manifest.file_format
        )));
    }
    let columns = Columns::of(&manifest.file_schema)?;
    let files_bucket = manifest
        .destination_bucket
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let (first_file, first_row) = match start {
        Some(Position::InventoryRow { file, row }) => (file, row),
        _ => (0, 0),
    };
    struct State {
        s3: aws_sdk_s3::Client,
        files_bucket: String,
        files: Vec<String>,
        prefix: String,
        columns: Columns,
        file: usize,
        row: u64,
        skip_rows: u64,
        lines: Option<std::io::Lines<Box<dyn BufRead + Send>>>,
    }
    let state = State {
        s3,
        files_bucket,
        files: manifest.files.into_iter().map(|file| file.key).collect(),
        prefix: prefix.to_owned(),
        columns,
        file: first_file,
        row: 0,
        skip_rows: first_row,
        lines: None,
    };
    Ok(stream::unfold(state, |mut state| async move {
        loop {
            let Some(lines) = state.lines.as_mut() else {
                let key = state.files.get(state.file)?.clone();
                let gzipped = match get(&state.s3, &state.files_bucket, &key).await {
                    Ok(bytes) => bytes,
                    Err(err) => {
                        state.files.clear();
                        return Some((Err(err), state));
                    }
                };
                let reader: Box<dyn BufRead + Send> =
                    Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(Cursor::new(gzipped))));
                state.lines = Some(reader.lines());
                state.row = 0;
                continue;
            };
            let Some(line) = lines.next() else {
                state.lines = None;
                state.file += 1;
                state.skip_rows = 0;
                continue;
            };
            let address = format!("s3://{}/{}", state.files_bucket, state.files[state.file]);
            let line = match line {
                Ok(line) => line,
                Err(err) => {
                    state.files.clear();
                    state.lines = None;
                    return Some((Err(failed(&address, err)), state));
                }
            };
            state.row += 1;
            if state.row <= state.skip_rows || line.trim().is_empty() {
                continue;
            }
            let position = Position::InventoryRow {
                file: state.file,
                row: state.row,
            };
            match state.columns.listed(&csv_fields(&line)) {
                Ok(Some(listed)) if listed.key.starts_with(&state.prefix) => {
                    return Some((Ok((listed, position)), state));
                }
                Ok(_) => continue,
                Err(problem) => {
                    let row = state.row;
                    state.files.clear();
                    state.lines = None;
                    return Some((Err(Failed(format!("{address} row {row}: {problem}"))), state));
                }
            }
        }
    })
    .boxed())
}

/// The objects last modified before `stale_before`, each marked to be skipped when it carries a
/// verdict tag, or is gone since the listing (one GetObjectTagging per stale object); newer ones
/// pass unmarked.
pub fn without_verdict_tags(
    s3: aws_sdk_s3::Client,
    bucket: String,
    objects: Objects,
    stale_before: SystemTime,
) -> Objects {
    objects
        .then(move |item| {
            let s3 = s3.clone();
            let bucket = bucket.clone();
            async move {
                let (mut listed, position) = item?;
                if listed.last_modified < stale_before {
                    let what = format!("GetObjectTagging s3://{bucket}/{}", listed.key);
                    let tags = s3
                        .get_object_tagging()
                        .bucket(&bucket)
                        .key(&listed.key)
                        .set_version_id(listed.version_id.clone())
                        .send()
                        .await;
                    let tags = match tags {
                        Ok(tags) => tags,
                        // Taken (by the validator, say) since it was listed.
                        Err(err)
                            if err
                                .as_service_error()
                                .is_some_and(|e| e.meta().code() == Some("NoSuchKey")) =>
                        {
                            listed.audit_skip = Some("gone since the listing");
                            return Ok((listed, position));
                        }
                        Err(err) => return Err(failed(&what, DisplayErrorContext(err))),
                    };
                    let judged = tags.tag_set().iter().any(|tag| {
                        tag.key() == avscan_actors::tags::STATUS || tag.key() == avscan_actors::tags::GUARDDUTY_STATUS
                    });
                    if judged {
                        listed.audit_skip = Some("already judged (it carries a verdict tag)");
                    }
                }
                Ok((listed, position))
            }
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_rows_are_read_as_s3_writes_them() {
        assert_eq!(
            csv_fields(r#""b","g/a%20b%2Bc.txt","5","x""y""#),
            ["b", "g/a%20b%2Bc.txt", "5", r#"x"y"#]
        );
        let columns = Columns::of("Bucket, Key, Size, LastModifiedDate, ETag, IsLatest").unwrap();
        let row = csv_fields(r#""b","g/a%20b%2Bc+%C3%BC.txt","5","2026-11-29T12:00:00.000Z","abc","true""#);
        let listed = columns.listed(&row).unwrap().unwrap();
        assert_eq!(listed.key, "g/a b+c ü.txt");
        assert_eq!((listed.size, listed.etag.as_str()), (5, "abc"));
        let older = csv_fields(r#""b","g/f","5","2026-11-29T12:00:00.000Z","abc","false""#);
        assert_eq!(columns.listed(&older).unwrap(), None);
        let versioned =
            Columns::of("Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag").unwrap();
        let marker = csv_fields(r#""b","g/f","v2","true","true","","2026-11-29T12:00:00.000Z","""#);
        assert_eq!(versioned.listed(&marker).unwrap(), None, "a delete marker is no object");
        let current = csv_fields(r#""b","g/a+b.txt","v1","true","false","5","2026-11-29T12:00:00.000Z","abc""#);
        let listed = versioned.listed(&current).unwrap().unwrap();
        assert_eq!(
            (listed.key.as_str(), listed.version_id.as_deref()),
            ("g/a b.txt", Some("v1"))
        );
        assert!(Columns::of("Bucket, Size").is_err());
    }
}

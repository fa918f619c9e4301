//! The policy file (`AVSCAN_POLICY`, TOML): one `[[bucket]]` per source bucket, each with
//! optional `[[bucket.prefix]]` overrides, read into the pipeline's
//! [`Policies`]. Every mistake is found in one pass and reported
//! as a line of its own; a file with any mistake is refused (avscan exits 2, `avscan check`
//! fails).
//!
//! ```toml
//! [[bucket]]
//! name = "uploads"
//! action = "quarantine"                     # quarantine (default), tag, delete, report
//! quarantine_bucket = "uploads-quarantine"  # required for quarantine; where reports go
//! max_file_size_mb = 400                    # default MAX_FILE_SIZE
//! forward_clean = true                      # default true
//! tags = "off"                              # off (default; avscan for action tag), avscan, guardduty
//!
//! [[bucket.prefix]]
//! prefix = "public/"                        # the longest matching prefix wins
//! action = "tag"                            # unset keys are the bucket's
//! ```

use std::sync::Arc;

use avscan_actors::defaults::MIB;
use avscan_actors::policy::{Action, BucketPolicy, Policies, Policy, TagMode};
use toml::{Table, Value};

/// The largest `max_file_size_mb`: one INSTREAM chunk header's most (4 GiB − 1).
const MAX_FILE_SIZE_MB: i64 = 4095;

const BUCKET_KEYS: [&str; 7] = [
    "name",
    "action",
    "quarantine_bucket",
    "max_file_size_mb",
    "forward_clean",
    "tags",
    "prefix",
];
const PREFIX_KEYS: [&str; 6] = [
    "prefix",
    "action",
    "quarantine_bucket",
    "max_file_size_mb",
    "forward_clean",
    "tags",
];

/// Reads and validates the policy file at `path`; `Err` says why it cannot be read, or lists
/// every mistake, one indented line each.
pub fn read(path: &std::path::Path) -> Result<Policies, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
    parse(&text).map_err(|mistakes| {
        format!(
            "{} has {} mistake{}:\n{}",
            path.display(),
            mistakes.len(),
            if mistakes.len() == 1 { "" } else { "s" },
            mistakes
                .iter()
                .map(|mistake| format!("  {mistake}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Reads and validates a policy file's text; `Err` lists every mistake, one per line.
pub fn parse(text: &str) -> Result<Policies, Vec<String>> {
    let table: Table = text
        .parse()
        .map_err(|err: toml::de::Error| vec![format!("not TOML: {}", err.message())])?;
    let mut mistakes = Vec::new();
    for key in table.keys().filter(|key| *key != "bucket") {
        mistakes.push(format!("unknown key {key:?} (expected [[bucket]] entries)"));
    }
    let entries = match table.get("bucket") {
        Some(Value::Array(entries)) if !entries.is_empty() => entries.as_slice(),
        Some(_) => {
            mistakes.push("`bucket` must be a list of [[bucket]] tables".into());
            &[]
        }
        None => {
            mistakes.push("no [[bucket]] entry: name at least one source bucket".into());
            &[]
        }
    };
    let mut buckets: Vec<BucketPolicy> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let Some(entry) = entry.as_table() else {
            mistakes.push(format!("bucket {}: not a table", index + 1));
            continue;
        };
        let name = match entry.get("name") {
            Some(Value::String(name)) if is_bucket_name(name) => name.clone(),
            Some(value) => {
                mistakes.push(format!(
                    "bucket {}: name {value} is not an S3 bucket name (3-63 of a-z 0-9 . -; not an ARN or s3:// URL)",
                    index + 1
                ));
                continue;
            }
            None => {
                mistakes.push(format!("bucket {}: no `name`", index + 1));
                continue;
            }
        };
        let at = format!("bucket {name:?}");
        if names.contains(&name) {
            mistakes.push(format!("{at}: named twice"));
        }
        names.push(name.clone());
        unknown_keys(entry, &BUCKET_KEYS, &at, &mut mistakes);
        let parsed = policy_of(entry, None, &at, &mut mistakes);
        // A bucket with mistakes still has its prefixes checked, over a neutral policy.
        let policy = parsed.clone().unwrap_or(Policy {
            action: Action::Report,
            quarantine_bucket: None,
            max_file_size: None,
            forward_clean: true,
            tags: TagMode::Avscan,
        });
        let mut prefixes: Vec<(String, Arc<Policy>)> = Vec::new();
        let overrides = match entry.get("prefix") {
            None => &[][..],
            Some(Value::Array(overrides)) => overrides.as_slice(),
            Some(_) => {
                mistakes.push(format!("{at}: `prefix` must be a list of [[bucket.prefix]] tables"));
                &[][..]
            }
        };
        for (index, entry) in overrides.iter().enumerate() {
            let Some(entry) = entry.as_table() else {
                mistakes.push(format!("{at} prefix {}: not a table", index + 1));
                continue;
            };
            let prefix = match entry.get("prefix") {
                Some(Value::String(prefix)) if !prefix.is_empty() && !prefix.starts_with('/') => prefix.clone(),
                _ => {
                    mistakes.push(format!(
                        "{at} prefix {}: `prefix` must be a non-empty key prefix, not starting with / (keys do not)",
                        index + 1
                    ));
                    continue;
                }
            };
            let at = format!("{at} prefix {prefix:?}");
            if prefixes.iter().any(|(known, _)| *known == prefix) {
                mistakes.push(format!("{at}: named twice"));
            }
            unknown_keys(entry, &PREFIX_KEYS, &at, &mut mistakes);
            if let Some(policy) = policy_of(entry, Some(&policy), &at, &mut mistakes) {
                prefixes.push((prefix, Arc::new(policy)));
            }
        }
        if parsed.is_some() {
            buckets.push(BucketPolicy {
                bucket: name,
                policy: Arc::new(policy),
                prefixes,
            });
        }
    }
    let sources: Vec<&str> = names.iter().map(String::as_str).collect();
    for bucket in &buckets {
        let policies = std::iter::once(&bucket.policy).chain(bucket.prefixes.iter().map(|(_, policy)| policy));
        for quarantine in policies.filter_map(|policy| policy.quarantine_bucket.as_deref()) {
            if sources.contains(&quarantine) {
                mistakes.push(format!(
                    "bucket {:?}: quarantine_bucket {quarantine:?} is a source bucket: its reports would be scanned",
                    bucket.bucket
                ));
            }
        }
    }
    if mistakes.is_empty() {
        Ok(Policies::new(buckets))
    } else {
        mistakes.dedup();
        Err(mistakes)
    }
}

/// S3's rules for a bucket name: 3 to 63 of lowercase letters, digits, dots and hyphens,
/// beginning and ending with a letter or digit.
fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

fn unknown_keys(table: &Table, known: &[&str], at: &str, mistakes: &mut Vec<String>) {
    for key in table.keys().filter(|key| !known.contains(&key.as_str())) {
        mistakes.push(format!("{at}: unknown key {key:?} (known: {})", known.join(", ")));
    }
}

/// One entry's policy: its keys over `inherited` (a prefix's bucket) or the defaults.
fn policy_of(table: &Table, inherited: Option<&Policy>, at: &str, mistakes: &mut Vec<String>) -> Option<Policy> {
    let before = mistakes.len();
    let action = match table.get("action") {
        None => inherited.map_or(Action::Quarantine, |policy| policy.action),
        Some(value) => match Action::ALL.iter().find(|action| value.as_str() == Some(action.name())) {
            Some(action) => *action,
            None => {
                mistakes.push(format!(
                    "{at}: action {value} is not one of quarantine, tag, delete, report"
                ));
                Action::Quarantine
            }
        },
    };
    let tags = match table.get("tags") {
        None => match inherited {
            Some(policy) if policy.tags != TagMode::Off => policy.tags,
            _ if action == Action::Tag => TagMode::Avscan,
            _ => TagMode::Off,
        },
        Some(value) => match TagMode::ALL.iter().find(|mode| value.as_str() == Some(mode.name())) {
            Some(mode) => *mode,
            None => {
                mistakes.push(format!("{at}: tags {value} is not one of off, avscan, guardduty"));
                TagMode::Off
            }
        },
    };
    if action == Action::Tag && tags == TagMode::Off {
        mistakes.push(format!(
            "{at}: action \"tag\" with tags \"off\" would leave no trace on the object"
        ));
    }
    let quarantine_bucket = match table.get("quarantine_bucket") {
        None => inherited.and_then(|policy| policy.quarantine_bucket.clone()),
        Some(Value::String(bucket)) if is_bucket_name(bucket) => Some(bucket.clone()),
        Some(value) => {
            mistakes.push(format!("{at}: quarantine_bucket {value} is not a bucket name"));
            None
        }
    };
    if action == Action::Quarantine && quarantine_bucket.is_none() && mistakes.len() == before {
        mistakes.push(format!("{at}: action \"quarantine\" needs a quarantine_bucket"));
    }
    let max_file_size = match table.get("max_file_size_mb") {
        None => inherited.and_then(|policy| policy.max_file_size),
        Some(Value::Integer(mb)) if (1..=MAX_FILE_SIZE_MB).contains(mb) => Some(*mb as u64 * MIB),
        Some(value) => {
            mistakes.push(format!(
                "{at}: max_file_size_mb {value} is not a number of MB from 1 to {MAX_FILE_SIZE_MB}"
            ));
            None
        }
    };
    let forward_clean = match table.get("forward_clean") {
        None => inherited.is_none_or(|policy| policy.forward_clean),
        Some(Value::Boolean(forward)) => *forward,
        Some(value) => {
            mistakes.push(format!("{at}: forward_clean {value} is not true or false"));
            true
        }
    };
    (mistakes.len() == before).then_some(Policy {
        action,
        quarantine_bucket,
        max_file_size,
        forward_clean,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_file_with_two_buckets_and_a_prefix_override() {
        let policies = parse(
            r#"
            [[bucket]]
            name = "uploads"
            quarantine_bucket = "uploads-quarantine"
            tags = "guardduty"

            [[bucket.prefix]]
            prefix = "public/"
            action = "tag"
            forward_clean = false

            [[bucket]]
            name = "partners"
            action = "delete"
            max_file_size_mb = 10
            "#,
        )
        .unwrap();
        let uploads = policies.for_object("uploads", "guid/f").unwrap();
        assert_eq!(uploads.action, Action::Quarantine);
        assert_eq!(uploads.quarantine_bucket.as_deref(), Some("uploads-quarantine"));
        assert_eq!(uploads.tags, TagMode::GuardDuty);
        assert!(uploads.forward_clean);
        let public = policies.for_object("uploads", "public/guid/f").unwrap();
        assert_eq!(public.action, Action::Tag);
        assert_eq!(public.tags, TagMode::GuardDuty, "inherited from the bucket");
        assert_eq!(public.quarantine_bucket.as_deref(), Some("uploads-quarantine"));
        assert!(!public.forward_clean);
        let partners = policies.for_object("partners", "guid/f").unwrap();
        assert_eq!(partners.action, Action::Delete);
        assert_eq!(partners.max_file_size, Some(10 * MIB));
        assert_eq!(partners.quarantine_bucket, None);
        assert!(policies.for_object("other", "guid/f").is_none());
    }

    #[test]
    fn action_tag_tags_with_avscans_tags_unless_told_otherwise() {
        let policies = parse("[[bucket]]\nname = \"bkt\"\naction = \"tag\"\n").unwrap();
        assert_eq!(policies.for_object("bkt", "g/f").unwrap().tags, TagMode::Avscan);
    }

    #[test]
    fn every_mistake_is_a_line_of_its_own() {
        let mistakes = parse(
            r#"
            colour = "blue"

            [[bucket]]
            name = "uploads"
            action = "move"

            [[bucket]]
            name = "uploads"
            quarantine_bucket = "uploads"
            max_file_size_mb = 0
            forward_clean = "yes"
            tagz = "avscan"

            [[bucket]]
            action = "report"

            [[bucket]]
            name = "plain"

            [[bucket]]
            name = "tagged"
            action = "tag"
            tags = "off"

            [[bucket.prefix]]
            prefix = ""
            "#,
        )
        .unwrap_err();
        let expected = [
            "unknown key \"colour\"",
            "bucket \"uploads\": action \"move\" is not one of quarantine, tag, delete, report",
            "bucket \"uploads\": named twice",
            "bucket \"uploads\": unknown key \"tagz\"",
            "bucket \"uploads\": max_file_size_mb 0 is not a number of MB from 1 to 4095",
            "bucket \"uploads\": forward_clean \"yes\" is not true or false",
            "bucket 3: no `name`",
            "bucket \"plain\": action \"quarantine\" needs a quarantine_bucket",
            "bucket \"tagged\": action \"tag\" with tags \"off\" would leave no trace on the object",
            "bucket \"tagged\" prefix 1: `prefix` must be a non-empty key prefix",
        ];
        for line in expected {
            assert!(
                mistakes.iter().any(|mistake| mistake.starts_with(line)),
                "no {line:?} in {mistakes:#?}"
            );
        }
        assert_eq!(mistakes.len(), expected.len(), "{mistakes:#?}");
        assert_eq!(
            parse("[[bucket]]\nname = \"aaa\"\nquarantine_bucket = \"bbb\"\n[[bucket]]\nname = \"bbb\"\nquarantine_bucket = \"ccc\"\n")
                .unwrap_err(),
            ["bucket \"aaa\": quarantine_bucket \"bbb\" is a source bucket: its reports would be scanned"]
        );
        assert!(parse("not toml [").unwrap_err()[0].starts_with("not TOML"));
        let arn = parse("[[bucket]]\nname = \"arn:aws:s3:::uploads\"\nquarantine_bucket = \"q-bucket\"\n").unwrap_err();
        assert!(arn[0].contains("is not an S3 bucket name"), "{arn:?}");
        let slash = parse("[[bucket]]\nname = \"uploads\"\nquarantine_bucket = \"q-bucket\"\n[[bucket.prefix]]\nprefix = \"/public/\"\n").unwrap_err();
        assert!(slash[0].contains("not starting with /"), "{slash:?}");
    }
}

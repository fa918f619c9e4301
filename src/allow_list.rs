//! `ALLOW_LIST`: where the false-positive allow-list lives (a file, or an S3 object
//! `s3://bucket/key`), read at start-up and again every `ALLOW_LIST_RELOAD_INTERVAL` seconds
//! without a restart. The format and what an entry allows: `avscan_actors::allow_list`.
//!
//! At start-up a list that cannot be read or has mistakes stops avscan (one line per mistake).
//! On a reload, a list that has mistakes, is gone or cannot be read is replaced by an empty one
//! (fail closed: deleting the list revokes it, and nothing stays allowed that the operator may
//! have meant to revoke), logged once per change; the next good read puts it back.
//!
//! Metrics: `avscan_allow_list_entries` (in force), `avscan_allow_list_valid` (0 while the last
//! read had mistakes).

use std::time::Duration;

use avscan_actors::allow_list::{AllowList, AllowListControl, AllowListHandle};
use metrics::{describe_gauge, gauge};

const ENTRIES: &str = "avscan_allow_list_entries";
const VALID: &str = "avscan_allow_list_valid";

/// Where the list is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file.
    File(std::path::PathBuf),
    /// An S3 object.
    S3 { bucket: String, key: String },
}

impl std::str::FromStr for Source {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.strip_prefix("s3://") {
            Some(rest) => match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Source::S3 {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                }),
                _ => Err(format!("{text:?} is not s3://bucket/key")),
            },
            None if !text.trim().is_empty() => Ok(Source::File(text.into())),
            None => Err("empty".into()),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Why the list could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{from}: {detail}")]
    Unreadable { from: Source, detail: String },
    #[error("{from} has {} mistake{}:\n{}", .mistakes.len(), if .mistakes.len() == 1 { "" } else { "s" }, .mistakes.iter().map(|m| format!("  {m}")).collect::<Vec<_>>().join("\n"))]
    Mistakes { from: Source, mistakes: Vec<String> },
}

/// Reads the list's text.
async fn read(source: &Source, s3: &aws_sdk_s3::Client) -> Result<String, LoadError> {
    let unreadable = |detail: String| LoadError::Unreadable {
        from: source.clone(),
        detail,
    };
    match source {
        Source::File(path) => tokio::fs::read_to_string(path)
            .await
            .map_err(|err| unreadable(err.to_string())),
        Source::S3 { bucket, key } => {
            let bytes = crate::aws::read_object(s3, bucket, key, MAX_LIST_BYTES)
                .await
                .map_err(unreadable)?;
            String::from_utf8(bytes.to_vec()).map_err(|_| unreadable("not UTF-8".into()))
        }
    }
}

/// An allow-list larger than this is a mistake, not a list.
const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// Reads and parses the list once.
pub async fn load(source: &Source, s3: &aws_sdk_s3::Client) -> Result<AllowList, LoadError> {
    let text = read(source, s3).await?;
    AllowList::parse(&text).map_err(|mistakes| LoadError::Mistakes {
        from: source.clone(),
        mistakes,
    })
}

/// The list in force and where it comes from; reloads it.
pub struct AllowListWatch {
    source: Source,
    s3: aws_sdk_s3::Client,
    control: AllowListControl,
    last_text: Option<String>,
    unreadable_logged: bool,
}

impl AllowListWatch {
    /// Loads the list (an error stops avscan) and describes its metrics.
    pub async fn start(source: Source, s3: aws_sdk_s3::Client) -> Result<Self, LoadError> {
        describe_gauge!(ENTRIES, "allow-list entries in force (ALLOW_LIST)");
        describe_gauge!(
            VALID,
            "0 while the last read of ALLOW_LIST had mistakes (an empty list is in force)"
        );
        let text = read(&source, &s3).await?;
        let list = AllowList::parse(&text).map_err(|mistakes| LoadError::Mistakes {
            from: source.clone(),
            mistakes,
        })?;
        tracing::info!(source = %source, entries = list.len(), "allow-list loaded");
        gauge!(ENTRIES).set(list.len() as f64);
        gauge!(VALID).set(1.0);
        let (control, _) = AllowListHandle::new(list);
        Ok(Self {
            source,
            s3,
            control,
            last_text: Some(text),
            unreadable_logged: false,
        })
    }

    /// A handle for the pipeline.
    pub fn handle(&self) -> AllowListHandle {
        self.control.handle()
    }

    async fn reload(&mut self) {
        let text = match read(&self.source, &self.s3).await {
            Ok(text) => text,
            Err(err) => {
                if !self.unreadable_logged {
                    tracing::error!(error = %err, "could not read the allow-list: nothing is allowed until it can be read again");
                    self.unreadable_logged = true;
                }
                gauge!(ENTRIES).set(0.0);
                gauge!(VALID).set(0.0);
                self.control.replace(AllowList::default());
                self.last_text = None;
                return;
            }
        };
        self.unreadable_logged = false;
        if self.last_text.as_deref() == Some(text.as_str()) {
            return;
        }
        match AllowList::parse(&text) {
            Ok(list) => {
                tracing::info!(source = %self.source, entries = list.len(), "allow-list reloaded");
                gauge!(ENTRIES).set(list.len() as f64);
                gauge!(VALID).set(1.0);
                self.control.replace(list);
            }
            Err(mistakes) => {
                for mistake in &mistakes {
                    tracing::error!(source = %self.source, %mistake, "allow-list mistake");
                }
                tracing::error!(source = %self.source, "the allow-list has mistakes: nothing is allowed until they are fixed");
                gauge!(ENTRIES).set(0.0);
                gauge!(VALID).set(0.0);
                self.control.replace(AllowList::default());
            }
        }
        self.last_text = Some(text);
    }

    /// Reloads every `interval` for as long as the process runs.
    pub fn spawn(mut self, interval: Duration) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                self.reload().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_files_or_s3_objects() {
        assert_eq!(
            "s3://lists/avscan/allow.txt".parse::<Source>(),
            Ok(Source::S3 {
                bucket: "lists".into(),
                key: "avscan/allow.txt".into()
            })
        );
        assert_eq!(
            "/etc/avscan/allow.txt".parse::<Source>(),
            Ok(Source::File("/etc/avscan/allow.txt".into()))
        );
        assert!("s3://lists".parse::<Source>().is_err());
        assert!("s3:///key".parse::<Source>().is_err());
    }
}

//! What avscan does with each source bucket's objects: [`Policies`], one [`BucketPolicy`] per
//! bucket with optional per-prefix overrides, each a [`Policy`]: the action on an object that is
//! not clean (move to quarantine, tag, delete, or only report), where quarantined copies and
//! reports go, the size limit, whether clean objects' events are forwarded, and which tags are
//! written. Events for a bucket no policy names are rejected. The binary builds them from
//! `AVSCAN_POLICY` (a TOML file) or, without one, from the old worker's variables: one bucket,
//! quarantine, forward clean, no tags.

use std::sync::Arc;

use crate::event::SourceBuckets;

/// What happens to an object that is not clean (infected, unscannable, too large).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Copy to the quarantine bucket, report, delete the original (the old worker's behaviour).
    Quarantine,
    /// Leave the object where it is, tagged with the verdict; report.
    Tag,
    /// Delete the object; report.
    Delete,
    /// Leave the object; report only.
    Report,
}

impl Action {
    /// Every action, as written in a policy file.
    pub const ALL: [Action; 4] = [Action::Quarantine, Action::Tag, Action::Delete, Action::Report];

    /// The action's name in a policy file and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Action::Quarantine => "quarantine",
            Action::Tag => "tag",
            Action::Delete => "delete",
            Action::Report => "report",
        }
    }
}

/// Which tags avscan writes on the objects it judged and left in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagMode {
    /// None.
    Off,
    /// avscan's own: `avscan-status`, `avscan-signature`, `avscan-definitions`, `avscan-scanned-at`.
    Avscan,
    /// GuardDuty Malware Protection for S3's `GuardDutyMalwareScanStatus`, with its values, so
    /// that bucket policies written for GuardDuty work unchanged.
    GuardDuty,
}

impl TagMode {
    /// Every mode, as written in a policy file.
    pub const ALL: [TagMode; 3] = [TagMode::Off, TagMode::Avscan, TagMode::GuardDuty];

    /// The mode's name in a policy file.
    pub fn name(self) -> &'static str {
        match self {
            TagMode::Off => "off",
            TagMode::Avscan => "avscan",
            TagMode::GuardDuty => "guardduty",
        }
    }
}

/// What to do with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What happens to an object that is not clean.
    pub action: Action,
    /// Where quarantined copies and every report (`<key>.report.json`) go; required for
    /// [`Action::Quarantine`], optional otherwise (without it a report is only notified).
    pub quarantine_bucket: Option<String>,
    /// Bytes; larger objects are not scanned: "file too large", handled by the action. `None`:
    /// the pipeline's `max_file_size` (`MAX_FILE_SIZE`).
    pub max_file_size: Option<u64>,
    /// Whether clean objects' events go to the validation queue.
    pub forward_clean: bool,
    /// Tags written on judged objects that stay in the bucket (clean ones, and with `tag` or
    /// `report` the others).
    pub tags: TagMode,
}

/// One source bucket: its policy, and overrides for key prefixes (the longest matching wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPolicy {
    /// The bucket's name.
    pub bucket: String,
    /// For keys no prefix matches.
    pub policy: Arc<Policy>,
    /// `(prefix, policy)` overrides.
    pub prefixes: Vec<(String, Arc<Policy>)>,
}

/// Every source bucket's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    buckets: Vec<BucketPolicy>,
}

impl Policies {
    /// The policies of `buckets`; a bucket named twice keeps its first entry (the binary's
    /// validation refuses such a file).
    pub fn new(buckets: Vec<BucketPolicy>) -> Self {
        Self { buckets }
    }

    /// The old worker's behaviour: one bucket, moved to `quarantine_bucket`, clean forwarded,
    /// no tags.
    pub fn single(bucket: impl Into<String>, quarantine_bucket: impl Into<String>) -> Self {
        Self::new(vec![BucketPolicy {
            bucket: bucket.into(),
            policy: Arc::new(Policy {
                action: Action::Quarantine,
                quarantine_bucket: Some(quarantine_bucket.into()),
                max_file_size: None,
                forward_clean: true,
                tags: TagMode::Off,
            }),
            prefixes: Vec::new(),
        }])
    }

    /// Every bucket's policy.
    pub fn buckets(&self) -> &[BucketPolicy] {
        &self.buckets
    }

    /// Whether events for `bucket` are accepted.
    pub fn covers(&self, bucket: &str) -> bool {
        self.buckets.iter().any(|entry| entry.bucket == bucket)
    }

    /// The policy for `key` in `bucket`: the longest matching prefix's, else the bucket's;
    /// `None` for a bucket no policy names.
    pub fn for_object(&self, bucket: &str, key: &str) -> Option<&Arc<Policy>> {
        let entry = self.buckets.iter().find(|entry| entry.bucket == bucket)?;
        let prefix = entry
            .prefixes
            .iter()
            .filter(|(prefix, _)| key.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len());
        Some(prefix.map_or(&entry.policy, |(_, policy)| policy))
    }

    /// Every policy, the buckets' and their prefixes'.
    pub fn all(&self) -> impl Iterator<Item = &Policy> {
        self.buckets.iter().flat_map(|entry| {
            std::iter::once(entry.policy.as_ref()).chain(entry.prefixes.iter().map(|(_, policy)| policy.as_ref()))
        })
    }
}

impl SourceBuckets for Policies {
    fn accepts(&self, bucket: &str) -> bool {
        self.covers(bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(action: Action) -> Arc<Policy> {
        Arc::new(Policy {
            action,
            quarantine_bucket: None,
            max_file_size: None,
            forward_clean: true,
            tags: TagMode::Off,
        })
    }

    #[test]
    fn the_longest_matching_prefix_decides_and_other_buckets_have_none() {
        let policies = Policies::new(vec![BucketPolicy {
            bucket: "uploads".into(),
            policy: policy(Action::Quarantine),
            prefixes: vec![
                ("public/".into(), policy(Action::Tag)),
                ("public/reports/".into(), policy(Action::Report)),
            ],
        }]);
        let action = |key: &str| policies.for_object("uploads", key).map(|policy| policy.action);
        assert_eq!(action("guid/file"), Some(Action::Quarantine));
        assert_eq!(action("public/guid/file"), Some(Action::Tag));
        assert_eq!(action("public/reports/guid/file"), Some(Action::Report));
        assert_eq!(policies.for_object("elsewhere", "guid/file"), None);
        assert!(policies.covers("uploads") && !policies.covers("elsewhere"));
    }

    #[test]
    fn without_a_policy_file_it_is_the_old_workers_behaviour() {
        let policies = Policies::single("in", "q");
        let policy = policies.for_object("in", "g/f").unwrap();
        assert_eq!(policy.action, Action::Quarantine);
        assert_eq!(policy.quarantine_bucket.as_deref(), Some("q"));
        assert!(policy.forward_clean);
        assert_eq!(policy.tags, TagMode::Off);
        assert_eq!(policy.max_file_size, None, "MAX_FILE_SIZE");
    }
}

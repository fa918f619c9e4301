//! The actions that leave no copy: `tag` (the object stays, tagged with its verdict), `delete`,
//! and `report` (the object stays, tagged if the policy tags). Each notifies the report and,
//! when the policy names a quarantine bucket, stores it there as `<key>.report.json` only if
//! absent, so a redelivery neither notifies nor reports twice (without a bucket, a redelivery
//! after a crash notifies again). Tagging, for these and for clean objects, writes on exactly
//! the judged upload and keeps the object's other tags.

use tracing::Instrument;

use super::{QuarantineError, Quarantined, QuarantinerState, StepSpans};
use crate::model::now_rfc3339;
use crate::model::{ObjectRecord, ObjectRef, ScanOutcome};
use crate::policy::{Action, Policy, TagMode};
use crate::ports::{StoreError, WriteOptions};
use crate::report::{QuarantineReport, REMOVED_BEFORE_QUARANTINE};
use crate::tags;

impl QuarantinerState {
    /// Reports an object that is not clean and tags, deletes or leaves it as `policy` says.
    pub(super) async fn act_in_place(
        &self,
        record: &ObjectRecord,
        outcome: ScanOutcome,
        policy: &Policy,
        spans: &StepSpans<'_>,
    ) -> Result<Quarantined, QuarantineError> {
        let object = &record.object;
        let bucket = policy.quarantine_bucket.as_deref();
        let scanned_at = now_rfc3339();
        let mut report = QuarantineReport::new(record, &outcome, scanned_at.clone(), bucket.unwrap_or_default());
        report.action = policy.action.name().to_owned();
        let Some(source) = self.head_source(object, spans).await? else {
            // A newer upload explains it (its own event judges it); else the incident is still
            // reported.
            if self.newer_upload_exists(object, spans).await? {
                return Ok(Quarantined::Stale);
            }
            report.reason = REMOVED_BEFORE_QUARANTINE.to_owned();
            self.report_once(bucket, object, &mut report, &self.write_options(None), spans)
                .await?;
            return Ok(Quarantined::RemovedBeforeQuarantine(Box::new(report)));
        };
        report.source_metadata = source.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        report.source_kms_key_id = source.kms_key_id.clone();
        let options = self.write_options(source.kms_key_id.as_ref());
        self.report_once(bucket, object, &mut report, &options, spans).await?;
        match policy.action {
            Action::Delete => self.delete_source(object, spans).await?,
            _ => self.tag(object, &outcome, policy.tags, &scanned_at, spans).await?,
        }
        Ok(Quarantined::InPlace(policy.action, Box::new(report)))
    }

    /// Notifies the report and, with a bucket, stores it there unless this upload's report is
    /// there already (then it was notified too).
    async fn report_once(
        &self,
        bucket: Option<&str>,
        object: &ObjectRef,
        report: &mut QuarantineReport,
        options: &WriteOptions,
        spans: &StepSpans<'_>,
    ) -> Result<(), QuarantineError> {
        let Some(bucket) = bucket else {
            return self.report(None, report, options, spans).await;
        };
        let place = self.place(bucket, object, spans).await?;
        report.quarantine_key = place.key;
        if place.reported {
            return Ok(());
        }
        self.report(Some(bucket), report, options, spans).await
    }

    /// Writes the verdict's tags (`mode`) on exactly the judged upload, keeping its other tags.
    /// Without a version id, tagging addresses whatever is under the key: the ETag is checked
    /// before, and after, so that avscan's tags are taken back from an upload that replaced the
    /// judged one in between (its own event judges it).
    pub(super) async fn tag(
        &self,
        object: &ObjectRef,
        outcome: &ScanOutcome,
        mode: TagMode,
        scanned_at: &str,
        spans: &StepSpans<'_>,
    ) -> Result<(), QuarantineError> {
        let ours = tags::verdict_tags(mode, &outcome.verdict, outcome.definitions.as_ref(), scanned_at);
        if ours.is_empty() {
            return Ok(());
        }
        let store = &self.arguments.store;
        let span = tracing::info_span!(parent: spans.parent, "step", otel.name = "tag", otel.kind = "client");
        async {
            match store.head_object(object).await {
                Ok(_) => {}
                Err(StoreError::NotFound { .. }) => return Ok(()),
                // Replaced: nothing of the judged upload is left to tag. Without a version, an
                // earlier attempt may have tagged the newer upload before its take-back failed:
                // a clean status on it is taken back (its own event tags it again, or it stays
                // closed under a deny-unless-clean policy: fail closed).
                Err(StoreError::PreconditionFailed { .. }) if object.version_id.is_none() => {
                    let current = ObjectRef {
                        etag: None,
                        ..object.clone()
                    };
                    let theirs = store.tags(&current).await?;
                    if tags::says_clean(&theirs) {
                        store.put_tags(&current, &tags::without_ours(&theirs)).await?;
                        tracing::warn!(key = %object.key, "replaced since its verdict; a clean status on the newer upload taken back");
                    }
                    return Ok(());
                }
                Err(StoreError::PreconditionFailed { .. }) => return Ok(()),
                Err(err) => return Err(err.into()),
            }
            let existing = store.tags(object).await?;
            store.put_tags(object, &tags::merge(&existing, &ours)?).await?;
            if object.version_id.is_none() {
                match store.head_object(object).await {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(StoreError::PreconditionFailed { .. }) => {
                        let current = ObjectRef {
                            etag: None,
                            ..object.clone()
                        };
                        let theirs = store.tags(&current).await?;
                        store.put_tags(&current, &tags::without_ours(&theirs)).await?;
                        tracing::warn!(key = %object.key, "replaced while being tagged; avscan's tags taken back from the newer upload");
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

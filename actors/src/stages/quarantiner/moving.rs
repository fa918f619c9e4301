//! The `quarantine` action, a move: HEAD the source, choose the incident's quarantine key, copy
//! only if absent, notify and store the report only if absent, delete the source; and what
//! happens when the object is gone (finish an earlier attempt's quarantine, report it removed,
//! or recognise a newer upload). The steps shared with the actions in place (`place`, `report`,
//! `delete_source`) are here too.

use bytes::Bytes;
use tracing::Instrument;

use super::{Place, QuarantineError, Quarantined, QuarantinerState, StepSpans};
use crate::incident::{quarantine_keys, report_key};
use crate::model::now_rfc3339;
use crate::model::{ObjectRecord, ObjectRef, ScanOutcome};
use crate::ports::{CopyRequest, ObjectMeta, StoreError, WriteOptions};
use crate::report::{written_for, QuarantineReport, REMOVED_BEFORE_QUARANTINE};

impl QuarantinerState {
    pub(super) async fn head(
        &self,
        bucket: &str,
        key: &str,
        step: &'static str,
        spans: &StepSpans<'_>,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        self.arguments
            .store
            .head(bucket, key)
            .instrument(tracing::info_span!(parent: spans.parent, "step", otel.name = step))
            .await
    }

    /// The first quarantine key of the incident whose copy and report are absent or this
    /// upload's.
    pub(super) async fn place(
        &self,
        bucket: &str,
        object: &ObjectRef,
        spans: &StepSpans<'_>,
    ) -> Result<Place, QuarantineError> {
        for key in quarantine_keys(object) {
            let copy = self.head(bucket, &key, "check_copy", spans).await?;
            if copy.as_ref().is_some_and(|copy| !written_for(copy, object)) {
                continue;
            }
            let report = self.head(bucket, &report_key(&key), "check_report", spans).await?;
            if report.as_ref().is_some_and(|report| !written_for(report, object)) {
                continue;
            }
            return Ok(Place {
                key,
                copied: copy.is_some(),
                reported: report.is_some(),
            });
        }
        Err(QuarantineError::NoFreeKey {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
        })
    }

    pub(super) fn write_options(&self, kms_key_id: Option<&String>) -> WriteOptions {
        WriteOptions {
            if_absent: true,
            kms_key_id: self.arguments.kms_key_id.clone().or_else(|| kms_key_id.cloned()),
        }
    }

    /// HEADs exactly the judged upload; `None` when it is gone or was replaced.
    pub(super) async fn head_source(
        &self,
        object: &ObjectRef,
        spans: &StepSpans<'_>,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        let source = self
            .arguments
            .store
            .head_object(object)
            .instrument(tracing::info_span!(parent: spans.parent, "step", otel.name = "check_source"))
            .await;
        match source {
            Ok(source) => Ok(Some(source)),
            Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Whether anything is under the object's key now: a newer upload, judged on its own event.
    pub(super) async fn newer_upload_exists(
        &self,
        object: &ObjectRef,
        spans: &StepSpans<'_>,
    ) -> Result<bool, StoreError> {
        let current = self
            .arguments
            .store
            .head(&object.bucket, &object.key)
            .instrument(tracing::info_span!(parent: spans.parent, "step", otel.name = "check_source"))
            .await?;
        Ok(current.is_some())
    }

    pub(super) async fn quarantine(
        &self,
        record: &ObjectRecord,
        outcome: ScanOutcome,
        bucket: &str,
        spans: &StepSpans<'_>,
    ) -> Result<Quarantined, QuarantineError> {
        let object = &record.object;
        let mut report = QuarantineReport::new(record, &outcome, now_rfc3339(), bucket);
        let Some(source) = self.head_source(object, spans).await? else {
            return self.vanished(record, report, bucket, spans).await;
        };
        report.source_metadata = source.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        report.source_kms_key_id = source.kms_key_id.clone();
        let options = self.write_options(source.kms_key_id.as_ref());
        let place = self.place(bucket, object, spans).await?;
        report.quarantine_key = place.key.clone();
        if !place.copied {
            let copied = self
                .arguments
                .store
                .copy(CopyRequest {
                    source: object,
                    source_meta: &source,
                    bucket,
                    key: &place.key,
                    metadata: &report.copy_metadata(),
                    options: &options,
                })
                .instrument(tracing::info_span!(parent: spans.parent, "step", otel.name = "copy", otel.kind = "client"))
                .await;
            match copied {
                Ok(()) => {}
                // Gone between the scan and the copy.
                Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => {
                    return self.vanished(record, report, bucket, spans).await
                }
                // Taken since the HEAD, by a concurrent attempt or another incident.
                Err(StoreError::AlreadyExists { bucket, key }) => {
                    return Err(QuarantineError::NoFreeKey { bucket, key })
                }
                Err(err) => return Err(err.into()),
            }
        }
        if !place.reported {
            self.report(Some(bucket), &report, &options, spans).await?;
        }
        self.delete_source(object, spans).await?;
        Ok(Quarantined::Moved(Box::new(report)))
    }

    /// Publishes the report and, with a bucket, stores it there (beside the copy), only if
    /// absent.
    pub(super) async fn report(
        &self,
        bucket: Option<&str>,
        report: &QuarantineReport,
        options: &WriteOptions,
        spans: &StepSpans<'_>,
    ) -> Result<(), QuarantineError> {
        let notify = tracing::info_span!(parent: spans.parent, "step", otel.name = "notify", otel.kind = "producer");
        let mut notification = report.notification();
        notification.attributes.extend(spans.object.propagate(&notify));
        self.arguments
            .notifier
            .publish(&notification)
            .instrument(notify)
            .await?;
        let Some(bucket) = bucket else {
            return Ok(());
        };
        self.arguments
            .store
            .put(
                bucket,
                &report.report_key(),
                Bytes::from(report.to_json()),
                "application/json",
                &report.source_metadata(),
                options,
            )
            .instrument(
                tracing::info_span!(parent: spans.parent, "step", otel.name = "put_report", otel.kind = "client"),
            )
            .await
            .map_err(|err| match err {
                StoreError::AlreadyExists { bucket, key } => QuarantineError::NoFreeKey { bucket, key },
                other => other.into(),
            })
    }

    pub(super) async fn delete_source(&self, object: &ObjectRef, spans: &StepSpans<'_>) -> Result<(), QuarantineError> {
        let deleted = self
            .arguments
            .store
            .delete(object)
            .instrument(
                tracing::info_span!(parent: spans.parent, "step", otel.name = "delete_source", otel.kind = "client"),
            )
            .await;
        match deleted {
            Ok(()) | Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// The object was judged but is gone: an earlier attempt may have quarantined it, a newer
    /// upload may have replaced it; otherwise the incident is reported without a copy.
    pub(super) async fn vanished(
        &self,
        record: &ObjectRecord,
        mut report: QuarantineReport,
        bucket: &str,
        spans: &StepSpans<'_>,
    ) -> Result<Quarantined, QuarantineError> {
        let finished = self.finish_if_quarantined(record, bucket, spans).await?;
        if !matches!(finished, Quarantined::Stale) {
            return Ok(finished);
        }
        if self.newer_upload_exists(&record.object, spans).await? {
            return Ok(Quarantined::Stale);
        }
        let place = self.place(bucket, &record.object, spans).await?;
        report.quarantine_key = place.key;
        report.reason = REMOVED_BEFORE_QUARANTINE.to_owned();
        if !place.reported {
            self.report(Some(bucket), &report, &self.write_options(None), spans)
                .await?;
        }
        Ok(Quarantined::RemovedBeforeQuarantine(Box::new(report)))
    }

    /// Finishes the quarantine of a gone object if this upload's copy is in quarantine.
    pub(super) async fn finish_if_quarantined(
        &self,
        record: &ObjectRecord,
        bucket: &str,
        spans: &StepSpans<'_>,
    ) -> Result<Quarantined, QuarantineError> {
        let object = &record.object;
        for key in quarantine_keys(object) {
            let Some(copy) = self.head(bucket, &key, "check_copy", spans).await? else {
                continue;
            };
            if !written_for(&copy, object) {
                continue;
            }
            let report = QuarantineReport::from_copy(record, &copy, bucket, &key);
            let existing = self.head(bucket, &report.report_key(), "check_report", spans).await?;
            if !existing.is_some_and(|existing| written_for(&existing, object)) {
                self.report(
                    Some(bucket),
                    &report,
                    &self.write_options(copy.kms_key_id.as_ref()),
                    spans,
                )
                .await?;
            }
            self.delete_source(object, spans).await?;
            return Ok(Quarantined::FinishedEarlierQuarantine(Box::new(report)));
        }
        Ok(Quarantined::Stale)
    }
}

//! A scanner owns one pooled connection (session) to the scanning engine and streams object
//! bodies through it, one at a time. Fetchers reach it through the scan [`Pool`](super::pool).
//! A connection that failed or was closed by the engine is replaced before the next scan.
//!
//! Every body also passes through an [`ArchiveGuard`](archive_guard::ArchiveGuard) on its way to the engine: when the engine
//! says clean but the guard saw an archive member the engine skips silently, the verdict is
//! unscannable.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;

use tracing::{Instrument, Span};

use super::pool::WorkerSlot;
use crate::archive_guard;
use crate::model::ScanOutcome;
use crate::ports::{ObjectBody, ScanEngine, ScanError, ScanSession};
use crate::trace::Traced;

/// One object to scan; the verdict goes back on `reply`.
pub struct ScanJob {
    pub body: ObjectBody,
    pub reply: oneshot::Sender<Result<ScanOutcome, ScanError>>,
    /// The object's span, parent of the `scan` span.
    pub trace: Span,
}

impl Traced for ScanJob {
    fn trace_span(&self) -> &Span {
        &self.trace
    }
}

pub struct Scanner;

pub struct ScannerArgs {
    pub engine: Arc<dyn ScanEngine>,
    /// Bytes; see [`PipelineConfig::archive_member_limit`](crate::PipelineConfig).
    pub archive_member_limit: u64,
    pub slot: WorkerSlot<ScanJob>,
}

pub struct ScannerState {
    engine: Arc<dyn ScanEngine>,
    archive_member_limit: u64,
    slot: WorkerSlot<ScanJob>,
    /// Opened lazily, so a scanner starts even while the engine is down.
    session: Option<Box<dyn ScanSession>>,
}

impl ScannerState {
    async fn scan(&mut self, body: ObjectBody, span: &Span) -> Result<ScanOutcome, ScanError> {
        if let Some(session) = self.session.as_mut() {
            if !session.is_reusable() {
                tracing::debug!(
                    scanner = self.slot.index,
                    connection = session.id(),
                    "scanner connection closed by peer; reconnecting"
                );
                self.session = None;
            }
        }
        let session = match self.session.as_mut() {
            Some(session) => session,
            None => self.session.insert(self.engine.connect().await?),
        };
        span.record("clamd.connection.id", session.id());
        let size = body.content_length;
        let (watched, watch) = archive_guard::watch(body, self.archive_member_limit);
        let started = std::time::Instant::now();
        let result = session.scan(watched).await;
        if result.is_err() {
            // Whatever state the connection is in, it is not trusted for another scan.
            self.session = None;
        }
        crate::metrics::stage("scan", started.elapsed());
        if result.is_ok() {
            metrics::counter!(crate::metrics::BYTES_SCANNED).increment(size);
        }
        result.map(|outcome| watch.judge(outcome))
    }
}

impl Actor for Scanner {
    type Msg = ScanJob;
    type State = ScannerState;
    type Arguments = ScannerArgs;

    async fn pre_start(&self, _: ActorRef<ScanJob>, args: ScannerArgs) -> Result<ScannerState, ActorProcessingErr> {
        Ok(ScannerState {
            engine: args.engine,
            archive_member_limit: args.archive_member_limit,
            slot: args.slot,
            session: None,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<ScanJob>,
        job: ScanJob,
        state: &mut ScannerState,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!(
            parent: &job.trace,
            "scan",
            scanner = state.slot.index,
            clamd.connection.id = tracing::field::Empty,
            scan.bytes = job.body.content_length,
            scan.verdict = tracing::field::Empty,
            scan.signature = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let result = state.scan(job.body, &span).instrument(span.clone()).await;
        match &result {
            Ok(outcome) => {
                span.record("scan.verdict", outcome.verdict.label());
                if let Some(signature) = outcome.verdict.signature() {
                    span.record("scan.signature", signature);
                }
            }
            Err(err) => {
                span.record("error", tracing::field::display(err));
            }
        }
        drop(span);
        // The fetcher may have given up waiting; nothing else to do then.
        let _ = job.reply.send(result);
        state.slot.ready();
        Ok(())
    }
}

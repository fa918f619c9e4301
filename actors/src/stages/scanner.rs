//! A scanner owns one pooled connection (session) to the scanning engine and streams object
//! bodies through it, one at a time. Fetchers reach it through the scan [`Pool`](super::pool).
//! A connection that failed or was closed by the engine is replaced before the next scan.
//!
//! Every body also passes through an [`ArchiveGuard`](archive_guard::ArchiveGuard) on its way to
//! the engine: when the engine says clean but the guard saw an archive member the engine skips
//! silently, the verdict is unscannable.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;

use tracing::{Instrument, Span};

use super::pool::WorkerSlot;
use crate::archive_guard::{self, ArchiveCheck, GuardLimits};
use crate::metrics::Latency;
use crate::model::{JudgedBy, ScanOutcome};
use crate::ports::{ObjectBody, ScanEngine, ScanError, ScanSession, Scanned};
use crate::trace::Traced;

/// One object to scan; the verdict goes back on `reply`.
pub(crate) struct ScanJob {
    /// The object's body: streamed as the GET delivers it, or replayed from memory.
    pub(crate) body: ObjectBody,
    /// The archive check of a body the fetcher read whole, started there; `None`: the scanner
    /// checks the body while it streams.
    pub(crate) check: Option<ArchiveCheck>,
    /// Where the fetcher waits for the verdict.
    pub(crate) reply: oneshot::Sender<Result<ScanReply, ScanError>>,
    /// The object's span, parent of the `scan` span.
    pub(crate) trace: Span,
}

/// A scanner's answer: the engine's verdict, whose definitions may still be named after the
/// session moved on, and the archive check that may overrule a clean one. The fetcher waits
/// for the check (and, in a task of its own, for the name), so the session is free as soon as
/// the engine answered.
pub(crate) struct ScanReply {
    pub(crate) scanned: Scanned,
    pub(crate) check: ArchiveCheck,
}

impl ScanReply {
    /// The archive check applied to the verdict, then `release` (what the body held: only the
    /// check still reads it). The verdict's definitions may still wait for later scans of the
    /// session: [`Checked::named`].
    pub(crate) async fn checked<T>(self, release: T) -> Checked {
        let outcome = self
            .check
            .apply(ScanOutcome {
                verdict: self.scanned.verdict,
                engine: None,
                definitions: None,
                sha256: None,
                allowed_by: None,
            })
            .await;
        drop(release);
        Checked {
            outcome,
            judged_by: self.scanned.judged_by,
        }
    }
}

/// A verdict the archive check has seen, waiting for its definitions to be named.
pub(crate) struct Checked {
    outcome: ScanOutcome,
    judged_by: JudgedBy,
}

impl Checked {
    /// Whether [`named`](Self::named) waits for the session's next `VERSION`.
    pub(crate) fn waits_for_name(&self) -> bool {
        matches!(self.judged_by, JudgedBy::Confirming(_))
    }

    /// The outcome, once the verdict's definitions are named.
    pub(crate) async fn named(self) -> Result<ScanOutcome, ScanError> {
        let judge = self.judged_by.named().await?;
        Ok(ScanOutcome {
            engine: judge.engine,
            definitions: judge.definitions,
            ..self.outcome
        })
    }
}

impl Traced for ScanJob {
    fn trace_span(&self) -> &Span {
        &self.trace
    }
}

/// A scanner actor: one worker of the scan pool.
pub(crate) struct Scanner;

/// What a scanner is spawned with.
pub(crate) struct ScannerArguments {
    /// Opens the scanner's session.
    pub(crate) engine: Arc<dyn ScanEngine>,
    /// How far the archive guard follows each body (see [`PipelineConfig`](crate::PipelineConfig)).
    pub(crate) guard_limits: GuardLimits,
    /// Tells the scan pool when this scanner is free.
    pub(crate) slot: WorkerSlot<ScanJob>,
}

/// A scanner's state: its arguments and its session.
pub(crate) struct ScannerState {
    arguments: ScannerArguments,
    /// Opened lazily, so a scanner starts even while the engine is down.
    session: Option<Box<dyn ScanSession>>,
}

impl ScannerState {
    async fn scan(
        &mut self,
        body: ObjectBody,
        check: Option<ArchiveCheck>,
        span: &Span,
    ) -> Result<ScanReply, ScanError> {
        if let Some(session) = self.session.as_mut() {
            if !session.is_reusable() {
                tracing::debug!(
                    scanner = self.arguments.slot.index,
                    connection = session.id(),
                    "scanner connection closed by peer; reconnecting"
                );
                self.session = None;
            }
        }
        let session = match self.session.as_mut() {
            Some(session) => session,
            None => self.session.insert(self.arguments.engine.connect().await?),
        };
        span.record("clamd.connection.id", session.id());
        let size = body.content_length;
        let (guarded, archive_check) = match check {
            Some(check) => (body, check),
            None => archive_guard::check_while_streaming(body, self.arguments.guard_limits),
        };
        let started = std::time::Instant::now();
        let result = session.scan(guarded).await;
        if result.is_err() {
            // Whatever state the connection is in, it is not trusted for another scan.
            self.session = None;
        }
        crate::metrics::observe_latency(Latency::Scan, started.elapsed());
        if result.is_ok() {
            metrics::counter!(crate::metrics::BYTES_SCANNED).increment(size);
        }
        Ok(ScanReply {
            scanned: result?,
            check: archive_check,
        })
    }

    /// Before the scanner idles: names the definitions of the verdicts its session gave, which
    /// would otherwise wait for its next scan. A session that cannot is not used again (its
    /// waiting verdicts fail, and their messages are retried).
    async fn confirm(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if let Err(err) = session.confirm().await {
            tracing::warn!(
                scanner = self.arguments.slot.index,
                connection = session.id(),
                error = %err,
                "could not name the definitions of the last verdicts; their messages are retried"
            );
            self.session = None;
        }
    }
}

impl ScannerState {
    /// Scans one job and answers its fetcher.
    async fn run(&mut self, job: ScanJob) {
        let span = tracing::info_span!(
            parent: &job.trace,
            "scan",
            scanner = self.arguments.slot.index,
            clamd.connection.id = tracing::field::Empty,
            scan.bytes = job.body.content_length,
            scan.verdict = tracing::field::Empty,
            scan.signature = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let result = self.scan(job.body, job.check, &span).instrument(span.clone()).await;
        match &result {
            Ok(reply) => {
                span.record("scan.verdict", reply.scanned.verdict.label());
                if let Some(signature) = reply.scanned.verdict.signature() {
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
    }
}

impl Actor for Scanner {
    type Msg = ScanJob;
    type State = ScannerState;
    type Arguments = ScannerArguments;

    async fn pre_start(
        &self,
        _: ActorRef<ScanJob>,
        arguments: ScannerArguments,
    ) -> Result<ScannerState, ActorProcessingErr> {
        Ok(ScannerState {
            arguments,
            session: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ScanJob>,
        job: ScanJob,
        state: &mut ScannerState,
    ) -> Result<(), ActorProcessingErr> {
        let mut next = Some(job);
        while let Some(job) = next {
            state.run(job).await;
            next = state.arguments.slot.next_job(&myself);
        }
        state.confirm().await;
        Ok(())
    }
}

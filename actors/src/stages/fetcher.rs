//! A fetcher takes one record at a time: it GETs exactly the announced object from S3 and streams
//! the body into a scanner from the scan pool, waiting for the verdict, then hands the record and
//! what it learnt to the router. It never holds more than one body, and never a whole object.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tracing::{Instrument, Span};

use super::pool::{PoolMsg, WorkerSlot};
use super::router::{InspectError, Inspection, RouterMsg};
use super::scanner::ScanJob;
use super::RecordJob;
use crate::address::StageAddress;
use crate::metrics::Latency;
use crate::model::ObjectRecord;
use crate::ports::{ObjectStore, ScanError, StoreError};
use crate::ticket::RetryCause;

/// A fetcher actor: one worker of the fetch pool.
pub(crate) struct Fetcher;

/// What a fetcher is spawned with.
pub(crate) struct FetcherArguments {
    /// Where objects are fetched from.
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Where bodies are streamed to.
    pub(crate) scan_pool: StageAddress<PoolMsg<ScanJob>>,
    /// Where records go with what was learnt.
    pub(crate) router: StageAddress<RouterMsg>,
    /// Objects larger than this are not scanned (`MAX_FILE_SIZE`), unless their policy sets
    /// a limit of its own.
    pub(crate) max_file_size: u64,
    /// Tells the fetch pool when this fetcher is free.
    pub(crate) slot: WorkerSlot<RecordJob>,
    /// One per clamd session, shared by the fetchers: a large object's GET waits for one (see
    /// [`LARGE_OBJECT_BYTES`]).
    pub(crate) large_objects: Arc<tokio::sync::Semaphore>,
}

/// Objects larger than this (by their event) are fetched only while fewer large ones than clamd
/// sessions are being fetched or scanned. Small objects are bound by S3's first-byte latency, so
/// many fetchers wait for it at once and a clamd session is taken only once the bytes flow; a
/// large one is bound by its transfer and scan, and this keeps open large responses to about
/// one per session (it does not reserve the session: a large object's scan job still queues
/// behind the small ones already waiting for one).
pub(crate) const LARGE_OBJECT_BYTES: u64 = 8 * 1024 * 1024;

/// A fetcher's state: its arguments (it keeps nothing between records).
pub(crate) struct FetcherState {
    arguments: FetcherArguments,
}

impl FetcherState {
    async fn inspect(
        &self,
        record: &ObjectRecord,
        max_file_size: u64,
        trace: &Span,
    ) -> Result<Inspection, InspectError> {
        // The event's size is only a claim (a forged event could get a small clean object
        // quarantined): the GET's length decides, before any byte is read.
        let fetch = tracing::info_span!(
            parent: trace,
            "fetch",
            otel.kind = "client",
            object.content_length = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let _large = match record.object.size > LARGE_OBJECT_BYTES {
            true => self.arguments.large_objects.clone().acquire_owned().await.ok(),
            false => None,
        };
        let started = std::time::Instant::now();
        let got = self.arguments.store.get(&record.object).instrument(fetch.clone()).await;
        crate::metrics::observe_latency(Latency::Fetch, started.elapsed());
        match &got {
            Ok(body) => fetch.record("object.content_length", body.content_length),
            Err(err) => fetch.record("error", tracing::field::display(err)),
        };
        drop(fetch);
        let body = match got {
            Ok(body) => body,
            Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => return Ok(Inspection::Gone),
            Err(err) => return Err(err.into()),
        };
        if body.content_length > max_file_size {
            return Ok(Inspection::TooLarge {
                size: body.content_length,
            });
        }
        let (reply, verdict) = oneshot::channel();
        let job = ScanJob {
            body,
            reply,
            trace: trace.clone(),
        };
        if self.arguments.scan_pool.send(PoolMsg::Submit(job)).is_err() {
            return Err(ScanError::Unavailable("scan pool is restarting".into()).into());
        }
        match verdict.await {
            Ok(result) => Ok(Inspection::Scanned(result?)),
            Err(_) => Err(ScanError::Unavailable("scanner stopped mid-scan".into()).into()),
        }
    }
}

impl Actor for Fetcher {
    type Msg = RecordJob;
    type State = FetcherState;
    type Arguments = FetcherArguments;

    async fn pre_start(
        &self,
        _: ActorRef<RecordJob>,
        arguments: FetcherArguments,
    ) -> Result<FetcherState, ActorProcessingErr> {
        Ok(FetcherState { arguments })
    }

    async fn handle(
        &self,
        _: ActorRef<RecordJob>,
        job: RecordJob,
        state: &mut FetcherState,
    ) -> Result<(), ActorProcessingErr> {
        let max_file_size = job.policy.max_file_size.unwrap_or(state.arguments.max_file_size);
        let inspection = state.inspect(&job.record, max_file_size, &job.trace.span).await;
        if let Err(RouterMsg::Route { job, .. }) = state.arguments.router.send(RouterMsg::Route { job, inspection }) {
            job.ticket.retry(RetryCause::Restart, "router is restarting");
        }
        state.arguments.slot.ready();
        Ok(())
    }
}

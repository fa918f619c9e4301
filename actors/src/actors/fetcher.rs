//! A fetcher takes one record at a time: it GETs exactly the announced object from S3 and streams
//! the body into a scanner from the scan pool, waiting for the verdict, then hands the record and
//! what it learnt to the router. It never holds more than one body, and never a whole object.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tracing::{Instrument, Span};

use super::pool::{PoolMsg, WorkerSlot};
use super::router::RouterMsg;
use super::scanner::ScanJob;
use crate::model::{InspectError, Inspection, ObjectRecord, RecordJob};
use crate::ports::{ObjectStore, ScanError, StoreError};
use crate::stage::Address;

pub struct Fetcher;

pub struct FetcherArgs {
    pub store: Arc<dyn ObjectStore>,
    pub scan_pool: Address<PoolMsg<ScanJob>>,
    pub router: Address<RouterMsg>,
    /// Objects larger than this are quarantined unscanned (`MAX_FILE_SIZE`).
    pub max_file_size: u64,
    pub slot: WorkerSlot<RecordJob>,
}

impl FetcherArgs {
    async fn inspect(&self, record: &ObjectRecord, trace: &Span) -> Result<Inspection, InspectError> {
        // The event's size is only a claim (a forged event could get a small clean object
        // quarantined): the GET's length decides, before any byte is read.
        let fetch = tracing::info_span!(
            parent: trace,
            "fetch",
            otel.kind = "client",
            object.content_length = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let got = self.store.get(&record.object).instrument(fetch.clone()).await;
        crate::metrics::stage("fetch", started.elapsed());
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
        if body.content_length > self.max_file_size {
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
        if self.scan_pool.send(PoolMsg::Submit(job)).is_err() {
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
    type State = FetcherArgs;
    type Arguments = FetcherArgs;

    async fn pre_start(&self, _: ActorRef<RecordJob>, args: FetcherArgs) -> Result<FetcherArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<RecordJob>,
        job: RecordJob,
        state: &mut FetcherArgs,
    ) -> Result<(), ActorProcessingErr> {
        let inspection = state.inspect(&job.record, &job.trace.span).await;
        if let Err(RouterMsg::Route { job, .. }) = state.router.send(RouterMsg::Route { job, inspection }) {
            job.ticket.retry("restart", "router is restarting");
        }
        state.slot.ready();
        Ok(())
    }
}

//! A fetcher takes one record at a time: it GETs exactly the announced object from S3 and hands
//! the body to a scanner from the scan pool, waiting for the verdict, then hands the record and
//! what it learnt to the router (a verdict whose definitions are not named yet waits for its
//! name in a task of its own, and the fetcher goes on).
//!
//! A small object (up to [`WHOLE_BODY_BYTES`]) is read whole before it waits for a clamd
//! session, within a byte budget shared by the fetchers, and checked by the archive guard on
//! the way: a session then never waits for S3's transfer, only scans. A larger one streams
//! from S3 through the session (never held whole in memory).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

use super::pool::{Dispatch, WorkerSlot};
use super::router::{InspectError, Inspection, RouterMsg};
use super::scanner::{Checked, ScanJob};
use super::RecordJob;
use crate::address::StageAddress;
use crate::archive_guard::{self, ArchiveCheck, GuardLimits};
use crate::metrics::Latency;
use crate::model::ObjectRecord;
use crate::ports::{ObjectBody, ObjectStore, ScanError, StoreError};
use crate::ticket::RetryCause;

/// What a fetcher learnt of a record: a scanned verdict may still wait for its definitions' name.
enum Inspected {
    Scanned(Checked),
    Done(Inspection),
}

/// Hands `job` to the router with what was learnt; a router restarting retries the message.
fn route(router: &StageAddress<RouterMsg>, job: RecordJob, inspection: Result<Inspection, InspectError>) {
    if let Err(RouterMsg::Route { job, .. }) = router.send(RouterMsg::Route { job, inspection }) {
        job.ticket.retry(RetryCause::Restart, "router is restarting");
    }
}

/// A scanned verdict's inspection, once its definitions are named.
async fn named(checked: Checked) -> Result<Inspection, InspectError> {
    Ok(Inspection::Scanned(checked.named().await?))
}

/// A fetcher actor: one worker of the fetch pool.
pub(crate) struct Fetcher;

/// What a fetcher is spawned with.
pub(crate) struct FetcherArguments {
    /// Where objects are fetched from.
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Where bodies are streamed to.
    pub(crate) scan_pool: Arc<Dispatch<ScanJob>>,
    /// Where records go with what was learnt.
    pub(crate) router: StageAddress<RouterMsg>,
    /// Where a verdict waits for its definitions' name, off the fetcher (see `run`).
    pub(crate) naming: TaskTracker,
    /// Objects larger than this are not scanned (`MAX_FILE_SIZE`), unless their policy sets
    /// a limit of its own.
    pub(crate) max_file_size: u64,
    /// Tells the fetch pool when this fetcher is free.
    pub(crate) slot: WorkerSlot<RecordJob>,
    /// Two per clamd session, shared by the fetchers: a streamed object's GET waits for one, a
    /// large one's for two (see [`streamed_object_gate`]).
    pub(crate) streamed_objects: Arc<tokio::sync::Semaphore>,
    /// Bytes of bodies held whole, shared by the fetchers (see [`whole_body_budget`]).
    pub(crate) whole_bodies: Arc<tokio::sync::Semaphore>,
    /// How far the archive guard follows a body held whole.
    pub(crate) guard_limits: GuardLimits,
}

/// Objects up to this size (by the GET's length) are read whole before they wait for a clamd
/// session: at S3's ~100 MB/s a stream would hold the session 10 ms for 1 MiB, about a third
/// of clamd's scan of it (BENCHMARKS.md (e)).
pub(crate) const WHOLE_BODY_BYTES: u64 = 1024 * 1024;

/// The bytes of bodies held whole at once, for `sessions` clamd sessions: four objects of the
/// largest such size waiting per session (enough to keep each busy while the next arrive), and
/// at least 16 MiB; with 4 sessions that is 16 MiB, which keeps a replica's memory within its
/// bound (BENCHMARKS.md, P3). A fetcher whose body does not fit waits for room.
pub fn whole_body_budget(sessions: usize) -> usize {
    (4 * sessions.max(1) * WHOLE_BODY_BYTES as usize).max(16 * 1024 * 1024)
}

/// How long a body being read whole may stall between two chunks (a streamed body is bounded
/// by the scanner's clamd timeout instead).
const BODY_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Objects larger than this weigh two in the [`streamed_object_gate`]: their
/// scans are long, and an open response that waits that long for a session may be dropped by S3.
pub(crate) const LARGE_OBJECT_BYTES: u64 = 8 * 1024 * 1024;

/// Permits for the GETs of objects streamed through a session (larger than
/// [`WHOLE_BODY_BYTES`]), for `sessions` clamd sessions: two per session, so one
/// can wait for S3's first byte while another scans; a large object takes two, so at most one
/// per session is open. Small objects are bound by S3's first-byte latency, so many fetchers
/// wait for it at once within the byte budget; a streamed one is bound by its transfer and scan,
/// and each open response holds its connection's buffers (measured: 104 MiB peak for 4 MiB
/// objects with 256 GETs open). The gate does not reserve a session: a streamed object's scan
/// job still queues behind the small ones already waiting for one.
pub(crate) fn streamed_object_gate(sessions: usize) -> usize {
    2 * sessions.max(1)
}

/// A fetcher's state: its arguments (it keeps nothing between records).
pub(crate) struct FetcherState {
    arguments: FetcherArguments,
}

impl FetcherState {
    /// Inspects one record and hands it to the router. A verdict whose definitions a later
    /// VERSION of its session names (clamd's: up to 16 small scans later, or when its scanner
    /// idles) waits for that name in a task of its own: a fetcher waiting there could not fetch
    /// the body that keeps the session busy, and with few fetchers per session every scanner
    /// idled after a scan or two and asked VERSION then (measured on clamd: one VERSION per two
    /// scans with two fetchers per session, 4 KiB objects at 0.91-0.93 of raw clamd's rate).
    async fn run(&self, job: RecordJob) {
        let max_file_size = job.policy.max_file_size.unwrap_or(self.arguments.max_file_size);
        let inspection = match self.inspect(&job.record, max_file_size, &job.trace.span).await {
            Ok(Inspected::Scanned(checked)) if checked.waits_for_name() => {
                let router = self.arguments.router.clone();
                // One per verdict waiting for a name: up to 16 per clamd session, each holding its
                // message's ticket. A session that ends wakes its verdicts' tasks with an error
                // (the message is retried).
                self.arguments
                    .naming
                    .spawn(async move { route(&router, job, named(checked).await) });
                return;
            }
            Ok(Inspected::Scanned(checked)) => named(checked).await,
            Ok(Inspected::Done(inspection)) => Ok(inspection),
            Err(err) => Err(err),
        };
        route(&self.arguments.router, job, inspection);
    }

    async fn inspect(
        &self,
        record: &ObjectRecord,
        max_file_size: u64,
        trace: &Span,
    ) -> Result<Inspected, InspectError> {
        // What a GET holds is taken before it, by the event's size: an open response holds its
        // connection's buffers (up to ~0.4 MiB) whether or not its bytes are read yet, so room
        // taken after the GET left the open GETs unbounded (measured: 173 MiB peak with 256
        // fetchers of 1 MiB objects, 66 MiB with 16). The event's size is only a claim (a
        // forged event could get a small clean object quarantined): the GET's length decides,
        // before any byte is read, and what it needs is fitted then.
        let mut permits = self.permits_for(record.object.size).await;
        let mut asked_again = false;
        let (body, permits) = loop {
            let fetch = tracing::info_span!(
                parent: trace,
                "fetch",
                otel.kind = "client",
                object.content_length = tracing::field::Empty,
                error = tracing::field::Empty,
            );
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
                Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => {
                    return Ok(Inspected::Done(Inspection::Gone))
                }
                Err(err) => return Err(err.into()),
            };
            if body.content_length > max_file_size {
                return Ok(Inspected::Done(Inspection::TooLarge {
                    size: body.content_length,
                }));
            }
            let length = body.content_length;
            match self.fit(permits.take(), length) {
                Some(fitted) => break (body, Some(fitted)),
                // The event misstated the size and what the object needs is not free: end the
                // GET before waiting, then ask again (pinned to the same ETag, same length).
                None if !asked_again => {
                    drop(body);
                    permits = self.permits_for(length).await;
                    asked_again = true;
                }
                // Another length again: only a store that changes an object under one ETag.
                None => break (body, self.permits_for(length).await),
            }
        };
        // Held until scanned and checked: a body read whole is in memory until then.
        let (body, check) = match body.content_length <= WHOLE_BODY_BYTES {
            true => {
                let (body, check) = read_whole(body, self.arguments.guard_limits).await?;
                (body, Some(check))
            }
            false => (body, None),
        };
        let (reply, verdict) = oneshot::channel();
        let job = ScanJob {
            body,
            check,
            reply,
            trace: trace.clone(),
        };
        self.arguments.scan_pool.submit(job);
        let reply = match verdict.await {
            Ok(reply) => reply?,
            Err(_) => return Err(ScanError::Unavailable("scanner stopped mid-scan".into()).into()),
        };
        // The archive check of a body held whole may still read it: its room is held until then,
        // not while the verdict's definitions are named.
        Ok(Inspected::Scanned(reply.checked(permits).await))
    }

    /// What an object of `size` bytes holds from before its GET until it was scanned and
    /// checked: room in the budget of bodies held whole (a permit per byte), else the
    /// [`streamed_object_gate`]'s permits; waits for them. `None` only once a semaphore is closed (never: they live as long
    /// as the fetchers).
    async fn permits_for(&self, size: u64) -> Option<OwnedSemaphorePermit> {
        let (semaphore, count) = self.semaphore_for(size);
        semaphore.acquire_many_owned(count).await.ok()
    }

    /// Which semaphore an object of `size` bytes takes permits from, and how many.
    fn semaphore_for(&self, size: u64) -> (Arc<Semaphore>, u32) {
        match size <= WHOLE_BODY_BYTES {
            // At most WHOLE_BODY_BYTES: fits in a u32.
            true => (self.arguments.whole_bodies.clone(), size as u32),
            false => (
                self.arguments.streamed_objects.clone(),
                if size > LARGE_OBJECT_BYTES { 2 } else { 1 },
            ),
        }
    }

    /// `held` made exactly what an object of `length` bytes needs, without waiting: the excess
    /// goes back, the lack is taken if free. `None` when it is not free (nothing is held then).
    fn fit(&self, held: Option<OwnedSemaphorePermit>, length: u64) -> Option<OwnedSemaphorePermit> {
        let (semaphore, need) = self.semaphore_for(length);
        let Some(mut permit) = held.filter(|permit| Arc::ptr_eq(permit.semaphore(), &semaphore)) else {
            return semaphore.try_acquire_many_owned(need).ok();
        };
        let (have, need) = (permit.num_permits(), need as usize);
        if have > need {
            drop(permit.split(have - need));
        } else if have < need {
            permit.merge(semaphore.try_acquire_many_owned((need - have) as u32).ok()?);
        }
        Some(permit)
    }
}

/// Reads `body` to its end (or one chunk past its length: the scanner then reports the
/// mismatch) and starts its archive check; returns the body to replay into the scanner.
async fn read_whole(body: ObjectBody, limits: GuardLimits) -> Result<(ObjectBody, ArchiveCheck), InspectError> {
    read_whole_within(body, limits, BODY_STALL_TIMEOUT).await
}

async fn read_whole_within(
    mut body: ObjectBody,
    limits: GuardLimits,
    stall_timeout: Duration,
) -> Result<(ObjectBody, ArchiveCheck), InspectError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut read: u64 = 0;
    while read <= body.content_length {
        let next = tokio::time::timeout(stall_timeout, body.chunks.next()).await;
        match next.map_err(|_| ScanError::Timeout("reading the object".into()))? {
            Some(chunk) => {
                let chunk = chunk?;
                read += chunk.len() as u64;
                chunks.push(chunk);
            }
            None => break,
        }
    }
    let check = archive_guard::check_buffered(&chunks, body.content_length, limits);
    let replay = ObjectBody {
        content_length: body.content_length,
        chunks: futures::stream::iter(chunks.into_iter().map(Ok)).boxed(),
    };
    Ok((replay, check))
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
        myself: ActorRef<RecordJob>,
        job: RecordJob,
        state: &mut FetcherState,
    ) -> Result<(), ActorProcessingErr> {
        let mut next = Some(job);
        while let Some(job) = next {
            state.run(job).await;
            next = state.arguments.slot.next_job(&myself);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: GuardLimits = GuardLimits {
        member_limit: 1 << 20,
        inflate_budget: 1 << 24,
    };

    fn body(content_length: u64, chunks: Vec<Result<Bytes, StoreError>>) -> ObjectBody {
        ObjectBody {
            content_length,
            chunks: futures::stream::iter(chunks).boxed(),
        }
    }

    async fn replayed(body: ObjectBody) -> Vec<u8> {
        let mut chunks = body.chunks;
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.next().await {
            bytes.extend_from_slice(&chunk.expect("replayed chunks are whole"));
        }
        bytes
    }

    #[tokio::test]
    async fn a_body_read_whole_replays_its_bytes_and_one_longer_than_announced_is_not_read_on() {
        let chunks = |parts: &[&'static [u8]]| parts.iter().map(|part| Ok(Bytes::from_static(part))).collect();
        let (replay, _) = read_whole(body(6, chunks(&[b"abc", b"def"])), LIMITS).await.unwrap();
        assert_eq!(replay.content_length, 6);
        assert_eq!(replayed(replay).await, b"abcdef");
        // Past its length the reading stops at the first chunk over it: the scanner sees more
        // bytes than announced (and refuses them) without the rest ever being held.
        let (replay, _) = read_whole(body(2, chunks(&[b"abc", b"def", b"ghi"])), LIMITS)
            .await
            .unwrap();
        assert_eq!(replayed(replay).await, b"abc");
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_is_a_failed_fetch() {
        let failed = StoreError::Failed {
            operation: "GetObject",
            bucket: "b".into(),
            key: "k".into(),
            detail: "connection reset".into(),
        };
        let broken = body(6, vec![Ok(Bytes::from_static(b"abc")), Err(failed)]);
        assert!(matches!(read_whole(broken, LIMITS).await, Err(InspectError::Fetch(_))));
    }

    #[tokio::test]
    async fn a_body_that_stalls_is_a_timeout() {
        let stalled = ObjectBody {
            content_length: 6,
            chunks: futures::stream::once(async { Ok(Bytes::from_static(b"abc")) })
                .chain(futures::stream::pending())
                .boxed(),
        };
        let read = read_whole_within(stalled, LIMITS, Duration::from_millis(20)).await;
        assert!(matches!(read, Err(InspectError::Scan(ScanError::Timeout(_)))));
    }
}

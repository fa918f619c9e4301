//! A pool of identical workers behind one address: fetchers and clamd scanners. The pool hands
//! each job to an idle worker or keeps it in a backlog (bounded by the in-flight permits), and
//! supervises its workers: a failed worker is replaced after the shared restart backoff, and the
//! job it held is dropped, which retries its message. A worker that finishes a job takes the
//! next one from the backlog itself, without a round trip through the pool: a clamd session
//! then waits for nothing between two scans.
//!
//! Each job's time in the pool shows in its trace as a `wait` span (`pool` = the worker kind),
//! from submission until a worker takes it.
//!
//! Why not ractor's factory, which also spreads jobs over a pool of workers: the factory
//! restarts its workers on its own, while ours charge the pipeline's one [`RestartBudget`], so
//! that a storm in any pool stops the whole pipeline; its answer to overload is to discard jobs
//! (`DiscardSettings`), while a job of ours carries a ticket that must never be dropped quietly,
//! and overload is prevented upstream, by the poller's permits, before a message is received;
//! and we want each job's wait for a worker as a span of its trace. What remains is small enough
//! to own: a backlog, an idle list and the supervision of the workers, below.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, Message, SpawnErr, SupervisionEvent};

use crate::restart::RestartBudget;
use crate::trace::Traced;

/// What a pool is told.
pub(crate) enum PoolMsg<J> {
    /// A job for any worker.
    Submit(J),
    /// Worker `index` finished its job and takes the next.
    Idle(usize),
    /// Replace worker `index` after its backoff.
    Respawn(usize),
}

/// The two pools, named in logs, spans (`pool`) and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerKind {
    /// The fetch pool's workers.
    Fetcher,
    /// The scan pool's workers.
    Scanner,
}

impl WorkerKind {
    /// The kind's label in logs, spans and metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            WorkerKind::Fetcher => "fetcher",
            WorkerKind::Scanner => "scanner",
        }
    }
}

/// Jobs waiting for a worker, each with its open `wait` span; shared by a pool and its workers.
type Backlog<J> = Arc<Mutex<VecDeque<(J, tracing::Span)>>>;

/// Given to each worker so it can take the next waiting job, or tell its pool it is free.
pub(crate) struct WorkerSlot<J> {
    pool: ActorRef<PoolMsg<J>>,
    backlog: Backlog<J>,
    /// The worker's number in its pool, for logs.
    pub(crate) index: usize,
}

impl<J: Message> WorkerSlot<J> {
    /// The next waiting job, taken after a job ends; `None`: call [`ready`](Self::ready).
    pub(crate) fn next_job(&self) -> Option<J> {
        let waiting = self
            .backlog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front();
        waiting.map(|(job, _wait)| job)
    }

    /// Call once no job is waiting ([`next_job`](Self::next_job) said `None`): the pool hands
    /// this worker the next job submitted.
    pub(crate) fn ready(&self) {
        let _ = self.pool.cast(PoolMsg::Idle(self.index));
    }
}

/// Spawns worker number `slot.index`, linked to the given supervisor (the pool).
pub(crate) type SpawnWorker<J> =
    Arc<dyn Fn(WorkerSlot<J>, ActorCell) -> BoxFuture<'static, Result<ActorRef<J>, SpawnErr>> + Send + Sync>;

/// The pool actor, for jobs of type `J`.
pub(crate) struct Pool<J> {
    _job: std::marker::PhantomData<fn() -> J>,
}

impl<J> Default for Pool<J> {
    fn default() -> Self {
        Self {
            _job: std::marker::PhantomData,
        }
    }
}

/// What a pool is spawned with.
pub(crate) struct PoolArguments<J> {
    /// Which pool this is.
    pub(crate) kind: WorkerKind,
    /// How many workers it keeps.
    pub(crate) size: usize,
    /// How to start (and restart) a worker.
    pub(crate) spawn: SpawnWorker<J>,
    /// The pipeline's restart budget, charged for every worker restart.
    pub(crate) restarts: RestartBudget,
}

/// A pool's workers, which of them are idle, and the jobs waiting for one.
pub(crate) struct PoolState<J> {
    arguments: PoolArguments<J>,
    workers: Vec<Option<ActorRef<J>>>,
    by_id: HashMap<ActorId, usize>,
    idle: VecDeque<usize>,
    /// Jobs waiting for a worker, each with its open `wait` span; workers take from it too.
    backlog: Backlog<J>,
}

impl<J: Message + Traced> PoolState<J> {
    async fn spawn(&mut self, index: usize, pool: &ActorRef<PoolMsg<J>>) -> Result<(), SpawnErr> {
        let slot = WorkerSlot {
            pool: pool.clone(),
            backlog: self.backlog.clone(),
            index,
        };
        let worker = (self.arguments.spawn)(slot, pool.get_cell()).await?;
        self.by_id.insert(worker.get_id(), index);
        self.workers[index] = Some(worker);
        Ok(())
    }

    /// Gives worker `index` the next backlog job, or marks it idle.
    fn worker_free(&mut self, index: usize) {
        let Some(worker) = self.workers[index].clone() else {
            return;
        };
        let waiting = self.lock_backlog().pop_front();
        match waiting {
            Some((job, wait)) => {
                // The worker died between its last job and now: the job goes back to the front,
                // and the worker's replacement will ask for it.
                if let Err(ractor::MessagingErr::SendErr(job)) = worker.cast(job) {
                    self.lock_backlog().push_front((job, wait));
                }
            }
            None => self.idle.push_back(index),
        }
    }

    fn report_occupancy(&self) {
        let idle = self.idle.len();
        let busy = self.workers.iter().flatten().count().saturating_sub(idle);
        crate::metrics::set_pool_occupancy(self.arguments.kind.label(), busy, idle);
    }

    fn submit(&mut self, mut job: J) {
        let wait = tracing::info_span!(parent: job.trace_span(), "wait", pool = self.arguments.kind.label());
        while let Some(index) = self.idle.pop_front() {
            let Some(worker) = self.workers[index].clone() else {
                continue;
            };
            match worker.cast(job) {
                Ok(()) => return,
                Err(ractor::MessagingErr::SendErr(returned)) => job = returned,
                Err(_) => return,
            }
        }
        self.lock_backlog().push_back((job, wait));
    }

    /// A worker that panicked never holds the lock while it panics (it only pops), so a
    /// poisoned backlog is still whole.
    fn lock_backlog(&self) -> std::sync::MutexGuard<'_, VecDeque<(J, tracing::Span)>> {
        self.backlog.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<J: Message + Traced> Actor for Pool<J> {
    type Msg = PoolMsg<J>;
    type State = PoolState<J>;
    type Arguments = PoolArguments<J>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: PoolArguments<J>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let size = arguments.size.max(1);
        let mut state = PoolState {
            arguments,
            workers: (0..size).map(|_| None).collect(),
            by_id: HashMap::new(),
            idle: VecDeque::new(),
            backlog: Arc::default(),
        };
        for index in 0..size {
            state.spawn(index, &myself).await?;
            state.idle.push_back(index);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PoolMsg::Submit(job) => state.submit(job),
            PoolMsg::Idle(index) => state.worker_free(index),
            PoolMsg::Respawn(index) => {
                if let Err(err) = state.spawn(index, &myself).await {
                    tracing::error!(worker = state.arguments.kind.label(), index, error = %err, "worker failed to start");
                    let backoff = state.arguments.restarts.charge()?;
                    myself.send_after(backoff, move || PoolMsg::Respawn(index));
                    return Ok(());
                }
                tracing::info!(worker = state.arguments.kind.label(), index, "worker restarted");
                state.worker_free(index);
            }
        }
        state.report_occupancy();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, reason.unwrap_or_else(|| "stopped".into())),
            _ => return Ok(()),
        };
        let Some(index) = state.by_id.remove(&cell.get_id()) else {
            return Ok(());
        };
        state.workers[index] = None;
        state.idle.retain(|idle| *idle != index);
        // A storm fails the pool, which its own supervisor sees and accounts for.
        let backoff = state.arguments.restarts.charge()?;
        let kind = state.arguments.kind.label();
        tracing::warn!(worker = kind, index, reason = %failure, ?backoff, "worker died; restarting");
        crate::metrics::count_restart(kind);
        myself.send_after(backoff, move || PoolMsg::Respawn(index));
        Ok(())
    }
}

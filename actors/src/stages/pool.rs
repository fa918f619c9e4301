//! A pool of identical workers: fetchers and clamd scanners. Jobs go through the pool's
//! [`Dispatch`], shared by whoever submits, the workers and the pool actor: a job goes straight
//! to an idle worker or waits in the backlog (bounded by the in-flight permits), and a worker
//! that finishes a job takes the next waiting one itself; no job passes through an actor's
//! mailbox on its way, and a clamd session waits for nothing between two scans. The pool actor
//! supervises the workers: a failed worker is replaced after the shared restart backoff, and
//! the job it held is dropped, which retries its message.
//!
//! Each job's time in the backlog shows in its trace as a `wait` span (`pool` = the worker
//! kind), from submission until a worker takes it.
//!
//! Why not ractor's factory, which also spreads jobs over a pool of workers: the factory
//! restarts its workers on its own, while ours charge the pipeline's one [`RestartBudget`], so
//! that a storm in any pool stops the whole pipeline; its answer to overload is to discard jobs
//! (`DiscardSettings`), while a job of ours carries a ticket that must never be dropped quietly,
//! and overload is prevented upstream, by the poller's permits, before a message is received;
//! and we want each job's wait for a worker as a span of its trace. What remains is small enough
//! to own: a backlog, an idle list and the supervision of the workers, below.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, Message, SpawnErr, SupervisionEvent};

use crate::restart::RestartBudget;
use crate::trace::Traced;

/// What a pool actor is told (by itself).
pub(crate) enum PoolMsg {
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

/// A pool's idle workers and waiting jobs, shared by the submitters, the workers and the pool
/// actor. It outlives the pool actor (the supervisor's wiring holds it), so jobs submitted
/// while a pool restarts wait for its new workers.
pub(crate) struct Dispatch<J> {
    kind: WorkerKind,
    size: usize,
    state: Mutex<DispatchState<J>>,
}

struct DispatchState<J> {
    /// Workers waiting for a job, by index.
    idle: VecDeque<(usize, ActorRef<J>)>,
    /// Jobs waiting for a worker, each with its open `wait` span.
    backlog: VecDeque<(J, tracing::Span)>,
}

impl<J: Message + Traced> Dispatch<J> {
    /// The dispatch of a pool of `size` workers of `kind`, none started yet.
    pub(crate) fn new(kind: WorkerKind, size: usize) -> Arc<Self> {
        Arc::new(Self {
            kind,
            size: size.max(1),
            state: Mutex::new(DispatchState {
                idle: VecDeque::new(),
                backlog: VecDeque::new(),
            }),
        })
    }

    /// Hands `job` to an idle worker, or queues it for the next free one.
    pub(crate) fn submit(&self, mut job: J) {
        let wait = tracing::info_span!(parent: job.trace_span(), "wait", pool = self.kind.label());
        let mut state = self.lock();
        while let Some((_, worker)) = state.idle.pop_front() {
            match worker.cast(job) {
                Ok(()) => return self.report(&state),
                // Died since it became idle: its replacement will come for the next job.
                Err(ractor::MessagingErr::SendErr(returned)) => job = returned,
                Err(_) => return,
            }
        }
        state.backlog.push_back((job, wait));
        self.report(&state);
    }

    /// A worker is free (just started, or done with its job): the next waiting job, else it is
    /// idle until a job is submitted. One step under the lock, so no job is left waiting while
    /// a worker idles.
    fn next_or_idle(&self, index: usize, worker: &ActorRef<J>) -> Option<J> {
        let mut state = self.lock();
        let next = match state.backlog.pop_front() {
            Some((job, _wait)) => Some(job),
            None => {
                state.idle.push_back((index, worker.clone()));
                None
            }
        };
        self.report(&state);
        next
    }

    /// Worker `index` is gone: it takes no job any more.
    fn forget(&self, index: usize) {
        let mut state = self.lock();
        state.idle.retain(|(idle, _)| *idle != index);
        self.report(&state);
    }

    fn report(&self, state: &DispatchState<J>) {
        let idle = state.idle.len();
        crate::metrics::set_pool_occupancy(self.kind.label(), self.size.saturating_sub(idle), idle);
    }

    /// Nothing panics while holding the lock (casts and queue operations only), so a poisoned
    /// one still guards whole queues.
    fn lock(&self) -> MutexGuard<'_, DispatchState<J>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Given to each worker: its number and its pool's dispatch.
pub(crate) struct WorkerSlot<J> {
    dispatch: Arc<Dispatch<J>>,
    /// The worker's number in its pool, for logs.
    pub(crate) index: usize,
}

impl<J: Message + Traced> WorkerSlot<J> {
    /// Call after every job, whatever its outcome: the next waiting job, else the worker
    /// (`myself`) is idle and the next job submitted is sent to it.
    pub(crate) fn next_job(&self, myself: &ActorRef<J>) -> Option<J> {
        self.dispatch.next_or_idle(self.index, myself)
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
    /// The pool's dispatch (which pool this is, how many workers it keeps).
    pub(crate) dispatch: Arc<Dispatch<J>>,
    /// How to start (and restart) a worker.
    pub(crate) spawn: SpawnWorker<J>,
    /// The pipeline's restart budget, charged for every worker restart.
    pub(crate) restarts: RestartBudget,
}

/// A pool's workers.
pub(crate) struct PoolState<J> {
    arguments: PoolArguments<J>,
    by_id: HashMap<ActorId, usize>,
}

impl<J: Message + Traced> PoolState<J> {
    /// Starts worker `index`, which takes the next waiting job or becomes idle.
    async fn spawn(&mut self, index: usize, pool: &ActorCell) -> Result<(), SpawnErr> {
        let slot = WorkerSlot {
            dispatch: self.arguments.dispatch.clone(),
            index,
        };
        let worker = (self.arguments.spawn)(slot, pool.clone()).await?;
        self.by_id.insert(worker.get_id(), index);
        if let Some(job) = self.arguments.dispatch.next_or_idle(index, &worker) {
            // Just started, so it takes it; if it died already, its replacement asks again.
            let _ = worker.cast(job);
        }
        Ok(())
    }
}

impl<J: Message + Traced> Actor for Pool<J> {
    type Msg = PoolMsg;
    type State = PoolState<J>;
    type Arguments = PoolArguments<J>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: PoolArguments<J>,
    ) -> Result<Self::State, ActorProcessingErr> {
        // A restarted pool's old workers are gone with it.
        for index in 0..arguments.dispatch.size {
            arguments.dispatch.forget(index);
        }
        let mut state = PoolState {
            arguments,
            by_id: HashMap::new(),
        };
        for index in 0..state.arguments.dispatch.size {
            state.spawn(index, &myself.get_cell()).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let PoolMsg::Respawn(index) = message;
        let kind = state.arguments.dispatch.kind.label();
        if let Err(err) = state.spawn(index, &myself.get_cell()).await {
            tracing::error!(worker = kind, index, error = %err, "worker failed to start");
            let backoff = state.arguments.restarts.charge()?;
            myself.send_after(backoff, move || PoolMsg::Respawn(index));
            return Ok(());
        }
        tracing::info!(worker = kind, index, "worker restarted");
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
        state.arguments.dispatch.forget(index);
        // A storm fails the pool, which its own supervisor sees and accounts for.
        let backoff = state.arguments.restarts.charge()?;
        let kind = state.arguments.dispatch.kind.label();
        tracing::warn!(worker = kind, index, reason = %failure, ?backoff, "worker died; restarting");
        crate::metrics::count_restart(kind);
        myself.send_after(backoff, move || PoolMsg::Respawn(index));
        Ok(())
    }
}

//! The root supervisor and the pipeline's wiring: it spawns every stage linked to itself, points
//! the stage's [`StageAddress`] at it, and restarts a stage that failed or stopped unexpectedly
//! after the shared restart backoff. A restart storm stops the supervisor and reports the
//! pipeline as failed, so the process exits non-zero and its orchestrator starts a fresh one.
//! During shutdown nothing is restarted.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::address::StageAddress;
use crate::archive_guard::GuardLimits;
use crate::backoff::Backoff;
use crate::config::PipelineConfig;
use crate::definitions::DefinitionsPolicy;
use crate::inflight::InflightRegistry;
use crate::ports::PipelinePorts;
use crate::restart::RestartBudget;
use crate::shutdown::Shutdown;
use crate::stages::acker::{Acker, AckerArguments, AckerMsg};
use crate::stages::fetcher::{streamed_object_gate, whole_body_budget, Fetcher, FetcherArguments};
use crate::stages::forwarder::{Forwarder, ForwarderArguments, ForwarderMsg};
use crate::stages::heartbeat::{Heartbeat, HeartbeatArguments, HeartbeatMsg};
use crate::stages::poller::{Poller, PollerArguments};
use crate::stages::pool::{Dispatch, Pool, PoolArguments, SpawnWorker, WorkerKind};
use crate::stages::publisher::{Publisher, PublisherArguments, PublisherMsg};
use crate::stages::quarantiner::{Quarantiner, QuarantinerArguments, QuarantinerMsg};
use crate::stages::router::{Router, RouterArguments, RouterMsg};
use crate::stages::scanner::{ScanJob, Scanner, ScannerArguments};
use crate::stages::RecordJob;
use crate::ticket::RetryCause;

/// Stable addresses of the stages that others send to.
#[derive(Clone)]
pub(crate) struct StageAddresses {
    /// Settles messages; releases the unfinished ones at shutdown.
    pub(crate) acker: StageAddress<AckerMsg>,
    /// Publishes result events, then hands settlements to the acker: the tickets' outlet.
    pub(crate) publisher: StageAddress<PublisherMsg>,
    /// Extends the visibility of messages in flight; stopped before the shutdown release.
    pub(crate) heartbeat: StageAddress<HeartbeatMsg>,
    /// Sends clean records and rejected events.
    pub(crate) forwarder: StageAddress<ForwarderMsg>,
    /// Moves what is not clean.
    pub(crate) quarantiner: StageAddress<QuarantinerMsg>,
    /// Decides between the two.
    pub(crate) router: StageAddress<RouterMsg>,
    /// The clamd sessions (the pool's dispatch: it outlives the pool actor).
    pub(crate) scan_pool: Arc<Dispatch<ScanJob>>,
    /// The S3 GETs (likewise).
    pub(crate) fetch_pool: Arc<Dispatch<RecordJob>>,
}

impl StageAddresses {
    /// Addresses with no actor behind them yet, and the pools' dispatches for `config`'s sizes.
    pub(crate) fn new(config: &PipelineConfig) -> Self {
        Self {
            acker: StageAddress::new("acker"),
            publisher: StageAddress::new("publisher"),
            heartbeat: StageAddress::new("heartbeat"),
            forwarder: StageAddress::new("forwarder"),
            quarantiner: StageAddress::new("quarantiner"),
            router: StageAddress::new("router"),
            scan_pool: Dispatch::new(WorkerKind::Scanner, config.scanner_connections),
            fetch_pool: Dispatch::new(WorkerKind::Fetcher, config.fetch_concurrency),
        }
    }
}

/// The wiring: everything the supervisor needs to (re)build a stage.
pub(crate) struct SupervisorArguments {
    /// Tuning and bucket names.
    pub(crate) config: PipelineConfig,
    /// The adapters.
    pub(crate) ports: PipelinePorts,
    /// Where each stage is reached.
    pub(crate) addresses: StageAddresses,
    /// The in-flight permits the poller takes and settlements return.
    pub(crate) permits: Arc<Semaphore>,
    /// The messages in flight: the poller registers them, settling removes them, the heartbeat
    /// extends them. Outlives every stage, so a restart loses none.
    pub(crate) registry: Arc<InflightRegistry>,
    /// Shared by every supervisor of the pipeline: a storm anywhere stops everything.
    pub(crate) restarts: RestartBudget,
    /// Once requested, nothing is restarted and the poller stops receiving.
    pub(crate) shutdown: Shutdown,
    /// Set when a restart storm stopped the pipeline.
    pub(crate) fatal: watch::Sender<Option<String>>,
    /// The tasks in which verdicts wait for their definitions' name (see the fetcher): the
    /// shutdown waits for them once every actor stopped.
    pub(crate) naming: TaskTracker,
}

/// The stages the root supervisor owns, in start order: consumers before producers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Stage {
    Acker,
    Publisher,
    Heartbeat,
    Forwarder,
    Quarantiner,
    Router,
    ScanPool,
    FetchPool,
    Poller,
}

impl Stage {
    /// Every stage, consumers before producers, so no stage starts sending to one not there.
    pub(crate) const START_ORDER: [Stage; 9] = [
        Stage::Acker,
        Stage::Publisher,
        Stage::Heartbeat,
        Stage::Forwarder,
        Stage::Quarantiner,
        Stage::Router,
        Stage::ScanPool,
        Stage::FetchPool,
        Stage::Poller,
    ];

    /// The stage's label in the restarts metric.
    fn label(self) -> &'static str {
        match self {
            Stage::Acker => "acker",
            Stage::Publisher => "publisher",
            Stage::Heartbeat => "heartbeat",
            Stage::Forwarder => "forwarder",
            Stage::Quarantiner => "quarantiner",
            Stage::Router => "router",
            Stage::ScanPool => "scanpool",
            Stage::FetchPool => "fetchpool",
            Stage::Poller => "poller",
        }
    }
}

/// What the supervisor is told (by itself, after a restart's backoff).
pub(crate) enum SupervisorMsg {
    /// Start the stage again.
    Respawn(Stage),
}

/// The root supervisor actor.
pub(crate) struct Supervisor;

/// The supervisor's state: the wiring, and which running actor is which stage.
pub(crate) struct SupervisorState {
    wiring: Arc<SupervisorArguments>,
    stages: HashMap<ActorId, Stage>,
}

impl SupervisorState {
    async fn spawn(&mut self, stage: Stage, supervisor: ActorCell) -> Result<(), SpawnErr> {
        let w = &self.wiring;
        let id = match stage {
            Stage::Acker => {
                let args = AckerArguments {
                    queue: w.ports.inbound.clone(),
                    registry: w.registry.clone(),
                    release_backoff: Backoff::new(w.config.retry_base, w.config.retry_max),
                    linger: w.config.batch_linger,
                };
                let (actor, _) = Actor::spawn_linked(None, Acker, args, supervisor).await?;
                w.addresses.acker.set(actor.clone());
                actor.get_id()
            }
            Stage::Publisher => {
                let args = PublisherArguments {
                    sinks: w.ports.results.clone(),
                    acker: w.addresses.acker.clone(),
                    registry: w.registry.clone(),
                    linger: w.config.batch_linger,
                };
                let (actor, _) = Actor::spawn_linked(None, Publisher, args, supervisor).await?;
                w.addresses.publisher.set(actor.clone());
                actor.get_id()
            }
            Stage::Heartbeat => {
                let args = HeartbeatArguments {
                    queue: w.ports.inbound.clone(),
                    registry: w.registry.clone(),
                    visibility_timeout: w.config.visibility_timeout,
                };
                let (actor, _) = Actor::spawn_linked(None, Heartbeat, args, supervisor).await?;
                w.addresses.heartbeat.set(actor.clone());
                actor.get_id()
            }
            Stage::Forwarder => {
                let args = ForwarderArguments {
                    outbound: w.ports.outbound.clone(),
                    rejected: w.ports.rejected.clone(),
                    linger: w.config.batch_linger,
                };
                let (actor, _) = Actor::spawn_linked(None, Forwarder, args, supervisor).await?;
                w.addresses.forwarder.set(actor.clone());
                actor.get_id()
            }
            Stage::Quarantiner => {
                let args = QuarantinerArguments {
                    store: w.ports.store.clone(),
                    notifier: w.ports.notifier.clone(),
                    kms_key_id: w.config.quarantine_kms_key_id.clone(),
                    forwarder: w.addresses.forwarder.clone(),
                };
                let (actor, _) = Actor::spawn_linked(None, Quarantiner, args, supervisor).await?;
                w.addresses.quarantiner.set(actor.clone());
                actor.get_id()
            }
            Stage::Router => {
                let args = RouterArguments {
                    forwarder: w.addresses.forwarder.clone(),
                    quarantiner: w.addresses.quarantiner.clone(),
                    definitions: DefinitionsPolicy {
                        max_age: w.config.definitions_max_age,
                    },
                    allow_list: w.ports.allow_list.clone(),
                };
                let (actor, _) = Actor::spawn_linked(None, Router, args, supervisor).await?;
                w.addresses.router.set(actor.clone());
                actor.get_id()
            }
            Stage::ScanPool => {
                let engine = w.ports.scanner.clone();
                let guard_limits = GuardLimits {
                    member_limit: w.config.archive_member_limit,
                    inflate_budget: w.config.archive_inflate_budget,
                };
                let spawn: SpawnWorker<ScanJob> = Arc::new(move |slot, pool| {
                    let args = ScannerArguments {
                        engine: engine.clone(),
                        guard_limits,
                        slot,
                    };
                    Box::pin(async move { Ok(Actor::spawn_linked(None, Scanner, args, pool).await?.0) })
                });
                let args = PoolArguments {
                    dispatch: w.addresses.scan_pool.clone(),
                    spawn,
                    restarts: w.restarts.clone(),
                };
                let (actor, _) = Actor::spawn_linked(None, Pool::default(), args, supervisor).await?;
                actor.get_id()
            }
            Stage::FetchPool => {
                let wiring = Arc::clone(w);
                let streamed_objects = Arc::new(Semaphore::new(streamed_object_gate(w.config.scanner_connections)));
                let whole_bodies = Arc::new(Semaphore::new(whole_body_budget(w.config.scanner_connections)));
                let guard_limits = GuardLimits {
                    member_limit: w.config.archive_member_limit,
                    inflate_budget: w.config.archive_inflate_budget,
                };
                let spawn: SpawnWorker<RecordJob> = Arc::new(move |slot, pool| {
                    let args = FetcherArguments {
                        store: wiring.ports.store.clone(),
                        scan_pool: wiring.addresses.scan_pool.clone(),
                        router: wiring.addresses.router.clone(),
                        naming: wiring.naming.clone(),
                        max_file_size: wiring.config.max_file_size,
                        slot,
                        streamed_objects: streamed_objects.clone(),
                        whole_bodies: whole_bodies.clone(),
                        guard_limits,
                    };
                    Box::pin(async move { Ok(Actor::spawn_linked(None, Fetcher, args, pool).await?.0) })
                });
                let args = PoolArguments {
                    dispatch: w.addresses.fetch_pool.clone(),
                    spawn,
                    restarts: w.restarts.clone(),
                };
                let (actor, _) = Actor::spawn_linked(None, Pool::default(), args, supervisor).await?;
                actor.get_id()
            }
            Stage::Poller => {
                let args = PollerArguments {
                    queue: w.ports.inbound.clone(),
                    policies: Arc::new(w.config.policies.clone()),
                    permits: w.permits.clone(),
                    max_in_flight: w.config.max_in_flight,
                    receive_batch: w.config.receive_batch,
                    fetch_pool: w.addresses.fetch_pool.clone(),
                    forwarder: w.addresses.forwarder.clone(),
                    publisher: w.addresses.publisher.clone(),
                    registry: w.registry.clone(),
                    shutdown: w.shutdown.clone(),
                    gate: w.ports.receive_gate.clone(),
                };
                let (actor, _) = Actor::spawn_linked(None, Poller, args, supervisor).await?;
                actor.get_id()
            }
        };
        self.stages.insert(id, stage);
        Ok(())
    }

    fn shutting_down(&self) -> bool {
        self.wiring.shutdown.is_requested()
    }

    /// Schedules a restart of `stage`, or gives up on a storm.
    fn restart_later(&self, myself: &ActorRef<SupervisorMsg>, stage: Stage) -> Result<(), ActorProcessingErr> {
        match self.wiring.restarts.charge() {
            Ok(backoff) => {
                myself.send_after(backoff, move || SupervisorMsg::Respawn(stage));
                Ok(())
            }
            Err(storm) => {
                tracing::error!(?stage, error = %storm, "giving up");
                let _ = self.wiring.fatal.send(Some(format!("{storm} (last: {stage:?})")));
                Err(storm.into())
            }
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<SupervisorArguments>;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        wiring: Arc<SupervisorArguments>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut state = SupervisorState {
            wiring,
            stages: HashMap::new(),
        };
        // Every restart and retry series exists from the start, at 0, so that `increase()` and
        // `rate()` (deploy/prometheus/alerts.yaml) see the first one.
        let actors = Stage::START_ORDER
            .map(Stage::label)
            .into_iter()
            .chain([WorkerKind::Fetcher.label(), WorkerKind::Scanner.label()]);
        crate::metrics::zero_series(actors, RetryCause::ALL.map(RetryCause::label));
        for stage in Stage::START_ORDER {
            state.spawn(stage, myself.get_cell()).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisorMsg::Respawn(stage) = message;
        if state.shutting_down() {
            return Ok(());
        }
        match state.spawn(stage, myself.get_cell()).await {
            Ok(()) => tracing::info!(?stage, "stage restarted"),
            Err(err) => {
                tracing::error!(?stage, error = %err, "stage failed to start");
                state.restart_later(&myself, stage)?;
            }
        }
        Ok(())
    }

    // Overrides ractor's default, which stops the supervisor when any child stops.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, reason.unwrap_or_else(|| "stopped".into())),
            _ => return Ok(()),
        };
        let Some(stage) = state.stages.remove(&cell.get_id()) else {
            return Ok(());
        };
        if state.shutting_down() {
            return Ok(());
        }
        tracing::warn!(?stage, reason = %why, "stage died; restarting");
        crate::metrics::count_restart(stage.label());
        state.restart_later(&myself, stage)
    }
}

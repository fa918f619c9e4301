//! The root supervisor: spawns every stage linked to itself, points the stage's [`Address`] at
//! it, and restarts a stage that failed or stopped unexpectedly after the shared restart backoff.
//! A restart storm stops the supervisor and reports the pipeline as failed, so the process exits
//! non-zero and its orchestrator starts a fresh one. During shutdown nothing is restarted.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};

use super::acker::{Acker, AckerArgs};
use super::fetcher::{Fetcher, FetcherArgs};
use super::forwarder::{Forwarder, ForwarderArgs};
use super::poller::{Poller, PollerArgs};
use super::pool::{Pool, PoolArgs, SpawnWorker};
use super::quarantiner::{Quarantiner, QuarantinerArgs};
use super::router::{Router, RouterArgs};
use super::scanner::{ScanJob, Scanner, ScannerArgs};
use crate::model::RecordJob;
use crate::pipeline::Wiring;

/// The stages the root supervisor owns, in start order: consumers before producers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Acker,
    Forwarder,
    Quarantiner,
    Router,
    ScanPool,
    FetchPool,
    Poller,
}

impl Stage {
    pub const START_ORDER: [Stage; 7] = [
        Stage::Acker,
        Stage::Forwarder,
        Stage::Quarantiner,
        Stage::Router,
        Stage::ScanPool,
        Stage::FetchPool,
        Stage::Poller,
    ];
}

pub enum SupervisorMsg {
    Respawn(Stage),
}

pub struct Supervisor;

pub struct SupervisorState {
    wiring: Arc<Wiring>,
    stages: HashMap<ActorId, Stage>,
}

impl SupervisorState {
    async fn spawn(&mut self, stage: Stage, supervisor: ActorCell) -> Result<(), SpawnErr> {
        let w = &self.wiring;
        let id = match stage {
            Stage::Acker => {
                let args = AckerArgs {
                    queue: w.ports.inbound.clone(),
                    visibility_timeout: w.config.visibility_timeout,
                    retry_base: w.config.retry_base,
                    retry_max: w.config.retry_max,
                    linger: w.config.batch_linger,
                };
                let (actor, _) = Actor::spawn_linked(None, Acker, args, supervisor).await?;
                w.addresses.acker.set(actor.clone());
                actor.get_id()
            }
            Stage::Forwarder => {
                let args = ForwarderArgs {
                    outbound: w.ports.outbound.clone(),
                    rejected: w.ports.rejected.clone(),
                    linger: w.config.batch_linger,
                };
                let (actor, _) = Actor::spawn_linked(None, Forwarder, args, supervisor).await?;
                w.addresses.forwarder.set(actor.clone());
                actor.get_id()
            }
            Stage::Quarantiner => {
                let args = QuarantinerArgs {
                    store: w.ports.store.clone(),
                    notifier: w.ports.notifier.clone(),
                    quarantine_bucket: w.config.quarantine_bucket.clone(),
                };
                let (actor, _) = Actor::spawn_linked(None, Quarantiner, args, supervisor).await?;
                w.addresses.quarantiner.set(actor.clone());
                actor.get_id()
            }
            Stage::Router => {
                let args = RouterArgs {
                    forwarder: w.addresses.forwarder.clone(),
                    quarantiner: w.addresses.quarantiner.clone(),
                };
                let (actor, _) = Actor::spawn_linked(None, Router, args, supervisor).await?;
                w.addresses.router.set(actor.clone());
                actor.get_id()
            }
            Stage::ScanPool => {
                let engine = w.ports.scanner.clone();
                let archive_member_limit = w.config.archive_member_limit;
                let spawn: SpawnWorker<ScanJob> = Arc::new(move |slot, pool| {
                    let args = ScannerArgs {
                        engine: engine.clone(),
                        archive_member_limit,
                        slot,
                    };
                    Box::pin(async move { Ok(Actor::spawn_linked(None, Scanner, args, pool).await?.0) })
                });
                let args = PoolArgs {
                    worker_kind: "scanner",
                    size: w.config.scanner_connections,
                    spawn,
                    restarts: w.restarts.clone(),
                };
                let (actor, _) = Actor::spawn_linked(None, Pool::default(), args, supervisor).await?;
                w.addresses.scan_pool.set(actor.clone());
                actor.get_id()
            }
            Stage::FetchPool => {
                let wiring = Arc::clone(w);
                let spawn: SpawnWorker<RecordJob> = Arc::new(move |slot, pool| {
                    let args = FetcherArgs {
                        store: wiring.ports.store.clone(),
                        scan_pool: wiring.addresses.scan_pool.clone(),
                        router: wiring.addresses.router.clone(),
                        max_file_size: wiring.config.max_file_size,
                        slot,
                    };
                    Box::pin(async move { Ok(Actor::spawn_linked(None, Fetcher, args, pool).await?.0) })
                });
                let args = PoolArgs {
                    worker_kind: "fetcher",
                    size: w.config.fetch_concurrency,
                    spawn,
                    restarts: w.restarts.clone(),
                };
                let (actor, _) = Actor::spawn_linked(None, Pool::default(), args, supervisor).await?;
                w.addresses.fetch_pool.set(actor.clone());
                actor.get_id()
            }
            Stage::Poller => {
                let args = PollerArgs {
                    queue: w.ports.inbound.clone(),
                    unprocessed_bucket: w.config.unprocessed_bucket.clone(),
                    permits: w.permits.clone(),
                    max_in_flight: w.config.max_in_flight,
                    receive_batch: w.config.receive_batch,
                    fetch_pool: w.addresses.fetch_pool.clone(),
                    forwarder: w.addresses.forwarder.clone(),
                    acker: w.addresses.acker.clone(),
                    shutdown: w.shutdown.clone(),
                };
                let (actor, _) = Actor::spawn_linked(None, Poller, args, supervisor).await?;
                actor.get_id()
            }
        };
        self.stages.insert(id, stage);
        Ok(())
    }

    fn shutting_down(&self) -> bool {
        *self.wiring.shutdown.borrow()
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
    type Arguments = Arc<Wiring>;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        wiring: Arc<Wiring>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut state = SupervisorState {
            wiring,
            stages: HashMap::new(),
        };
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
        metrics::counter!(crate::metrics::RESTARTS, "actor" => format!("{stage:?}").to_lowercase()).increment(1);
        state.restart_later(&myself, stage)
    }
}

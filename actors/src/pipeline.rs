//! The pipeline's public façade (like mini-redis' `server::run`): [`Pipeline::start`] hands the
//! ports and the configuration to the root [`supervisor`](crate::supervisor), which wires the
//! actor tree; [`Pipeline::shutdown`] stops receiving, lets in-flight work finish within a grace
//! period and hands back what did not; [`Pipeline::failed`] resolves if the pipeline gives up.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::address::StageAddress;
use crate::config::PipelineConfig;
use crate::inflight::InflightRegistry;
use crate::ports::PipelinePorts;
use crate::restart::RestartBudget;
use crate::shutdown::{self, ShutdownTrigger};
use crate::stages::acker::AckerMsg;
use crate::stages::heartbeat::HeartbeatMsg;
use crate::stages::poller::MAX_RECEIVE_BATCH;
use crate::supervisor::{StageAddresses, Supervisor, SupervisorArguments, SupervisorMsg};

/// What a shutdown achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every in-flight message was settled within the grace period.
    pub drained: bool,
    /// Unfinished messages made visible again at once.
    pub released: usize,
}

/// A running pipeline.
pub struct Pipeline {
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_done: JoinHandle<()>,
    /// The in-flight permits, all of them back once every message is settled.
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    /// Releases what is unfinished when the grace period ends.
    acker: StageAddress<AckerMsg>,
    /// Stopped before that release, so that no extension of it is still on its way.
    heartbeat: StageAddress<HeartbeatMsg>,
    shutdown: ShutdownTrigger,
    fatal: watch::Receiver<Option<String>>,
    /// Verdicts waiting for their definitions' name, off the fetchers.
    naming: TaskTracker,
}

impl Pipeline {
    /// Starts the supervised actor tree on `ports`; it receives at once.
    pub async fn start(config: PipelineConfig, ports: PipelinePorts) -> Result<Pipeline, SpawnErr> {
        let mut config = config;
        config.receive_batch = config.receive_batch.clamp(1, MAX_RECEIVE_BATCH);
        config.max_in_flight = config.max_in_flight.max(1);
        let (shutdown, listener) = shutdown::channel();
        let (fatal_tx, fatal) = watch::channel(None);
        let permits = Arc::new(Semaphore::new(config.max_in_flight));
        let addresses = StageAddresses::new(&config);
        let acker = addresses.acker.clone();
        let heartbeat = addresses.heartbeat.clone();
        let max_in_flight = config.max_in_flight;
        let naming = TaskTracker::new();
        let wiring = Arc::new(SupervisorArguments {
            permits: permits.clone(),
            registry: Arc::new(InflightRegistry::default()),
            restarts: RestartBudget::new(config.restart_policy.clone()),
            config,
            ports,
            addresses,
            shutdown: listener,
            fatal: fatal_tx,
            naming: naming.clone(),
        });
        let (supervisor, supervisor_done) = Actor::spawn(None, Supervisor, wiring).await?;
        Ok(Pipeline {
            supervisor,
            supervisor_done,
            permits,
            max_in_flight,
            acker,
            heartbeat,
            shutdown,
            fatal,
            naming,
        })
    }

    /// Messages currently in flight.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.permits.available_permits()
    }

    /// Resolves when the pipeline gave up, with the reason: a restart storm, or (should its
    /// own code ever fail) the root supervisor stopping, which leaves nothing running.
    pub async fn failed(&mut self) -> String {
        match self.fatal.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the root supervisor stopped".to_owned(),
        }
    }

    /// Stops receiving, waits up to `grace` for in-flight messages to settle, stops extending
    /// and releases the rest (visibility 0), and stops every actor.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        self.shutdown.trigger();
        let drained = tokio::time::timeout(grace, self.permits.acquire_many(self.max_in_flight as u32))
            .await
            .is_ok();
        let mut released = 0;
        if !drained {
            if let Some(heartbeat) = self.heartbeat.get() {
                let _ = heartbeat
                    .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(5)))
                    .await;
            }
            let (reply, count) = oneshot::channel();
            if self.acker.send(AckerMsg::ReleaseAll(reply)).is_ok() {
                released = tokio::time::timeout(Duration::from_secs(10), count)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
            }
        }
        let actors = descendants(self.supervisor.get_cell());
        self.supervisor.stop(Some("shutdown".into()));
        let _ = self.supervisor_done.await;
        // Whatever still runs (a scan stuck past the grace period) is killed, parents before
        // children so no pool respawns a worker: its job, ticket and spans end now, before the
        // process flushes its traces, not when the runtime is torn down.
        for actor in actors {
            let _ = actor.kill_and_wait(Some(Duration::from_secs(5))).await;
        }
        // A verdict still waiting for its name lost its session with its scanner: its task
        // retries the message and ends its spans now, too.
        self.naming.close();
        if tokio::time::timeout(Duration::from_secs(5), self.naming.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                waiting = self.naming.len(),
                "verdicts still waiting for their definitions' name at shutdown; their messages \
                 come back after their visibility timeout"
            );
        }
        ShutdownReport { drained, released }
    }
}

/// Every actor under `root`, parents before their children.
fn descendants(root: ActorCell) -> Vec<ActorCell> {
    let mut found = root.get_children();
    let mut next = 0;
    while next < found.len() {
        let children = found[next].get_children();
        found.extend(children);
        next += 1;
    }
    found
}

//! Starting and stopping a pipeline. [`Pipeline::start`] wires the ports into a supervised actor
//! tree; [`Pipeline::shutdown`] stops receiving, lets in-flight work finish within a grace period
//! and hands back what did not.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::actors::acker::AckerMsg;
use crate::actors::forwarder::ForwarderMsg;
use crate::actors::pool::PoolMsg;
use crate::actors::quarantiner::QuarantinerMsg;
use crate::actors::router::RouterMsg;
use crate::actors::scanner::ScanJob;
use crate::actors::supervisor::{Supervisor, SupervisorMsg};
use crate::model::RecordJob;
use crate::ports::{InboundQueue, MessageSink, Notifier, ObjectStore, ScanEngine};
use crate::restart::{RestartBudget, RestartPolicy};

/// The pipeline's tuning and the names of its buckets. Built by the binary from its config.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub unprocessed_bucket: String,
    pub quarantine_bucket: String,
    /// Bytes; larger objects are quarantined as "file too large" without being scanned.
    pub max_file_size: u64,
    /// Bytes; clamd's `MaxFileSize`. An archive member larger than this is skipped by clamd
    /// without an alert, so the [`ArchiveGuard`](crate::archive_guard) makes such an object
    /// unscannable instead of clean.
    pub archive_member_limit: u64,
    /// SQS messages in the pipeline at once; bounds every queue inside it.
    pub max_in_flight: usize,
    /// Concurrent S3 GETs (each streams into a scanner).
    pub fetch_concurrency: usize,
    /// Pooled clamd connections, i.e. concurrent scans.
    pub scanner_connections: usize,
    /// Messages per receive, 1 to 10.
    pub receive_batch: usize,
    /// How long a finished message may wait for others to share its `SendMessageBatch` and
    /// `DeleteMessageBatch` call.
    pub batch_linger: Duration,
    /// What the inbound queue receives with and the heartbeat extends to.
    pub visibility_timeout: Duration,
    /// Backoff for a released message: doubles with each receive, capped at `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub restart_policy: RestartPolicy,
}

impl PipelineConfig {
    /// Defaults for everything but the buckets.
    pub fn new(unprocessed_bucket: impl Into<String>, quarantine_bucket: impl Into<String>) -> Self {
        Self {
            unprocessed_bucket: unprocessed_bucket.into(),
            quarantine_bucket: quarantine_bucket.into(),
            max_file_size: 400 * 1024 * 1024,
            archive_member_limit: 25 * 1024 * 1024,
            max_in_flight: 64,
            fetch_concurrency: 6,
            scanner_connections: 4,
            receive_batch: 10,
            batch_linger: Duration::from_millis(250),
            visibility_timeout: Duration::from_secs(120),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            restart_policy: RestartPolicy::default(),
        }
    }
}

/// The adapters the pipeline talks through.
#[derive(Clone)]
pub struct PipelinePorts {
    pub inbound: Arc<dyn InboundQueue>,
    pub outbound: Arc<dyn MessageSink>,
    /// Where the raw bodies of rejected events go, if anywhere.
    pub rejected: Option<Arc<dyn MessageSink>>,
    pub store: Arc<dyn ObjectStore>,
    pub notifier: Arc<dyn Notifier>,
    pub scanner: Arc<dyn ScanEngine>,
}

/// Stable addresses of the stages that others send to.
#[derive(Clone)]
pub struct Addresses {
    pub acker: crate::stage::Address<AckerMsg>,
    pub forwarder: crate::stage::Address<ForwarderMsg>,
    pub quarantiner: crate::stage::Address<QuarantinerMsg>,
    pub router: crate::stage::Address<RouterMsg>,
    pub scan_pool: crate::stage::Address<PoolMsg<ScanJob>>,
    pub fetch_pool: crate::stage::Address<PoolMsg<RecordJob>>,
}

/// Everything the supervisor needs to (re)build a stage.
pub struct Wiring {
    pub config: PipelineConfig,
    pub ports: PipelinePorts,
    pub addresses: Addresses,
    pub permits: Arc<Semaphore>,
    pub restarts: RestartBudget,
    pub shutdown: watch::Receiver<bool>,
    /// Set when a restart storm stopped the pipeline.
    pub fatal: watch::Sender<Option<String>>,
}

/// What a shutdown achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every in-flight message was settled within the grace period.
    pub drained: bool,
    /// Unfinished messages made visible again at once.
    pub released: usize,
}

pub struct Pipeline {
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_done: JoinHandle<()>,
    wiring: Arc<Wiring>,
    shutdown: watch::Sender<bool>,
    fatal: watch::Receiver<Option<String>>,
}

impl Pipeline {
    pub async fn start(config: PipelineConfig, ports: PipelinePorts) -> Result<Pipeline, SpawnErr> {
        let mut config = config;
        config.receive_batch = config.receive_batch.clamp(1, crate::actors::poller::MAX_RECEIVE_BATCH);
        config.max_in_flight = config.max_in_flight.max(1);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (fatal_tx, fatal) = watch::channel(None);
        let wiring = Arc::new(Wiring {
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            restarts: RestartBudget::new(config.restart_policy.clone()),
            config,
            ports,
            addresses: Addresses {
                acker: crate::stage::Address::new("acker"),
                forwarder: crate::stage::Address::new("forwarder"),
                quarantiner: crate::stage::Address::new("quarantiner"),
                router: crate::stage::Address::new("router"),
                scan_pool: crate::stage::Address::new("scan pool"),
                fetch_pool: crate::stage::Address::new("fetch pool"),
            },
            shutdown: shutdown_rx,
            fatal: fatal_tx,
        });
        let (supervisor, supervisor_done) = Actor::spawn(None, Supervisor, Arc::clone(&wiring)).await?;
        Ok(Pipeline {
            supervisor,
            supervisor_done,
            wiring,
            shutdown,
            fatal,
        })
    }

    /// Messages currently in flight.
    pub fn in_flight(&self) -> usize {
        self.wiring.config.max_in_flight - self.wiring.permits.available_permits()
    }

    /// Resolves when the pipeline gave up (a restart storm), with the reason.
    pub async fn failed(&mut self) -> String {
        match self.fatal.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "pipeline stopped".to_owned(),
        }
    }

    /// Stops receiving, waits up to `grace` for in-flight messages to settle, releases the rest
    /// (visibility 0) and stops every actor.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        let _ = self.shutdown.send(true);
        let max_in_flight = self.wiring.config.max_in_flight as u32;
        let drained = tokio::time::timeout(grace, self.wiring.permits.acquire_many(max_in_flight))
            .await
            .is_ok();
        let mut released = 0;
        if !drained {
            let (reply, count) = oneshot::channel();
            if self.wiring.addresses.acker.send(AckerMsg::ReleaseAll(reply)).is_ok() {
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

//! The operations endpoint on `OPS_ADDRESS`: `/metrics` in Prometheus' text format (see
//! `avscan_actors::metrics` for what is measured), `/healthz` answers while the process and its
//! pipeline are alive (also while it starts or drains, so that an orchestrator does not kill a
//! slow start), `/readyz` only while the pipeline runs, clamd's definitions are accepted
//! (`DEFINITIONS_MAX_AGE`, see `definitions.rs`), clamd answers PING and the inbound and outbound
//! queues resolve — checked live on each request, each within two seconds, and every
//! `DEFINITIONS_CHECK_INTERVAL` in the background for the `avscan_ready` gauge (1 or 0).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use avscan_actors::definitions::ReceiveGate;

use crate::{aws, clamd};

/// 1 while `/readyz` would answer 200, 0 otherwise, as of its last evaluation.
const READY: &str = "avscan_ready";

/// Where the process is in its life; `/healthz` and `/readyz` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Running = 1,
    Stopping = 2,
}

/// What the probes look at.
pub struct Probes {
    phase: AtomicU8,
    /// Renders the metrics recorded so far.
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    clamd: clamd::Clamd,
    sqs: aws_sdk_sqs::Client,
    /// The inbound and outbound queues, by name or URL, as configured.
    queues: Vec<String>,
    /// Closed while clamd's definitions are refused.
    definitions: ReceiveGate,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Probes {
    pub fn new(
        metrics: metrics_exporter_prometheus::PrometheusHandle,
        clamd: clamd::Clamd,
        sqs: aws_sdk_sqs::Client,
        queues: Vec<String>,
        definitions: ReceiveGate,
    ) -> Arc<Self> {
        metrics::describe_gauge!(READY, "1 while /readyz answers 200 (as of its last evaluation)");
        Arc::new(Self {
            phase: AtomicU8::new(Phase::Starting as u8),
            metrics,
            clamd,
            sqs,
            queues,
            definitions,
        })
    }

    /// Evaluates readiness every `interval` for the `avscan_ready` gauge.
    pub fn spawn_readiness_gauge(self: &Arc<Self>, interval: Duration) {
        let probes = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                let _ = probes.ready().await;
            }
        });
    }

    pub fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            0 => Phase::Starting,
            1 => Phase::Running,
            _ => Phase::Stopping,
        }
    }

    /// `Ok` with a summary, or `Err` naming the first thing that is not ready; sets the gauge.
    async fn ready(&self) -> Result<String, String> {
        let readiness = self.evaluate().await;
        metrics::gauge!(READY).set(if readiness.is_ok() { 1.0 } else { 0.0 });
        readiness
    }

    async fn evaluate(&self) -> Result<String, String> {
        if self.phase() != Phase::Running {
            return Err(format!("{:?}", self.phase()).to_lowercase());
        }
        if let Some(reason) = self.definitions.closed_reason() {
            return Err(format!("definitions: {reason}"));
        }
        match tokio::time::timeout(PROBE_TIMEOUT, self.clamd.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(format!("clamd: {err}")),
            Err(_) => return Err("clamd: no PONG within 2 s".into()),
        }
        for queue in &self.queues {
            let resolved = async {
                let url = aws::queue_url(&self.sqs, queue).await?;
                aws::queue_depth(&self.sqs, &url).await
            };
            match tokio::time::timeout(PROBE_TIMEOUT, resolved).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err(format!("queue {queue}: {err}")),
                Err(_) => return Err(format!("queue {queue}: no answer within 2 s")),
            }
        }
        Ok("ready".into())
    }
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body + "\n")))
        .expect("static response parts")
}

async fn route(
    request: Request<hyper::body::Incoming>,
    probes: Arc<Probes>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match request.uri().path() {
        "/healthz" => respond(StatusCode::OK, format!("alive ({:?})", probes.phase()).to_lowercase()),
        "/readyz" => match probes.ready().await {
            Ok(summary) => respond(StatusCode::OK, summary),
            Err(reason) => respond(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}")),
        },
        "/metrics" => {
            let mut response = respond(StatusCode::OK, probes.metrics.render());
            response.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz".into(),
        ),
    })
}

/// Binds `address` and serves the probes until the process ends; returns the bound address.
pub async fn serve(address: SocketAddr, probes: Arc<Probes>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let probes = probes.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| route(request, probes.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

//! Fakes clamd ([`ScanEngine`] and its [`ScanSession`]s). [`PatternScanner`] keeps the contract
//! the scan pool relies on: a verdict only after reading the body to its end, a broken body
//! stream is an error without a verdict, each connection has its own id; it also counts
//! connections and concurrent scans and can be slowed down or told to panic; like the clamd
//! session, it names a verdict's definitions only on its next scan or `confirm`. It does not check
//! the streamed length against `content_length` as the clamd session does. [`NullScanner`]
//! answers clean without reading, for benches that measure the pipeline alone.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use super::PanicSwitch;
use crate::model::Verdict;
use crate::ports::{Judge, JudgedBy, ObjectBody, ScanEngine, ScanError, ScanSession, Scanned};
use tokio::sync::oneshot;

/// Body content that [`PatternScanner`] calls infected.
pub const FAKE_VIRUS: &[u8] = b"FAKE-VIRUS-MARKER";

/// A scanner that reads the whole stream and reports [`FAKE_VIRUS`] as infected, anything else
/// as clean.
#[derive(Debug, Default)]
pub struct PatternScanner {
    /// Makes the next scans panic, to test the scan pool's supervision.
    pub panic_on_scan: Arc<PanicSwitch>,
    /// Sessions opened so far (also the next session's id): shows reconnects after a failure.
    pub connections: AtomicU64,
    /// Scans begun so far.
    pub scans: Arc<AtomicUsize>,
    /// Scans currently running.
    pub active: Arc<AtomicUsize>,
    /// The most scans ever running at once: what tests check the connection limit against.
    pub peak_active: Arc<AtomicUsize>,
    /// How long each scan takes after reading the body, to make scans overlap.
    pub delay: Duration,
    /// While set, scans name definitions built 30 days ago (too old for the default policy).
    pub stale_definitions: Arc<AtomicBool>,
    /// A scan names the verdicts waiting for their definitions only once this many wait, as
    /// clamd's session names up to 16 with one VERSION; 0 or 1: every scan names them.
    pub names_after: usize,
    /// `confirm` calls (the scan pool's, when a scanner idles) that named waiting verdicts:
    /// with clamd each is a VERSION round trip while the session could have been scanning.
    pub idle_confirms: Arc<AtomicU64>,
}

struct PatternSession {
    id: u64,
    panic_on_scan: Arc<PanicSwitch>,
    scans: Arc<AtomicUsize>,
    active: Arc<AtomicUsize>,
    peak_active: Arc<AtomicUsize>,
    delay: Duration,
    stale_definitions: Arc<AtomicBool>,
    names_after: usize,
    idle_confirms: Arc<AtomicU64>,
    /// Verdicts waiting for `confirm` or the next scan.
    unconfirmed: Vec<(oneshot::Sender<Result<Judge, ScanError>>, Judge)>,
}

#[async_trait]
impl ScanEngine for PatternScanner {
    async fn connect(&self) -> Result<Box<dyn ScanSession>, ScanError> {
        Ok(Box::new(PatternSession {
            id: self.connections.fetch_add(1, Ordering::SeqCst),
            panic_on_scan: self.panic_on_scan.clone(),
            scans: self.scans.clone(),
            active: self.active.clone(),
            peak_active: self.peak_active.clone(),
            delay: self.delay,
            stale_definitions: self.stale_definitions.clone(),
            names_after: self.names_after,
            idle_confirms: self.idle_confirms.clone(),
            unconfirmed: Vec::new(),
        }))
    }
}

#[async_trait]
impl ScanSession for PatternSession {
    async fn scan(&mut self, mut body: ObjectBody) -> Result<Scanned, ScanError> {
        // Earlier verdicts are named when a next scan starts, as clamd's session does.
        if self.unconfirmed.len() >= self.names_after {
            self.name_waiting();
        }
        self.scans.fetch_add(1, Ordering::SeqCst);
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_active.fetch_max(now, Ordering::SeqCst);
        struct Active(Arc<AtomicUsize>);
        impl Drop for Active {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _active = Active(self.active.clone());
        self.panic_on_scan.check("PatternSession::scan");
        let mut content = Vec::new();
        while let Some(chunk) = body.chunks.next().await {
            content.extend_from_slice(&chunk.map_err(ScanError::Source)?);
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let infected = content.windows(FAKE_VIRUS.len()).any(|w| w == FAKE_VIRUS);
        let verdict = if infected {
            Verdict::Infected {
                signature: "Fake.Virus".into(),
            }
        } else {
            Verdict::Clean
        };
        let judge = Judge {
            engine: Some("pattern-scanner".into()),
            definitions: Some(if self.stale_definitions.load(Ordering::SeqCst) {
                crate::definitions::Definitions {
                    version: 1,
                    built_at: std::time::SystemTime::now() - Duration::from_secs(30 * 86_400),
                }
            } else {
                fresh_definitions()
            }),
        };
        // Named on the next scan or `confirm`, as the clamd session does: a scanner that idles
        // without confirming leaves its verdicts waiting.
        let (name, named) = oneshot::channel();
        self.unconfirmed.push((name, judge));
        Ok(Scanned {
            verdict,
            judged_by: JudgedBy::Confirming(named),
        })
    }

    async fn confirm(&mut self) -> Result<(), ScanError> {
        if !self.unconfirmed.is_empty() {
            self.idle_confirms.fetch_add(1, Ordering::SeqCst);
            self.name_waiting();
        }
        Ok(())
    }

    fn is_reusable(&mut self) -> bool {
        true
    }

    fn id(&self) -> u64 {
        self.id
    }
}

impl PatternSession {
    fn name_waiting(&mut self) {
        for (name, judge) in self.unconfirmed.drain(..) {
            let _ = name.send(Ok(judge));
        }
    }
}

/// Definitions built this instant: the fakes' scans pass any freshness check.
pub fn fresh_definitions() -> crate::definitions::Definitions {
    crate::definitions::Definitions {
        version: 1,
        built_at: std::time::SystemTime::now(),
    }
}

/// A scanner that answers clean at once without reading a byte: what is left is the
/// pipeline's own cost (benches).
#[derive(Debug, Default)]
pub struct NullScanner;

struct NullSession;

#[async_trait]
impl ScanEngine for NullScanner {
    async fn connect(&self) -> Result<Box<dyn ScanSession>, ScanError> {
        Ok(Box::new(NullSession))
    }
}

#[async_trait]
impl ScanSession for NullSession {
    async fn scan(&mut self, _: ObjectBody) -> Result<Scanned, ScanError> {
        Ok(Scanned {
            verdict: Verdict::Clean,
            judged_by: JudgedBy::Known(Judge {
                engine: None,
                definitions: Some(fresh_definitions()),
            }),
        })
    }

    async fn confirm(&mut self) -> Result<(), ScanError> {
        Ok(())
    }

    fn is_reusable(&mut self) -> bool {
        true
    }

    fn id(&self) -> u64 {
        0
    }
}

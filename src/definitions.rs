//! Watches clamd's virus definitions while avscan runs: every `DEFINITIONS_CHECK_INTERVAL` it asks
//! clamd for `VERSION`, exports the daily database's version and age, notices a reload, and
//! closes the poller's [`ReceiveGate`] while the definitions are refused by `DEFINITIONS_MAX_AGE`
//! (too old, or of unknown age) so messages wait on SQS; it opens the gate again by itself once
//! fresh definitions load. Each change is logged once. The router checks every clean verdict
//! against the same policy (`avscan_actors::definitions`), so what is scanned between two looks
//! is covered too.
//!
//! Metrics (set here, rendered on `/metrics`):
//! - `avscan_definitions_version`: the daily database's version (NaN while clamd names none);
//! - `avscan_definitions_age_seconds`: its age at the last look (NaN while clamd names none);
//! - `avscan_definitions_max_age_seconds`: `DEFINITIONS_MAX_AGE` (0: no check);
//! - `avscan_definitions_known`: 1 when clamd names a daily database, 0 when it does not
//!   (custom databases only) or its reply is not understood;
//! - `avscan_definitions_refused`: 1 while receiving is paused for the definitions;
//! - `avscan_definitions_reloads_total`: version changes seen while running.

use std::time::{Duration, SystemTime};

use avscan_actors::definitions::{whole_minutes, Definitions, DefinitionsPolicy, ReceiveGate, ReceiveGateControl};
use avscan_actors::ports::ScanError;
use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

use crate::clamd::Clamd;

const VERSION: &str = "avscan_definitions_version";
const AGE: &str = "avscan_definitions_age_seconds";
const MAX_AGE: &str = "avscan_definitions_max_age_seconds";
const KNOWN: &str = "avscan_definitions_known";
const REFUSED: &str = "avscan_definitions_refused";
const RELOADS: &str = "avscan_definitions_reloads_total";

/// Registers the help texts; call once after installing a recorder.
pub fn describe() {
    describe_gauge!(VERSION, "version of the daily virus database clamd has loaded");
    describe_gauge!(
        AGE,
        Unit::Seconds,
        "age of clamd's daily virus database at the last look"
    );
    describe_gauge!(
        MAX_AGE,
        Unit::Seconds,
        "DEFINITIONS_MAX_AGE: older definitions judge nothing clean (0: no check)"
    );
    describe_gauge!(
        KNOWN,
        "1 when clamd names its daily database (version and build time), 0 when it does not (custom databases only)"
    );
    describe_gauge!(
        REFUSED,
        "1 while avscan receives nothing because clamd's definitions are too old or of unknown age"
    );
    describe_counter!(RELOADS, "changes of clamd's daily database version seen while running");
}

/// What clamd's `VERSION` said about its definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// A daily database, with its version and build time.
    Daily(Definitions),
    /// Custom databases only: no version, no age.
    NoDaily,
    /// A reply avscan does not understand.
    NotUnderstood(String),
}

impl Named {
    /// From a `VERSION` reply.
    pub fn from_reply(reply: &str) -> Self {
        match Definitions::from_version_reply(reply) {
            Ok(Some(definitions)) => Named::Daily(definitions),
            Ok(None) => Named::NoDaily,
            Err(err) => Named::NotUnderstood(err.to_string()),
        }
    }

    fn definitions(&self) -> Option<&Definitions> {
        match self {
            Named::Daily(definitions) => Some(definitions),
            _ => None,
        }
    }

    /// One line for people: the version, build time and age, or why there is none.
    pub fn describe(&self, now: SystemTime) -> String {
        match self {
            Named::Daily(definitions) => format!(
                "daily {} built {} ({} old)",
                definitions.version,
                definitions.built_at_rfc3339(),
                whole_minutes(definitions.age(now))
            ),
            Named::NoDaily => "clamd names no daily database (custom databases only): age unknown".into(),
            Named::NotUnderstood(detail) => detail.clone(),
        }
    }

    /// Why `policy` refuses these definitions at `now`, or `None`.
    pub fn refusal(&self, policy: &DefinitionsPolicy, now: SystemTime) -> Option<String> {
        match self {
            Named::NotUnderstood(detail) if policy.max_age.is_some() => Some(detail.clone()),
            _ => policy.refusal(self.definitions(), now),
        }
    }
}

/// Asks clamd for `VERSION` on a connection of its own.
pub async fn ask(clamd: &Clamd) -> Result<Named, ScanError> {
    Ok(Named::from_reply(&clamd.command("VERSION").await?))
}

/// The watcher: owns the gate's control and what it saw last.
pub struct DefinitionsWatch {
    clamd: Clamd,
    policy: DefinitionsPolicy,
    gate: ReceiveGateControl,
    last: Option<Named>,
    /// Whether the last failure to ask was logged (once, until clamd answers again).
    unanswered: bool,
}

impl DefinitionsWatch {
    /// A watcher of `clamd` enforcing `policy`; its gate is open until the first look.
    pub fn new(clamd: Clamd, policy: DefinitionsPolicy) -> Self {
        Self {
            clamd,
            policy,
            gate: ReceiveGate::new().0,
            last: None,
            unanswered: false,
        }
    }

    /// A gate that follows this watcher, for the poller and `/readyz`.
    pub fn gate(&self) -> ReceiveGate {
        self.gate.gate()
    }

    /// One look: asks clamd, updates the metrics and the gate, logs what changed. When clamd
    /// does not answer, everything stays as it was (`/readyz` fails on clamd itself).
    pub async fn look(&mut self) {
        match ask(&self.clamd).await {
            Ok(named) => {
                self.unanswered = false;
                self.observe(named, SystemTime::now());
            }
            Err(err) if !self.unanswered => {
                self.unanswered = true;
                tracing::warn!(error = %err, "could not ask clamd for its definitions; keeping the last state");
            }
            Err(_) => {}
        }
    }

    fn observe(&mut self, named: Named, now: SystemTime) {
        match (&self.last, &named) {
            (Some(Named::Daily(before)), Named::Daily(after)) if before.version != after.version => {
                counter!(RELOADS).increment(1);
                tracing::info!(
                    from = before.version,
                    to = after.version,
                    built_at = %after.built_at_rfc3339(),
                    "clamd loaded new definitions"
                );
            }
            (last, _) if last.as_ref() != Some(&named) => {
                tracing::info!(definitions = %named.describe(now), "clamd's definitions");
            }
            _ => {}
        }
        gauge!(MAX_AGE).set(self.policy.max_age.unwrap_or_default().as_secs_f64());
        gauge!(KNOWN).set(if named.definitions().is_some() { 1.0 } else { 0.0 });
        match named.definitions() {
            Some(definitions) => {
                gauge!(VERSION).set(definitions.version as f64);
                gauge!(AGE).set(definitions.age(now).as_secs_f64());
            }
            // Unknown, not the last value: an alert on the age must not read a frozen one.
            None => {
                gauge!(VERSION).set(f64::NAN);
                gauge!(AGE).set(f64::NAN);
            }
        }
        match named.refusal(&self.policy, now) {
            Some(reason) => {
                gauge!(REFUSED).set(1.0);
                if self.gate.close(reason.clone()) {
                    tracing::warn!(%reason, "not receiving: nothing is judged with these definitions until fresh ones load");
                }
            }
            None => {
                gauge!(REFUSED).set(0.0);
                if self.gate.open() {
                    tracing::info!(definitions = %named.describe(now), "definitions accepted; receiving again");
                }
            }
        }
        self.last = Some(named);
    }

    /// Looks every `interval` for as long as the process runs.
    pub fn spawn(mut self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.look().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clamd::ClamdAddress;

    const DAY: Duration = Duration::from_secs(86_400);

    fn watch(max_age: Option<Duration>) -> DefinitionsWatch {
        let clamd = Clamd::new(ClamdAddress::Tcp("127.0.0.1:9".into()), 1024, Duration::from_secs(1));
        DefinitionsWatch::new(clamd, DefinitionsPolicy { max_age })
    }

    fn daily(version: u64, built_at: SystemTime) -> Named {
        Named::Daily(Definitions { version, built_at })
    }

    #[test]
    fn the_gate_closes_on_stale_or_unknown_definitions_and_reopens_on_fresh_ones() {
        let now = SystemTime::now();
        let mut watch = watch(Some(7 * DAY));
        let gate = watch.gate();
        watch.observe(daily(1, now - DAY), now);
        assert_eq!(gate.closed_reason(), None);
        watch.observe(daily(1, now - 8 * DAY), now);
        assert!(gate.closed_reason().unwrap().contains("older than DEFINITIONS_MAX_AGE"));
        watch.observe(Named::NoDaily, now);
        assert!(gate.closed_reason().unwrap().contains("custom databases only"));
        watch.observe(Named::NotUnderstood("odd".into()), now);
        assert_eq!(gate.closed_reason().as_deref(), Some("odd"));
        watch.observe(daily(2, now), now);
        assert_eq!(gate.closed_reason(), None);
    }

    #[test]
    fn with_the_check_off_any_definitions_keep_the_gate_open() {
        let now = SystemTime::now();
        let mut watch = watch(None);
        let gate = watch.gate();
        for named in [
            daily(1, now - 300 * DAY),
            Named::NoDaily,
            Named::NotUnderstood("odd".into()),
        ] {
            watch.observe(named, now);
            assert_eq!(gate.closed_reason(), None);
        }
    }
}

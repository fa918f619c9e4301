//! Virus definitions as a guarantee: which signature database judged an object
//! ([`Definitions`], read from clamd's `VERSION` reply), whether it is fresh enough to call
//! anything clean ([`DefinitionsPolicy`]), and the gate that keeps the poller from receiving while
//! it is not ([`ReceiveGate`]).
//!
//! Two checks, one rule. The binary asks clamd for its definitions periodically and closes the
//! gate while they are refused, so messages stay on SQS. The router checks every clean verdict
//! against the same policy with the definitions clamd named *around the scan, in its own session*
//! (the session's `VERSION` before it and the first one after its verdict, equal), so a
//! verdict given between two of the watcher's checks, or by a clamd that lost its fresh
//! definitions mid-flight, is retried rather than forwarded.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// The signature database that judged an object, as clamd's `VERSION` names it: the daily
/// database's version and build time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Definitions {
    /// The daily database's version (e.g. 27400).
    pub version: u64,
    /// When it was built. clamd prints it in its own time zone without naming the zone; it is
    /// read as UTC (clamd's containers run in UTC), so a clamd elsewhere is off by its offset.
    pub built_at: SystemTime,
}

/// A `VERSION` reply avscan does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("clamd's VERSION reply is not `ClamAV <engine>[/<daily version>/<build time>]`: {0:?}")]
pub struct UnknownVersionReply(pub String);

impl Definitions {
    /// From clamd's `VERSION` reply, e.g. `ClamAV 1.4.6/27400/Sun Nov  1 10:00:00 2026`.
    /// `Ok(None)` when clamd names no daily database (`ClamAV 1.4.6`: it loaded custom databases
    /// only, whose age nobody can tell); an error for any other shape.
    pub fn from_version_reply(reply: &str) -> Result<Option<Self>, UnknownVersionReply> {
        let unknown = || UnknownVersionReply(reply.to_owned());
        let rest = reply.strip_prefix("ClamAV ").ok_or_else(unknown)?;
        let mut parts = rest.splitn(3, '/');
        let engine = parts.next().unwrap_or_default();
        if engine.is_empty() || engine.contains(char::is_whitespace) {
            return Err(unknown());
        }
        let (Some(version), Some(built)) = (parts.next(), parts.next()) else {
            return if rest.contains('/') { Err(unknown()) } else { Ok(None) };
        };
        let version = version.parse::<u64>().map_err(|_| unknown())?;
        let built_at = parse_ctime(built).ok_or_else(unknown)?;
        Ok(Some(Self { version, built_at }))
    }

    /// How old the definitions are at `now` (zero if built in the future).
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.built_at).unwrap_or_default()
    }

    /// The build time as RFC 3339 (`2026-11-01T10:00:00Z`).
    pub fn built_at_rfc3339(&self) -> String {
        humantime::format_rfc3339_seconds(self.built_at).to_string()
    }
}

/// `ctime(3)`'s format without the newline: `Sun Nov  1 10:00:00 2026`.
fn parse_ctime(text: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [_weekday, month, day, time, year] = fields.as_slice() else {
        return None;
    };
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    let day: u8 = day.parse().ok()?;
    let year: u16 = year.parse().ok()?;
    humantime::parse_rfc3339(&format!("{year:04}-{month:02}-{day:02}T{time}Z")).ok()
}

/// `DEFINITIONS_MAX_AGE` as a rule: definitions older than `max_age` (or of unknown age) may not
/// judge an object clean. `None` turns the check off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefinitionsPolicy {
    /// The oldest definitions allowed to call an object clean; `None`: no freshness check.
    pub max_age: Option<Duration>,
}

impl DefinitionsPolicy {
    /// Why `definitions` may not call an object clean at `now`, or `None` when they may.
    pub fn refusal(&self, definitions: Option<&Definitions>, now: SystemTime) -> Option<String> {
        let max_age = self.max_age?;
        let Some(definitions) = definitions else {
            return Some(
                "clamd names no official daily database (custom databases only), so the definitions' \
                 age is unknown; set DEFINITIONS_MAX_AGE=0 to judge without a freshness check"
                    .into(),
            );
        };
        let age = definitions.age(now);
        (age > max_age).then(|| {
            format!(
                "definitions {} built {} are {} old, older than DEFINITIONS_MAX_AGE ({})",
                definitions.version,
                definitions.built_at_rfc3339(),
                whole_minutes(age),
                whole_minutes(max_age)
            )
        })
    }
}

/// A duration for people: `7days 2h 5m`.
pub fn whole_minutes(duration: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(duration.as_secs() / 60 * 60))
}

/// Whether the poller may receive: open, or closed with a reason. The poller holds one; whoever
/// watches what receiving depends on (the binary's definitions watcher) holds the
/// [`ReceiveGateControl`].
#[derive(Debug, Clone)]
pub struct ReceiveGate {
    closed: watch::Receiver<Option<String>>,
}

/// Opens and closes a [`ReceiveGate`].
#[derive(Debug)]
pub struct ReceiveGateControl {
    closed: watch::Sender<Option<String>>,
}

impl ReceiveGate {
    /// A gate and its control, open.
    pub fn new() -> (ReceiveGateControl, ReceiveGate) {
        let (closed, receiver) = watch::channel(None);
        (ReceiveGateControl { closed }, ReceiveGate { closed: receiver })
    }

    /// A gate nobody closes (actor tests, benches).
    pub fn always_open() -> Self {
        Self::new().1
    }

    /// Why the gate is closed, or `None` while it is open.
    pub fn closed_reason(&self) -> Option<String> {
        self.closed.borrow().clone()
    }

    /// Resolves once the gate is open (at once if it is). A gate whose control is gone stays as
    /// it was left.
    pub async fn opened(&mut self) {
        while self.closed.borrow_and_update().is_some() {
            if self.closed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl ReceiveGateControl {
    /// Closes the gate with `reason` (or updates the reason); true if it was open.
    pub fn close(&self, reason: String) -> bool {
        let was_open = self.closed.borrow().is_none();
        self.closed.send_replace(Some(reason));
        was_open
    }

    /// Opens the gate; true if it was closed.
    pub fn open(&self) -> bool {
        self.closed.send_replace(None).is_some()
    }

    /// A gate that follows this control.
    pub fn gate(&self) -> ReceiveGate {
        ReceiveGate {
            closed: self.closed.subscribe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn clamd_version_replies_name_the_daily_database_or_none() {
        assert_eq!(
            Definitions::from_version_reply("ClamAV 1.4.6/27400/Sun Nov  1 10:00:00 2026"),
            Ok(Some(Definitions {
                version: 27400,
                built_at: at("2026-11-01T10:00:00Z")
            }))
        );
        assert_eq!(
            Definitions::from_version_reply("ClamAV 1.0.7/27461/Mon Nov 25 09:27:02 2024")
                .unwrap()
                .unwrap()
                .built_at_rfc3339(),
            "2024-11-25T09:27:02Z"
        );
        // Custom databases only: no daily database, no age.
        assert_eq!(Definitions::from_version_reply("ClamAV 1.4.6"), Ok(None));
        for odd in [
            "",
            "ClamAV",
            "ClamAV ",
            "PONG",
            "ClamAV 1.4.6/27400",
            "ClamAV 1.4.6/x/Sun Nov  1 10:00:00 2026",
            "ClamAV 1.4.6/27400/yesterday",
            "ClamAV 1.4.6/27400/Sun Foo  1 10:00:00 2026",
            "ClamAV 1.4.6/27400/Sun Nov 31 10:00:00 2026",
            "ClamAV 1 4/27400/Sun Nov  1 10:00:00 2026",
        ] {
            assert!(Definitions::from_version_reply(odd).is_err(), "{odd:?} was understood");
        }
    }

    #[test]
    fn the_policy_refuses_old_or_ageless_definitions_and_nothing_when_off() {
        let now = at("2026-11-30T12:00:00Z");
        let week = DefinitionsPolicy { max_age: Some(7 * DAY) };
        let built = |rfc3339| Definitions {
            version: 27400,
            built_at: at(rfc3339),
        };
        assert_eq!(week.refusal(Some(&built("2026-11-29T12:00:00Z")), now), None);
        assert_eq!(week.refusal(Some(&built("2026-11-23T12:00:00Z")), now), None);
        // Built "in the future" (clamd's clock, its time zone): age zero, not refused.
        assert_eq!(week.refusal(Some(&built("2026-12-01T00:00:00Z")), now), None);
        let stale = week.refusal(Some(&built("2026-11-23T11:59:00Z")), now).unwrap();
        assert_eq!(
            stale,
            "definitions 27400 built 2026-11-23T11:59:00Z are 7days 1m old, older than DEFINITIONS_MAX_AGE (7days)"
        );
        assert!(week.refusal(None, now).unwrap().contains("DEFINITIONS_MAX_AGE=0"));
        let off = DefinitionsPolicy { max_age: None };
        assert_eq!(off.refusal(None, now), None);
        assert_eq!(off.refusal(Some(&built("2001-01-01T00:00:00Z")), now), None);
    }

    #[tokio::test]
    async fn a_closed_gate_holds_until_opened_and_says_why() {
        let (control, mut gate) = ReceiveGate::new();
        gate.opened().await;
        assert!(control.close("stale".into()));
        assert!(!control.close("still stale".into()));
        assert_eq!(gate.closed_reason().as_deref(), Some("still stale"));
        let waiting = tokio::spawn(async move {
            gate.opened().await;
            gate
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a closed gate let the poller through");
        assert!(control.open());
        let gate = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(gate.closed_reason(), None);
        assert!(!control.open());
    }
}

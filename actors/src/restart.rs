//! Restart accounting shared by every supervisor of a pipeline: backoff that grows with recent
//! restarts, and the storm limit beyond which the pipeline gives up so the process exits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::defaults;

/// When restarts become a storm, and how long each waits.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// More restarts than this within `window` is a storm.
    pub max_restarts: usize,
    /// How far back restarts count towards a storm.
    pub window: Duration,
    /// Backoff before the first restart in a window; doubles with each further one.
    pub base_backoff: Duration,
    /// The longest wait before a restart.
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: defaults::RESTART_LIMIT as usize,
            window: Duration::from_secs(defaults::RESTART_WINDOW_SECS),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Too many restarts too fast: the pipeline stops and the process exits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("restart storm: more than {max_restarts} restarts within {window:?}")]
pub(crate) struct RestartStorm {
    /// The policy's limit that was passed.
    max_restarts: usize,
    /// The policy's window.
    window: Duration,
}

/// One budget per pipeline: a storm anywhere stops everything.
#[derive(Debug, Clone)]
pub(crate) struct RestartBudget {
    policy: RestartPolicy,
    recent: Arc<Mutex<VecDeque<Instant>>>,
}

impl RestartBudget {
    pub(crate) fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            recent: Arc::default(),
        }
    }

    /// Records a restart now; returns how long to wait before it, or the storm.
    pub(crate) fn charge(&self) -> Result<Duration, RestartStorm> {
        self.charge_at(Instant::now())
    }

    fn charge_at(&self, now: Instant) -> Result<Duration, RestartStorm> {
        let mut recent = self.recent.lock().unwrap_or_else(|poison| poison.into_inner());
        while recent
            .front()
            .is_some_and(|at| now.duration_since(*at) > self.policy.window)
        {
            recent.pop_front();
        }
        if recent.len() >= self.policy.max_restarts {
            return Err(RestartStorm {
                max_restarts: self.policy.max_restarts,
                window: self.policy.window,
            });
        }
        let earlier_restarts = recent.len() as u32;
        recent.push_back(now);
        Ok(Backoff::new(self.policy.base_backoff, self.policy.max_backoff).delay(earlier_restarts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_a_storm_is_reported_until_the_window_passes() {
        let budget = RestartBudget::new(RestartPolicy {
            max_restarts: 3,
            window: Duration::from_secs(10),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(250),
        });
        let start = Instant::now();
        assert_eq!(budget.charge_at(start), Ok(Duration::from_millis(100)));
        assert_eq!(budget.charge_at(start), Ok(Duration::from_millis(200)));
        assert_eq!(budget.charge_at(start), Ok(Duration::from_millis(250)));
        assert!(budget.charge_at(start + Duration::from_secs(1)).is_err());
        assert_eq!(
            budget.charge_at(start + Duration::from_secs(11)),
            Ok(Duration::from_millis(100))
        );
    }
}

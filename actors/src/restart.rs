//! Restart accounting shared by every supervisor of a pipeline: backoff that grows with recent
//! restarts, and the storm limit beyond which the pipeline gives up so the process exits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// More restarts than this within `window` is a storm.
    pub max_restarts: usize,
    pub window: Duration,
    /// Backoff before the first restart in a window; doubles with each further one.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 10,
            window: Duration::from_secs(60),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("restart storm: more than {max_restarts} restarts within {window:?}")]
pub struct RestartStorm {
    pub max_restarts: usize,
    pub window: Duration,
}

/// One budget per pipeline: a storm anywhere stops everything.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    policy: RestartPolicy,
    recent: Arc<Mutex<VecDeque<Instant>>>,
}

impl RestartBudget {
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            recent: Arc::default(),
        }
    }

    /// Records a restart now; returns how long to wait before it, or the storm.
    pub fn charge(&self) -> Result<Duration, RestartStorm> {
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
        let doublings = recent.len().min(16) as u32;
        recent.push_back(now);
        Ok(self
            .policy
            .base_backoff
            .saturating_mul(1 << doublings)
            .min(self.policy.max_backoff))
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

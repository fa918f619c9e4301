//! Exponential backoff: the one formula behind every wait that grows with failures — a released
//! message's invisibility (the acker), restarts (the restart budget), failed receives (the
//! poller) and the binary's wait for clamd at start-up.

use std::time::Duration;

/// `base`, doubled with each step, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure (`step` 0).
    base: Duration,
    /// The wait never grows beyond this.
    max: Duration,
}

impl Backoff {
    /// A backoff from `base` up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The wait before try number `step + 1`: `base` × 2^`step`, capped at `max` (steps beyond
    /// 16 count as 16, so the arithmetic never overflows).
    pub fn delay(&self, step: u32) -> Duration {
        self.base.saturating_mul(1 << step.min(16)).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_base_and_stop_at_the_cap() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        assert_eq!(backoff.delay(0), Duration::from_secs(5));
        assert_eq!(backoff.delay(1), Duration::from_secs(10));
        assert_eq!(backoff.delay(3), Duration::from_secs(40));
        assert_eq!(backoff.delay(8), Duration::from_secs(60));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(60));
    }
}

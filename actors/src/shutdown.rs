//! Shutdown as a small type (after mini-redis' `shutdown.rs`): the pipeline holds the
//! [`ShutdownTrigger`]; the poller and the supervisor hold a [`Shutdown`] and ask it whether
//! to stop receiving or restarting.

use tokio::sync::watch;

/// A new trigger and the first listener of it.
pub(crate) fn channel() -> (ShutdownTrigger, Shutdown) {
    let (trigger, listener) = watch::channel(false);
    (ShutdownTrigger(trigger), Shutdown(listener))
}

/// Asks every [`Shutdown`] made from it to stop.
#[derive(Debug)]
pub(crate) struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Requests shutdown; every listener sees it at once and from then on.
    pub(crate) fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// Listens for the pipeline's shutdown. Clone it for each actor that must stop.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// True once shutdown was requested.
    pub(crate) fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when shutdown is requested (at once if it already was, or if the pipeline that
    /// could request it is gone).
    pub(crate) async fn requested(&mut self) {
        let _ = self.0.wait_for(|requested| *requested).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_listener_sees_the_trigger_and_late_ones_too() {
        let (trigger, mut first) = channel();
        let second = first.clone();
        assert!(!first.is_requested());
        trigger.trigger();
        first.requested().await;
        assert!(second.is_requested());
        let mut late = second.clone();
        late.requested().await;
    }
}

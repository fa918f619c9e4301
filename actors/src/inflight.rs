//! The registry of messages in flight: every SQS message received and not yet settled, by
//! receipt handle, with when its visibility timeout was last set. The pipeline creates it beside
//! the in-flight permits and hands it to the stages through the supervisor's wiring, so it
//! outlives any stage: a restarted acker or heartbeat carries on with it.
//!
//! Opening an `InflightMessage` (the poller) registers it; settling it (its last ticket)
//! removes it, so every entry is a message still being worked on. The heartbeat reads which
//! entries are due for an extension and records the extensions that succeeded; the acker asks
//! whether others are in flight (to batch deletes) and, at shutdown, takes every entry to make
//! it visible again at once. It imports nothing of the crate.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Messages received and not yet settled.
#[derive(Debug, Default)]
pub(crate) struct InflightRegistry {
    state: Mutex<RegistryState>,
}

#[derive(Debug, Default)]
struct RegistryState {
    /// By receipt handle: each receive issues a new one, so a message received twice (its
    /// visibility lapsed) is two entries, each extended under its own handle.
    entries: HashMap<String, Entry>,
    /// Every entry was taken to be made visible at shutdown: nothing is extended any more.
    released: bool,
}

#[derive(Debug)]
struct Entry {
    /// SQS' message id, for logs.
    message_id: String,
    /// The message's span: the shutdown release is logged under it.
    span: tracing::Span,
    /// When the visibility timeout was last set (received, or an extension's call sent): the
    /// message stays hidden at least until this plus the visibility timeout.
    visibility_set_at: Instant,
}

/// A message whose visibility is to be extended, or released at shutdown.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    /// The handle of the receive it is in flight under.
    pub(crate) receipt_handle: String,
    /// SQS' message id, for logs.
    pub(crate) message_id: String,
    /// The message's span.
    pub(crate) span: tracing::Span,
}

impl InflightRegistry {
    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Registers a message just received: its visibility timeout runs from now.
    pub(crate) fn register(&self, receipt_handle: &str, message_id: &str, span: &tracing::Span) {
        let entry = Entry {
            message_id: message_id.to_owned(),
            span: span.clone(),
            visibility_set_at: Instant::now(),
        };
        self.lock().entries.insert(receipt_handle.to_owned(), entry);
    }

    /// The message settled: it is deleted or released by the acker, never extended again.
    pub(crate) fn remove(&self, receipt_handle: &str) {
        self.lock().entries.remove(receipt_handle);
    }

    /// Messages in flight.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// The messages whose visibility was last set at least `after` before `now`, oldest first
    /// (the most urgent go in the first batch); none once released at shutdown.
    pub(crate) fn due(&self, now: Instant, after: Duration) -> Vec<Registered> {
        let state = self.lock();
        if state.released {
            return Vec::new();
        }
        let mut due: Vec<(Instant, Registered)> = state
            .entries
            .iter()
            .filter(|(_, entry)| now.saturating_duration_since(entry.visibility_set_at) >= after)
            .map(|(receipt_handle, entry)| (entry.visibility_set_at, entry.registered(receipt_handle)))
            .collect();
        due.sort_by_key(|(set_at, _)| *set_at);
        due.into_iter().map(|(_, registered)| registered).collect()
    }

    /// An extension of `receipt_handle` sent at `sent_at` succeeded. A call that answers late
    /// never moves the time back, and one for a message settled meanwhile changes nothing.
    pub(crate) fn extended(&self, receipt_handle: &str, sent_at: Instant) {
        if let Some(entry) = self.lock().entries.get_mut(receipt_handle) {
            entry.visibility_set_at = entry.visibility_set_at.max(sent_at);
        }
    }

    /// Shutdown: takes every message still in flight, to be made visible again at once; from
    /// now on nothing is extended and [`is_released`](Self::is_released) is true.
    pub(crate) fn release_all(&self) -> Vec<Registered> {
        let mut state = self.lock();
        state.released = true;
        state
            .entries
            .drain()
            .map(|(receipt_handle, entry)| entry.registered(&receipt_handle))
            .collect()
    }

    /// True once [`release_all`](Self::release_all) ran: a late retry must not hide its
    /// message again.
    pub(crate) fn is_released(&self) -> bool {
        self.lock().released
    }
}

impl Entry {
    fn registered(&self, receipt_handle: &str) -> Registered {
        Registered {
            receipt_handle: receipt_handle.to_owned(),
            message_id: self.message_id.clone(),
            span: self.span.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF: Duration = Duration::from_millis(500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn handles(registered: Vec<Registered>) -> Vec<String> {
        registered.into_iter().map(|r| r.receipt_handle).collect()
    }

    fn registry_of(handles: &[&str]) -> (InflightRegistry, Instant) {
        let registry = InflightRegistry::default();
        for handle in handles {
            registry.register(handle, &format!("id-{handle}"), &tracing::Span::none());
        }
        (registry, Instant::now())
    }

    #[test]
    fn a_message_is_due_once_half_the_timeout_passed_since_its_visibility_was_set() {
        let (registry, t0) = registry_of(&["rh-1", "rh-2"]);
        // rh-2's visibility was set 200 ms after rh-1's.
        registry.extended("rh-2", t0 + ms(200));
        assert!(registry.due(t0 + ms(400), HALF).is_empty());
        assert_eq!(handles(registry.due(t0 + ms(600), HALF)), ["rh-1"]);
        assert_eq!(
            handles(registry.due(t0 + ms(800), HALF)),
            ["rh-1", "rh-2"],
            "oldest first"
        );
        registry.extended("rh-1", t0 + ms(800));
        assert_eq!(handles(registry.due(t0 + ms(800), HALF)), ["rh-2"]);
    }

    #[test]
    fn a_late_answer_never_moves_the_visibility_back_and_a_settled_message_stays_gone() {
        let (registry, t0) = registry_of(&["rh-1"]);
        registry.extended("rh-1", t0 + ms(1000));
        registry.extended("rh-1", t0 + ms(10));
        assert!(
            registry.due(t0 + ms(1400), HALF).is_empty(),
            "moved back by a late answer"
        );
        registry.remove("rh-1");
        registry.extended("rh-1", t0 + ms(2000));
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn after_the_shutdown_release_nothing_is_due() {
        let (registry, t0) = registry_of(&["rh-1"]);
        assert!(!registry.is_released());
        assert_eq!(handles(registry.release_all()), ["rh-1"]);
        assert!(registry.is_released());
        assert_eq!(registry.len(), 0);
        registry.register("rh-2", "m2", &tracing::Span::none());
        assert!(registry.due(t0 + HALF * 4, HALF).is_empty());
    }
}

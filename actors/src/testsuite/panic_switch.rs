//! The fakes' fault injection: a [`PanicSwitch`] inside a fake makes its next calls panic, so
//! tests can check that the supervisor restarts the actor that called it. It fakes no port; the
//! contract it keeps is that exactly the armed number of calls panic, then the fake works again.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Makes the next `n` calls of a fake panic.
#[derive(Debug, Default)]
pub struct PanicSwitch(AtomicUsize);

impl PanicSwitch {
    /// Makes the next `n` checked calls panic (`usize::MAX`: all of them, for restart storms).
    pub fn arm(&self, n: usize) {
        self.0.store(n, Ordering::SeqCst);
    }

    /// Called at the top of a fake's method: panics, naming `what`, while the switch is armed.
    pub(super) fn check(&self, what: &str) {
        if self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("injected panic in {what}");
        }
    }
}

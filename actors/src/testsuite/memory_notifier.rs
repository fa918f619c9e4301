//! Fakes SNS ([`Notifier`]). It keeps the one contract the quarantiner relies on: a publish that
//! returns `Ok` was delivered, so every notification is kept, in order, for tests to read back.
//! Its publish can be told to panic.

use std::sync::Mutex;

use async_trait::async_trait;

use super::{lock, PanicSwitch};
use crate::ports::{Notification, Notifier, NotifyError};

/// Keeps published notifications.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    /// Every notification published, in order: what tests assert on.
    pub published: Mutex<Vec<Notification>>,
    /// Makes the next publishes panic, to test the quarantiner's supervision.
    pub panic_on_publish: PanicSwitch,
}

impl MemoryNotifier {
    /// A copy of the notifications published so far, in order.
    pub fn notifications(&self) -> Vec<Notification> {
        lock(&self.published).clone()
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.panic_on_publish.check("MemoryNotifier::publish");
        lock(&self.published).push(notification.clone());
        Ok(())
    }
}

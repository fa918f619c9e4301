//! Stable addresses for stages whose actor can be restarted. The supervisor swaps the actor
//! behind a [`StageAddress`]; senders keep the address. A send while the stage is down hands
//! the message back, so its tickets are dropped and the message is retried.

use std::sync::{Arc, RwLock};

use ractor::{ActorRef, Message, MessagingErr};

/// Where to send a stage's messages, whichever incarnation of its actor is running.
pub(crate) struct StageAddress<M> {
    /// The stage's name, for the panic message of an impossible send error.
    stage: &'static str,
    current: Arc<RwLock<Option<ActorRef<M>>>>,
}

impl<M> Clone for StageAddress<M> {
    fn clone(&self) -> Self {
        Self {
            stage: self.stage,
            current: Arc::clone(&self.current),
        }
    }
}

impl<M> std::fmt::Debug for StageAddress<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageAddress").field("stage", &self.stage).finish()
    }
}

impl<M: Message> StageAddress<M> {
    /// An address with no actor behind it yet: sends fail until [`set`](Self::set).
    pub(crate) fn new(stage: &'static str) -> Self {
        Self {
            stage,
            current: Arc::new(RwLock::new(None)),
        }
    }

    /// Points the address at a (re)started actor.
    pub(crate) fn set(&self, actor: ActorRef<M>) {
        *self.current.write().unwrap_or_else(|poison| poison.into_inner()) = Some(actor);
    }

    /// The actor behind the address now, if any.
    pub(crate) fn get(&self) -> Option<ActorRef<M>> {
        self.current.read().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    /// Sends without waiting. `Err` gives the message back when the stage is not running.
    pub(crate) fn send(&self, message: M) -> Result<(), M> {
        match self.get() {
            Some(actor) => actor.cast(message).map_err(|err| match err {
                MessagingErr::SendErr(message) => message,
                // cast only fails with SendErr; anything else means the message is gone already.
                other => panic!("unexpected cast error on stage {}: {other}", self.stage),
            }),
            None => Err(message),
        }
    }
}

//! The heartbeat keeps messages in flight invisible to other workers. Every quarter of the
//! visibility timeout it extends, ten per `ChangeMessageVisibilityBatch` call, every message of
//! the pipeline's [`InflightRegistry`] whose visibility was set half a timeout ago or more. It
//! keeps nothing a restart could lose: the registry is the pipeline's (the poller registers,
//! settling removes), so a restarted heartbeat, like a restarted acker, carries on with every
//! message in flight, and its first tick comes at once.
//!
//! It never waits on the queue: each batch call runs as its own task, abandoned after one tick,
//! so a stalled call holds back no other message. A message stays due until a call for it
//! succeeds: one whose call has not answered by the next tick goes out again in that tick's
//! batches (a call that answers late only ever extends further), and a failed entry is tried
//! again at the next tick. A message first goes out with more than a tick of its timeout left,
//! so a stalled or failed call still leaves it another try. A call that panics fails the
//! heartbeat, which the supervisor restarts as any stage.
//!
//! Its calls race with the acker's releases: a release (a retry's backoff, the shutdown release)
//! overtaken by an extension still on its way brings the message back one visibility timeout
//! later than asked, never loses it. At shutdown the pipeline stops the heartbeat before the
//! acker releases what did not finish, so no call of it is still running then.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::inflight::{InflightRegistry, Registered};
use crate::ports::InboundQueue;

/// SQS' largest batch.
const BATCH: usize = 10;

/// How often the heartbeat looks for due messages, and how long one of its calls may take: a
/// quarter of the visibility timeout (at least 250 ms), often enough that every message is
/// extended well before it would reappear.
fn tick(visibility_timeout: Duration) -> Duration {
    (visibility_timeout / 4).max(Duration::from_millis(250))
}

/// What the heartbeat is told.
pub(crate) enum HeartbeatMsg {
    /// Extends the visibility of every registered message that is due (by its own interval).
    Beat,
    /// A visibility call panicked (a bug): the heartbeat fails so that it is restarted.
    CallPanicked(String),
}

/// The heartbeat actor.
pub(crate) struct Heartbeat;

/// What the heartbeat is spawned with.
#[derive(Clone)]
pub(crate) struct HeartbeatArguments {
    /// The inbound queue: visibility extensions only.
    pub(crate) queue: Arc<dyn InboundQueue>,
    /// What is in flight, and when each message's visibility was last set.
    pub(crate) registry: Arc<InflightRegistry>,
    /// The visibility timeout messages are received with, and extended to.
    pub(crate) visibility_timeout: Duration,
}

/// The heartbeat's state: only its running calls, which end with it.
pub(crate) struct HeartbeatState {
    arguments: HeartbeatArguments,
    myself: ActorRef<HeartbeatMsg>,
    /// Batch calls still running; dropping the set (the heartbeat stopped) abandons them.
    calls: JoinSet<()>,
}

impl HeartbeatState {
    /// Sends every due message's extension, each batch as its own task.
    fn beat(&mut self) {
        while self.calls.try_join_next().is_some() {}
        let sent_at = Instant::now();
        let visibility_timeout = self.arguments.visibility_timeout;
        let due = self.arguments.registry.due(sent_at, visibility_timeout / 2);
        for batch in due.chunks(BATCH) {
            let call = extend(self.arguments.clone(), batch.to_vec(), sent_at);
            let myself = self.myself.clone();
            self.calls.spawn(async move {
                if let Err(panic) = AssertUnwindSafe(call).catch_unwind().await {
                    let _ = myself.cast(HeartbeatMsg::CallPanicked(panic_message(panic.as_ref())));
                }
            });
        }
    }
}

/// One batch call: extends `batch`, abandoned after a tick; records what succeeded as set at
/// `sent_at` (SQS counts from when it takes the call, never earlier).
async fn extend(arguments: HeartbeatArguments, batch: Vec<Registered>, sent_at: Instant) {
    let limit = tick(arguments.visibility_timeout);
    let handles: Vec<String> = batch.iter().map(|message| message.receipt_handle.clone()).collect();
    let call = arguments
        .queue
        .set_visibility_batch(&handles, arguments.visibility_timeout);
    let answer = tokio::time::timeout(limit, call).await;
    let failures: HashMap<String, String> = match answer {
        Ok(Ok(failures)) => failures
            .into_iter()
            .map(|failure| (failure.receipt_handle, failure.detail))
            .collect(),
        Ok(Err(err)) => handles.into_iter().map(|handle| (handle, err.to_string())).collect(),
        Err(_) => {
            let detail = format!("no answer within {limit:?}");
            handles.into_iter().map(|handle| (handle, detail.clone())).collect()
        }
    };
    for message in batch {
        match failures.get(&message.receipt_handle) {
            None => {
                arguments.registry.extended(&message.receipt_handle, sent_at);
                tracing::debug!(message_id = %message.message_id, "visibility extended");
                metrics::counter!(crate::metrics::VISIBILITY_EXTENSIONS).increment(1);
            }
            Some(detail) => {
                tracing::warn!(message_id = %message.message_id, error = %detail, "visibility extension failed; trying again at the next tick")
            }
        }
    }
}

/// What a panic said, if it said it as text.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a visibility call panicked".to_owned())
}

impl Actor for Heartbeat {
    type Msg = HeartbeatMsg;
    type State = HeartbeatState;
    type Arguments = HeartbeatArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<HeartbeatMsg>,
        arguments: HeartbeatArguments,
    ) -> Result<HeartbeatState, ActorProcessingErr> {
        // At once, then every tick: a restarted heartbeat must not leave due messages waiting.
        myself.cast(HeartbeatMsg::Beat)?;
        myself.send_interval(tick(arguments.visibility_timeout), || HeartbeatMsg::Beat);
        Ok(HeartbeatState {
            arguments,
            myself,
            calls: JoinSet::new(),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<HeartbeatMsg>,
        message: HeartbeatMsg,
        state: &mut HeartbeatState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HeartbeatMsg::Beat => state.beat(),
            HeartbeatMsg::CallPanicked(panic) => return Err(format!("visibility call panicked: {panic}").into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_is_a_quarter_of_the_visibility_timeout_and_at_least_250_ms() {
        assert_eq!(tick(Duration::from_secs(120)), Duration::from_secs(30));
        assert_eq!(tick(Duration::from_secs(1)), Duration::from_millis(250));
        assert_eq!(tick(Duration::from_millis(400)), Duration::from_millis(250));
    }

    #[test]
    fn a_panic_says_what_happened_when_it_can() {
        let text: Box<dyn Any + Send> = Box::new("injected");
        let owned: Box<dyn Any + Send> = Box::new(String::from("owned"));
        let other: Box<dyn Any + Send> = Box::new(7_u8);
        assert_eq!(panic_message(text.as_ref()), "injected");
        assert_eq!(panic_message(owned.as_ref()), "owned");
        assert_eq!(panic_message(other.as_ref()), "a visibility call panicked");
    }
}

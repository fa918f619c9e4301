//! The publisher puts every finished record's result event out before its message is deleted:
//! it is the tickets' [`SettlementOutlet`], and hands each settlement on to the acker once the
//! events of its message are published to every destination (an EventBridge bus, an SNS
//! topic). A message whose events fail anywhere is released instead, so it is handled, and its
//! events published, again: consumers see every verdict at least once.
//!
//! Events go out ten per call (PutEvents and PublishBatch take ten): a settlement waits at most
//! the pipeline's batch linger for others to share its call, and not at all when no other message
//! is in flight. Each batch is published in its own task, so a slow destination holds only the
//! messages of that batch (their in-flight permits bound how many). Those stay in the in-flight
//! registry meanwhile, so the heartbeat keeps them hidden and the shutdown release includes
//! them. Settlements without events (releases, S3's test event), and every settlement when no
//! destination is configured, go straight to the acker.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::Instrument;

use super::acker::AckerMsg;
use crate::address::StageAddress;
use crate::inflight::InflightRegistry;
use crate::ports::ResultSink;
use crate::result_event::ResultEvent;
use crate::ticket::{SettleOutcome, Settlement, SettlementOutlet};

/// What the publisher is told.
pub(crate) enum PublisherMsg {
    /// A message's last ticket was resolved: publish its events, then hand it to the acker.
    Settle(Settlement),
    /// Publishes the events collected so far.
    Flush,
}

impl SettlementOutlet for StageAddress<PublisherMsg> {
    fn settle(&self, settlement: Settlement) -> Result<(), Settlement> {
        match self.send(PublisherMsg::Settle(settlement)) {
            Ok(()) => Ok(()),
            Err(PublisherMsg::Settle(settlement)) => Err(settlement),
            Err(_) => unreachable!("a failed send hands back the message it was given"),
        }
    }
}

/// The publisher actor.
pub(crate) struct Publisher;

/// What the publisher is spawned with.
pub(crate) struct PublisherArguments {
    /// Every destination; an event is out once each took it.
    pub(crate) sinks: Vec<Arc<dyn ResultSink>>,
    /// Deletes (or releases) the settled messages.
    pub(crate) acker: StageAddress<AckerMsg>,
    /// What is in flight: whether a batch may wait for company.
    pub(crate) registry: Arc<InflightRegistry>,
    /// How long a settlement may wait for others to share its publish call.
    pub(crate) linger: Duration,
}

/// The most events PutEvents and PublishBatch take in one call.
const PUBLISH_BATCH: usize = 10;

/// The publisher's state: the settlements waiting for company.
pub(crate) struct PublisherState {
    arguments: PublisherArguments,
    myself: ActorRef<PublisherMsg>,
    pending: Vec<Settlement>,
    pending_events: usize,
    /// A Flush is on its way.
    flush_scheduled: bool,
}

impl PublisherState {
    fn settle(&mut self, settlement: Settlement) {
        if settlement.outcome != SettleOutcome::Delete
            || settlement.results.is_empty()
            || self.arguments.sinks.is_empty()
        {
            hand_on(&self.arguments.acker, settlement);
            return;
        }
        self.pending_events += settlement.results.len();
        self.pending.push(settlement);
        // Every message in flight is registered, the pending ones too: are there others?
        if self.pending_events >= PUBLISH_BATCH || self.arguments.registry.len() <= self.pending.len() {
            self.flush();
        } else if !self.flush_scheduled {
            self.flush_scheduled = true;
            self.myself.send_after(self.arguments.linger, || PublisherMsg::Flush);
        }
    }

    /// Publishes everything pending in a task of its own.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_events = 0;
        let sinks = self.arguments.sinks.clone();
        let acker = self.arguments.acker.clone();
        tokio::spawn(async move {
            for (mut settlement, failure) in publish(&sinks, batch).await {
                if let Some(detail) = failure {
                    tracing::warn!(message_id = %settlement.message.message_id, error = %detail, "result events not published; message will be handled again");
                    settlement.outcome = SettleOutcome::Release {
                        reason: format!("result events not published: {detail}"),
                    };
                }
                hand_on(&acker, settlement);
            }
        });
    }
}

/// Publishes the events of `batch` to every sink, ten per call; returns each settlement with
/// the first failure of one of its events, if any.
async fn publish(sinks: &[Arc<dyn ResultSink>], batch: Vec<Settlement>) -> Vec<(Settlement, Option<String>)> {
    let owners: Vec<usize> = batch
        .iter()
        .enumerate()
        .flat_map(|(index, settlement)| std::iter::repeat_n(index, settlement.results.len()))
        .collect();
    let events: Vec<ResultEvent> = batch.iter().flat_map(|s| s.results.iter().cloned()).collect();
    let mut failures: Vec<Option<String>> = vec![None; batch.len()];
    let span = tracing::info_span!("publish_results", events = events.len(), error = tracing::field::Empty);
    for (chunk_index, chunk) in events.chunks(PUBLISH_BATCH).enumerate() {
        let first = chunk_index * PUBLISH_BATCH;
        let calls = sinks.iter().map(|sink| sink.publish_batch(chunk));
        for answer in futures::future::join_all(calls).instrument(span.clone()).await {
            let whole_chunk = |detail: String| (first..first + chunk.len()).map(|i| (i, detail.clone())).collect();
            let failed: Vec<(usize, String)> = match answer {
                // An entry the answer does not place fails the whole chunk: never taken for out.
                Ok(entries) if entries.iter().any(|failure| failure.index >= chunk.len()) => {
                    whole_chunk(format!("an answer names an entry not sent: {entries:?}"))
                }
                Ok(entries) => entries
                    .into_iter()
                    .map(|failure| (first + failure.index, failure.detail))
                    .collect(),
                Err(err) => whole_chunk(err.to_string()),
            };
            for (event, detail) in failed {
                span.record("error", detail.as_str());
                if let Some(owner) = owners.get(event) {
                    failures[*owner].get_or_insert(detail);
                }
            }
        }
    }
    for (settlement, failure) in batch.iter().zip(&failures) {
        let outcome = if failure.is_some() { "failed" } else { "published" };
        metrics::counter!(crate::metrics::RESULT_EVENTS, "outcome" => outcome)
            .increment(settlement.results.len() as u64);
    }
    batch.into_iter().zip(failures).collect()
}

/// Gives a settlement to the acker; with the acker down, the message stays on the queue until
/// its visibility timeout (and dropping the settlement returns its permit).
fn hand_on(acker: &StageAddress<AckerMsg>, settlement: Settlement) {
    if let Err(lost) = acker.settle(settlement) {
        tracing::warn!(
            message_id = %lost.message.message_id,
            "acker is down; message stays on the queue until its visibility timeout"
        );
    }
}

impl Actor for Publisher {
    type Msg = PublisherMsg;
    type State = PublisherState;
    type Arguments = PublisherArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<PublisherMsg>,
        arguments: PublisherArguments,
    ) -> Result<PublisherState, ActorProcessingErr> {
        Ok(PublisherState {
            arguments,
            myself,
            pending: Vec::new(),
            pending_events: 0,
            flush_scheduled: false,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<PublisherMsg>,
        message: PublisherMsg,
        state: &mut PublisherState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PublisherMsg::Settle(settlement) => state.settle(settlement),
            PublisherMsg::Flush => {
                state.flush_scheduled = false;
                state.flush();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::ports::{PublishError, SendFailure};
    use crate::ticket::{Delivery, InflightMessage};

    /// Keeps the settlements its tickets make.
    #[derive(Default)]
    struct Held(Mutex<Vec<Settlement>>);

    impl SettlementOutlet for Held {
        fn settle(&self, settlement: Settlement) -> Result<(), Settlement> {
            self.0.lock().unwrap().push(settlement);
            Ok(())
        }
    }

    /// A message of `events` records, all done: its settlement.
    fn settlement(id: &str, events: usize) -> Settlement {
        let held = Arc::new(Held::default());
        let permits = Arc::new(Semaphore::new(1));
        let (_, tickets) = InflightMessage::open(
            Delivery {
                message_id: id.into(),
                receipt_handle: format!("rh-{id}"),
                receive_count: 1,
            },
            events,
            permits.try_acquire_owned().unwrap(),
            held.clone(),
            Arc::new(InflightRegistry::default()),
            tracing::Span::none(),
        );
        for (index, ticket) in tickets.into_iter().enumerate() {
            ticket.done(ResultEvent::rejected((None, Some(format!("{id}/{index}"))), "test", id));
        }
        let mut settled = held.0.lock().unwrap();
        settled.pop().unwrap()
    }

    /// Records each call's keys; fails the entries at the given positions of the calls made so
    /// far, all of them, or answers with a position that was not sent.
    #[derive(Default)]
    struct Sink {
        calls: Mutex<Vec<Vec<String>>>,
        fail_keys: Vec<String>,
        answer_out_of_range: bool,
    }

    #[async_trait]
    impl ResultSink for Sink {
        async fn publish_batch(&self, events: &[ResultEvent]) -> Result<Vec<SendFailure>, PublishError> {
            let keys: Vec<String> = events.iter().map(|e| e.key.clone().unwrap()).collect();
            self.calls.lock().unwrap().push(keys.clone());
            if self.answer_out_of_range {
                return Ok(vec![SendFailure {
                    index: events.len(),
                    permanent: false,
                    detail: "?".into(),
                }]);
            }
            Ok(keys
                .iter()
                .enumerate()
                .filter(|(_, key)| self.fail_keys.contains(key))
                .map(|(index, _)| SendFailure {
                    index,
                    permanent: false,
                    detail: "InternalFailure".into(),
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn events_go_ten_per_call_to_every_sink_and_a_failed_one_fails_only_its_message() {
        let failing = Arc::new(Sink {
            fail_keys: vec!["b/5".into()],
            ..Sink::default()
        });
        let fine = Arc::new(Sink::default());
        let sinks: Vec<Arc<dyn ResultSink>> = vec![failing.clone(), fine.clone()];
        let batch = vec![settlement("a", 4), settlement("b", 7), settlement("c", 2)];
        let outcomes: Vec<(String, bool)> = publish(&sinks, batch)
            .await
            .into_iter()
            .map(|(settlement, failure)| (settlement.message.message_id.clone(), failure.is_some()))
            .collect();
        assert_eq!(outcomes, [("a".into(), false), ("b".into(), true), ("c".into(), false)]);
        for sink in [&failing, &fine] {
            let sizes: Vec<usize> = sink.calls.lock().unwrap().iter().map(Vec::len).collect();
            assert_eq!(sizes, [10, 3]);
        }
        assert_eq!(fine.calls.lock().unwrap()[1], ["b/6", "c/0", "c/1"]);
    }

    #[tokio::test]
    async fn an_answer_naming_an_entry_not_sent_fails_the_whole_call() {
        let sinks: Vec<Arc<dyn ResultSink>> = vec![Arc::new(Sink {
            answer_out_of_range: true,
            ..Sink::default()
        })];
        let published = publish(&sinks, vec![settlement("a", 1), settlement("b", 1)]).await;
        assert!(published.iter().all(|(_, failure)| failure.is_some()));
    }
}

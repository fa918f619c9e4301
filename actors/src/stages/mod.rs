//! The pipeline's stages, one actor per file, each with its message enum beside it, in the
//! order a record meets them: [`poller`] → [`pool`] of [`fetcher`]s → [`pool`] of [`scanner`]s →
//! [`router`] → [`forwarder`] or [`quarantiner`]; the [`publisher`] puts out every record's result
//! event and hands its message to the [`acker`], which deletes or releases it; the
//! [`heartbeat`] keeps those in flight invisible. The crate docs draw the topology;
//! [`crate::supervisor`] starts and restarts them.
//!
//! Each actor follows one convention (ractor's factory): it is spawned with its `…Arguments`
//! and keeps a `…State` built from them in `pre_start`; its logic lives on the state.

pub(crate) mod acker;
pub(crate) mod fetcher;
pub(crate) mod forwarder;
pub(crate) mod heartbeat;
pub(crate) mod poller;
pub(crate) mod pool;
pub(crate) mod publisher;
pub(crate) mod quarantiner;
pub(crate) mod router;
pub(crate) mod scanner;

use crate::model::ObjectRecord;
use crate::policy::Policy;
use crate::ticket::RecordTicket;
use crate::trace::{ObjectTrace, Traced};

/// A record on its way through the pipeline, with the obligation to finish it.
#[derive(Debug)]
pub(crate) struct RecordJob {
    /// What to fetch, scan and route.
    pub(crate) record: ObjectRecord,
    /// Resolved by whichever stage finishes the record.
    pub(crate) ticket: RecordTicket,
    /// The record's `object` span, under its message's span.
    pub(crate) trace: ObjectTrace,
    /// What to do with the object: its bucket's (or prefix's) policy.
    pub(crate) policy: std::sync::Arc<Policy>,
}

impl Traced for RecordJob {
    fn trace_span(&self) -> &tracing::Span {
        &self.trace.span
    }
}

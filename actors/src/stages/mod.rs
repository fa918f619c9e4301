//! The pipeline's stages, one actor per file, each with its message enum beside it, in the
//! order a record meets them: [`poller`] → [`pool`] of [`fetcher`]s → [`pool`] of [`scanner`]s →
//! [`router`] → [`forwarder`] or [`quarantiner`]; the [`acker`] settles every message and the
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
pub(crate) mod quarantiner;
pub(crate) mod router;
pub(crate) mod scanner;

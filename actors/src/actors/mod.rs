//! The actors, one per file, each with its message enum beside it. See the crate docs for the
//! topology.

pub mod acker;
pub mod fetcher;
pub mod forwarder;
pub mod poller;
pub mod pool;
pub mod quarantiner;
pub mod router;
pub mod scanner;
pub mod supervisor;

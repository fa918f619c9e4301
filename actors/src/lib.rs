//! avscan's pipeline: the domain types, the ports it talks through and the supervised actors that
//! move every S3 event from the inbound queue to a verdict. It has no AWS dependency: the binary
//! crate plugs adapters into the [`ports`], tests and benches plug in the fakes of `testsuite`
//! (feature `testsuite`).
//!
//! # Topology
//!
//! ```text
//!                 permits (max_in_flight)
//!                         │
//!  inbound SQS ──► Poller ─┴─► FetchPool ──► Fetcher ×F ──(body stream)──► ScanPool ──► Scanner ×C ──(archive guard)──► clamd
//!                    │              (GET object)        ◄──── verdict ────────┘
//!                    │                   │
//!                    │                   ▼
//!                    │                Router ──clean──► Forwarder ──► outbound SQS (batches of ten)
//!                    │                   └──infected / unscannable / gone──► Quarantiner ──► S3 + SNS
//!                    │
//!                    ├─ every record carries a RecordTicket ─► (all resolved) ─► Publisher ──► result events ─► Acker ──► batch delete / release
//!                    │                                                                                            (at shutdown: release the rest)
//!                    └─ registers each message ─► in-flight registry (settled: removed) ◄── Heartbeat ──► batch visibility extensions
//!                                                                                           (each call its own task)
//! ```
//!
//! Where each box lives: `stages/poller.rs`, `stages/pool.rs` (both pools), `stages/fetcher.rs`,
//! `stages/scanner.rs` (with [`archive_guard`]), `stages/router.rs`, `stages/forwarder.rs`,
//! `stages/quarantiner/` (with [`report`]), `stages/publisher.rs` (with [`result_event`]),
//! `stages/acker.rs`, `stages/heartbeat.rs`;
//! `ticket.rs` holds the `RecordTicket`, `inflight.rs` the registry of messages in flight, which
//! the pipeline owns so that no restart of a stage loses it. The root supervisor
//! (`supervisor.rs`) spawns every stage linked to itself and restarts a failed one with backoff;
//! the two pools do the same for their workers. A restart storm stops the pipeline with an error
//! so that the process exits and its orchestrator restarts it. [`Pipeline`] (`pipeline.rs`)
//! starts and stops the whole.
//!
//! Modules depend one way, no two on each other. At the bottom, importing nothing of the crate:
//! [`trace`], [`backoff`], [`defaults`], [`definitions`], [`metrics`], and the `address`, `shutdown` and
//! `inflight` helpers. Then [`model`] (on definitions), [`result_event`] (on model), the `ticket`
//! (on metrics, inflight and result_event), [`ports`] (on model and result_event), [`event`],
//! [`report`] and [`archive_guard`] (on model and ports), [`restart`] and [`config`]. The stages
//! use all of these (their `RecordJob`, a record with its ticket, is in `stages`); the supervisor
//! wires the stages; the [`Pipeline`] façade starts the supervisor.
//!
//! # Acknowledgement contract
//!
//! * The poller receives only as many SQS messages as it holds in-flight permits; a permit goes
//!   back when the message is deleted or released. Every mailbox downstream is therefore bounded
//!   by `max_in_flight` × records per message.
//! * Each record of a message travels with a `RecordTicket` (`ticket.rs`) that is resolved
//!   exactly once: `done` (with the record's result event), `ignored` (S3's test event) or
//!   `retry`. Dropping it unresolved (an actor died, a send failed) counts as `retry` and logs a
//!   warning.
//! * The SQS message is deleted only when every ticket of it was resolved `done` or `ignored`,
//!   that is after every effect of every record succeeded, and once the publisher put out the
//!   records' result events. Any `retry` (or a failed publish) releases the whole message with a
//!   backoff so it comes back; duplicates are preferred over loss.
//! * While a message is in flight (received, not yet settled) it is registered in the pipeline's
//!   in-flight registry, and the heartbeat extends its visibility timeout, ten messages per call,
//!   each call its own task abandoned after one tick: a restart of the acker or the heartbeat
//!   loses no message, and one stalled call delays no other.
//! * A verdict is only ever as certain as clamd's exact `stream: OK`; the
//!   [`ArchiveGuard`](archive_guard::ArchiveGuard) on the way to clamd can turn clean into
//!   unscannable, never the other way.

#![warn(missing_docs)]

pub mod allow_list;
pub mod archive_guard;
pub mod backoff;
pub mod config;
pub mod defaults;
pub mod definitions;
pub mod event;
pub mod incident;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod ports;
pub mod report;
pub mod restart;
pub mod result_event;
pub mod tags;
pub mod trace;

mod address;
mod inflight;
mod pipeline;
mod shutdown;
mod stages;
mod supervisor;
mod ticket;

#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use config::PipelineConfig;
pub use pipeline::{Pipeline, ShutdownReport};
pub use ports::PipelinePorts;
pub use stages::fetcher::whole_body_budget;

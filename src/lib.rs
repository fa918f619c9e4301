//! avscan's composition root and adapters: the configuration, the AWS and clamd adapters that
//! plug into the pipeline's ports, and the commands. The pipeline itself is the `avscan-actors`
//! crate. This file is the module index:
//!
//! - [`config`]: every variable and flag, validated into settings (nothing else reads the
//!   environment);
//! - [`aws`]: the SQS, S3 and SNS adapters, one file per service; [`clamd`]: our clamd client;
//! - [`run`](mod@run): `avscan run`, which wires the adapters into a pipeline and runs it until shutdown;
//!   [`limits`]: its start-up canaries, which prove clamd's configuration; [`ops`]: `/metrics`, `/healthz`, `/readyz`;
//!   [`telemetry`]: logs and trace export; [`definitions`]: the watcher of clamd's virus
//!   definitions (metrics, the receive gate);
//! - [`check`]: `avscan check`; [`scan`]: `avscan scan`.

pub mod allow_list;
pub mod aws;
pub mod backfill;
pub mod check;
pub mod clamd;
pub mod cli;
pub mod config;
pub mod definitions;
pub mod limits;
pub mod ops;
pub mod policy;
pub mod release;
pub mod result_events;
pub mod run;
pub mod scan;
pub mod telemetry;

pub use run::{run, RunError};

//! avscan's commands and their own arguments; every command also takes the whole configuration
//! ([`ConfigArgs`], `config.rs`).

use clap::{Args, Parser, Subcommand};

use crate::config::ConfigArgs;

#[derive(Debug, Parser)]
#[command(
    name = "avscan",
    version,
    about = "Virus-scans every object uploaded to an S3 bucket with clamd"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scanner until SIGTERM or SIGINT.
    Run(Box<ConfigArgs>),
    /// Check the configuration against the real services: clamd (PING, VERSION, and the five
    /// clamd.conf settings avscan proves), every queue, both buckets and the topic; one line
    /// each, exit 1 on a failure.
    Check(Box<ConfigArgs>),
    /// Scan files or S3 objects now, through the same clamd client and rules; one line each.
    /// Exit 0 if all are clean, 1 if any is infected or unscannable, 2 on an error (clamdscan's
    /// convention). Needs only the clamd and AWS_S3_* settings.
    Scan(Box<ScanArgs>),
    /// Put a quarantined object back where it was uploaded (a false positive): exactly its
    /// bytes, its metadata; a release report beside its quarantine report; a notification.
    /// Refused unless ALLOW_LIST allows its bytes (or --rescan). Exit 0 released, 1 refused.
    Release(Box<ReleaseArgs>),
    /// Put an S3-shaped ObjectCreated event for every object of s3://bucket[/prefix] (or of an
    /// S3 Inventory) on the inbound queue, at a bounded rate and resumable, so the running fleet
    /// scans what is already there. Exit 0 done, 1 failed (resume with --resume).
    Backfill(Box<BackfillArgs>),
    /// Resend the events of objects left in a source bucket longer than
    /// AUDIT_EVENT_RESEND_INTERVAL without a verdict tag (lost notifications). Exit 0 or 1.
    Audit(Box<AuditArgs>),
    /// Ask the `avscan run` listening on OPS_ADDRESS for /healthz: exit 0 on 200, 1 otherwise
    /// (the container image's HEALTHCHECK).
    Healthcheck(HealthcheckArgs),
}

/// What `avscan healthcheck` asks: where `avscan run` listens.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Where `avscan run` serves /healthz (its OPS_ADDRESS); 0.0.0.0 or :: is asked on loopback.
    #[arg(long, env = "OPS_ADDRESS", default_value = "0.0.0.0:9090")]
    pub ops_address: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub request: crate::backfill::BackfillRequest,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub request: crate::backfill::AuditRequest,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub request: crate::release::ReleaseRequest,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Local paths or s3://bucket/key addresses.
    #[arg(required = true, value_name = "PATH | s3://BUCKET/KEY")]
    pub inputs: Vec<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

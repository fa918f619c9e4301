//! The `avscan` binary: reads the configuration (environment, `.env`, flags), sets up logging,
//! and runs the pipeline until SIGTERM or SIGINT.
//!
//! Exit codes: 0 after a clean shutdown, 1 when avscan could not run or gave up (clamd never
//! ready, a queue missing, a restart storm), 2 for a configuration error.

use std::process::ExitCode;

use avscan::config::{Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    // Variables already in the environment win over `.env`.
    let _ = dotenvy::dotenv();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // One line naming the variable, not clap's whole usage text.
            let rendered = err.render().to_string();
            eprintln!(
                "avscan: {}",
                rendered
                    .lines()
                    .next()
                    .unwrap_or("invalid arguments")
                    .trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let Command::Run(args) = cli.command;
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("avscan: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    avscan::telemetry::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(avscan::run(settings, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "avscan stopped");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

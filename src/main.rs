//! The `avscan` binary: reads the configuration (environment, `.env`, flags), sets up logging,
//! and runs the pipeline until SIGTERM or SIGINT (`avscan run`), or checks the configuration
//! against the real services (`avscan check`), or scans files and objects now (`avscan scan`), or
//! puts a quarantined object back (`avscan release`).
//!
//! Exit codes: 0 after a clean shutdown, 1 when avscan could not run or gave up (clamd never
//! ready, a queue missing, a restart storm), 2 for a configuration error.

use std::process::ExitCode;

mod healthcheck;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use avscan::cli::{Cli, Command};
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
    let (args, checking) = match cli.command {
        Command::Run(args) => (args, false),
        Command::Check(args) => (args, true),
        Command::Release(release) => return release_command(&release),
        Command::Healthcheck(args) => return healthcheck::healthcheck(&args),
        Command::Backfill(backfill) => {
            let request = &backfill.request;
            return one_shot(&backfill.config, |settings| async move {
                avscan::backfill::backfill(&settings, request).await
            });
        }
        Command::Audit(audit) => {
            let request = &audit.request;
            return one_shot(&audit.config, |settings| async move {
                avscan::backfill::audit(&settings, request).await
            });
        }
        Command::Scan(scan) => {
            let settings = scan.config.scan_settings();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let outcome = runtime.block_on(avscan::scan::scan(&scan.inputs, &settings));
            return ExitCode::from(outcome as u8);
        }
    };
    let settings = match settings_of(&args) {
        Ok(settings) => settings,
        Err(exit) => return exit,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if checking {
        return match runtime.block_on(avscan::check::check(&settings)) {
            true => ExitCode::SUCCESS,
            false => ExitCode::FAILURE,
        };
    }
    // Handlers first, so that a SIGTERM during start-up is a clean stop, not a kill.
    let signals = runtime.block_on(async { Signals::register() });
    let telemetry = {
        let _inside_runtime = runtime.enter();
        match avscan::telemetry::init(settings.log_format) {
            Ok(telemetry) => telemetry,
            Err(err) => {
                eprintln!("avscan: configuration error: {err}");
                return ExitCode::from(2);
            }
        }
    };
    let outcome = match runtime.block_on(avscan::run(settings, signals.recv())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "avscan stopped");
            ExitCode::FAILURE
        }
    };
    // The pipeline has stopped and its spans have ended: export what is still buffered.
    telemetry.shutdown();
    outcome
}

/// The validated settings, or exit 2 with one line naming the variable.
fn settings_of(args: &avscan::config::ConfigArgs) -> Result<avscan::config::Settings, ExitCode> {
    args.settings().map_err(|err| {
        eprintln!("avscan: configuration error: {err}");
        ExitCode::from(2)
    })
}

/// `avscan release`: 0 released, 1 refused or failed, 2 a configuration error.
fn release_command(release: &avscan::cli::ReleaseArgs) -> ExitCode {
    let request = &release.request;
    one_shot(&release.config, |settings| async move {
        avscan::release::release(&settings, request)
            .await
            .map_err(|err| format!("not released: {err}"))
    })
}

/// A command that runs once and prints one result: 0 and its lines on stdout, 1 and the error
/// on stderr, 2 for a configuration error. Logs (progress, skipped keys) go to stderr.
fn one_shot<F, Fut, E>(config: &avscan::config::ConfigArgs, command: F) -> ExitCode
where
    F: FnOnce(avscan::config::Settings) -> Fut,
    Fut: std::future::Future<Output = Result<String, E>>,
    E: std::fmt::Display,
{
    let settings = match settings_of(config) {
        Ok(settings) => settings,
        Err(exit) => return exit,
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .try_init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(command(settings)) {
        Ok(lines) => {
            println!("{lines}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("avscan: {err}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM and SIGINT, listened for from the moment they are registered.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            terminate: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            interrupt: signal(SignalKind::interrupt()).expect("SIGINT handler"),
        }
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

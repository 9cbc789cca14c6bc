//! `paymesh-sidecar`: command line, logging, runtime and signals.
//!
//! Everything else lives in the library; this file only wires the process:
//! parse flags, load the config (or just check it), build the runtime with
//! `workers` threads, start, reopen the access log on SIGUSR1, and drain on
//! SIGTERM/SIGINT.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use paymesh_process::{LogFormat, StopSignal, init_logging};
use paymesh_sidecar::config;
use tokio::signal::unix::{SignalKind, signal};

#[global_allocator]
static HEAP: paymesh_sidecar::memory::Allocator = paymesh_sidecar::memory::Allocator {};

#[derive(Debug, Parser)]
#[command(version, about = "paymesh sidecar: authentication, throttling, route choice, access log, metrics, admin")]
struct Cli {
    /// Configuration file (YAML); reloaded on SIGHUP and when it changes.
    #[arg(long, value_name = "FILE", env = "PAYMESH_SIDECAR_CONFIG", required_unless_present = "check_config")]
    config: Option<PathBuf>,
    /// Validate FILE, print every problem with its key, and exit (0 valid, 1 not).
    #[arg(long, value_name = "FILE", env = "PAYMESH_SIDECAR_CHECK_CONFIG")]
    check_config: Option<PathBuf>,
    /// Log line format (logs go to stderr; stdout is the default access log).
    #[arg(long, value_enum, env = "PAYMESH_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    paymesh_sidecar::memory::configure();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if let Some(path) = cli.check_config {
        return check(&path);
    }
    let path = cli.config.expect("clap requires --config without --check-config");
    let loaded = match config::load_with_digest(&path) {
        Ok(l) => l,
        Err(errors) => {
            report(&path, &errors);
            return ExitCode::FAILURE;
        }
    };
    match run(loaded, path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("paymesh-sidecar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let result = config::load(path).and_then(|c| match &c.tls {
        // Also parse the TLS files: a config that names a broken key is
        // not a valid config.
        Some(tls) => paymesh_sidecar::tls::acceptor(tls).map(|_| ()),
        None => Ok(()),
    });
    match result {
        Ok(()) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            report(path, &errors);
            ExitCode::FAILURE
        }
    }
}

fn report(path: &Path, errors: &config::ConfigErrors) {
    for e in &errors.0 {
        eprintln!("{}: {e}", path.display());
    }
}

fn run(loaded: config::Loaded, path: PathBuf) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(loaded.config.workers)
        .thread_name("paymesh-worker")
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let mut stop = StopSignal::install().context("SIGTERM and SIGINT handlers")?;
        let running = paymesh_sidecar::start(loaded, Some(path)).await?;
        // SIGUSR1 (logrotate's usual signal): reopen the access-log file.
        // The switch-events file needs nothing: each record opens its path.
        let mut usr1 = signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?;
        let shared = running.shared.clone();
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                tracing::info!("SIGUSR1: reopening the access log");
                shared.access_log.reopen();
            }
        });
        let which = stop.recv().await;
        tracing::info!(signal = which, "shutting down: draining in-flight requests");
        running.shutdown();
        running.wait().await;
        tracing::info!("stopped");
        Ok(())
    })
}

//! `paymesh-telemetryd`: samples the host every interval and writes the
//! telemetry file the sidecar reads (DESIGN.md, "Telemetry file").
//!
//! One thread and no runtime: the daemon must cost next to nothing on the
//! host it watches. Nothing it measures or writes is fatal. A failed sample
//! or write is logged and tried again at the next interval, so the worst a
//! bad moment can do is let the file go stale, which the sidecar notices.
//! Only bad flags stop it before it starts; SIGTERM or SIGINT stop it at once.
//! `--check` turns it into its own liveness probe (`check.rs`).

mod check;
mod cli;
mod output;
mod sample;
mod shutdown;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use paymesh_process::init_logging;
use tracing::{debug, error, info, warn};

use crate::cli::Args;
use crate::output::TelemetryFile;
use crate::sample::Sampler;
use crate::shutdown::Shutdown;

/// The first snapshot needs two CPU readings; waiting a whole (possibly
/// long) interval for it would leave the sidecar without telemetry.
const FIRST_SAMPLE_DELAY: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        return match check::check(&args.out, args.interval, std::time::SystemTime::now()) {
            Ok(found) => {
                println!("{found}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("paymesh-telemetryd --check: {why}");
                ExitCode::FAILURE
            }
        };
    }
    init_logging(args.log_format);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "paymesh-telemetryd failed");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    // Before anything else, so that no signal finds the default handler.
    let shutdown = Shutdown::listen().context("listening for SIGTERM and SIGINT")?;
    let file = TelemetryFile::new(&args.out, args.out_dir())?;
    let mut sampler = Sampler::new(args.interval, args.disk_paths(), args.cgroup_root.clone());
    info!(
        out = %args.out.display(),
        interval = %humantime::format_duration(args.interval),
        disk_paths = ?args.disk_paths(),
        cgroup_root = %args.cgroup_root.display(),
        "paymesh-telemetryd started"
    );

    sampler.prime();
    let mut next = Instant::now() + args.interval.min(FIRST_SAMPLE_DELAY);
    let mut failures = 0_u64;
    loop {
        if let Some(signal) = shutdown.wait_until(next).context("waiting for the next sample")? {
            info!(%signal, "stopping");
            return Ok(());
        }

        match tick(&file, &mut sampler) {
            Ok(()) if failures > 0 => {
                info!(failures, "telemetry written again");
                failures = 0;
            }
            Ok(()) => {}
            Err(e) => {
                failures += 1;
                let error = format!("{e:#}");
                // Once per episode: a disk that stays full must not also
                // fill the log.
                if failures == 1 {
                    warn!(%error, "telemetry not written; retrying every interval");
                } else {
                    debug!(%error, failures, "telemetry still not written");
                }
            }
        }

        // Keep to the schedule; after a stall (a suspended host, a slow
        // disk) sample at once rather than in a burst to catch up.
        next = (next + args.interval).max(Instant::now());
    }
}

fn tick(file: &TelemetryFile, sampler: &mut Sampler) -> anyhow::Result<()> {
    if file.ensure_dir().with_context(|| format!("recreating {}", file.dir().display()))? {
        warn!(dir = %file.dir().display(), "output directory had vanished; recreated it");
    }
    let snapshot = sampler.sample()?;
    file.write(&snapshot)?;
    debug!(?snapshot, "telemetry written");
    Ok(())
}

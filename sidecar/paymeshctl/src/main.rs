//! `paymeshctl`: the operator's CLI for paymesh.
//!
//! Migration percents live in etcd (`<prefix>/migration/<feature>`); this
//! tool reads and validates them, ramps them step by step under a health
//! guard, lists the overload switch records, and shows a sidecar's state.
//! It never writes a value the sidecars would refuse.

mod observe;
mod prom;
mod ramp;
mod show;
mod store;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, Parser, Subcommand};
use observe::{Http, Source};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use store::{Store, check_feature, format_percent, parse_percent};

/// Operator CLI for paymesh: migration percents, ramps, switch events,
/// sidecar state.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// etcd client URLs, comma-separated.
    #[arg(long, env = "PAYMESH_ETCD", default_value = "http://127.0.0.1:2379", value_delimiter = ',', global = true)]
    etcd: Vec<String>,
    /// Root of paymesh's keys in etcd.
    #[arg(long, env = "PAYMESH_ETCD_PREFIX", default_value = "/paymesh", global = true)]
    prefix: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Per-feature share of traffic on the orchestration path.
    #[command(subcommand)]
    Migration(Migration),
    /// Overload switch records, from etcd or from a sidecar's events file.
    SwitchEvents {
        /// Read this JSON-lines events file instead of etcd.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Only this pod's records.
        #[arg(long)]
        pod: Option<String>,
        /// At most this many, newest last.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// A sidecar's /admin/state, readably.
    State {
        /// The sidecar's admin base URL.
        #[arg(long, default_value = "http://127.0.0.1:9901")]
        sidecar: String,
    },
}

#[derive(Debug, Subcommand)]
enum Migration {
    /// Every feature's percent, from etcd.
    Get,
    /// Set a feature's percent (validated before it is written).
    Set { feature: String, percent: String },
    /// Raise a feature's percent step by step while the orchestration path
    /// stays healthy; roll back on a breach.
    Ramp(RampArgs),
    /// The recorded changes of a feature.
    History {
        feature: String,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Debug, ClapArgs)]
struct RampArgs {
    feature: String,
    /// Target percent.
    #[arg(long)]
    to: String,
    /// Percent added per step.
    #[arg(long)]
    step: String,
    /// Time each step is watched before it is judged, e.g. `60s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Highest acceptable 5xx share of the orchestration path: `0.01` or `1%`.
    #[arg(long, value_parser = parse_rate)]
    max_error_rate: f64,
    /// Highest acceptable p99 latency of the orchestration path, e.g. `250ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_p99: Duration,
    /// Requests an interval needs before it can be judged.
    #[arg(long, default_value_t = 100)]
    min_requests: u64,
    /// Intervals a step may wait for enough traffic before the ramp gives up
    /// (and rolls back).
    #[arg(long, default_value_t = 10)]
    max_holds: u32,
    /// On a breach, go back to 0 rather than to the last healthy step.
    #[arg(long)]
    rollback_to_zero: bool,
    /// Admin URLs of the sidecars to scrape, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "prometheus", required_unless_present = "prometheus")]
    sidecars: Vec<String>,
    /// A Prometheus server to query instead.
    #[arg(long)]
    prometheus: Option<String>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let (text, scale) = match s.strip_suffix('%') {
        Some(t) => (t, 100.0),
        None => (s, 1.0),
    };
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=scale).contains(&v) => Ok(v / scale),
        _ => Err(format!("{s:?} is not a rate in [0, 1] (or a percent like 1%)")),
    }
}

/// Exit codes: 0 done, 1 error, 2 a ramp rolled back, 3 a ramp gave up.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Migration(Migration::Get) => {
            let mut store = Store::connect(&cli.etcd, &cli.prefix).await?;
            let (all, revision) = store.get_all().await?;
            println!("FEATURE          PERCENT  NOTE");
            for s in all {
                let (percent, note) = match s.percent {
                    None => ("-".to_owned(), "unset: sidecars use their configured default".to_owned()),
                    Some(Ok(p)) => (format_percent(p), format!("mod revision {}", s.mod_revision)),
                    Some(Err(e)) => ("invalid".to_owned(), format!("{e}; sidecars keep their last good value")),
                };
                println!("{:<14} {:>9}  {}", s.feature, percent, note);
            }
            println!("etcd revision {revision}");
        }
        Command::Migration(Migration::Set { feature, percent }) => {
            check_feature(&feature)?;
            let p = parse_percent(&percent).context("invalid percent")?;
            let mut store = Store::connect(&cli.etcd, &cli.prefix).await?;
            let before = store.get(&feature).await.ok();
            let revision = store.set(&feature, p, json!({ "action": "set", "from": before, "to": p })).await?;
            println!("{feature} set to {}% (etcd revision {revision})", format_percent(p));
        }
        Command::Migration(Migration::History { feature, limit }) => {
            check_feature(&feature)?;
            let mut store = Store::connect(&cli.etcd, &cli.prefix).await?;
            for entry in store.history(&feature, limit).await? {
                println!("{}", show::history_line(&entry));
            }
        }
        Command::Migration(Migration::Ramp(args)) => return ramp(&cli.etcd, &cli.prefix, args).await,
        Command::SwitchEvents { file, pod, limit } => {
            let records = match file {
                Some(path) => show::events_from_file(&path)?,
                None => {
                    let mut store = Store::connect(&cli.etcd, &cli.prefix).await?;
                    show::events_from_etcd(store.list("switch-events").await?)
                }
            };
            let mut matching: Vec<_> =
                records.into_iter().filter(|r| pod.as_deref().is_none_or(|p| r["pod"] == p)).collect();
            let skip = matching.len().saturating_sub(limit);
            for r in matching.drain(skip..) {
                println!("{}", show::event_line(&r));
            }
        }
        Command::State { sidecar } => {
            let body = Http::new().get(&format!("{}/admin/state", sidecar.trim_end_matches('/'))).await?;
            let state: serde_json::Value = serde_json::from_str(&body).context("/admin/state is not JSON")?;
            print!("{}", show::tree(&state));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn ramp(etcd: &[String], prefix: &str, a: RampArgs) -> anyhow::Result<ExitCode> {
    check_feature(&a.feature)?;
    let to = parse_percent(&a.to).context("--to")?;
    let step = parse_percent(&a.step).context("--step")?;
    if step <= 0.0 {
        bail!("--step must be above 0");
    }
    let source = match a.prometheus {
        Some(url) => Source::Prometheus(url),
        None => Source::Sidecars(a.sidecars),
    };
    let plan = ramp::Plan {
        feature: a.feature,
        to,
        step,
        interval: a.interval,
        max_error_rate: a.max_error_rate,
        max_p99: a.max_p99,
        min_requests: a.min_requests,
        max_holds: a.max_holds.max(1),
        rollback_to_zero: a.rollback_to_zero,
    };
    let mut store = Store::connect(etcd, prefix).await?;
    Ok(match ramp::run(&mut store, &source, &Http::new(), &plan).await? {
        ramp::Outcome::Reached(p) => {
            println!("done: {} is at {}%", plan.feature, format_percent(p));
            ExitCode::SUCCESS
        }
        ramp::Outcome::RolledBack { from, to, reason } => {
            eprintln!(
                "ROLLED BACK: {} at {}% breached its limits ({reason}); set back to {}%",
                plan.feature,
                format_percent(from),
                format_percent(to)
            );
            ExitCode::from(2)
        }
        ramp::Outcome::GaveUp { at, to, reason } => {
            eprintln!(
                "GAVE UP: {} at {}%: {reason}; set back to {}%",
                plan.feature,
                format_percent(at),
                format_percent(to)
            );
            ExitCode::from(3)
        }
    })
}

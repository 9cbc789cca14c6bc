//! `paymeshctl`: the operator's CLI for paymesh.
//!
//! Migration percents live in etcd (`<prefix>/migration/<feature>`, with
//! per-client overrides under `<prefix>/migration/<feature>/clients/<id>`);
//! this tool reads and validates them, ramps them step by step under a
//! health guard (yielding to any other writer), lists the overload switch
//! records and the fleet quota members, and shows a sidecar's state. It
//! never writes a value the sidecars would refuse.

mod admin;
mod etcd;
mod fleet;
mod lock;
mod observe;
mod progress;
mod prometheus;
mod ramp;
mod show;
mod store;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, Parser, Subcommand};
use observe::{Http, Source};
use paymesh_vocab::Component;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use store::{Store, Target, format_percent, parse_percent};

/// The ramp's exit codes; documented in `--help` (keep them stable).
mod exit {
    pub const REACHED: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const ROLLED_BACK: u8 = 2;
    pub const GAVE_UP: u8 = 3;
    pub const PREEMPTED: u8 = 4;
    pub const LOCKED: u8 = 5;
    pub const SIGNALLED: u8 = 6;
}

const RAMP_EXIT_CODES: &str = "Exit codes:
  0  target reached
  1  error (bad flags, etcd unreachable at start, ...)
  2  rolled back on a breach of --max-error-rate, --max-p99 or --max-mismatch-rate
  3  gave up for lack of evidence after --max-holds intervals (rolled back)
  4  preempted: another writer changed the key (or the ramp lost its lock); nothing written after that
  5  refused: another ramp holds the lock of this feature (or client)
  6  stopped by SIGTERM/SIGINT: set back to the last step judged healthy";

/// Operator CLI for paymesh: migration percents, ramps, switch events,
/// sidecar state.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// etcd endpoints, TLS and credentials.
    #[command(flatten)]
    etcd: etcd::EtcdArgs,
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
        #[arg(long, env = "PAYMESH_SWITCH_EVENTS_FILE")]
        file: Option<PathBuf>,
        /// Only this pod's records.
        #[arg(long, env = "PAYMESH_SWITCH_EVENTS_POD")]
        pod: Option<String>,
        /// At most this many, newest last.
        #[arg(long, env = "PAYMESH_SWITCH_EVENTS_LIMIT", default_value_t = 50)]
        limit: usize,
    },
    /// Fleet quota members and, per `scope: fleet` client, each member's
    /// demand, admitted and refused rates and share, from etcd.
    Fleet {
        /// Print JSON instead of tables.
        #[arg(long, env = "PAYMESH_FLEET_JSON")]
        json: bool,
    },
    /// A sidecar's /admin/state, readably.
    State {
        /// The sidecar's admin base URL.
        #[arg(long, env = "PAYMESH_ADMIN_URL", default_value = "http://127.0.0.1:9901")]
        sidecar: String,
    },
    /// Ask a sidecar to reload its config file now (POST /admin/reload;
    /// needs its admin token, from the pod).
    Reload {
        #[command(flatten)]
        target: admin::AdminTarget,
    },
    /// Pin a sheddable component of a sidecar on or off, or hand it back to
    /// the switch board with `auto` (POST /admin/components/NAME; needs its
    /// admin token, from the pod).
    Component {
        /// access_log, detailed_metrics, tracing or profiling.
        #[arg(value_parser = Component::NAMES)]
        name: String,
        #[arg(value_parser = ["on", "off", "auto"])]
        state: String,
        #[command(flatten)]
        target: admin::AdminTarget,
    },
}

#[derive(Debug, Subcommand)]
enum Migration {
    /// Every feature's percent and its per-client overrides, from etcd.
    Get,
    /// Set a feature's percent, or one client's override of it (validated
    /// before it is written). A person's write always wins: a ramp running
    /// on the same key stops when it sees it.
    Set {
        feature: String,
        /// A percent in [0, 100].
        #[arg(required_unless_present = "delete")]
        percent: Option<String>,
        /// Override the feature's percent for this client only
        /// (`<prefix>/migration/<feature>/clients/<ID>`).
        #[arg(long, env = "PAYMESH_MIGRATION_CLIENT", value_name = "ID")]
        client: Option<String>,
        /// With --client: delete the override; the client follows the
        /// feature's percent again.
        #[arg(long, env = "PAYMESH_MIGRATION_DELETE", requires = "client", conflicts_with = "percent")]
        delete: bool,
    },
    /// Raise a feature's (or one client's) percent step by step while the
    /// orchestration path stays healthy; roll back on a breach.
    #[command(after_help = RAMP_EXIT_CODES)]
    Ramp(Box<RampArgs>),
    /// The recorded changes of a feature, as a table: who changed what, and
    /// what stopped each ramp.
    History {
        feature: String,
        /// Only the changes of this client's override.
        #[arg(long, env = "PAYMESH_MIGRATION_CLIENT", value_name = "ID")]
        client: Option<String>,
        #[arg(long, env = "PAYMESH_MIGRATION_HISTORY_LIMIT", default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Debug, ClapArgs)]
struct RampArgs {
    feature: String,
    /// Ramp this client's override only, judged on its traffic only (it
    /// starts from the client's current percent).
    #[arg(long, env = "PAYMESH_MIGRATION_CLIENT", value_name = "ID")]
    client: Option<String>,
    /// Target percent.
    #[arg(long, env = "PAYMESH_RAMP_TO")]
    to: String,
    /// Percent added per step.
    #[arg(long, env = "PAYMESH_RAMP_STEP")]
    step: String,
    /// Time each step is watched before it is judged, e.g. `60s`.
    #[arg(long, env = "PAYMESH_RAMP_INTERVAL", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Highest acceptable 5xx share of the orchestration path: `0.01` or `1%`.
    #[arg(long, env = "PAYMESH_RAMP_MAX_ERROR_RATE", value_parser = parse_rate)]
    max_error_rate: f64,
    /// Highest acceptable p99 latency of the orchestration path, e.g. `250ms`.
    #[arg(long, env = "PAYMESH_RAMP_MAX_P99", value_parser = humantime::parse_duration)]
    max_p99: Duration,
    /// Requests an interval needs before it can be judged.
    #[arg(long, env = "PAYMESH_RAMP_MIN_REQUESTS", default_value_t = 100)]
    min_requests: u64,
    /// Highest acceptable share of the sidecars' shadow compares whose
    /// answers differ between the paths (`paymesh_shadow_compares_total`):
    /// `0.001` or `0.1%`. Failed shadow reads are not compares. For a
    /// --client ramp the feature's compares are used: the metric has no
    /// client label. Default: shadow compares are not judged.
    #[arg(long, env = "PAYMESH_RAMP_MAX_MISMATCH_RATE", value_parser = parse_rate)]
    max_mismatch_rate: Option<f64>,
    /// Shadow compares (match or mismatch) an interval needs before it can
    /// be judged; only with --max-mismatch-rate.
    #[arg(long, env = "PAYMESH_RAMP_MIN_COMPARES", default_value_t = 100, requires = "max_mismatch_rate")]
    min_compares: u64,
    /// Intervals a step may wait for evidence (enough traffic, every
    /// sidecar's data, latency histograms, enough shadow compares) before the ramp gives up and
    /// rolls back.
    #[arg(long, env = "PAYMESH_RAMP_MAX_HOLDS", default_value_t = 10)]
    max_holds: u32,
    /// On a breach, go back to 0 rather than to the last healthy step.
    #[arg(long, env = "PAYMESH_RAMP_ROLLBACK_TO_ZERO")]
    rollback_to_zero: bool,
    /// Admin URLs of the sidecars to scrape, comma-separated.
    #[arg(
        long,
        env = "PAYMESH_RAMP_SIDECARS",
        value_delimiter = ',',
        conflicts_with = "prometheus",
        required_unless_present = "prometheus"
    )]
    sidecars: Vec<String>,
    #[command(flatten)]
    prometheus: prometheus::PrometheusArgs,
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

/// Exit codes: 0 done, 1 error; a ramp's own codes are in RAMP_EXIT_CODES.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = etcd::hint(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(exit::ERROR)
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
                for (client, p, rev) in s.clients {
                    let (percent, note) = match p {
                        Ok(p) => (format_percent(p), format!("client override, mod revision {rev}")),
                        Err(e) => ("invalid".to_owned(), format!("client override: {e}; the last good one stays")),
                    };
                    println!("  client {:<14} {:>9}  {}", client, percent, note);
                }
            }
            println!("etcd revision {revision}");
        }
        Command::Migration(Migration::Set { feature, percent, client, delete }) => {
            let target = Target::new(&feature, client.as_deref())?;
            let p = match &percent {
                Some(text) if !delete => Some(parse_percent(text).context("invalid percent")?),
                _ => None,
            };
            let mut store = Store::connect(&cli.etcd, &cli.prefix).await?;
            let before = store.read(&target).await?;
            let from = before.percent.and_then(Result::ok);
            let revision = match p {
                Some(p) => store.set(&target, p, json!({ "action": "set", "from": from, "to": p })).await?,
                None => store.delete(&target, json!({ "action": "unset", "from": from, "to": null })).await?,
            };
            match p {
                Some(p) => println!("{target} set to {}% (etcd revision {revision})", format_percent(p)),
                None => println!(
                    "{target}: override deleted; the client follows the feature's percent (etcd revision {revision})"
                ),
            }
            if let Some(holder) = lock::holder(&mut store, &target).await {
                println!(
                    "note: a ramp holds {} ({}); it stops without writing when it sees this change",
                    holder.0,
                    lock::describe(&holder.1)
                );
            }
        }
        Command::Migration(Migration::History { feature, client, limit }) => {
            let target = Target::new(&feature, client.as_deref())?;
            let mut store = Store::connect(&cli.etcd, &cli.prefix).await?;
            print!("{}", show::history_table(&store.history(&target.feature, target.client.as_deref(), limit).await?));
        }
        Command::Migration(Migration::Ramp(args)) => return ramp(&cli.etcd, &cli.prefix, *args).await,
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
        Command::Fleet { json } => {
            let mut store = Store::connect(&cli.etcd, &cli.prefix).await?;
            let dir = format!("{}/fleet/", store.prefix());
            let members = fleet::parse(&dir, store.list("fleet").await?);
            if json {
                println!("{}", fleet::to_json(&members));
            } else {
                print!("{}", fleet::table(&members, store::now_ms()));
            }
        }
        Command::Reload { target } => {
            admin::post(&target, "/admin/reload", "").await?;
            println!("reload requested; the sidecar logs the outcome and /admin/state shows the version in force");
        }
        Command::Component { name, state, target } => {
            let body =
                admin::post(&target, &format!("/admin/components/{name}"), admin::component_body(&state)?).await?;
            let v: serde_json::Value = serde_json::from_str(&body).context("the answer is not JSON")?;
            println!("{name}: enabled {}, control {}", v["enabled"], v["control"].as_str().unwrap_or("?"));
        }
        Command::State { sidecar } => {
            let body = Http::new().get(&format!("{}/admin/state", sidecar.trim_end_matches('/'))).await?;
            let state: serde_json::Value = serde_json::from_str(&body).context("/admin/state is not JSON")?;
            print!("{}", show::tree(&state));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn ramp(etcd: &etcd::EtcdArgs, prefix: &str, a: RampArgs) -> anyhow::Result<ExitCode> {
    let target = Target::new(&a.feature, a.client.as_deref())?;
    let to = parse_percent(&a.to).context("--to")?;
    let step = parse_percent(&a.step).context("--step")?;
    if step <= 0.0 {
        bail!("--step must be above 0");
    }
    let source = match &a.prometheus.prometheus {
        Some(url) => {
            let p = prometheus::Prometheus::new(url, &a.prometheus)?;
            p.check().await?;
            Source::Prometheus(Box::new(p))
        }
        None => Source::Sidecars(a.sidecars),
    };
    let plan = ramp::Plan {
        target,
        to,
        step,
        interval: a.interval,
        max_error_rate: a.max_error_rate,
        max_p99: a.max_p99,
        min_requests: a.min_requests,
        max_mismatch_rate: a.max_mismatch_rate,
        min_compares: a.min_compares,
        max_holds: a.max_holds.max(1),
        rollback_to_zero: a.rollback_to_zero,
    };
    // Before the first write: from here on a signal is the ramp's to handle.
    let mut signals = ramp::Signals::register()?;
    let mut store = Store::connect(etcd, prefix).await?;
    let t = &plan.target;
    let lock = match lock::RampLock::acquire(&store, t, plan.summary()).await? {
        Ok(lock) => lock,
        Err(held) => {
            eprintln!(
                "REFUSED: another ramp holds {} — {}; wait for it, or stop it (SIGTERM) and take over",
                held.key,
                lock::describe(&held.holder)
            );
            return Ok(ExitCode::from(exit::LOCKED));
        }
    };
    let mut progress = progress::Progress::new();
    let outcome = ramp::run(&mut store, &lock, &mut signals, &source, &Http::new(), &plan, &mut progress).await;
    progress.finish();
    lock.release().await;
    Ok(ExitCode::from(match outcome? {
        ramp::Outcome::Reached(p) => {
            println!("done: {t} is at {}%", format_percent(p));
            exit::REACHED
        }
        ramp::Outcome::RolledBack { from, to, breach } => {
            eprintln!(
                "ROLLED BACK: {t} at {}% breached {}; set back to {}%",
                format_percent(from),
                breach.guard,
                format_percent(to)
            );
            eprintln!("  {}", breach.legacy);
            if breach.legacy_failing {
                eprintln!(
                    "  the legacy path is failing too: a shared dependency is likely down, and a rollback alone does not fix the outage"
                );
            }
            exit::ROLLED_BACK
        }
        ramp::Outcome::GaveUp { at, to, reason } => {
            eprintln!("GAVE UP: {t} at {}%: {reason}; set back to {}%", format_percent(at), format_percent(to));
            exit::GAVE_UP
        }
        ramp::Outcome::Preempted { at, found, by } => {
            let value = found.raw.as_deref().map_or("deleted".to_owned(), |v| format!("{v:?}"));
            eprintln!(
                "PREEMPTED: {t} was changed by {by}: now {value} at revision {}; the ramp (last at {}%) stopped without writing",
                found.mod_revision,
                format_percent(at)
            );
            exit::PREEMPTED
        }
        ramp::Outcome::LostLock { at } => {
            eprintln!(
                "PREEMPTED: {t}: the ramp lost its lock {} (lease expired); stopped at {}% without writing",
                lock::lock_key(&store, t),
                format_percent(at)
            );
            exit::PREEMPTED
        }
        ramp::Outcome::Stopped { signal, at, to, note } => {
            match note {
                None => eprintln!(
                    "STOPPED by {signal}: {t} set back from {}% to {}%, the last step judged healthy; lock released",
                    format_percent(at),
                    format_percent(to)
                ),
                Some(note) => eprintln!("STOPPED by {signal}: {t} {note}; lock released"),
            }
            exit::SIGNALLED
        }
    }))
}

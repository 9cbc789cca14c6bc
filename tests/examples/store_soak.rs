//! Soak benchmark of the orchestrator's store: prints numbers, asserts
//! nothing.
//!
//! 1. Charges per second through the orchestrator alone (workflow API, one
//!    request per charge).
//! 2. Sustained charges through the pod (the app, or the sidecar in front
//!    of it with `--via sidecar`; half legacy, half orchestration), with the
//!    orchestrator's RSS and the data directory's size printed every
//!    `--report` interval.
//!
//! ```text
//! cargo build --release -p paymesh-orchestrator -p paymesh-app -p paymesh-sidecar
//! cargo run --release -p paymesh-system-tests --example store_soak -- \
//!     --duration 10m --alone 20s --connections 8 [--via app|sidecar] [--cache-mib 16|default]
//! ```
//!
//! Traffic goes to loopback only, and every loop is bounded by time.

use paymesh_system_tests::{AppProcess, Client, Orchestrator, Process, SidecarProcess, sidecar};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    duration: Duration,
    alone: Duration,
    report: Duration,
    connections: usize,
    via: String,
    cache_mib: String,
}

fn parse_duration(s: &str) -> Duration {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("bad duration {s:?}"));
    match unit {
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "ms" => Duration::from_millis(n),
        _ => panic!("bad duration unit in {s:?} (ms, s, m)"),
    }
}

fn args() -> Args {
    let mut a = Args {
        duration: Duration::from_secs(60),
        alone: Duration::from_secs(20),
        report: Duration::from_secs(60),
        connections: 8,
        via: "app".into(),
        cache_mib: "16".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => a.duration = parse_duration(&value()),
            "--alone" => a.alone = parse_duration(&value()),
            "--report" => a.report = parse_duration(&value()),
            "--connections" => a.connections = value().parse().expect("--connections N"),
            "--via" => a.via = value(),
            "--cache-mib" => a.cache_mib = value(),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn rss_mib(p: &Process) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn dir_mib(dir: &Path) -> f64 {
    let bytes: u64 =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0);
    bytes as f64 / (1024.0 * 1024.0)
}

/// `connections` workers POSTing until `stop`; counts 2xx and the rest.
fn load(
    connections: usize,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    request: impl Fn(&Client, u64) -> tokio::task::JoinHandle<bool> + Send + Sync + 'static,
) -> Vec<tokio::task::JoinHandle<()>> {
    let request = Arc::new(request);
    (0..connections)
        .map(|w| {
            let (stop, ok, failed, request) = (stop.clone(), ok.clone(), failed.clone(), request.clone());
            tokio::spawn(async move {
                let client = Client::new();
                let mut n = (w as u64) << 40;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    match request(&client, n).await {
                        Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // `--cache-mib default` passes no flag: for a build without it (the
    // old store, run with PAYMESH_BIN_DIR pointing at its binaries).
    let extra: Vec<&str> =
        if args.cache_mib == "default" { vec![] } else { vec!["--cache-mib", args.cache_mib.as_str()] };

    // 1. The orchestrator alone.
    let data = dir.path().join("alone");
    let orchestrator = Orchestrator::start(&data, &logs, &extra).await;
    let (stop, ok, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let url = format!("{}/workflows/v1/executions", orchestrator.url);
    let workers = load(args.connections, stop.clone(), ok.clone(), failed.clone(), move |client, n| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let body = json!({
                "workflow": "CHARGE", "client_ref": "soak", "idempotency_token": format!("k{n}"),
                "request_fingerprint": "f", "input": {"amount": {"value": "10.00", "currency": "USD"}, "payment_method": "tok_visa"},
            });
            matches!(client.send(http::Method::POST, &url, &[], body.to_string().as_bytes()).await, Ok(r) if r.status.is_success())
        })
    });
    let started = Instant::now();
    tokio::time::sleep(args.alone).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "orchestrator alone: {} connections, {secs:.0} s: {n} charges, {:.0} charges/s, {} failed, rss {:.1} MiB, data dir {:.1} MiB",
        args.connections,
        n as f64 / secs,
        failed.load(Ordering::Relaxed),
        rss_mib(&orchestrator.process),
        dir_mib(&data),
    );
    drop(orchestrator);

    // 2. Sustained through the pod.
    let data = dir.path().join("pod");
    let orchestrator = Orchestrator::start(&data, &logs, &extra).await;
    let app = AppProcess::start(&orchestrator.url, &logs, &[]).await;
    let (front, auth, _sidecar) = if args.via == "sidecar" {
        let app_addr = app.url.trim_start_matches("http://").to_owned();
        let extra = format!(
            "migration:\n  etcd_endpoints: []\n  cache_file: {logs}/migration.json\n  defaults: {{ charge: 50, refund: 0, disbursement: 0 }}\n\
             overload:\n  events_file: {logs}/switch-events.jsonl\naccess_log:\n  path: /dev/null\n",
            logs = logs.display()
        );
        let s = SidecarProcess::start(&logs, &app_addr, &extra).await;
        (s.url.clone(), Some(format!("Bearer {}", sidecar::KEY)), Some(s))
    } else {
        (app.url.clone(), None, None)
    };
    let via = args.via.clone();
    let (stop, ok, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let url = format!("{front}/v1/charges");
    let workers = load(args.connections, stop.clone(), ok.clone(), failed.clone(), move |client, n| {
        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
        tokio::spawn(async move {
            let key = format!("k{n}");
            let body = json!({"amount": 1000, "currency": "usd", "source": "tok_visa"}).to_string();
            let mut headers = vec![("idempotency-key", key.as_str())];
            // Through the app directly the route is ours to pick: half and half.
            if auth.is_none() {
                headers.push(("x-paymesh-route", if n % 2 == 0 { "legacy" } else { "orchestration" }));
            }
            if let Some(a) = auth.as_deref() {
                headers.push(("authorization", a));
            }
            matches!(client.send(http::Method::POST, &url, &headers, body.as_bytes()).await, Ok(r) if r.status.is_success())
        })
    });
    println!(
        "pod via {via}: {} connections for {:?}; start: orchestrator rss {:.1} MiB, data dir {:.1} MiB",
        args.connections,
        args.duration,
        rss_mib(&orchestrator.process),
        dir_mib(&data)
    );
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    while started.elapsed() < args.duration {
        tokio::time::sleep(args.report.min(args.duration.saturating_sub(started.elapsed()))).await;
        let n = ok.load(Ordering::Relaxed);
        let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), n);
        println!(
            "t={:>4.0}s charges={n} rate={rate:.0}/s failed={} orchestrator_rss={:.1} MiB app_rss={:.1} MiB data_dir={:.1} MiB",
            started.elapsed().as_secs_f64(),
            failed.load(Ordering::Relaxed),
            rss_mib(&orchestrator.process),
            rss_mib(&app.process),
            dir_mib(&data),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let n = ok.load(Ordering::Relaxed);
    println!(
        "pod total: {n} charges in {:.0} s, {:.0} charges/s, {} failed",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed)
    );
}

//! Benchmark: what shedding buys at saturation, and how fast the switch is.
//!
//! ```sh
//! cargo build --release -p paymesh-sidecar -p paymesh-app --bins
//! PAYMESH_BIN_DIR=target/release cargo run --release -p paymesh-system-tests --example overload_switch -- 10 64
//! ```
//!
//! Arguments: seconds per measured phase (default 10), concurrent
//! connections (default 64). One sidecar in front of the real app, the
//! access log going to a file, `overload.check_interval` at its default of
//! 1 s. An in-process closed-loop client keeps every connection busy with
//! authenticated `GET /healthz` (proxied to the app, which answers at
//! once), so the sidecar's own work dominates. On one machine the client,
//! the sidecar and the app share the cores: that is saturation.
//!
//! Spans go to a real OTLP receiver (the system tests' oteltest sink, in
//! target/otel-venv), so `tracing` has real export work to shed.
//!
//! Phases: everything on (cool telemetry), everything shed (hot
//! telemetry), three times over; then `tracing` alone, pinned on and off
//! through the admin endpoint with everything else on, three times over:
//! what shedding `tracing` saves per request. Then, without load, rounds of
//! "write hot telemetry, wait for the switch": the time from the file
//! crossing the threshold to the first switch (shadow_compare) and to the
//! last one (four checks later: one component per check), taken from the
//! switch records' own timestamps.

use paymesh_system_tests::otlp::{OtlpSink, Protocol};
use paymesh_system_tests::sidecar::{ADMIN_AUTH, KEY};
use paymesh_system_tests::{AppProcess, Client, SidecarProcess, eventually, free_port};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HOLD: Duration = Duration::from_secs(2);
/// Measured (on, shed) pairs.
const PAIRS: usize = 3;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn write_telemetry(path: &Path, cpu: f64) {
    let sample = json!({
        "sampled_at_ms": now_ms(), "interval_ms": 1000, "cpus": 2, "cpu_percent": cpu,
        "load1": 1.0, "load5": 1.0, "load15": 1.0, "mem_used_percent": 30.0,
        "disk_free_percent": 50.0, "cgroup": null,
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, sample.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Keeps the telemetry file fresh at `cpu` (stored as an integer percent).
fn telemetry_writer(path: &Path, cpu: Arc<std::sync::atomic::AtomicU64>) {
    let path = path.to_owned();
    tokio::spawn(async move {
        loop {
            write_telemetry(&path, cpu.load(Ordering::Relaxed) as f64);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}

struct Phase {
    /// The sidecar's CPU time (user + system) per request, in µs: what the
    /// sidecar itself spends, much less sensitive than throughput to
    /// whatever else the machine runs.
    cpu_us: f64,
    requests: usize,
    errors: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// utime + stime of a process, in clock ticks (USER_HZ, 100 a second).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th of them.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

async fn load(url: &str, pid: i32, connections: usize, seconds: u64) -> Phase {
    let ticks = cpu_ticks(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let auth = format!("Bearer {KEY}");
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..connections {
        let (stop, url, auth) = (stop.clone(), url.to_owned(), auth.clone());
        tasks.push(tokio::spawn(async move {
            // One client per task: one keep-alive connection each.
            let client = Client::new();
            let (mut latencies, mut errors) = (Vec::with_capacity(100_000), 0usize);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match client.send(http::Method::GET, &url, &[("authorization", &auth)], b"").await {
                    Ok(r) if r.status == 200 => latencies.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_us = (cpu_ticks(pid) - ticks) as f64 * 10_000.0 / all.len().max(1) as f64;
    all.sort();
    let q = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
    Phase { cpu_us, requests: all.len(), errors, seconds: elapsed, p50_ms: q(0.5), p99_ms: q(0.99) }
}

fn report(name: &str, p: &Phase) {
    println!(
        "{name:<14} {:>7.0} req/s   p50 {:>5.2} ms   p99 {:>5.2} ms   sidecar CPU {:>5.1} µs/req   ({} ok, {} errors, {:.1} s)",
        p.requests as f64 / p.seconds,
        p.p50_ms,
        p.p99_ms,
        p.cpu_us,
        p.requests,
        p.errors,
        p.seconds
    );
}

async fn all_enabled(admin: &str, want: bool) -> bool {
    let state = Client::new().get(&format!("{admin}/admin/state"), &[]).await.json();
    state["components"].as_object().unwrap().values().all(|c| c["enabled"] == want)
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let telemetry = d.join("telemetry.json");
    let events = d.join("events.jsonl");
    let cpu = Arc::new(std::sync::atomic::AtomicU64::new(20));
    write_telemetry(&telemetry, 20.0);
    telemetry_writer(&telemetry, cpu.clone());

    // The app needs no orchestrator to answer /healthz.
    let app = AppProcess::start(&format!("http://127.0.0.1:{}", free_port()), d, &[]).await;
    let sink = OtlpSink::start(d, Protocol::Grpc).await;
    let yaml = format!(
        "migration:\n  etcd_endpoints: []\n  cache_file: {}\n\
         overload:\n  telemetry_file: {}\n  events_file: {}\n  hold: {}s\n\
         access_log:\n  path: {}\n\
         tracing:\n  otlp_endpoint: \"{}\"\n",
        d.join("migration.json").display(),
        telemetry.display(),
        events.display(),
        HOLD.as_secs(),
        d.join("access.log").display(),
        sink.endpoint(),
    );
    let sidecar = SidecarProcess::start(d, app.url.trim_start_matches("http://"), &yaml).await;
    let url = format!("{}/healthz", sidecar.url);
    println!(
        "overload_switch: {connections} connections, {seconds} s per phase, sidecar {}",
        paymesh_system_tests::bin("paymesh-sidecar").display()
    );

    let pid = sidecar.process.pid().as_raw();
    load(&url, pid, connections, 3).await; // warm-up
    // Alternate the two states, so drift (caches, CPU frequency, other
    // work on the machine) falls on both alike.
    let (mut on, mut shed) = (Vec::new(), Vec::new());
    for round in 1..=PAIRS {
        cpu.store(20, Ordering::Relaxed);
        eventually(Duration::from_secs(30), "all restored", || all_enabled(&sidecar.admin, true)).await;
        let p = load(&url, pid, connections, seconds).await;
        report(&format!("all on      #{round}"), &p);
        on.push(p);
        cpu.store(95, Ordering::Relaxed);
        eventually(Duration::from_secs(30), "all shed", || all_enabled(&sidecar.admin, false)).await;
        let p = load(&url, pid, connections, seconds).await;
        report(&format!("all shed    #{round}"), &p);
        shed.push(p);
    }
    let rate = |ps: &[Phase]| ps.iter().map(|p| p.requests as f64 / p.seconds).sum::<f64>() / ps.len() as f64;
    let p99 = |ps: &[Phase]| ps.iter().map(|p| p.p99_ms).sum::<f64>() / ps.len() as f64;
    let cpu_us = |ps: &[Phase]| ps.iter().map(|p| p.cpu_us).sum::<f64>() / ps.len() as f64;
    println!("mean on:   {:.0} req/s, p99 {:.2} ms, sidecar CPU {:.1} µs/req", rate(&on), p99(&on), cpu_us(&on));
    println!("mean shed: {:.0} req/s, p99 {:.2} ms, sidecar CPU {:.1} µs/req", rate(&shed), p99(&shed), cpu_us(&shed));
    println!(
        "shedding: throughput {:+.1}%, p99 {:+.1}%, sidecar CPU per request {:+.1}%",
        (rate(&shed) / rate(&on) - 1.0) * 100.0,
        (p99(&shed) / p99(&on) - 1.0) * 100.0,
        (cpu_us(&shed) / cpu_us(&on) - 1.0) * 100.0
    );
    cpu.store(20, Ordering::Relaxed);
    eventually(Duration::from_secs(30), "all restored", || all_enabled(&sidecar.admin, true)).await;
    tokio::time::sleep(HOLD).await;

    // `tracing` alone: span creation and OTLP export, on vs shed.
    let pin = |on: Option<bool>| {
        let url = format!("{}/admin/components/tracing", sidecar.admin);
        async move {
            let reply = Client::new().post(&url, &[ADMIN_AUTH], &json!({ "enabled": on })).await;
            assert_eq!(reply.status, 200, "pin tracing: {}", String::from_utf8_lossy(&reply.body));
        }
    };
    let (mut traced, mut untraced) = (Vec::new(), Vec::new());
    for round in 1..=PAIRS {
        pin(Some(true)).await;
        let p = load(&url, pid, connections, seconds).await;
        report(&format!("tracing on  #{round}"), &p);
        traced.push(p);
        pin(Some(false)).await;
        let p = load(&url, pid, connections, seconds).await;
        report(&format!("tracing off #{round}"), &p);
        untraced.push(p);
    }
    pin(None).await;
    println!(
        "shedding tracing: sidecar CPU {:.1} → {:.1} µs/req ({:+.1}%), {} spans received by the collector",
        cpu_us(&traced),
        cpu_us(&untraced),
        (cpu_us(&untraced) / cpu_us(&traced) - 1.0) * 100.0,
        sink.spans().len()
    );

    // Switch latency, idle: from the file crossing the threshold to the
    // switch records (check_interval 1 s: one check is due within 1 s).
    let rounds = 5;
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let before = records(&events).len();
        let crossed = now_ms();
        cpu.store(95, Ordering::Relaxed);
        write_telemetry(&telemetry, 95.0);
        eventually(Duration::from_secs(30), "all shed", || all_enabled(&sidecar.admin, false)).await;
        let new = &records(&events)[before..];
        first.push(new[0]["time_ms"].as_u64().unwrap() - crossed);
        last.push(new[new.len() - 1]["time_ms"].as_u64().unwrap() - crossed);
        cpu.store(20, Ordering::Relaxed);
        write_telemetry(&telemetry, 20.0);
        eventually(Duration::from_secs(30), "all restored", || all_enabled(&sidecar.admin, true)).await;
        // A component may not flip back within `hold` of its last flip (the
        // anti-flap rule), so wait that out; then start the next round at
        // another point of the check cycle.
        tokio::time::sleep(HOLD + Duration::from_millis(137 * (first.len() as u64 % 7))).await;
    }
    let fmt = |v: &[u64]| v.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(", ");
    println!("threshold crossed → first switch (ms): {}   max {}", fmt(&first), first.iter().max().unwrap());
    println!("threshold crossed → all five shed (ms): {}   max {}", fmt(&last), last.iter().max().unwrap());
}

//! Benchmark: time from an etcd put to the new percent being applied in N
//! sidecars (issue 5's target: p99 ≤ 100 ms with 8 sidecars).
//!
//! ```sh
//! cargo build --release --workspace --bins
//! PAYMESH_BIN_DIR=target/release cargo run --release -p paymesh-system-tests --example migration_latency -- 8 50
//! ```
//!
//! Each round writes a new percent through etcd's JSON gateway (the clock
//! starts just before the write), then polls every sidecar's
//! `/admin/state` every millisecond until it shows the value. Polling adds
//! up to ~1 ms of resolution to each sample.

use paymesh_system_tests::{Client, Etcd, SidecarProcess, free_port};
use std::time::{Duration, Instant};

fn b64(input: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let sidecars: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir().expect("temp dir");
    let etcd = Etcd::start(dir.path()).await;
    // The app is not needed to apply percents; point at a closed port.
    let app = format!("127.0.0.1:{}", free_port());
    let mut procs = Vec::new();
    for i in 0..sidecars {
        let yaml = format!(
            "migration:\n  etcd_endpoints: [\"{}\"]\n  cache_file: {}\naccess_log:\n  path: {}\n",
            etcd.url,
            dir.path().join(format!("cache-{i}.json")).display(),
            dir.path().join(format!("access-{i}.log")).display(),
        );
        procs.push(SidecarProcess::start(dir.path(), &app, &yaml).await);
    }
    let client = Client::new();
    let put = format!("{}/v3/kv/put", etcd.url);
    let key = b64(b"/paymesh/migration/charge");
    let mut samples = Vec::with_capacity(sidecars * rounds);
    for round in 0..rounds {
        let percent = (round % 99 + 1) as f64;
        let body = format!(r#"{{"key":"{key}","value":"{}"}}"#, b64(percent.to_string().as_bytes()));
        let started = Instant::now();
        let reply = client.send(http::Method::POST, &put, &[], body.as_bytes()).await.expect("etcd put");
        assert!(reply.status.is_success(), "etcd put: {}", reply.status);
        let waits = procs.iter().map(|p| {
            let (client, url) = (client.clone(), format!("{}/admin/state", p.admin));
            async move {
                loop {
                    let state = client.get(&url, &[]).await.json();
                    if state["migration"]["charge"]["percent"].as_f64() == Some(percent) {
                        return started.elapsed();
                    }
                    assert!(started.elapsed() < Duration::from_secs(10), "not applied within 10 s");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        for d in futures_join_all(waits).await {
            samples.push(d.as_secs_f64() * 1000.0);
        }
    }
    samples.sort_by(f64::total_cmp);
    println!("migration apply latency: {sidecars} sidecars, {rounds} puts, {} samples", samples.len());
    println!(
        "  p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
    println!("  target p99 <= 100 ms: {}", if percentile(&samples, 0.99) <= 100.0 { "met" } else { "missed" });
}

/// Awaits every future concurrently (tokio tasks; no extra dependency).
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<Duration>
where
    F: std::future::Future<Output = Duration> + Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("poller"));
    }
    out
}

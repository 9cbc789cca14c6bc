//! Benchmark: what shadow reads add to the client's latency (issue 17's
//! target: p99 with `shadow.sample_percent: 100` at most 5 % above off).
//!
//! ```sh
//! cargo build --release --workspace --bins
//! PAYMESH_BIN_DIR=target/release cargo run --release -p paymesh-system-tests --example shadow_latency -- 10 6000 300
//! ```
//!
//! Arguments: rounds, GETs per round and side, and the rate in GETs per
//! second (open loop: each GET starts on schedule, whether or not the last
//! one is done, as client traffic arrives; `0` for a closed loop of 4
//! clients, which measures the machine at saturation instead). One
//! orchestrator and one app serve three sidecars: two without shadowing
//! (`shadow.sample_percent: 0`, "off" and its twin "control") and one with
//! it (100). The sides take turns in blocks of one second's GETs of the
//! same charges, the order rotating every block, so drift in the machine's
//! load falls on all alike; the shadowed side's own extra load (every read
//! done twice) is part of what is measured. Prints p50/p99 per side (p99
//! with its 95 % interval), the shadow outcomes the sidecar counted, and
//! three differences of p99. The verdict is shadow on against off and
//! control pooled: the two are one configuration measured in twice as many
//! interleaved blocks, so the baseline's p99 is the best estimate the run
//! has. Shadow on vs off alone is printed too, and control vs off, which
//! differ in nothing: the noise floor of the machine and of the run's size,
//! below which a difference means nothing.
//!
//! The default run (10 rounds of 6,000 GETs per side at 300/s, about 11
//! minutes) is the smallest whose intervals are about as narrow as the
//! target: runs of 18,000 GETs a side measured noise floors of ±11 %.

use paymesh_system_tests::sidecar::KEY;
use paymesh_system_tests::{AppProcess, Client, Orchestrator, SidecarProcess, metric};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// A 95 % confidence interval for the `q` quantile of the population a
/// sorted sample came from: the order statistics `n·q ± 1.96·√(n·q·(1−q))`
/// (distribution-free, from the binomial count of samples below it).
fn interval(sorted: &[f64], q: f64) -> (f64, f64) {
    let n = sorted.len() as f64;
    let half = 1.96 * (n * q * (1.0 - q)).sqrt();
    let rank = |r: f64| sorted[(r.max(0.0) as usize).min(sorted.len() - 1)];
    (rank((n * q - half).floor()), rank((n * q + half).ceil()))
}

/// `n` GETs of `urls` (round robin), `rate` a second on schedule (or, with
/// `rate` 0, from 4 closed-loop clients); each one's latency in µs.
async fn load(client: &Client, urls: Arc<Vec<String>>, n: usize, rate: u64) -> Vec<f64> {
    if rate == 0 {
        return closed_loop(client, urls, n, 4).await;
    }
    let auth = format!("Bearer {KEY}");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tick.tick().await;
        let (client, url, auth) = (client.clone(), urls[i % urls.len()].clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let reply = client.get(&url, &[("authorization", &auth)]).await;
            assert_eq!(reply.status, 200, "GET {url}");
            started.elapsed().as_secs_f64() * 1e6
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.push(t.await.expect("load task"));
    }
    all
}

async fn closed_loop(client: &Client, urls: Arc<Vec<String>>, n: usize, clients: usize) -> Vec<f64> {
    let auth = format!("Bearer {KEY}");
    let tasks: Vec<_> = (0..clients)
        .map(|w| {
            let (client, urls, auth) = (client.clone(), urls.clone(), auth.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in (w..n).step_by(clients) {
                    let started = Instant::now();
                    let reply = client.get(&urls[i % urls.len()], &[("authorization", &auth)]).await;
                    assert_eq!(reply.status, 200, "GET {}", urls[i % urls.len()]);
                    out.push(started.elapsed().as_secs_f64() * 1e6);
                }
                out
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    all
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let per_round: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(6000);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir().expect("temp dir");
    let orchestrator = Orchestrator::start(&dir.path().join("data"), dir.path(), &[]).await;
    let app = AppProcess::start(&orchestrator.url, dir.path(), &[]).await;
    let app_addr = app.url.trim_start_matches("http://").to_owned();
    let side = |sample: u32| {
        format!(
            "migration: {{ etcd_endpoints: [], defaults: {{ charge: 50 }}, cache_file: {}/cache-{sample}.json }}\n\
             shadow: {{ sample_percent: {sample}, max_inflight: 64 }}\naccess_log: {{ path: /dev/null }}\n",
            dir.path().display()
        )
    };
    let off = SidecarProcess::start(dir.path(), &app_addr, &side(0)).await;
    let control = SidecarProcess::start(dir.path(), &app_addr, &side(0).replace("cache-0", "cache-control")).await;
    let on = SidecarProcess::start(dir.path(), &app_addr, &side(100)).await;
    let client = Client::new();
    let auth = format!("Bearer {KEY}");
    let mut ids = Vec::new();
    for i in 0..64 {
        let body = json!({"amount": 1000 + i, "currency": "usd", "source": "tok_visa"});
        let key = format!("bench-{i}");
        let reply = client
            .post(&format!("{}/v1/charges", off.url), &[("authorization", &auth), ("idempotency-key", &key)], &body)
            .await;
        assert_eq!(reply.status, 201, "charge {i}");
        ids.push(reply.json()["id"].as_str().expect("id").to_owned());
    }
    let urls = |base: &str| Arc::new(ids.iter().map(|id| format!("{base}/v1/charges/{id}")).collect::<Vec<_>>());
    let (urls_off, urls_control, urls_on) = (urls(&off.url), urls(&control.url), urls(&on.url));
    // Warm the pools and the store's cache.
    for urls in [&urls_off, &urls_control, &urls_on] {
        load(&client, urls.clone(), 500, rate).await;
    }
    // Blocks of one second's GETs, each side in turn and the order turned
    // every block, so that the machine's drift falls on all three alike.
    let block = if rate == 0 { 1000 } else { rate as usize }.min(per_round);
    let sides = [&urls_off, &urls_control, &urls_on];
    let mut lat: [Vec<f64>; 3] = Default::default();
    for b in 0..rounds * per_round.div_ceil(block) {
        for k in 0..3 {
            let side = (b + k) % 3;
            lat[side].extend(load(&client, sides[side].clone(), block, rate).await);
            // Let the block's shadow reads finish before the next side's.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let [mut lat_off, mut lat_control, mut lat_on] = lat;
    let mut lat_base: Vec<f64> = lat_off.iter().chain(&lat_control).copied().collect();
    for l in [&mut lat_off, &mut lat_control, &mut lat_on, &mut lat_base] {
        l.sort_by(f64::total_cmp);
    }
    let scrape = on.metrics().await;
    let count = |o: &str| {
        metric(&scrape, &format!("paymesh_shadow_compares_total{{feature=\"charge\",outcome=\"{o}\"}}")).unwrap_or(0.0)
    };
    let how = if rate == 0 { "closed loop, 4 clients".to_owned() } else { format!("{rate} GETs/s on schedule") };
    println!("shadow read latency: {rounds} rounds x {per_round} GETs per side, {how}");
    for (name, l) in [
        ("shadow off (sample 0)", &lat_off),
        ("control (sample 0)", &lat_control),
        ("off and control pooled", &lat_base),
        ("shadow on (sample 100)", &lat_on),
    ] {
        let (lo, hi) = interval(l, 0.99);
        println!(
            "  {name:24} p50 {:7.0} us   p99 {:7.0} us (95 % interval {lo:.0}..{hi:.0})",
            percentile(l, 0.5),
            percentile(l, 0.99)
        );
    }
    // `l`'s p99 against `base`'s, and the widest range both intervals allow.
    let vs = |l: &[f64], base: &[f64]| {
        let ((lo, hi), (base_lo, base_hi)) = (interval(l, 0.99), interval(base, 0.99));
        let p99 = percentile(base, 0.99);
        ((percentile(l, 0.99) / p99 - 1.0) * 100.0, (lo / base_hi - 1.0) * 100.0, (hi / base_lo - 1.0) * 100.0)
    };
    println!(
        "  shadow compares: match {} mismatch {} shadow_error {} skipped {}",
        count("match"),
        count("mismatch"),
        count("shadow_error"),
        count("skipped")
    );
    let (added, lo, hi) = vs(&lat_on, &lat_base);
    println!(
        "  p99 added (on vs off and control pooled): {added:+.1} % (within {lo:+.1}..{hi:+.1} %; target <= 5 %: {})",
        if added <= 5.0 { "met" } else { "missed" }
    );
    let (alone, lo, hi) = vs(&lat_on, &lat_off);
    println!("  on vs off alone: {alone:+.1} % (within {lo:+.1}..{hi:+.1} %)");
    let (noise, lo, hi) = vs(&lat_control, &lat_off);
    println!("  noise floor (control vs off, the same configuration): {noise:+.1} % (within {lo:+.1}..{hi:+.1} %)");
}

//! Fleet quota benchmark: accuracy and convergence of `scope: fleet` rates
//! for 2, 4 and 8 real sidecars sharing a real etcd.
//!
//! For each fleet size: a client at 300 req/s fleet-wide is offered about
//! 1,000 req/s, 70 % at one sidecar and the rest spread evenly. It prints
//! the accuracy (fleet-wide admitted / limit) once converged, then the time
//! until the shares settle (at most a tenth of the rate away from where the
//! demand puts it, summed over members, and the shares summing to the rate
//! within 5 %) after the busy traffic moves to another sidecar, after that
//! busy member is killed and its traffic goes to another (its lease must
//! expire first: 2 s) and after a new member joins and takes some traffic,
//! with the worst one-second fleet-wide admitted rate around the join. Reports every
//! 250 ms, 2 s leases. A program that prints numbers, never a test.
//!
//! ```text
//! cargo build --workspace --bins && cargo run --example fleet_quota -p paymesh-system-tests [-- 2 4 8]
//! ```

use paymesh_sidecar::fleet::share::allocate;
use paymesh_system_tests::fleet::{FAST, Load, Member, upstream};
use paymesh_system_tests::{Etcd, eventually};
use std::time::{Duration, Instant};

const RATE: f64 = 300.0;
const OFFERED: f64 = 1000.0;
const RATE_YAML: &str = "{ per_second: 300, burst: 30, scope: fleet }";
const MIN_SHARE: f64 = 0.1;
/// Settled: at most this part of the rate is where the demand does not
/// put it, and the shares add up to the rate within this part of it.
const SETTLED: f64 = 0.10;
const SUM_WITHIN: f64 = 0.05;

fn offered(n: usize, busy: usize) -> Vec<u32> {
    (0..n)
        .map(|i| if i == busy { OFFERED * 0.7 } else { OFFERED * 0.3 / (n - 1) as f64 })
        .map(|r| r.round() as u32)
        .collect()
}

async fn shares(members: &[&Member]) -> Vec<f64> {
    let mut v = Vec::new();
    for m in members {
        v.push(m.share().await.unwrap_or(0.0));
    }
    v
}

/// How much of the rate sits elsewhere than the demand puts it.
fn misplaced(actual: &[f64], demand: &[u32]) -> f64 {
    let d: Vec<Option<f64>> = demand.iter().map(|&d| Some(f64::from(d))).collect();
    let target = allocate(RATE, MIN_SHARE, &d);
    actual.iter().zip(&target).map(|(a, t)| (a - t).abs()).sum::<f64>() / 2.0 / RATE
}

/// Time from `since` until the shares settle for `demand` (gives up after
/// 15 s).
async fn settle(members: &[&Member], demand: &[u32], since: Instant) -> Option<Duration> {
    while since.elapsed() < Duration::from_secs(15) {
        let s = shares(members).await;
        let sum: f64 = s.iter().sum();
        if misplaced(&s, demand) <= SETTLED && (sum - RATE).abs() <= RATE * SUM_WITHIN {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

fn show(d: Option<Duration>) -> String {
    d.map_or("> 15 s".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
}

async fn one(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path()).await;
    let (_upstream, app) = upstream(dir.path());
    let mut members = Vec::new();
    for i in 0..n {
        members.push(Member::start(dir.path(), &etcd.url, &app, &format!("pod-{i}"), RATE_YAML, FAST).await);
    }
    eventually(Duration::from_secs(20), "every member to see the fleet", || async {
        let s = members[0].state().await;
        s["fleet"]["members"].as_array().map_or(0, Vec::len) == n
    })
    .await;
    let urls: Vec<String> = members.iter().map(|m| m.url.clone()).collect();
    let mut demand = offered(n, 0);
    let load = Load::start(&urls, &demand, Duration::from_secs(60));
    let refs: Vec<&Member> = members.iter().collect();
    let first = settle(&refs, &demand, Instant::now()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = load.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let accuracy = load.tally.admitted_rate(None, t, t + Duration::from_secs(4)) / RATE;
    let offered_now = accuracy * RATE + load.tally.refused_rate(None, t, t + Duration::from_secs(4));

    // Traffic shift: the busy share moves from pod-0 to pod-1.
    demand = offered(n, 1);
    for (i, &r) in demand.iter().enumerate() {
        load.set_rate(i, r);
    }
    let shift = settle(&refs, &demand, Instant::now()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Leave: the busy member (pod-1) dies and the load balancer sends its
    // traffic to pod-0. Its share moves once its lease expires.
    members[1].process.kill9();
    let gone = Instant::now();
    let mut rest_demand = demand.clone();
    rest_demand[0] += rest_demand.remove(1);
    load.set_rate(1, 0);
    load.set_rate(0, rest_demand[0]);
    let rest: Vec<&Member> = members.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, m)| m).collect();
    let leave = settle(&rest, &rest_demand, gone).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Join: a new member takes a small member's worth of pod-0's traffic.
    let small = rest_demand[rest_demand.len() - 1];
    let joined = load.elapsed();
    let start = Instant::now();
    let newcomer = Member::start(dir.path(), &etcd.url, &app, &format!("pod-{n}"), RATE_YAML, FAST).await;
    rest_demand[0] -= small;
    load.set_rate(0, rest_demand[0]);
    let extra = Load::start(std::slice::from_ref(&newcomer.url), &[small], Duration::from_secs(30));
    let mut all = rest.clone();
    all.push(&newcomer);
    let mut all_demand = rest_demand.clone();
    all_demand.push(small);
    let join = settle(&all, &all_demand, start).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = load.elapsed();
    let mut worst: f64 = 0.0;
    let mut w = joined;
    while w + Duration::from_secs(1) <= end {
        let old = load.tally.admitted_rate(None, w, w + Duration::from_secs(1));
        let new = extra.tally.admitted_rate(None, w - joined, w - joined + Duration::from_secs(1));
        worst = worst.max(old + new);
        w += Duration::from_millis(250);
    }
    println!(
        "{n:>2} sidecars | offered {offered_now:>5.0}/s | accuracy {accuracy:>5.3} | first settle {:>7} | \
         shift {:>7} | leave {:>7} | join {:>7} (worst 1 s {:.3} of limit)",
        show(first),
        show(shift),
        show(leave),
        show(join),
        worst / RATE,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).filter(|&n| n >= 2).collect();
    let sizes = if sizes.is_empty() { vec![2, 4, 8] } else { sizes };
    println!(
        "fleet quota: {RATE} req/s fleet-wide, ~{OFFERED} req/s offered 70 % at one sidecar; \
         settled = at most {:.0} % of the rate misplaced",
        SETTLED * 100.0
    );
    for n in sizes {
        one(n).await;
    }
}

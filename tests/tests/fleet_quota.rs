//! Fleet quotas against a real etcd and several real sidecars: a client's
//! `scope: fleet` rate holds across the fleet, follows demand, survives a
//! member's death, a member's arrival and etcd's loss within the stated
//! bounds.
//!
//! Every test offers the demo client more than its 300 req/s fleet rate and
//! counts what the sidecars admit. The tests run one at a time (the
//! machine they run on may have two cores) with 250 ms reports and 2 s
//! leases.

use paymesh_system_tests::fleet::{FAST, Load, Member, share_sum, upstream};
use paymesh_system_tests::metric;
use paymesh_system_tests::{Etcd, bin, eventually};
use serde_json::Value;
use std::time::{Duration, Instant};

const RATE: f64 = 300.0;
const RATE_YAML: &str = "{ per_second: 300, burst: 30, scope: fleet }";
/// Lease TTL in `FAST`.
const TTL: Duration = Duration::from_secs(2);

/// One test at a time: each runs five to nine processes.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Fleet {
    etcd: Etcd,
    _upstream: paymesh_system_tests::Process,
    app: String,
    members: Vec<Member>,
    dir: tempfile::TempDir,
    /// Held while the fleet lives, dropped after its processes: one test
    /// at a time.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Fleet {
    /// `n` members, once no other test holds a fleet.
    async fn start(n: usize) -> Fleet {
        let serial = SERIAL.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let etcd = Etcd::start(dir.path()).await;
        let (upstream, app) = upstream(dir.path());
        let mut fleet = Fleet { etcd, _upstream: upstream, app, members: Vec::new(), dir, _serial: serial };
        for i in 0..n {
            fleet.add(&format!("pod-{i}")).await;
        }
        fleet.wait_members(n).await;
        fleet
    }

    async fn add(&mut self, pod: &str) {
        let m = Member::start(self.dir.path(), &self.etcd.url, &self.app, pod, RATE_YAML, FAST).await;
        self.members.push(m);
    }

    /// Until every live member counts `n` members.
    async fn wait_members(&self, n: usize) {
        let members: Vec<&Member> = self.members.iter().collect();
        eventually(Duration::from_secs(15), &format!("{n} fleet members"), || async {
            for m in &members {
                let s = m.state().await;
                if s["fleet"]["members"].as_array().map_or(0, Vec::len) != n || s["fleet"]["mode"] != "live" {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// Until every member's fleet section is in `mode`.
    async fn wait_mode(&self, mode: &str, timeout: Duration) {
        eventually(timeout, &format!("every member in mode {mode}"), || async {
            for m in &self.members {
                if m.mode().await != mode {
                    return false;
                }
            }
            true
        })
        .await;
    }

    fn urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.url.clone()).collect()
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uneven_load_across_four_sidecars_admits_the_fleet_rate() {
    let f = Fleet::start(4).await;
    // Measured from 3 s to 9 s; the load runs on while paymeshctl looks.
    let load = Load::start(&f.urls(), &[700, 100, 100, 100], secs(11.0));
    tokio::time::sleep(secs(9.2)).await;
    let t = &load.tally;
    let (from, to) = (secs(3.0), secs(9.0));
    let total = t.admitted_rate(None, from, to);
    let offered = total + t.refused_rate(None, from, to);
    let busy = t.admitted_rate(Some(0), from, to);
    let per: Vec<f64> = (0..4).map(|i| t.admitted_rate(Some(i), from, to)).collect();
    println!("offered {offered:.0}/s, admitted {total:.1}/s, per sidecar {per:.1?}, failed {}", t.failed());
    assert!(offered > 900.0, "the load generator kept its pace: {offered}");
    assert!((RATE * 0.9..=RATE * 1.1).contains(&total), "fleet-wide admitted {total:.1}/s, limit {RATE}");
    // The busy sidecar gets its demand's share (7.5 + 270 × 0.7 ≈ 196),
    // not an even quarter (75).
    assert!(busy > 150.0, "the busy sidecar admitted {busy:.1}/s: {per:?}");
    let state = f.members[0].state().await;
    let share = state["fleet"]["shares"]["checkout"]["per_second"].as_f64().unwrap();
    assert!(share > 150.0, "{state}");
    assert_eq!(state["fleet"]["members"].as_array().unwrap().len(), 4, "{state}");

    // The operator's view: every member, the fleet's demand and shares.
    let out = std::process::Command::new(bin("paymeshctl"))
        .args(["--etcd", &f.etcd.url, "fleet", "--json"])
        .output()
        .expect("paymeshctl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = view["clients"]["checkout"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{view}");
    let shares: f64 = rows.iter().map(|r| r["share_per_second"].as_f64().unwrap()).sum();
    let demand: f64 = rows.iter().map(|r| r["demand_per_second"].as_f64().unwrap()).sum();
    assert!((shares - RATE).abs() < RATE * 0.05, "{view}");
    assert!(demand > 800.0, "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_member_records_are_refused_and_cannot_starve_a_member() {
    let f = Fleet::start(2).await;
    let _load = Load::start(&f.urls(), &[200, 200], secs(8.0));
    let greedy = r#"{"v":1,"pod":"greedy","at_ms":1,"interval_ms":1000,"reports":9,"clients":{"checkout":{"admitted":10000000,"refused":0,"share":0}}}"#;
    for (key, value) in [
        ("evil", "not json"),
        (
            "nan",
            r#"{"v":1,"pod":"nan","at_ms":1,"interval_ms":1000,"reports":1,"clients":{"checkout":{"admitted":-1,"refused":0,"share":0}}}"#,
        ),
        (
            "huge",
            r#"{"v":1,"pod":"huge","at_ms":1,"interval_ms":1000,"reports":1,"clients":{"checkout":{"admitted":1e300,"refused":0,"share":0}}}"#,
        ),
        ("liar", greedy),
        ("greedy", greedy),
        ("a/b", greedy),
    ] {
        f.etcd.put(&format!("/paymesh/fleet/{key}"), value);
    }
    // Only `greedy` counts: three members, and it claims the most demand
    // a record may claim. Each real member still keeps its floor.
    eventually(secs(5.0), "the greedy member to count", || async {
        f.members[0].state().await["fleet"]["members"].as_array().map_or(0, Vec::len) == 3
    })
    .await;
    tokio::time::sleep(secs(1.0)).await;
    let floor = RATE / 3.0 * 0.1;
    for m in &f.members {
        let share = m.share().await.unwrap();
        assert!(share >= floor * 0.99 && share < RATE / 3.0, "share {share}, floor {floor}");
        let scrape = String::from_utf8_lossy(
            &paymesh_system_tests::Client::new().get(&format!("{}/metrics", m.admin), &[]).await.body,
        )
        .into_owned();
        for reason in ["malformed", "number", "pod"] {
            let n = metric(&scrape, &format!("paymesh_fleet_records_refused_total{{reason=\"{reason}\"}}"));
            assert!(n.unwrap_or(0.0) >= 1.0, "{reason} refusals counted: {scrape}");
        }
    }
    // Deleting the record gives its share back.
    f.etcd.delete("/paymesh/fleet/greedy");
    let members: Vec<&Member> = f.members.iter().collect();
    eventually(secs(5.0), "the real members to hold the rate again", || async {
        (share_sum(&members).await - RATE).abs() < 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_sidecars_share_moves_to_the_others_within_two_lease_ttls() {
    let mut f = Fleet::start(4).await;
    let load = Load::start(&f.urls(), &[250, 250, 250, 250], secs(14.0));
    tokio::time::sleep(secs(3.0)).await;
    let before = share_sum(&f.members.iter().skip(1).collect::<Vec<_>>()).await;
    assert!((RATE * 0.65..RATE * 0.85).contains(&before), "three of four members hold about 3/4: {before}");
    f.members[0].process.kill9();
    let killed = Instant::now();
    let rest: Vec<&Member> = f.members.iter().skip(1).collect();
    eventually(2 * TTL, "the dead member's share to move to the other three", || async {
        share_sum(&rest).await > RATE * 0.95
    })
    .await;
    let moved = killed.elapsed();
    // Measured after the move: the three survivors admit the whole rate.
    tokio::time::sleep(secs(4.0)).await;
    let since = load.elapsed();
    tokio::time::sleep(secs(4.0)).await;
    let total = load.tally.admitted_rate(None, since, since + secs(4.0));
    println!("share moved {moved:?} after the kill; survivors admit {total:.1}/s");
    assert!((RATE * 0.9..=RATE * 1.1).contains(&total), "after the kill: {total:.1}/s");
    for m in &rest {
        assert_eq!(m.state().await["fleet"]["members"].as_array().unwrap().len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sidecar_joins_without_overshoot() {
    let mut f = Fleet::start(3).await;
    let load = Load::start(&f.urls(), &[200, 200, 200], secs(16.0));
    tokio::time::sleep(secs(3.0)).await;
    let joined_at = load.elapsed();
    f.add("pod-3").await;
    let newcomer_load = Load::start(std::slice::from_ref(&f.members[3].url), &[200], secs(16.0) - joined_at);
    f.wait_members(4).await;
    tokio::time::sleep(secs(6.0)).await;
    let end = load.elapsed().min(secs(15.5));
    // Every one-second window from the join on, old members plus the
    // newcomer (whose tally started at the join).
    let mut worst: f64 = 0.0;
    let mut t = joined_at;
    while t + secs(1.0) <= end {
        let old = load.tally.admitted_rate(None, t, t + secs(1.0));
        let new = newcomer_load.tally.admitted_rate(None, t - joined_at, t - joined_at + secs(1.0));
        worst = worst.max(old + new);
        t += secs(0.5);
    }
    let new_rate = newcomer_load.tally.admitted_rate(None, end - joined_at - secs(3.0), end - joined_at);
    println!("after the join: worst 1 s window {worst:.1}/s; the newcomer admits {new_rate:.1}/s");
    assert!(worst <= RATE * 1.1, "overshoot: {worst:.1}/s in a one-second window, limit {RATE}");
    // The newcomer ends with about a quarter (equal demand).
    assert!((RATE * 0.25 * 0.7..=RATE * 0.25 * 1.3).contains(&new_rate), "newcomer: {new_rate:.1}/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_the_limit_holds_within_the_fallback_bound() {
    let mut f = Fleet::start(4).await;
    let load = Load::start(&f.urls(), &[700, 100, 100, 100], secs(14.0));
    tokio::time::sleep(secs(3.0)).await;
    let lost = load.elapsed();
    f.etcd.process.kill9();
    // Within the grace period (2 s) the last shares stand.
    tokio::time::sleep(secs(0.5)).await;
    assert_eq!(f.members[1].mode().await, "grace");
    f.wait_mode("fallback", secs(4.0)).await;
    for m in &f.members {
        let share = m.share().await.unwrap();
        assert!((share - RATE / 4.0).abs() < 1e-6, "fallback share is rate / last member count: {share}");
    }
    let fallback = load.elapsed();
    tokio::time::sleep(secs(5.0)).await;
    let during = load.tally.admitted_rate(None, lost, fallback);
    let after = load.tally.admitted_rate(None, fallback, fallback + secs(5.0));
    println!("etcd down: {during:.1}/s during the grace period, {after:.1}/s in fallback");
    // The fallback bound: members × rate / last member count = the rate.
    assert!(during <= RATE * 1.1 && after <= RATE * 1.1, "{during:.1} / {after:.1}");
    assert!(after >= RATE * 0.9, "each member still admits its quarter: {after:.1}");
    // etcd back: every member rejoins and shares follow demand again.
    f.etcd.restart(f.dir.path()).await;
    f.wait_mode("live", secs(10.0)).await;
}

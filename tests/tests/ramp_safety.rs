//! Ramps that yield to people, against a real etcd and real sidecars: an
//! operator's write stops a ramp and is never overwritten, one ramp per
//! feature holds the lock, SIGTERM leaves the last healthy percent and
//! frees the lock, a crashed ramp's lock expires, and shed histograms hold
//! a ramp instead of letting it advance.

use nix::sys::signal::Signal;
use paymesh_system_tests::eventually;
use paymesh_system_tests::migration::{CHECKOUT, Ctl, Stack, ctl, ramp_args, text, traffic};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

const LOCK: &str = "/paymesh/locks/ramp/charge";

fn history(s: &Stack) -> String {
    String::from_utf8_lossy(&ctl(&s.etcd.url, &["migration", "history", "charge"]).stdout).into_owned()
}

/// A ramp of charge to 100% in `step`s of `interval`, judged on the
/// stack's sidecars, running in the background.
fn ramp_charge(s: &Stack, step: &str, interval: &str) -> Ctl {
    Ctl::spawn(&s.etcd.url, &ramp_args("charge", "100", step, interval, &["--sidecars", &s.admins()]))
}

/// A one-sidecar stack under checkout traffic and a [`ramp_charge`] that
/// has written `percent`: (stack, traffic, ramp).
async fn mid_ramp(step: &str, interval: &str, percent: f64) -> (Stack, JoinHandle<()>, Ctl) {
    let s = Stack::start(1, "").await;
    let load = traffic(s.sidecar().url.clone(), CHECKOUT);
    let ramp = ramp_charge(&s, step, interval);
    s.wait_percent("charge", percent).await;
    (s, load, ramp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operators_set_during_a_ramp_stops_it_at_once_and_is_never_overwritten() {
    let (s, load, ramp) = mid_ramp("20", "3s", 20.0).await;

    // The README's "roll back at once".
    let set = ctl(&s.etcd.url, &["migration", "set", "charge", "0"]);
    assert!(set.status.success(), "{}", text(&set));
    let stopped = Instant::now();
    let out = ramp.output(Duration::from_secs(10)).await;
    assert!(stopped.elapsed() < Duration::from_secs(3), "the ramp took {:?} to stop", stopped.elapsed());
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PREEMPTED") && stderr.contains("now \"0\" at revision"), "{stderr}");
    assert!(stderr.contains("(set → 0") || stderr.contains("set →"), "names the writer: {stderr}");

    // Longer than a step: nothing writes over the operator's 0.
    tokio::time::sleep(Duration::from_secs(4)).await;
    load.abort();
    assert_eq!(s.etcd_value("/paymesh/migration/charge").as_deref(), Some("0"));
    s.wait_percent("charge", 0.0).await;
    let h = history(&s);
    assert!(h.lines().last().is_some_and(|l| l.contains("preempted")), "{h}");
    assert_eq!(h.lines().filter(|l| l.contains(" step ")).count(), 1, "{h}");
    assert!(s.etcd_value(LOCK).is_none(), "the lock is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_ramp_on_the_same_feature_is_refused_and_a_crashed_ones_lock_expires() {
    let (s, load, first) = mid_ramp("10", "5s", 10.0).await;

    let second = ctl(
        &s.etcd.url,
        &ramp_args("charge", "50", "10", "1s", &["--sidecars", &s.admins()])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(second.status.code(), Some(5), "{}", text(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("REFUSED") && stderr.contains(LOCK), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.pid())) && stderr.contains(" since "),
        "names the holder: {stderr}"
    );
    assert_eq!(s.etcd_value("/paymesh/migration/charge").as_deref(), Some("10"), "the refused ramp wrote nothing");

    // A client ramp is another key and another lock.
    let holder: serde_json::Value = serde_json::from_str(&s.etcd_value(LOCK).expect("lock held")).unwrap();
    assert_eq!(holder["pid"], first.pid());

    // A crash: the lock goes with its lease.
    let crashed = Instant::now();
    first.kill9();
    load.abort();
    eventually(Duration::from_secs(20), "the crashed ramp's lock to expire", || async { s.etcd_value(LOCK).is_none() })
        .await;
    assert!(crashed.elapsed() >= Duration::from_secs(3), "the lease outlived the renewals it had");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_ramp_leaves_the_last_healthy_percent_and_releases_the_lock() {
    // 20% was judged healthy once 40% is written.
    let (s, load, ramp) = mid_ramp("20", "2s", 40.0).await;
    ramp.signal(Signal::SIGTERM);
    let out = ramp.output(Duration::from_secs(10)).await;
    load.abort();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("STOPPED by SIGTERM") && stderr.contains("from 40% to 20%"), "{stderr}");
    assert_eq!(s.etcd_value("/paymesh/migration/charge").as_deref(), Some("20"));
    s.wait_percent("charge", 20.0).await;
    assert!(s.etcd_value(LOCK).is_none(), "the lock is released");
    let h = history(&s);
    assert!(h.lines().last().is_some_and(|l| l.contains("stopped") && l.contains("SIGTERM")), "{h}");

    // And SIGINT (Ctrl-C) alike; the next ramp takes the lock at once.
    let ramp = ramp_charge(&s, "20", "30s");
    s.wait_percent("charge", 40.0).await;
    ramp.signal(Signal::SIGINT);
    let out = ramp.output(Duration::from_secs(10)).await;
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert_eq!(s.etcd_value("/paymesh/migration/charge").as_deref(), Some("20"));
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A hot host: fresh telemetry at 99 % CPU every 100 ms.
fn hot_telemetry(path: &Path) -> JoinHandle<()> {
    let path = path.to_owned();
    tokio::spawn(async move {
        loop {
            let sample = json!({
                "sampled_at_ms": now_ms(), "interval_ms": 1000, "cpus": 2,
                "cpu_percent": 99.0, "load1": 4.0, "load5": 4.0, "load15": 4.0,
                "mem_used_percent": 30.0, "disk_free_percent": 60.0, "cgroup": null,
            });
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, sample.to_string()).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shed_histograms_hold_the_ramp_instead_of_advancing() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = dir.path().join("telemetry.json");
    let hot = hot_telemetry(&telemetry);
    let overload = format!(
        "overload:\n  telemetry_file: {}\n  events_file: {}\n  check_interval: 100ms\n  hold: 100ms\n  components: [detailed_metrics]\n",
        telemetry.display(),
        dir.path().join("events.jsonl").display()
    );
    let s = Stack::start(1, &overload).await;
    eventually(Duration::from_secs(20), "detailed_metrics to be shed", || async {
        s.sidecar().state().await["components"]["detailed_metrics"]["enabled"] == false
    })
    .await;
    let load = traffic(s.sidecar().url.clone(), CHECKOUT);
    let mut args = ramp_args("charge", "60", "20", "1s", &["--sidecars", &s.admins()]);
    args.extend(["--max-holds".to_owned(), "3".to_owned()]);
    let out = ctl(&s.etcd.url, &args.iter().map(String::as_str).collect::<Vec<_>>());
    load.abort();
    hot.abort();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("holding").count(), 3, "{stdout}");
    assert!(stdout.contains("detailed_metrics is shed") && !stdout.contains("healthy"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GAVE UP") && stderr.contains("set back to 0%"), "{stderr}");
    assert_eq!(s.etcd_value("/paymesh/migration/charge").as_deref(), Some("0"));
    let h = history(&s);
    assert_eq!(h.lines().filter(|l| l.contains(" step ")).count(), 1, "never advanced past the first step: {h}");
    assert!(h.contains("gave_up"), "{h}");
}

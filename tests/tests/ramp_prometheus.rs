//! `paymeshctl migration ramp --prometheus` against a real Prometheus
//! server (Debian's `prometheus`, started here on a free port) scraping two
//! real sidecars every 200 ms: a ramp reaches its target, and rolls back
//! when the orchestration service is killed.

use paymesh_system_tests::Prometheus;
use paymesh_system_tests::migration::{CHECKOUT, Ctl, Stack, ctl, ramp_args, text, traffic};
use std::time::Duration;

async fn stack() -> (Stack, Prometheus) {
    let s = Stack::start(2, "").await;
    let targets: Vec<String> = s.sidecars.iter().map(|c| format!("127.0.0.1:{}", c.admin_port)).collect();
    let p = Prometheus::start(s.dir.path(), &targets, "200ms").await;
    (s, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prometheus_judged_ramp_reaches_its_target() {
    let (s, p) = stack().await;
    let loads: Vec<_> = s.sidecars.iter().map(|c| traffic(c.url.clone(), CHECKOUT)).collect();
    let args = ramp_args("charge", "60", "30", "3s", &["--prometheus", &p.url, "--selector", "job=\"paymesh\""]);
    let out = ctl(&s.etcd.url, &args.iter().map(String::as_str).collect::<Vec<_>>());
    loads.iter().for_each(|l| l.abort());
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("healthy").count(), 2, "{stdout}");
    assert!(stdout.contains("done: charge is at 60%"), "{stdout}");
    s.wait_percent("charge", 60.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prometheus_judged_ramp_rolls_back_when_the_orchestrator_dies() {
    let (mut s, p) = stack().await;
    s.etcd.put("/paymesh/migration/charge", "20");
    s.wait_percent("charge", 20.0).await;
    let loads: Vec<_> = s.sidecars.iter().map(|c| traffic(c.url.clone(), CHECKOUT)).collect();
    let args = ramp_args("charge", "100", "20", "3s", &["--prometheus", &p.url]);
    let ramp = Ctl::spawn(&s.etcd.url, &args);
    // Let the first step (40%) pass, then take the orchestration service away.
    s.wait_percent("charge", 60.0).await;
    s.orchestrator.process.kill9();
    let out = ramp.output(Duration::from_secs(60)).await;
    loads.iter().for_each(|l| l.abort());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ROLLED BACK") && stderr.contains("--max-error-rate: 5xx share"), "{stderr}");
    assert!(stderr.contains("set back to 40%") && stderr.contains("the legacy path"), "{stderr}");
    s.wait_percent("charge", 40.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_prometheus_holds_the_ramp_and_it_gives_up_rolled_back() {
    let s = Stack::start(1, "").await;
    let load = traffic(s.sidecar().url.clone(), CHECKOUT);
    let dead = format!("http://127.0.0.1:{}", paymesh_system_tests::free_port());
    let mut args = ramp_args("charge", "40", "20", "1s", &["--prometheus", &dead]);
    args.extend(["--max-holds".to_owned(), "2".to_owned()]);
    let out = ctl(&s.etcd.url, &args.iter().map(String::as_str).collect::<Vec<_>>());
    load.abort();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("holding").count(), 2, "{stdout}");
    assert!(stdout.contains(&format!("Prometheus at {dead}")) && !stdout.contains("healthy"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("set back to 0%"), "{}", text(&out));
    s.wait_percent("charge", 0.0).await;
}

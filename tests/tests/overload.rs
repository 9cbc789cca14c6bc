//! The overload switch of a real sidecar process, driven the way the
//! telemetry daemon drives it: by replacing the telemetry file.
//!
//! Overload sheds the components in order and recovery restores them in
//! reverse; every switch lands in the events file, in `/metrics`, in
//! `/admin/state` and in etcd (also after an etcd outage and a sidecar
//! crash); shed components really stop working; stale, unreadable and
//! garbage telemetry change nothing; an operator can pin a component and
//! take a CPU profile.

use paymesh_system_tests::sidecar::{ADMIN_AUTH, KEY};
use paymesh_system_tests::{
    AppProcess, Client, Etcd, Orchestrator, SidecarProcess, bin, eventually, free_port, metric,
};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ORDER: [&str; 4] = ["access_log", "detailed_metrics", "tracing", "profiling"];
const WAIT: Duration = Duration::from_secs(20);
/// `overload.hold` in these tests; checks run every 100 ms.
const HOLD: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Replaces the file the way the daemon does: a temporary file, renamed.
fn write_sample(path: &Path, sampled_at_ms: u64, cpu: f64, mem: f64) {
    let sample = json!({
        "sampled_at_ms": sampled_at_ms, "interval_ms": 1000, "cpus": 2,
        "cpu_percent": cpu, "load1": 0.5, "load5": 0.5, "load15": 0.5,
        "mem_used_percent": mem, "disk_free_percent": 60.0, "cgroup": null,
    });
    write_raw(path, sample.to_string().as_bytes());
}

fn write_raw(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A stand-in for `paymesh-telemetryd`: a fresh sample every 100 ms with
/// the readings last set.
struct Telemetry {
    level: Arc<Mutex<(f64, f64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Telemetry {
    fn start(path: &Path, cpu: f64, mem: f64) -> Telemetry {
        write_sample(path, now_ms(), cpu, mem);
        let level = Arc::new(Mutex::new((cpu, mem)));
        let (path, shared) = (path.to_owned(), level.clone());
        let task = tokio::spawn(async move {
            loop {
                let (cpu, mem) = *shared.lock().unwrap();
                write_sample(&path, now_ms(), cpu, mem);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Telemetry { level, task }
    }

    fn set(&self, cpu: f64, mem: f64) {
        *self.level.lock().unwrap() = (cpu, mem);
    }

    /// Stops writing; returns once no write can follow.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn overload_yaml(dir: &Path, etcd: Option<&str>, components: &[&str]) -> String {
    format!(
        "migration:\n  etcd_endpoints: [{}]\n  cache_file: {}\n\
         overload:\n  telemetry_file: {}\n  events_file: {}\n  check_interval: 100ms\n  hold: {}ms\n  components: [{}]\n\
         access_log:\n  path: {}\n",
        etcd.map(|e| format!("\"{e}\"")).unwrap_or_default(),
        dir.join("migration.json").display(),
        dir.join("telemetry.json").display(),
        dir.join("events.jsonl").display(),
        HOLD.as_millis(),
        components.join(", "),
        dir.join("access.log").display(),
    )
}

async fn start_sidecar(dir: &Path, app: &str, etcd: Option<&str>, components: &[&str], pod: &str) -> SidecarProcess {
    let yaml = overload_yaml(dir, etcd, components);
    SidecarProcess::start_with_env(dir, free_port(), free_port(), app, &yaml, &[("POD_NAME", pod)]).await
}

/// An address nothing listens on: these sidecars need no app.
fn no_app() -> String {
    format!("127.0.0.1:{}", free_port())
}

fn events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every record is a JSON line"))
        .collect()
}

/// (component, state, reason) of each record.
fn switches(events: &[Value]) -> Vec<(String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    events.iter().map(|e| (s(&e["component"]), s(&e["state"]), s(&e["reason"]))).collect()
}

fn expected(components: &[&str], state: &str, reason: &str) -> Vec<(String, String, String)> {
    components.iter().map(|c| ((*c).to_owned(), state.to_owned(), reason.to_owned())).collect()
}

async fn enabled(sidecar: &SidecarProcess) -> Vec<bool> {
    let state = sidecar.state().await;
    ORDER.iter().map(|c| state["components"][c]["enabled"].as_bool().unwrap()).collect()
}

async fn wait_enabled(sidecar: &SidecarProcess, want: [bool; 4], what: &str) {
    eventually(WAIT, what, || async { enabled(sidecar).await == want }).await;
}

/// Values under `<prefix>/switch-events/<pod>/`, in key order.
fn etcd_records(etcd: &Etcd, pod: &str) -> Vec<Value> {
    let prefix = format!("/paymesh/switch-events/{pod}/");
    etcd.etcdctl(&["get", "--prefix", &prefix, "--print-value-only"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("etcd records are JSON"))
        .collect()
}

async fn post_component(sidecar: &SidecarProcess, name: &str, body: &str) -> paymesh_system_tests::Reply {
    Client::new()
        .send(http::Method::POST, &format!("{}/admin/components/{name}", sidecar.admin), &[ADMIN_AUTH], body.as_bytes())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_in_order_and_recovery_restores_in_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd = Etcd::start(d).await;
    let telemetry = Telemetry::start(&d.join("telemetry.json"), 20.0, 30.0);
    let sidecar = start_sidecar(d, &no_app(), Some(&etcd.url), &ORDER, "pod-a").await;
    eventually(WAIT, "fresh telemetry", || async { sidecar.state().await["telemetry"]["status"] == "fresh" }).await;
    let scrape = sidecar.metrics().await;
    assert_eq!(metric(&scrape, "paymesh_telemetry_stale"), Some(0.0));
    assert_eq!(metric(&scrape, "paymesh_telemetry_cpu_percent"), Some(20.0));
    assert_eq!(metric(&scrape, "paymesh_telemetry_mem_used_percent"), Some(30.0));

    // Memory alone over its shed threshold (90) is overload.
    telemetry.set(20.0, 95.0);
    wait_enabled(&sidecar, [false; 4], "every component shed").await;
    // A switch takes effect first, then its record is fsync'd.
    eventually(WAIT, "four records in the file", || async { events(d).len() == 4 }).await;
    assert_eq!(switches(&events(d)), expected(&ORDER, "off", "overload"));
    let state = sidecar.state().await;
    assert_eq!(state["overload"]["pressure"], "overloaded");
    assert_eq!(state["overload"]["pod"], "pod-a");
    assert_eq!(state["telemetry"]["readings"]["mem_used_percent"], 95.0);
    assert_eq!(state["telemetry"]["effective"]["mem_percent"], 95.0);
    for c in ORDER {
        assert_eq!(state["components"][c]["control"], "board", "{c}");
        assert_eq!(state["components"][c]["reason"], "overload", "{c}");
    }
    let scrape = sidecar.metrics().await;
    for c in ORDER {
        assert_eq!(metric(&scrape, &format!("paymesh_component_enabled{{component=\"{c}\"}}")), Some(0.0));
        let off = format!("paymesh_switch_events_total{{component=\"{c}\",state=\"off\"}}");
        assert_eq!(metric(&scrape, &off), Some(1.0), "{off}");
    }

    // Under the restore thresholds (60 and 75): after `hold`, back on in
    // reverse order.
    telemetry.set(20.0, 30.0);
    wait_enabled(&sidecar, [true; 4], "every component restored").await;
    eventually(WAIT, "eight records in the file", || async { events(d).len() == 8 }).await;
    let mut want = expected(&ORDER, "off", "overload");
    let mut reverse = ORDER;
    reverse.reverse();
    want.extend(expected(&reverse, "on", "recovered"));
    let records = events(d);
    assert_eq!(switches(&records), want);
    // Every record carries the readings that moved it and the thresholds.
    assert_eq!(records[0]["readings"]["mem_used_percent"], 95.0);
    assert_eq!(records[7]["readings"]["mem_used_percent"], 30.0);
    assert_eq!(records[0]["thresholds"]["shed"]["mem_percent"], 90.0);
    assert_eq!(records[0]["thresholds"]["hold_ms"], HOLD.as_millis() as u64);
    assert!(records.iter().all(|r| r["pod"] == "pod-a" && r["time_ms"].as_u64().is_some()));
    let scrape = sidecar.metrics().await;
    let on = "paymesh_switch_events_total{component=\"tracing\",state=\"on\"}";
    assert_eq!(metric(&scrape, on), Some(1.0));

    // The same records in etcd, under a lease of seven days.
    eventually(WAIT, "eight records in etcd", || async { etcd_records(&etcd, "pod-a").len() == 8 }).await;
    assert_eq!(etcd_records(&etcd, "pod-a"), records);
    let listing = etcd.etcdctl(&["get", "--prefix", "/paymesh/switch-events/pod-a/", "-w", "json"]);
    let lease = serde_json::from_str::<Value>(&listing).unwrap()["kvs"][0]["lease"].as_i64().unwrap();
    let ttl = etcd.etcdctl(&["lease", "timetolive", &format!("{lease:x}")]);
    let remaining: u64 = ttl.split("remaining(").nth(1).and_then(|r| r.split('s').next()).unwrap().parse().unwrap();
    assert!((7 * 24 * 3600 - 600..=7 * 24 * 3600).contains(&remaining), "{ttl}");

    // paymeshctl reads them back, from etcd and from the file.
    let file = d.join("events.jsonl");
    for args in [["--etcd", &etcd.url, "switch-events"], ["switch-events", "--file", file.to_str().unwrap()]] {
        let out = std::process::Command::new(bin("paymeshctl")).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 8, "{text}");
        assert!(text.lines().next().unwrap().contains("access_log") && text.contains("recovered"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_access_log_and_detailed_metrics_stop_working() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let orchestrator = Orchestrator::start(&d.join("data"), d, &[]).await;
    let app = AppProcess::start(&orchestrator.url, d, &[]).await;
    let telemetry = Telemetry::start(&d.join("telemetry.json"), 20.0, 30.0);
    let app_addr = app.url.trim_start_matches("http://");
    let sidecar = start_sidecar(d, app_addr, None, &["access_log", "detailed_metrics"], "pod-c").await;
    sidecar.wait_ready(WAIT).await;
    let client = Client::new();
    let auth = format!("Bearer {KEY}");
    let charge = |id: String| {
        let (client, url, auth) = (client.clone(), format!("{}/v1/charges", sidecar.url), auth.clone());
        async move {
            let headers =
                [("authorization", auth.as_str()), ("idempotency-key", id.as_str()), ("x-request-id", id.as_str())];
            let body = json!({"amount": 500, "currency": "usd", "source": "tok_visa"});
            let reply = client.post(&url, &headers, &body).await;
            assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
        }
    };
    let log = || std::fs::read_to_string(d.join("access.log")).unwrap_or_default();
    let served = "paymesh_requests_total{code=\"2xx\",feature=\"charge\",route=\"legacy\"}";
    let timed = "paymesh_request_duration_seconds_count{feature=\"charge\",route=\"legacy\"}";

    for i in 0..3 {
        charge(format!("before-{i}")).await;
    }
    eventually(WAIT, "three access-log lines", || async { log().lines().count() == 3 }).await;
    let scrape = sidecar.metrics().await;
    assert_eq!((metric(&scrape, served), metric(&scrape, timed)), (Some(3.0), Some(3.0)));

    telemetry.set(97.0, 30.0);
    eventually(WAIT, "both shed", || async { enabled(&sidecar).await[..2] == [false, false] }).await;
    for i in 0..10 {
        charge(format!("shed-{i}")).await;
    }
    // Payments still flow and are counted; their latency is not observed.
    let scrape = sidecar.metrics().await;
    assert_eq!((metric(&scrape, served), metric(&scrape, timed)), (Some(13.0), Some(3.0)));

    // Back on by hand; the writer keeps order, so once the marker's line
    // is there, any line of the shed requests would be too.
    let reply = post_component(&sidecar, "access_log", r#"{"enabled": true}"#).await;
    assert_eq!(reply.status, 200);
    charge("marker".to_owned()).await;
    eventually(WAIT, "the marker's line", || async { log().contains("\"marker\"") }).await;
    assert!(!log().contains("shed-"), "{}", log());
    assert_eq!(log().lines().count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_unreadable_and_garbage_telemetry_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("telemetry.json");
    let hot = Telemetry::start(&path, 96.0, 30.0);
    let sidecar = start_sidecar(d, &no_app(), None, &ORDER, "pod-d").await;
    wait_enabled(&sidecar, [false; 4], "every component shed").await;
    hot.stop().await;

    let status = || async {
        let state = sidecar.state().await;
        let stale = metric(&sidecar.metrics().await, "paymesh_telemetry_stale");
        (state["telemetry"]["status"].as_str().unwrap().to_owned(), stale)
    };
    // Cool readings, but from ten seconds ago (three intervals are 3 s);
    // then cool readings dated a minute ahead (a skewed clock); then bytes
    // that are not JSON; then readings that cannot be; then no file. None
    // of it may restore anything, however long it lasts.
    for (case, want) in [
        ("old", "stale"),
        ("ahead", "future"),
        ("not json", "malformed"),
        ("impossible", "malformed"),
        ("gone", "unreadable"),
    ] {
        match case {
            "old" => write_sample(&path, now_ms() - 10_000, 5.0, 5.0),
            "ahead" => write_sample(&path, now_ms() + 60_000, 5.0, 5.0),
            "not json" => write_raw(&path, b"{\"cpu_percent\": 5, "),
            "impossible" => write_sample(&path, now_ms(), 250.0, 5.0),
            _ => std::fs::remove_file(&path).unwrap(),
        }
        eventually(WAIT, want, || async { status().await == (want.to_owned(), Some(1.0)) }).await;
        // Absence of a switch takes time to show: twice the hold.
        tokio::time::sleep(2 * HOLD).await;
        assert_eq!(enabled(&sidecar).await, [false; 4], "{case}");
        let state = sidecar.state().await;
        assert_eq!(state["telemetry"]["stale"], true);
        assert_eq!(state["overload"]["pressure"], "unknown");
        assert!(state["telemetry"]["problem"].is_string());
        assert_eq!(state["telemetry"]["reason"], want, "{case}");
        let series = format!("paymesh_telemetry_status{{status=\"{want}\"}}");
        assert_eq!(metric(&sidecar.metrics().await, &series), Some(1.0), "{case}");
    }
    assert_eq!(events(d).len(), 4);
    let warnings = || sidecar.process.log().matches("telemetry is unusable").count();
    assert_eq!(warnings(), 1, "one warning for the whole episode");

    // Fresh and cool again: the board acts on it, and a new episode warns anew.
    let cool = Telemetry::start(&path, 10.0, 10.0);
    wait_enabled(&sidecar, [true; 4], "every component restored").await;
    assert_eq!(metric(&sidecar.metrics().await, "paymesh_telemetry_stale"), Some(0.0));
    cool.stop().await;
    write_raw(&path, b"garbage");
    eventually(WAIT, "the second episode", || async { status().await.1 == Some(1.0) }).await;
    eventually(WAIT, "its warning", || async { warnings() == 2 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_overrides_the_board_and_takes_a_profile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let telemetry = Telemetry::start(&d.join("telemetry.json"), 20.0, 30.0);
    let sidecar = start_sidecar(d, &no_app(), None, &ORDER, "pod-e").await;
    let client = Client::new();
    let profile = |seconds: &str| format!("{}/debug/pprof/profile?seconds={seconds}", sidecar.admin);

    // A two-second profile while requests keep the sidecar busy.
    let load = {
        let (client, url) = (client.clone(), format!("{}/v1/charges", sidecar.url));
        tokio::spawn(async move {
            loop {
                let _ = client.send(http::Method::GET, &url, &[], b"").await;
            }
        })
    };
    let reply = client.get(&profile("2"), &[ADMIN_AUTH]).await;
    load.abort();
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let samples: u64 = reply.header("x-profile-samples").unwrap().parse().unwrap();
    assert!(samples > 0);
    let folded = String::from_utf8(reply.body.to_vec()).unwrap();
    for line in folded.lines() {
        let (stack, count) = line.rsplit_once(' ').unwrap();
        assert!(stack.contains(';') && count.parse::<u64>().is_ok(), "{line}");
    }
    assert_eq!(client.get(&profile("0"), &[ADMIN_AUTH]).await.status, 400);

    // Profiling off by hand: the endpoint refuses, and says why.
    let reply = post_component(&sidecar, "profiling", r#"{"enabled": false}"#).await;
    assert_eq!(reply.json(), json!({"component": "profiling", "enabled": false, "control": "manual"}));
    let refused = client.get(&profile("1"), &[ADMIN_AUTH]).await;
    assert_eq!(refused.status, 503);
    assert!(refused.json()["reason"].as_str().unwrap().contains("operator"), "{:?}", refused.json());
    let state = sidecar.state().await;
    assert_eq!(state["components"]["profiling"]["control"], "manual");
    assert_eq!(state["components"]["profiling"]["reason"], "manual");

    // Overloaded: the board sheds the rest; a pinned component stays put.
    let reply = post_component(&sidecar, "access_log", r#"{"enabled": true}"#).await;
    assert_eq!(reply.json()["control"], "manual");
    telemetry.set(99.0, 30.0);
    wait_enabled(&sidecar, [true, false, false, false], "all but the pinned access log shed").await;
    tokio::time::sleep(2 * HOLD).await;
    assert_eq!(enabled(&sidecar).await, [true, false, false, false]);

    // Released: the board's plan applies at once.
    let reply = post_component(&sidecar, "access_log", r#"{"enabled": null}"#).await;
    assert_eq!(reply.json(), json!({"component": "access_log", "enabled": false, "control": "board"}));
    let reply = post_component(&sidecar, "profiling", r#"{"enabled": null}"#).await;
    assert_eq!(reply.json(), json!({"component": "profiling", "enabled": false, "control": "board"}));
    telemetry.set(10.0, 30.0);
    wait_enabled(&sidecar, [true; 4], "every component restored").await;

    let manual: Vec<_> = events(d).into_iter().filter(|e| e["reason"] == "manual").collect();
    let states: Vec<_> =
        manual.iter().map(|e| (e["component"].as_str().unwrap(), e["state"].as_str().unwrap())).collect();
    assert_eq!(states, [("profiling", "off"), ("access_log", "on"), ("access_log", "off"), ("profiling", "off")]);

    // Refusals name the problem.
    assert_eq!(post_component(&sidecar, "tracing", r#"{"enabled": 1}"#).await.status, 400);
    assert_eq!(post_component(&sidecar, "tracing", "{}").await.status, 400);
    assert_eq!(post_component(&sidecar, "auth", r#"{"enabled": false}"#).await.status, 404);
    let get = client.get(&format!("{}/admin/components/tracing", sidecar.admin), &[]).await;
    assert_eq!(get.status, 405);
    assert_eq!(enabled(&sidecar).await, [true; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_records_reach_etcd_after_an_outage_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut etcd = Etcd::start(d).await;
    let telemetry = Telemetry::start(&d.join("telemetry.json"), 20.0, 30.0);
    let mut sidecar = start_sidecar(d, &no_app(), Some(&etcd.url), &ORDER, "pod-f").await;
    let pending = |s: &SidecarProcess| {
        let url = format!("{}/admin/state", s.admin);
        async move { Client::new().get(&url, &[]).await.json()["overload"]["etcd_pending"].as_u64().unwrap() }
    };

    // etcd down while the board sheds: the switches happen and are in the
    // file at once; the etcd copies wait.
    etcd.process.kill9();
    telemetry.set(95.0, 30.0);
    wait_enabled(&sidecar, [false; 4], "every component shed").await;
    // A switch takes effect first, then its record is fsync'd and queued.
    eventually(WAIT, "four records in the file", || async { events(d).len() == 4 }).await;
    eventually(WAIT, "four records waiting for etcd", || async { pending(&sidecar).await == 4 }).await;
    etcd.restart(d).await;
    eventually(WAIT, "four records in etcd", || async { etcd_records(&etcd, "pod-f").len() == 4 }).await;
    eventually(WAIT, "nothing pending", || async { pending(&sidecar).await == 0 }).await;

    // Down again for the recovery, and the sidecar crashes before etcd is
    // back: its successor replays the file.
    etcd.process.kill9();
    telemetry.set(10.0, 30.0);
    wait_enabled(&sidecar, [true; 4], "every component restored").await;
    eventually(WAIT, "four records waiting for etcd", || async { pending(&sidecar).await == 4 }).await;
    sidecar.process.kill9();
    etcd.restart(d).await;
    sidecar = start_sidecar(d, &no_app(), Some(&etcd.url), &ORDER, "pod-f").await;
    eventually(WAIT, "eight records in etcd", || async { etcd_records(&etcd, "pod-f").len() == 8 }).await;
    assert_eq!(etcd_records(&etcd, "pod-f"), events(d));
    eventually(WAIT, "nothing pending", || async { pending(&sidecar).await == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_tracing_builds_no_request_spans() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _telemetry = Telemetry::start(&d.join("telemetry.json"), 20.0, 30.0);
    let yaml = overload_yaml(d, None, &ORDER);
    let env = [("POD_NAME", "pod-g"), ("RUST_LOG", "paymesh_sidecar=debug")];
    let sidecar = SidecarProcess::start_with_env(d, free_port(), free_port(), &no_app(), &yaml, &env).await;
    let client = Client::new();
    let url = format!("{}/v1/charges", sidecar.url);
    let request = |id: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(&url, &[("x-request-id", id)]).await.status }
    };
    let span = |id: &str| format!("request{{id=\"{id}\"");
    let log = || strip_ansi(&sidecar.process.log());

    assert_eq!(request("traced-1").await, 401);
    eventually(WAIT, "the first request's span", || async { log().contains(&span("traced-1")) }).await;
    assert_eq!(post_component(&sidecar, "tracing", r#"{"enabled": false}"#).await.status, 200);
    assert_eq!(request("untraced-2").await, 401);
    assert_eq!(post_component(&sidecar, "tracing", r#"{"enabled": true}"#).await.status, 200);
    assert_eq!(request("traced-3").await, 401);
    eventually(WAIT, "the third request's span", || async { log().contains(&span("traced-3")) }).await;
    assert!(!log().contains("untraced-2"), "{}", log());
}

/// The log without its colours (escape sequences up to their `m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

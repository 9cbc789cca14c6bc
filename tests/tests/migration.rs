//! Traffic migration against a real etcd: the sidecar's watch, its cache
//! file, sticky routing, and `paymeshctl` ramps.

use paymesh_system_tests::migration::{CHECKOUT, charge_as, ctl, ramp_args, traffic};
use paymesh_system_tests::{AppProcess, Client, Etcd, Orchestrator, SidecarProcess, eventually, metric};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// etcd, orchestrator, app and one sidecar watching etcd.
struct Stack {
    etcd: Etcd,
    orchestrator: Orchestrator,
    app: AppProcess,
    sidecar: SidecarProcess,
    dir: tempfile::TempDir,
}

fn migration_yaml(etcd: &str, dir: &Path) -> String {
    format!(
        "migration:\n  etcd_endpoints: [\"{etcd}\"]\n  prefix: /paymesh\n  cache_file: {}\n  defaults: {{ charge: 0, refund: 0, disbursement: 0 }}\n",
        dir.join("migration.json").display()
    )
}

impl Stack {
    async fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Etcd::start(dir.path()).await;
        let orchestrator = Orchestrator::start(&dir.path().join("data"), dir.path(), &[]).await;
        let app = AppProcess::start(&orchestrator.url, dir.path(), &["--timeout", "2s"]).await;
        let app_addr = app.url.trim_start_matches("http://").to_owned();
        let sidecar = SidecarProcess::start(dir.path(), &app_addr, &migration_yaml(&etcd.url, dir.path())).await;
        Stack { etcd, orchestrator, app, sidecar, dir }
    }

    async fn percent(&self, feature: &str) -> (f64, String) {
        let state = self.sidecar.state().await;
        let m = &state["migration"][feature];
        (m["percent"].as_f64().unwrap(), m["source"].as_str().unwrap().to_owned())
    }

    async fn wait_percent(&self, feature: &str, percent: f64) {
        eventually(Duration::from_secs(10), &format!("{feature} at {percent}%"), || async {
            self.percent(feature).await.0 == percent
        })
        .await;
    }
}

/// A charge as the demo client; its status and `x-paymesh-route`.
async fn charge(client: &Client, sidecar: &str, key: &str) -> (u16, Option<String>) {
    charge_as(client, sidecar, CHECKOUT, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_percent_of_charges_take_the_orchestration_path() {
    let s = Stack::start().await;
    let out = ctl(&s.etcd.url, &["migration", "set", "charge", "30"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.wait_percent("charge", 30.0).await;
    assert_eq!(s.percent("charge").await.1, "etcd");

    let client = Client::new();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (client, url) = (client.clone(), s.sidecar.url.clone());
        tasks.push(tokio::spawn(async move {
            let mut orchestration = 0;
            for n in 0..125 {
                let (status, route) = charge(&client, &url, &format!("share-{w}-{n}")).await;
                assert_eq!(status, 201);
                orchestration += usize::from(route.as_deref() == Some("orchestration"));
            }
            orchestration
        }));
    }
    let mut orchestration = 0;
    for t in tasks {
        orchestration += t.await.unwrap();
    }
    let share = orchestration as f64 / 2000.0;
    assert!((0.27..=0.33).contains(&share), "orchestration share {share} is not 30% ± 3%");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_payment_keeps_its_path_or_moves_only_to_orchestration() {
    let s = Stack::start().await;
    let client = Client::new();
    let keys: Vec<String> = (0..200).map(|n| format!("sticky-{n}")).collect();
    let mut last: Vec<Option<String>> = vec![None; keys.len()];
    let mut moved = 0;
    for percent in ["10", "50", "90"] {
        s.etcd.put("/paymesh/migration/charge", percent);
        s.wait_percent("charge", percent.parse().unwrap()).await;
        for _ in 0..2 {
            for (i, key) in keys.iter().enumerate() {
                let (status, route) = charge(&client, &s.sidecar.url, key).await;
                assert_eq!(status, 201, "{key}");
                let route = route.expect("route echoed");
                match (last[i].as_deref(), route.as_str()) {
                    (Some("orchestration"), "legacy") => panic!("{key} moved back to legacy at {percent}%"),
                    (Some("legacy"), "orchestration") => moved += 1,
                    _ => {}
                }
                last[i] = Some(route);
            }
        }
    }
    let on_orchestration = last.iter().filter(|r| r.as_deref() == Some("orchestration")).count();
    assert!((160..=200).contains(&on_orchestration), "{on_orchestration} of 200 keys at 90%");
    assert!(moved > 100, "raising the percent moved only {moved} keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_values_are_refused_and_deleted_keys_fall_back_to_defaults() {
    let s = Stack::start().await;
    s.etcd.put("/paymesh/migration/refund", "25");
    s.wait_percent("refund", 25.0).await;
    for bad in ["abc", "101", "-5", "NaN", ""] {
        s.etcd.put("/paymesh/migration/refund", bad);
    }
    // A later good write to another key proves the bad ones were processed.
    s.etcd.put("/paymesh/migration/disbursement", "5");
    s.wait_percent("disbursement", 5.0).await;
    assert_eq!(s.percent("refund").await, (25.0, "etcd".to_owned()));
    let errors = metric(&s.sidecar.metrics().await, "paymesh_migration_config_errors_total").unwrap_or(0.0);
    assert_eq!(errors, 5.0);
    let gauge = metric(&s.sidecar.metrics().await, "paymesh_migration_percent{feature=\"refund\"}");
    assert_eq!(gauge, Some(25.0));

    s.etcd.delete("/paymesh/migration/refund");
    s.wait_percent("refund", 0.0).await;
    assert_eq!(s.percent("refund").await.1, "defaults");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_down_fails_no_request_and_its_return_is_applied() {
    let mut s = Stack::start().await;
    s.etcd.put("/paymesh/migration/charge", "40");
    s.wait_percent("charge", 40.0).await;

    let client = Client::new();
    let url = s.sidecar.url.clone();
    let traffic = tokio::spawn(async move {
        let mut n = 0;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            let (status, _) = charge(&client, &url, &format!("steady-{n}")).await;
            assert_eq!(status, 201, "request {n} failed while etcd was down");
            n += 1;
        }
        n
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.etcd.process.kill9();
    let served = traffic.await.unwrap();
    assert!(served > 20, "only {served} requests in 3 s");
    assert_eq!(s.percent("charge").await, (40.0, "etcd".to_owned()), "the percent stays while etcd is down");

    let dir = s.dir.path().to_path_buf();
    s.etcd.restart(&dir).await;
    s.etcd.put("/paymesh/migration/charge", "60");
    s.wait_percent("charge", 60.0).await;
    let state = s.sidecar.state().await;
    assert!(state["etcd"]["revision"].as_i64().unwrap() > 0, "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sidecar_restarted_while_etcd_is_down_uses_the_cache_file() {
    let mut s = Stack::start().await;
    s.etcd.put("/paymesh/migration/charge", "35");
    s.etcd.put("/paymesh/migration/refund", "12.5");
    s.wait_percent("charge", 35.0).await;
    s.wait_percent("refund", 12.5).await;
    let cache: Value = serde_json::from_slice(&std::fs::read(s.dir.path().join("migration.json")).unwrap()).unwrap();
    assert_eq!((cache["charge"].as_f64(), cache["refund"].as_f64()), (Some(35.0), Some(12.5)));

    s.etcd.process.kill9();
    let (listen, admin) = (s.sidecar.listen_port, s.sidecar.admin_port);
    s.sidecar.process.kill9();
    let app_addr = s.app.url.trim_start_matches("http://").to_owned();
    let yaml = migration_yaml(&s.etcd.url, s.dir.path());
    s.sidecar = SidecarProcess::start_on(s.dir.path(), listen, admin, &app_addr, &yaml).await;
    assert_eq!(s.percent("charge").await, (35.0, "cache".to_owned()));
    assert_eq!(s.percent("refund").await, (12.5, "cache".to_owned()));
    assert_eq!(s.percent("disbursement").await, (0.0, "defaults".to_owned()));
    let (status, _) = charge(&Client::new(), &s.sidecar.url, "after-restart").await;
    assert_eq!(status, 201);
}

/// Runs `paymeshctl migration ramp charge` in 20-point steps of 1 s to `to`,
/// judged on this stack's sidecar, off the test's runtime.
fn ramp(s: &Stack, to: &str) -> tokio::task::JoinHandle<std::process::Output> {
    let args = ramp_args("charge", to, "20", "1s", &["--sidecars", &s.sidecar.admin]);
    let etcd = s.etcd.url.clone();
    tokio::task::spawn_blocking(move || ctl(&etcd, &args.iter().map(String::as_str).collect::<Vec<_>>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ramp_reaches_its_target_on_a_healthy_path() {
    let s = Stack::start().await;
    let traffic = traffic(s.sidecar.url.clone(), CHECKOUT);
    let out = ramp(&s, "60").await.unwrap();
    traffic.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("[3/3] charge set to 60%") && stdout.contains("done: charge is at 60%"), "{stdout}");
    s.wait_percent("charge", 60.0).await;
    let history = ctl(&s.etcd.url, &["migration", "history", "charge"]);
    let history = String::from_utf8_lossy(&history.stdout);
    assert_eq!(history.lines().filter(|l| l.contains("step")).count(), 3, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ramp_rolls_back_when_the_orchestration_path_fails() {
    let mut s = Stack::start().await;
    s.etcd.put("/paymesh/migration/charge", "20");
    s.wait_percent("charge", 20.0).await;
    let traffic = traffic(s.sidecar.url.clone(), CHECKOUT);
    let ramp = ramp(&s, "100");
    // Let the first step (40%) pass, then take the orchestration service away.
    s.wait_percent("charge", 60.0).await;
    s.orchestrator.process.kill9();
    let out = ramp.await.unwrap();
    traffic.abort();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("ROLLED BACK") && stderr.contains("set back to 40%"), "{stderr}");
    s.wait_percent("charge", 40.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_state_shows_the_etcd_in_use_which_a_reload_moves_at_the_next_connection() {
    let mut s = Stack::start().await;
    s.etcd.put("/paymesh/migration/charge", "10");
    s.wait_percent("charge", 10.0).await;
    let etcd = s.sidecar.state().await["etcd"].clone();
    assert_eq!(etcd["endpoints"], json!([s.etcd.url]), "{etcd}");
    assert_eq!(etcd["connected"], true, "{etcd}");

    // A reload names another etcd. The watch on the first still works, so
    // the first stays in use, and /admin/state says which one that is.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Etcd::start(other_dir.path()).await;
    other.put("/paymesh/migration/charge", "70");
    let yaml = std::fs::read_to_string(&s.sidecar.config).unwrap().replace(&s.etcd.url, &other.url);
    std::fs::write(&s.sidecar.config, yaml).unwrap();
    eventually(Duration::from_secs(10), "the reload", || async { s.sidecar.state().await["config"]["version"] == 2 })
        .await;
    s.etcd.put("/paymesh/migration/charge", "20");
    s.wait_percent("charge", 20.0).await;
    assert_eq!(s.sidecar.state().await["etcd"]["endpoints"], json!([s.etcd.url]));

    // Once it fails, the next connection goes where the config says. Its
    // first read applies 70 a moment before its watch is up (`connected`).
    s.etcd.process.kill9();
    s.wait_percent("charge", 70.0).await;
    eventually(Duration::from_secs(10), "the watch on the other etcd", || async {
        let etcd = s.sidecar.state().await["etcd"].clone();
        etcd["endpoints"] == json!([other.url]) && etcd["connected"] == true
    })
    .await;
    let etcd = s.sidecar.state().await["etcd"].clone();
    assert_eq!(etcd["last_error"]["kind"], "watch", "{etcd}");
}

/// `etcd_debugging_mvcc_watch_stream_total`: the watch streams etcd holds open.
async fn watch_streams(etcd: &Etcd) -> f64 {
    let scrape = Client::new().get(&format!("{}/metrics", etcd.url), &[]).await;
    metric(&String::from_utf8_lossy(&scrape.body), "etcd_debugging_mvcc_watch_stream_total").expect("etcd's gauge")
}

/// In-process, so that the process outlives the shutdown: the watch must
/// end because its task stops, not because the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_migration_watch_ends_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path()).await;
    let (listen, admin) = (paymesh_system_tests::free_port(), paymesh_system_tests::free_port());
    let yaml = paymesh_system_tests::sidecar::config_yaml(
        listen,
        admin,
        "127.0.0.1:9",
        &migration_yaml(&etcd.url, dir.path()),
    );
    let path = dir.path().join("sidecar.yaml");
    std::fs::write(&path, yaml).unwrap();
    let loaded = paymesh_sidecar::config::load_with_digest(&path).unwrap();
    let running = paymesh_sidecar::start(loaded, Some(path)).await.unwrap();
    let state = format!("http://{}/admin/state", running.admin_addr);

    etcd.put("/paymesh/migration/charge", "30");
    eventually(Duration::from_secs(10), "the sidecar watching etcd", || async {
        Client::new().get(&state, &[]).await.json()["migration"]["charge"]["percent"] == 30.0
    })
    .await;
    assert_eq!(watch_streams(&etcd).await, 1.0, "the migration watch");

    running.shutdown();
    running.wait().await;
    eventually(Duration::from_secs(5), "no watch left open on etcd", || async { watch_streams(&etcd).await == 0.0 })
        .await;
}

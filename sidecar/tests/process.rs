//! The built binary as a process: `--check-config`, refusing a bad start,
//! SIGHUP reload, and a SIGTERM drain that fails no accepted request (each
//! with several workers and with one, the default in a pod whose sidecar
//! may use one CPU).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::Signal;
use paymesh_system_tests::SidecarProcess;
use paymesh_system_tests::in_process::*;

const BIN: &str = env!("CARGO_BIN_EXE_paymesh-sidecar");

/// The built sidecar with `config_yaml(app, extra)` on free ports and
/// `workers` worker threads, ready.
async fn start(dir: &Path, app: SocketAddr, extra: &str, workers: usize) -> SidecarProcess {
    let yaml = config_yaml(app, extra);
    assert!(yaml.contains("\nworkers: 2\n"), "config_yaml sets workers");
    let yaml = yaml.replace("\nworkers: 2\n", &format!("\nworkers: {workers}\n"));
    let p = SidecarProcess::start_yaml(dir, &yaml, &["--log-format", "json"]).await;
    p.wait_ready(Duration::from_secs(20)).await;
    p
}

fn check_config(path: &Path) -> (bool, String, String) {
    let out = Command::new(BIN).arg("--check-config").arg(path).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_names_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, config_yaml("127.0.0.1:8081".parse().unwrap(), "").replace("{dir}", "/tmp")).unwrap();
    let (ok, stdout, _) = check_config(&good);
    assert!(ok);
    assert!(stdout.contains(": ok"));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "listen: nowhere\napp: \"192.0.2.1:8081\"\nclients: []\nlimits: { request_timeout: soon }\n")
        .unwrap();
    let (ok, _, stderr) = check_config(&bad);
    assert!(!ok);
    for key in ["listen", "app", "clients", "limits.request_timeout"] {
        assert!(stderr.contains(&format!(": {key}: ")), "{key} not named in {stderr}");
    }
    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(&unknown, "listen: \"127.0.0.1:1\"\napp: \"127.0.0.1:2\"\nclients: []\nlimts: {}\n").unwrap();
    let (ok, _, stderr) = check_config(&unknown);
    assert!(!ok);
    assert!(stderr.contains("limts"), "{stderr}");
}

#[test]
fn check_config_refuses_a_rate_the_throttle_cannot_represent() {
    // Once accepted, and the first request then overflowed the throttle.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rate.yaml");
    let yaml = config_yaml("127.0.0.1:8081".parse().unwrap(), "")
        .replace("{dir}", "/tmp")
        .replace("rate: { per_second: 2, burst: 2 }", "rate: { per_second: 0.001, burst: 4000000000 }");
    std::fs::write(&path, yaml).unwrap();
    let (ok, _, stderr) = check_config(&path);
    assert!(!ok, "accepted");
    assert!(stderr.contains(": clients[1].rate: "), "{stderr}");
}

#[test]
fn check_config_refuses_an_empty_or_missing_admin_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "").unwrap();
    let path = dir.path().join("admin.yaml");
    let admin = format!("admin: {{ listen: \"127.0.0.1:0\", token_file: {token:?} }}");
    let yaml = config_yaml("127.0.0.1:8081".parse().unwrap(), "")
        .replace("{dir}", "/tmp")
        .replace("admin: \"127.0.0.1:0\"", &admin);
    std::fs::write(&path, yaml).unwrap();
    let (ok, _, stderr) = check_config(&path);
    assert!(!ok, "an empty token file was accepted");
    assert!(stderr.contains(": admin.token_file: "), "{stderr}");
    std::fs::remove_file(&token).unwrap();
    let (ok, _, stderr) = check_config(&path);
    assert!(!ok && stderr.contains(": admin.token_file: "), "{stderr}");
    std::fs::write(&token, "a-long-enough-admin-token\n").unwrap();
    let (ok, _, stderr) = check_config(&path);
    assert!(ok, "{stderr}");
}

#[test]
fn a_non_loopback_app_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, config_yaml("10.1.2.3:8081".parse().unwrap(), "").replace("{dir}", "/tmp")).unwrap();
    let out = Command::new(BIN).arg("--config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("app: must be a loopback address"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file() {
    sighup_reloads(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_with_one_worker() {
    sighup_reloads(1).await;
}

async fn sighup_reloads(workers: usize) {
    let app = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), app.addr, "", workers).await;
    let yaml = std::fs::read_to_string(&p.config).unwrap();
    let rotated = yaml.replace(&sha256_hex(CHECKOUT_KEY), &sha256_hex("sk_test_hup"));
    // Rewrite in place (same inode, same size) and put the old mtime back,
    // so the file poll sees nothing: only the signal can trigger the reload.
    let mtime = std::fs::metadata(&p.config).unwrap().modified().unwrap();
    std::fs::write(&p.config, rotated).unwrap();
    std::fs::File::options().write(true).open(&p.config).unwrap().set_modified(mtime).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let url = format!("{}/v1/charges", p.url);
    let hup_key = [("authorization", "Bearer sk_test_hup")];
    assert_eq!(
        send(http::Method::POST, &url, &hup_key, "{}").await.status,
        StatusCode::UNAUTHORIZED,
        "no reload without the signal"
    );
    p.process.signal(Signal::SIGHUP);
    eventually(Duration::from_secs(5), "reloaded key", || {
        let url = url.clone();
        async move {
            send(http::Method::POST, &url, &[("authorization", "Bearer sk_test_hup")], "{}").await.status
                == StatusCode::CREATED
        }
    })
    .await;
}

#[derive(Debug)]
struct Outcome {
    started: Instant,
    result: Result<StatusCode, String>,
    connect_error: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_steady_stream_fails_no_request() {
    sigterm_fails_no_request(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_steady_stream_fails_no_request_with_one_worker() {
    sigterm_fails_no_request(1).await;
}

async fn sigterm_fails_no_request(workers: usize) {
    let app = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(dir.path(), app.addr, "limits: { drain_timeout: 15s }\n", workers).await;
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{}/v1/charges/ch_1", p.url);
    let auth = format!("Bearer {CHECKOUT_KEY}");
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (stop, url, auth) = (stop.clone(), url.clone(), auth.clone());
            tokio::spawn(async move {
                // A new connection per request: the test is about the
                // sidecar's drain, not about keep-alive races in a client.
                let client: Client<HttpConnector, Full<Bytes>> =
                    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(HttpConnector::new());
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let req = http::Request::get(&url)
                        .header("authorization", &auth)
                        .header("x-test-delay-ms", "200")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let started = Instant::now();
                    let (result, connect_error) = match client.request(req).await {
                        Ok(res) => {
                            let status = res.status();
                            match res.into_body().collect().await {
                                Ok(_) => (Ok(status), false),
                                Err(e) => (Err(format!("body: {e:?}")), false),
                            }
                        }
                        Err(e) => (Err(format!("{e:?}")), e.is_connect()),
                    };
                    outcomes.push(Outcome { started, result, connect_error });
                }
                outcomes
            })
        })
        .collect();
    // One long request keeps the drain open long enough to see /readyz.
    let long = {
        let (url, auth) = (url.clone(), auth.clone());
        tokio::spawn(async move {
            send(http::Method::GET, &url, &[("authorization", &auth), ("x-test-delay-ms", "1500")], "").await.status
        })
    };
    eventually(Duration::from_secs(10), "steady stream", || async { app.hits.load(Ordering::SeqCst) >= 20 }).await;
    let sigterm_at = Instant::now();
    p.process.signal(Signal::SIGTERM);
    let readyz = format!("{}/readyz", p.admin);
    eventually(Duration::from_secs(1), "readyz fails while draining", || {
        let readyz = readyz.clone();
        async move { get(&readyz).await.status == StatusCode::SERVICE_UNAVAILABLE }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let status = p.process.wait_exit(Duration::from_secs(15)).await.expect("sidecar did not exit");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(long.await.unwrap(), StatusCode::CREATED);

    let mut in_flight_at_sigterm = 0;
    for w in workers {
        for o in w.await.unwrap() {
            match &o.result {
                Ok(s) => {
                    assert_eq!(*s, StatusCode::CREATED);
                    if o.started < sigterm_at && o.started.elapsed() > sigterm_at.elapsed() {
                        in_flight_at_sigterm += 1;
                    }
                }
                // After SIGTERM the listener is closed: a refused connect
                // was never accepted, so nothing failed.
                Err(_) if o.connect_error && o.started >= sigterm_at => {}
                Err(e) => panic!(
                    "request failed: {e} (started {:?} before SIGTERM)",
                    sigterm_at.checked_duration_since(o.started)
                ),
            }
        }
    }
    assert!(in_flight_at_sigterm >= 3, "only {in_flight_at_sigterm} requests spanned the SIGTERM");
}

//! The access log of a real sidecar process under load: size rotation and
//! SIGUSR1 reopen lose no line and tear none, and the drop counter accounts
//! for every line that is missing. Also `--check-config` on the rotation
//! keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};
use nix::sys::signal::{Signal, kill};
use paymesh_sidecar::observe::rotate::{kept_files, numbered};
use paymesh_system_tests::SidecarProcess;
use paymesh_system_tests::in_process::*;

const BIN: &str = env!("CARGO_BIN_EXE_paymesh-sidecar");

/// Small enough to rotate dozens of times in a few thousand requests.
const MAX_BYTES: u64 = 64 * 1024;
/// Enough kept files that none is dropped in these runs: then every line
/// must be found.
const KEEP: u32 = 200;

/// A sidecar process with a rotating file access log, and its directory.
struct Proc {
    sidecar: SidecarProcess,
    dir: tempfile::TempDir,
}

impl Proc {
    async fn start(app: SocketAddr) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let rotate = format!("{{ max_bytes: {MAX_BYTES}, keep: {KEEP} }}");
        let yaml = config_yaml(app, "")
            .replace("rate: { per_second: 1000, burst: 1000 }", "rate: { per_second: 100000, burst: 100000 }")
            .replace(
                "access_log: { path: \"{dir}/access.log\" }",
                &format!("access_log: {{ path: \"{{dir}}/access.log\", rotate: {rotate} }}"),
            );
        assert!(yaml.contains("max_bytes"), "the access_log line of config_yaml changed:\n{yaml}");
        let sidecar = SidecarProcess::start_yaml(dir.path(), &yaml, &[]).await;
        sidecar.wait_ready(Duration::from_secs(20)).await;
        Proc { sidecar, dir }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    async fn dropped(&self) -> u64 {
        let reply = get(&format!("{}/metrics", self.sidecar.admin)).await;
        metric(&String::from_utf8_lossy(&reply.body), "paymesh_access_log_dropped_total")
            .expect("the drop counter is exported") as u64
    }

    /// SIGTERM, and wait for the exit that follows the access-log flush.
    async fn stop(&mut self) {
        self.sidecar.process.signal(Signal::SIGTERM);
        self.sidecar.process.wait_exit(Duration::from_secs(20)).await.expect("sidecar did not exit");
    }
}

/// `n` requests from `concurrency` tasks; `during(i)` runs in the sender
/// of request `i` before it is sent, once.
async fn load(proxy: &str, n: usize, concurrency: usize, at: usize, during: impl FnOnce() + Send + 'static) {
    let next = Arc::new(AtomicUsize::new(0));
    let during = Arc::new(std::sync::Mutex::new(Some(during)));
    let url = format!("{proxy}/v1/charges");
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, during, url) = (next.clone(), during.clone(), url.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    if i == at {
                        if let Some(f) = during.lock().unwrap().take() {
                            f();
                        }
                    }
                    let idem = format!("rotation-{i}");
                    let headers = [("authorization", "Bearer sk_test_checkout"), ("idempotency-key", idem.as_str())];
                    let reply = send(Method::POST, &url, &headers, r#"{"amount":1000,"currency":"usd"}"#).await;
                    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Every line of `files`, each checked to be one whole JSON object.
fn lines(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{f:?} ends in a torn line");
        for (n, line) in text.lines().enumerate() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{f:?} line {}: {e}: {line:?}", n + 1));
            assert!(v["request_id"].is_string() && v["status"] == 201, "{f:?} line {}: {line}", n + 1);
            out.push(v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn size_rotation_under_load_loses_and_tears_no_line() {
    const REQUESTS: usize = 4000;
    let app = upstream().await;
    let mut p = Proc::start(app.addr).await;
    load(&p.sidecar.url, REQUESTS, 32, usize::MAX, || {}).await;
    let dropped = p.dropped().await;
    p.stop().await;

    let files = kept_files(&p.log_path(), KEEP);
    assert!(files.len() > 10, "expected many rotations at {MAX_BYTES} bytes, got {files:?}");
    assert!(!numbered(&p.log_path(), KEEP).exists(), "KEEP too small for this test: a file was dropped");
    for f in &files {
        let size = std::fs::metadata(f).unwrap().len();
        assert!(size <= MAX_BYTES, "{f:?} has {size} bytes, over max_bytes");
    }
    let found = lines(&files);
    assert_eq!(found.len() as u64 + dropped, REQUESTS as u64, "lines {} + dropped {dropped}", found.len());
    let mut ids: Vec<_> = found.iter().map(|v| v["request_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), found.len(), "a line was written twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr1_after_a_move_reopens_the_path_under_load() {
    const REQUESTS: usize = 3000;
    let app = upstream().await;
    let mut p = Proc::start(app.addr).await;
    let (path, moved) = (p.log_path(), p.dir.path().join("access.log.moved"));
    let pid = p.sidecar.process.pid();
    let (path2, moved2) = (path.clone(), moved.clone());
    // What logrotate does: move the live file, then signal. Lines keep
    // going into the moved file until the writer reopens.
    load(&p.sidecar.url, REQUESTS, 32, REQUESTS / 2, move || {
        std::fs::rename(&path2, &moved2).unwrap();
        kill(pid, Signal::SIGUSR1).unwrap();
    })
    .await;
    eventually(Duration::from_secs(5), "a new file at the access-log path", || {
        let path = path.clone();
        async move { path.exists() }
    })
    .await;
    let dropped = p.dropped().await;
    p.stop().await;

    // The moved file holds the first lines (and any rotations of the new file
    // are kept files of the path).
    let mut files = vec![moved.clone()];
    files.extend(kept_files(&path, KEEP));
    let before = lines(&files[..1]).len();
    let found = lines(&files);
    assert!(before > 0 && found.len() > before, "moved {before}, all {}", found.len());
    assert_eq!(found.len() as u64 + dropped, REQUESTS as u64, "lines {} + dropped {dropped}", found.len());
}

#[test]
fn check_config_names_bad_rotation_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    let yaml = config_yaml("127.0.0.1:8081".parse().unwrap(), "overload: { events_rotate: { keep: 0 } }\n").replace(
        "access_log: { path: \"{dir}/access.log\" }",
        "access_log: { path: /tmp/a.log, rotate: { max_bytes: 10 } }",
    );
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(BIN).arg("--check-config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["access_log.rotate.max_bytes", "overload.events_rotate.keep"] {
        assert!(stderr.contains(&format!(": {key}: ")), "{key} not named in {stderr}");
    }
}

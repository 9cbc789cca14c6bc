//! `paymesh-app --probe`, the app's exec probe in the chart: it passes
//! against a running app over TCP and over a Unix socket, and fails with a
//! one-line reason when the socket file is missing, when nothing listens,
//! on another status than 200 and when the answer does not come in time.

use paymesh_system_tests::{AppProcess, Process, bin, eventually, free_port};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `paymesh-app --probe` with the address in PAYMESH_APP_LISTEN, as
/// the chart's probe does (the container's own environment).
fn probe(listen: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(bin("paymesh-app"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PAYMESH_") {
            cmd.env_remove(&name);
        }
    }
    cmd.arg("--probe").args(extra).env("PAYMESH_APP_LISTEN", listen);
    cmd.output().expect("paymesh-app --probe runs")
}

/// Asserts the probe failed with exactly one line on stderr holding `why`.
fn assert_fails(out: &Output, why: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("paymesh-app --probe: ") && stderr.contains(why), "{stderr:?} lacks {why:?}");
}

async fn app_on_socket(socket: &Path, dir: &Path) -> Process {
    let listen = format!("unix:{}", socket.display());
    let process =
        Process::spawn("paymesh-app", &["--listen", &listen, "--orchestrator", "http://127.0.0.1:1"], &[], dir);
    eventually(Duration::from_secs(20), "the app's socket", || async {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    })
    .await;
    process
}

#[tokio::test]
async fn passes_against_a_running_app_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let app = AppProcess::start("http://127.0.0.1:1", dir.path(), &[]).await;
    let listen = app.url.strip_prefix("http://").unwrap();
    let out = probe(listen, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("HTTP/1.1 200"));
    // --listen wins over the environment, as for the server.
    let out = probe("127.0.0.1:1", &["--listen", listen]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn passes_over_the_socket_and_fails_once_the_app_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let listen = format!("unix:{}", socket.display());
    let mut app = app_on_socket(&socket, dir.path()).await;
    let out = probe(&listen, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("HTTP/1.1 200"));

    // A crash leaves the socket file behind, with nothing listening on it.
    app.kill9();
    assert!(socket.exists());
    assert_fails(&probe(&listen, &[]), "connection refused");
    std::fs::remove_file(&socket).unwrap();
    assert_fails(&probe(&listen, &[]), "no socket file");
}

#[test]
fn fails_when_nothing_listens_on_the_port() {
    assert_fails(&probe(&format!("127.0.0.1:{}", free_port()), &[]), "connection refused");
}

#[test]
fn fails_on_another_status_than_200() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let n = conn.read(&mut request).unwrap();
        conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
        String::from_utf8_lossy(&request[..n]).into_owned()
    });
    assert_fails(&probe(&addr.to_string(), &[]), "answered \"HTTP/1.1 503 Service Unavailable\"");
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /healthz HTTP/1.1\r\n"), "{request:?}");
    assert!(request.to_lowercase().contains("connection: close\r\n"), "{request:?}");
}

#[test]
fn gives_up_at_the_timeout_when_no_answer_comes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    // Accepts (the backlog does) and never answers.
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let started = Instant::now();
    let out = probe(&format!("unix:{}", socket.display()), &["--probe-timeout", "300ms"]);
    assert_fails(&out, "no answer to GET /healthz within 300ms");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

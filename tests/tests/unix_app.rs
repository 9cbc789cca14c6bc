//! The app hop over a Unix socket (`paymesh-app --listen unix:…`, the
//! sidecar's `app: unix:…`): payments and readiness work over it, the
//! socket is the owner's alone, and a socket left by a crashed app is
//! replaced when it starts again.

use paymesh_system_tests::{Client, Orchestrator, Process, SidecarProcess, eventually};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const AUTH: (&str, &str) = ("authorization", "Bearer test-key-checkout");

async fn app_on(socket: &Path, orchestrator: &str, dir: &Path) -> Process {
    let listen = format!("unix:{}", socket.display());
    let process = Process::spawn("paymesh-app", &["--listen", &listen, "--orchestrator", orchestrator], &[], dir);
    eventually(Duration::from_secs(20), "the app's socket", || async {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    })
    .await;
    process
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_and_readiness_go_over_the_socket_and_survive_an_app_crash() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let orchestrator = Orchestrator::start(&dir.path().join("data"), dir.path(), &[]).await;
    let mut app = app_on(&socket, &orchestrator.url, dir.path()).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the owner may open the app's socket");

    let sidecar = SidecarProcess::start(dir.path(), &format!("unix:{}", socket.display()), "").await;
    sidecar.wait_ready(Duration::from_secs(10)).await;

    let client = Client::new();
    let body = json!({"amount": 1000, "currency": "usd", "source": "tok_visa"});
    let created =
        client.post(&format!("{}/v1/charges", sidecar.url), &[AUTH, ("idempotency-key", "unix-1")], &body).await;
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let read = client.get(&format!("{}/v1/charges/{id}", sidecar.url), &[AUTH]).await;
    assert_eq!(read.status, 200);

    // A crash leaves the socket file behind; the sidecar sees the app gone,
    // and the next app replaces the dead socket and serves again.
    app.kill9();
    assert!(socket.exists(), "a killed process leaves its socket file");
    eventually(Duration::from_secs(10), "readyz fails without the app", || async {
        client.get(&format!("{}/readyz", sidecar.admin), &[]).await.status == 503
    })
    .await;
    let down = client.post(&format!("{}/v1/charges", sidecar.url), &[AUTH, ("idempotency-key", "unix-2")], &body).await;
    assert_eq!(down.status, 503, "app unreachable over the socket is 503");
    let _app = app_on(&socket, &orchestrator.url, dir.path()).await;
    sidecar.wait_ready(Duration::from_secs(10)).await;
    let again =
        client.post(&format!("{}/v1/charges", sidecar.url), &[AUTH, ("idempotency-key", "unix-2")], &body).await;
    assert_eq!(again.status, 201);
}

#[tokio::test]
async fn a_second_app_refuses_a_live_socket_and_no_app_removes_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let _first = app_on(&socket, "http://127.0.0.1:1", dir.path()).await;
    let mut second = Process::spawn(
        "paymesh-app",
        &["--listen", &format!("unix:{}", socket.display()), "--orchestrator", "http://127.0.0.1:1"],
        &[],
        dir.path(),
    );
    let status = second.wait_exit(Duration::from_secs(10)).await.expect("the second app exits");
    assert!(!status.success());
    assert!(second.log().contains("another process serves this socket"), "{}", second.log());
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "data").unwrap();
    let mut third = Process::spawn(
        "paymesh-app",
        &["--listen", &format!("unix:{}", file.display()), "--orchestrator", "http://127.0.0.1:1"],
        &[],
        dir.path(),
    );
    assert!(!third.wait_exit(Duration::from_secs(10)).await.unwrap().success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data", "a file that is not a socket is never removed");
}

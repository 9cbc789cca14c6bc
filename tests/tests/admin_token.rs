//! The admin token with real processes: `paymeshctl` sends it for the
//! sidecar's state-changing admin requests, and the sidecar refuses them
//! without it.

use paymesh_system_tests::{Client, SidecarProcess, bin, free_port};
use std::process::Command;

fn paymeshctl(args: &[&str], token_file: &std::path::Path) -> (bool, String) {
    let out = Command::new(bin("paymeshctl")).args(args).env("PAYMESH_ADMIN_TOKEN_FILE", token_file).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paymeshctl_sends_the_admin_token_and_nothing_works_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let no_app = format!("127.0.0.1:{}", free_port());
    let sidecar = SidecarProcess::start(dir.path(), &no_app, "").await;
    let token = dir.path().join(format!("admin-token-{}", sidecar.listen_port));
    let admin = sidecar.admin.as_str();

    let (ok, out) = paymeshctl(&["component", "tracing", "off", "--sidecar", admin], &token);
    assert!(ok, "{out}");
    assert!(out.contains("control manual"), "{out}");
    assert_eq!(sidecar.state().await["components"]["tracing"]["control"], "manual");
    let (ok, out) = paymeshctl(&["component", "tracing", "auto", "--sidecar", admin], &token);
    assert!(ok && out.contains("control board"), "{out}");
    let (ok, out) = paymeshctl(&["reload", "--sidecar", admin], &token);
    assert!(ok, "{out}");

    // A wrong token: refused, and the sidecar's reason is shown.
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-admin-token-at-all\n").unwrap();
    let (ok, out) = paymeshctl(&["component", "tracing", "off", "--sidecar", admin], &wrong);
    assert!(!ok && out.contains("401") && out.contains("Invalid admin token"), "{out}");
    assert_eq!(sidecar.state().await["components"]["tracing"]["control"], "board");

    // No token at all: 401 in the public error shape.
    let r = Client::new().send(http::Method::POST, &format!("{admin}/admin/reload"), &[], b"").await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
}

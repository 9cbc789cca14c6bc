//! The admin listener's trust model over a real socket: reads are open,
//! state changes need a loopback peer and the admin token.

use std::time::Duration;

use http::{Method, StatusCode};
use paymesh_system_tests::in_process::*;

/// Every state-changing admin request, as (method, path, body).
const MUTATING: &[(Method, &str, &str)] = &[
    (Method::POST, "/admin/reload", ""),
    (Method::POST, "/admin/components/tracing", r#"{"enabled": null}"#),
    (Method::GET, "/debug/pprof/profile?seconds=1", ""),
];

fn assert_refused(r: &Reply, code: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let e = &r.json()["error"];
    assert_eq!(e["type"], "authentication_error", "{e}");
    assert_eq!(e["code"], code, "{e}");
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
}

async fn reads_stay_open(sc: &Sidecar) {
    for path in ["/healthz", "/readyz", "/metrics", "/admin/state"] {
        assert_eq!(get(&sc.admin_url(path)).await.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_file_state_changes_are_refused() {
    let (_app, sc) = echo_sidecar().await;
    ready(&sc).await;
    for (method, path, body) in MUTATING {
        let r = send(method.clone(), &sc.admin_url(path), &[ADMIN_AUTH], *body).await;
        assert_refused(&r, "admin_token_not_configured");
        assert!(r.json()["error"]["message"].as_str().unwrap().contains("admin.token_file"));
    }
    reads_stay_open(&sc).await;
    assert_eq!(get(&sc.admin_url("/admin/state")).await.json()["config"]["admin_token"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_the_token_and_reads_do_not() {
    let app = upstream().await;
    let sc = sidecar(&with_admin_token(&config_yaml(app.addr, ""))).await;
    ready(&sc).await;
    for (method, path, body) in MUTATING {
        let url = sc.admin_url(path);
        assert_refused(&send(method.clone(), &url, &[], *body).await, "missing_admin_token");
        let wrong = ("authorization", "Bearer test-admin-token-012345678X");
        assert_refused(&send(method.clone(), &url, &[wrong], *body).await, "invalid_admin_token");
        let basic = ("authorization", "Basic dGVzdDp0ZXN0");
        assert_refused(&send(method.clone(), &url, &[basic], *body).await, "missing_admin_token");
    }
    // Refused requests changed nothing: no manual pin was recorded.
    assert_eq!(get(&sc.admin_url("/admin/state")).await.json()["components"]["tracing"]["control"], "board");

    let r = send(Method::POST, &sc.admin_url("/admin/reload"), &[ADMIN_AUTH], "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r =
        send(Method::POST, &sc.admin_url("/admin/components/tracing"), &[ADMIN_AUTH], r#"{"enabled": false}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["control"], "manual");
    let lower = ("authorization", "bearer test-admin-token-0123456789");
    let r = send(Method::POST, &sc.admin_url("/admin/components/tracing"), &[lower], r#"{"enabled": null}"#).await;
    assert_eq!(r.status, StatusCode::OK, "the scheme is case-insensitive");
    reads_stay_open(&sc).await;
    let state = get(&sc.admin_url("/admin/state")).await;
    assert_eq!(state.json()["config"]["admin_token"], true);
    assert!(!String::from_utf8_lossy(&state.body).contains(ADMIN_TOKEN), "the token leaked into /admin/state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_file_is_read_again() {
    let app = upstream().await;
    let sc = sidecar(&with_admin_token(&config_yaml(app.addr, ""))).await;
    ready(&sc).await;
    const NEW: &str = "rotated-admin-token-abcdefghij";
    write_atomically(&sc.dir.path().join("admin-token"), NEW);
    let url = sc.admin_url("/admin/reload");
    let new_auth = format!("Bearer {NEW}");
    eventually(Duration::from_secs(10), "the new token is in force", || async {
        send(Method::POST, &url, &[("authorization", &new_auth)], "").await.status == StatusCode::ACCEPTED
    })
    .await;
    assert_refused(&send(Method::POST, &url, &[ADMIN_AUTH], "").await, "invalid_admin_token");

    // An emptied token file is refused like any bad config: the last good
    // token stays in force.
    write_atomically(&sc.dir.path().join("admin-token"), "");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(send(Method::POST, &url, &[("authorization", &new_auth)], "").await.status, StatusCode::ACCEPTED);
}

//! Limits the sidecar and the app must agree on, with both as processes:
//! a request with as many header fields as the sidecar accepts reaches the
//! app (the sidecar's own additions must not tip it over the app's limit),
//! and one more is refused by the sidecar itself.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use paymesh_system_tests::sidecar::KEY;
use paymesh_system_tests::{AppProcess, Orchestrator, SidecarProcess};
use paymesh_vocab::limits::CLIENT_MAX_HEADERS;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A well-formed charge id nobody created: the app answers 404.
const UNKNOWN_CHARGE: &str = "/v1/charges/ch_000000000000000000000000";

struct Pod {
    _orchestrator: Orchestrator,
    _app: AppProcess,
    sidecar: SidecarProcess,
    _dir: tempfile::TempDir,
}

async fn pod() -> Pod {
    let dir = tempfile::tempdir().unwrap();
    let (orchestrator, app) = AppProcess::with_orchestrator(dir.path()).await;
    let app_addr = app.url.trim_start_matches("http://").to_owned();
    let sidecar = SidecarProcess::start(dir.path(), &app_addr, "").await;
    sidecar.wait_ready(Duration::from_secs(10)).await;
    Pod { _orchestrator: orchestrator, _app: app, sidecar, _dir: dir }
}

/// An HTTP/1.1 GET with exactly `total` header fields (Host, Authorization
/// and Connection among them), written by hand so nothing adds any; returns
/// the status and the body.
async fn h1_get(addr: &str, total: usize) -> (u16, String) {
    let mut req = format!("GET {UNKNOWN_CHARGE} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {KEY}\r\n");
    for i in 3..total {
        req.push_str(&format!("x-filler-{i}: {i}\r\n"));
    }
    req.push_str("connection: close\r\n\r\n");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.expect("no answer");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// The same over HTTP/2 (prior knowledge), where no parser limit stands
/// before the sidecar's own.
async fn h2_get(addr: &str, total: usize) -> (u16, serde_json::Value) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut req =
        http::Request::get(format!("http://{addr}{UNKNOWN_CHARGE}")).header("authorization", format!("Bearer {KEY}"));
    for i in 1..total {
        req = req.header(format!("x-filler-{i}"), i.to_string());
    }
    let res = send.send_request(req.body(Empty::<Bytes>::new()).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_headers_the_sidecar_accepts_reach_the_app_and_one_more_is_refused() {
    let pod = pod().await;
    let addr = pod.sidecar.url.trim_start_matches("http://").to_owned();

    // At the limit: the app answers (404 for an unknown charge), not 431 for
    // the x-request-id, x-paymesh-client and x-paymesh-route the sidecar added.
    let (status, body) = h1_get(&addr, CLIENT_MAX_HEADERS).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("resource_missing"), "{body}");
    let (status, body) = h2_get(&addr, CLIENT_MAX_HEADERS).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "resource_missing", "{body}");

    // One over: the sidecar refuses it (hyper's parser for HTTP/1; the
    // sidecar's own check, in the public error shape, for HTTP/2).
    let (status, _) = h1_get(&addr, CLIENT_MAX_HEADERS + 1).await;
    assert_eq!(status, 431);
    let (status, body) = h2_get(&addr, CLIENT_MAX_HEADERS + 1).await;
    assert_eq!(status, 431, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["code"], "too_many_headers", "{body}");
}

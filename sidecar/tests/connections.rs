//! Connection bounds on the public listener, over real sockets: one deadline
//! for everything before the first request (protocol detection, TLS
//! handshake, headers), idle HTTP/2 connections closed, a cap on open
//! connections that leaves the admin listener answering.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use paymesh_system_tests::in_process::*;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long the server may take beyond its deadline to close.
const SLACK: Duration = Duration::from_secs(3);

/// Reads until the peer closes (EOF or a reset) and returns how long that
/// took; panics if it is still open after `limit`.
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let wait = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| panic!("connection still open after {limit:?}"));
    start.elapsed()
}

async fn sidecar_with(extra: &str) -> (Upstream, Sidecar) {
    let app = upstream().await;
    let sc = sidecar(&config_yaml(app.addr, extra)).await;
    ready(&sc).await;
    (app, sc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_starts_the_http2_preface_and_goes_silent_is_closed() {
    let (_app, sc) = sidecar_with("limits: { header_read_timeout: 500ms }").await;
    // One byte of the preface, most of it, or nothing at all: hyper-util's
    // protocol detection waits for more, so the deadline must cover it.
    for sent in [&b"P"[..], b"PRI * HTTP/2.0\r\n\r\nSM\r", b""] {
        let mut s = TcpStream::connect(sc.proxy).await.unwrap();
        s.write_all(sent).await.unwrap();
        let took = closed_within(&mut s, Duration::from_millis(500) + SLACK).await;
        assert!(took >= Duration::from_millis(400), "closed too early ({took:?}) after {sent:?}");
    }
    // The deadline covers an HTTP/1 request's headers too.
    let mut s = TcpStream::connect(sc.proxy).await.unwrap();
    s.write_all(b"GET /v1/charges HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    closed_within(&mut s, Duration::from_millis(500) + SLACK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_opens_no_stream_is_closed() {
    let (_app, sc) = sidecar_with("limits: { header_read_timeout: 500ms }").await;
    // A complete preface and SETTINGS exchange, then nothing.
    let tcp = TcpStream::connect(sc.proxy).await.unwrap();
    let (_send, conn) =
        hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let start = Instant::now();
    tokio::time::timeout(Duration::from_millis(500) + SLACK, conn).await.expect("still open").ok();
    assert!(start.elapsed() < Duration::from_millis(500) + SLACK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_its_requests() {
    let (_app, sc) = sidecar_with("limits: { idle_timeout: 300ms }").await;
    let tcp = TcpStream::connect(sc.proxy).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("http://{}/v1/charges/ch_1", sc.proxy))
        .header("authorization", format!("Bearer {CHECKOUT_KEY}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.into_body().collect().await.unwrap();
    // Pings would keep it open forever; nothing in flight closes it.
    tokio::time::timeout(Duration::from_millis(600) + SLACK, conn).await.expect("idle connection still open").ok();
}

/// A self-signed certificate for `localhost`, written into the sidecar's
/// directory-to-be, and a client config trusting it with `alpn`.
fn tls_setup(dir: &std::path::Path, alpn: &[&[u8]]) -> (String, rustls::ClientConfig) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("tls.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ck.cert.der().to_vec())).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let d = dir.to_str().unwrap();
    (format!("tls: {{ cert: \"{d}/tls.crt\", key: \"{d}/tls.key\" }}\n"), config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_clients_are_closed_whatever_phase_they_stop_in() {
    let certs = tempfile::tempdir().unwrap();
    let (tls, no_alpn) = tls_setup(certs.path(), &[]);
    let (_app, sc) = sidecar_with(&format!("{tls}limits: {{ header_read_timeout: 500ms }}")).await;
    let deadline = Duration::from_millis(500) + SLACK;

    // Connects, sends nothing: the handshake never starts.
    let mut tcp = TcpStream::connect(sc.proxy).await.unwrap();
    closed_within(&mut tcp, deadline).await;

    // Handshakes without ALPN (so the protocol is left to detection), then
    // sends nothing: the same deadline, counted from the accept.
    let start = Instant::now();
    let tcp = TcpStream::connect(sc.proxy).await.unwrap();
    let mut tls = TlsConnector::from(Arc::new(no_alpn.clone()))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    closed_within(&mut tls, deadline).await;
    assert!(start.elapsed() < deadline);

    // Handshakes, sends one byte of a preface, stops.
    let tcp = TcpStream::connect(sc.proxy).await.unwrap();
    let mut tls =
        TlsConnector::from(Arc::new(no_alpn)).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    tls.write_all(b"P").await.unwrap();
    tls.flush().await.unwrap();
    closed_within(&mut tls, deadline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_connections_new_ones_are_closed_and_admin_still_answers() {
    const N: usize = 4;
    let (_app, sc) = sidecar_with("limits: { max_connections: 4, header_read_timeout: 60s }").await;
    let gauge = || async {
        metric(&String::from_utf8_lossy(&get(&sc.admin_url("/metrics")).await.body), "paymesh_open_connections")
    };
    let mut held = Vec::new();
    for _ in 0..N {
        held.push(TcpStream::connect(sc.proxy).await.unwrap());
    }
    eventually(Duration::from_secs(5), "N connections counted", || async { gauge().await == Some(N as f64) }).await;
    // The extra ones are accepted and closed at once, not left to pile up.
    for _ in 0..3 {
        let mut extra = TcpStream::connect(sc.proxy).await.unwrap();
        let took = closed_within(&mut extra, SLACK).await;
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    // The held ones are still open: the server has not closed them.
    let mut probe = [0u8; 1];
    for s in &held {
        assert!(matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
    }
    assert_eq!(get(&sc.admin_url("/healthz")).await.status, StatusCode::OK);
    assert_eq!(get(&sc.admin_url("/readyz")).await.status, StatusCode::OK);
    assert_eq!(gauge().await, Some(N as f64));
    let scrape = String::from_utf8_lossy(&get(&sc.admin_url("/metrics")).await.body).into_owned();
    assert_eq!(metric(&scrape, "paymesh_connections_refused_total"), Some(3.0), "{scrape}");
    // Room again once they go.
    drop(held);
    eventually(Duration::from_secs(5), "connections released", || async { gauge().await == Some(0.0) }).await;
    assert_eq!(charge(&sc, CHECKOUT_KEY, "after").await.status, StatusCode::CREATED);
}

/// An HTTP/1.1 GET of `path` as the checkout client, written raw.
fn raw_get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer {CHECKOUT_KEY}\r\n\r\n")
}

/// Reads one whole response (its body sized by `Content-Length`) and
/// returns its status and body.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    read_responses(stream, 1).await.remove(0)
}

/// Reads the next `n` responses of a pipeline (one read can hold more than
/// one); nothing may follow the last.
async fn read_responses(stream: &mut TcpStream, n: usize) -> Vec<(u16, String)> {
    let mut unread = Vec::new();
    let mut responses = Vec::with_capacity(n);
    let mut chunk = [0u8; 4096];
    while responses.len() < n {
        if let Some(end) = unread.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&unread[..end]);
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .expect("content-length");
            let body_at = end + 4;
            if unread.len() >= body_at + length {
                let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
                let body = String::from_utf8_lossy(&unread[body_at..body_at + length]).into_owned();
                unread.drain(..body_at + length);
                responses.push((status, body));
                continue;
            }
        }
        let read = tokio::time::timeout(SLACK, stream.read(&mut chunk)).await.expect("response in time").unwrap();
        assert!(read > 0, "closed mid-response: {:?}", String::from_utf8_lossy(&unread));
        unread.extend_from_slice(&chunk[..read]);
    }
    assert!(unread.is_empty(), "bytes after the last response: {:?}", String::from_utf8_lossy(&unread));
    responses
}

async fn scrape(sc: &Sidecar, series: &str) -> Option<f64> {
    metric(&String::from_utf8_lossy(&get(&sc.admin_url("/metrics")).await.body), series)
}

async fn parked_once(sc: &Sidecar, n: f64) {
    eventually(Duration::from_secs(5), "connection parked", || async {
        scrape(sc, "paymesh_parked_connections").await == Some(n)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_connection_is_parked_and_answers_its_next_request() {
    let (_app, sc) = sidecar_with("limits: { idle_timeout: 30s }").await;
    let mut s = TcpStream::connect(sc.proxy).await.unwrap();
    // Parked before its first byte too.
    parked_once(&sc, 1.0).await;
    for i in 0..3 {
        s.write_all(raw_get(&format!("/v1/charges/ch_{i}")).as_bytes()).await.unwrap();
        let (status, body) = read_response(&mut s).await;
        assert_eq!(status, 201, "{body}");
        assert!(body.contains(&format!("/v1/charges/ch_{i}")), "{body}");
        // Idle again: no hyper connection, the socket still open.
        parked_once(&sc, 1.0).await;
        assert_eq!(scrape(&sc, "paymesh_open_connections").await, Some(1.0));
    }
    drop(s);
    eventually(Duration::from_secs(5), "closed connection no longer parked", || async {
        scrape(&sc, "paymesh_parked_connections").await == Some(0.0)
            && scrape(&sc, "paymesh_open_connections").await == Some(0.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_head_spans_a_park_loses_no_byte() {
    let (_app, sc) = sidecar_with("limits: { idle_timeout: 30s }").await;
    let mut s = TcpStream::connect(sc.proxy).await.unwrap();
    s.write_all(raw_get("/v1/charges/first").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 201);
    // Half a head, then longer than two park periods: hyper has read the
    // half when the connection is parked, and must hand it back.
    let second = raw_get("/v1/charges/second");
    let (a, b) = second.split_at(20);
    s.write_all(a.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut s).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("/v1/charges/second"), "{body}");
    // Two requests in one segment, the second right behind the first.
    s.write_all(format!("{}{}", raw_get("/v1/charges/p1"), raw_get("/v1/charges/p2")).as_bytes()).await.unwrap();
    for ((status, body), path) in read_responses(&mut s, 2).await.into_iter().zip(["p1", "p2"]) {
        assert_eq!(status, 201, "{body}");
        assert!(body.contains(&format!("/v1/charges/{path}")), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_never_ends_is_closed_though_the_connection_parks() {
    let (_app, sc) = sidecar_with("limits: { header_read_timeout: 1500ms, idle_timeout: 30s }").await;
    let mut s = TcpStream::connect(sc.proxy).await.unwrap();
    s.write_all(raw_get("/v1/charges/first").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 201);
    // A byte at a time, slower than the deadline: parking must not give
    // the head a new deadline each time.
    let slow = raw_get("/v1/charges/slow");
    let trickle = async {
        for b in slow.as_bytes() {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let start = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(15), trickle).await;
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1500) + Duration::from_secs(1) + SLACK, "trickled on for {took:?}");
    closed_within(&mut s, SLACK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_closes_at_idle_timeout_and_at_the_drain() {
    let (_app, sc) = sidecar_with("limits: { idle_timeout: 1s }").await;
    let mut s = TcpStream::connect(sc.proxy).await.unwrap();
    s.write_all(raw_get("/v1/charges/ch_1").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 201);
    let took = closed_within(&mut s, Duration::from_secs(1) + SLACK).await;
    assert!(took >= Duration::from_millis(700), "closed after {took:?}, before limits.idle_timeout");
    assert_eq!(scrape(&sc, "paymesh_parked_connections").await, Some(0.0));

    // The drain closes a parked connection at once, not at its idle timeout.
    let (_app2, mut sc) = sidecar_with("limits: { idle_timeout: 60s }").await;
    let mut s = TcpStream::connect(sc.proxy).await.unwrap();
    s.write_all(raw_get("/v1/charges/ch_2").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 201);
    parked_once(&sc, 1.0).await;
    let running = sc.running.take().unwrap();
    running.shutdown();
    closed_within(&mut s, SLACK).await;
    tokio::time::timeout(SLACK, running.wait()).await.expect("drain waited on a parked connection");
}

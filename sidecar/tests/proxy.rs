//! Component tests of the request path: a sidecar in-process on 127.0.0.1:0
//! in front of an echoing upstream, driven over real sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use paymesh_system_tests::in_process::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_key_reaches_the_app_with_sidecar_headers_only() {
    let (_app, sc) = echo_sidecar().await;
    let r = send(
        Method::POST,
        &sc.url("/v1/charges?expand=source"),
        &[
            ("authorization", &format!("Bearer {CHECKOUT_KEY}")),
            ("idempotency-key", "idem-1"),
            ("x-paymesh-route", "orchestration"),
            ("x-paymesh-client", "payouts"),
            ("x-paymesh-debug", "1"),
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "secret"),
        ],
        "0123456789",
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let echo = r.json();
    let h = &echo["headers"];
    assert_eq!(echo["path"], "/v1/charges?expand=source");
    assert_eq!(echo["body_len"], 10);
    assert_eq!(h["x-paymesh-client"], "checkout", "spoofed client ignored");
    assert_eq!(h["x-paymesh-route"], "legacy", "spoofed route ignored");
    assert!(h.get("x-paymesh-debug").is_none());
    assert!(h.get("authorization").is_none(), "the key stops at the sidecar");
    assert!(h.get("x-hop").is_none(), "Connection-listed header removed");
    assert_eq!(h["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let id = h["x-request-id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(r.header("x-request-id"), Some(id), "returned to the client");
    assert_eq!(r.header("x-paymesh-route"), Some("legacy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_request_id_is_kept() {
    let (_app, sc) = echo_sidecar().await;
    let r = get_as(&sc, CHECKOUT_KEY, "/v1/charges/ch_1", &[("x-request-id", "req-from-client-7")]).await;
    assert_eq!(r.json()["headers"]["x-request-id"], "req-from-client-7");
    assert_eq!(r.header("x-request-id"), Some("req-from-client-7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_bad_keys_get_401_and_never_reach_the_app() {
    let (app, sc) = echo_sidecar().await;
    for auth in [None, Some("Bearer sk_wrong"), Some("Basic Y2hlY2tvdXQ="), Some("Bearer ")] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        let r = send(Method::POST, &sc.url("/v1/charges"), &headers, "{}").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        let e = r.json();
        assert_eq!(e["error"]["type"], "authentication_error");
        assert!(e["error"]["param"].is_null());
        assert!(r.header("x-request-id").is_some());
    }
    assert_eq!(app.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_pick_the_route_stickily() {
    let app = upstream().await;
    let extra = "migration:\n  etcd_endpoints: []\n  defaults: { charge: 100, refund: 0, disbursement: 50 }\n";
    let sc = sidecar(&config_yaml(app.addr, extra)).await;
    let r = charge(&sc, CHECKOUT_KEY, "k-1").await;
    assert_eq!(r.json()["headers"]["x-paymesh-route"], "orchestration");
    let refund = get_as(&sc, CHECKOUT_KEY, "/v1/refunds/re_1", &[]).await;
    assert_eq!(refund.json()["headers"]["x-paymesh-route"], "legacy");
    let other = get_as(&sc, CHECKOUT_KEY, "/v1/balance", &[]).await;
    assert_eq!(other.json()["headers"]["x-paymesh-route"], "legacy");
    // At 50% a given key takes the same route every time.
    for i in 0..20 {
        let path = format!("/v1/disbursements/d_{i}");
        let first = get_as(&sc, CHECKOUT_KEY, &path, &[]).await;
        let again = get_as(&sc, CHECKOUT_KEY, &path, &[]).await;
        assert_eq!(first.json()["headers"]["x-paymesh-route"], again.json()["headers"]["x-paymesh-route"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_gives_429_then_recovers() {
    let (_app, sc) = echo_sidecar().await;
    // payouts: 2 per second, burst 2.
    assert_eq!(charge(&sc, PAYOUTS_KEY, "a").await.status, StatusCode::CREATED);
    assert_eq!(charge(&sc, PAYOUTS_KEY, "b").await.status, StatusCode::CREATED);
    let r = charge(&sc, PAYOUTS_KEY, "c").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(r.header("ratelimit-limit"), Some("2"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert!(r.header("ratelimit-reset").unwrap().parse::<u64>().unwrap() >= 1);
    // Another client is not affected.
    assert_eq!(charge(&sc, CHECKOUT_KEY, "d").await.status, StatusCode::CREATED);
    eventually(Duration::from_secs(5), "throttle recovers", || async {
        charge(&sc, PAYOUTS_KEY, "e").await.status == StatusCode::CREATED
    })
    .await;
    let metrics = get(&sc.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(metric(&text, r#"paymesh_throttled_total{client="payouts"}"#).unwrap() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_inflight_gets_503_at_once() {
    let app = upstream().await;
    let sc = sidecar(&config_yaml(app.addr, "limits: { max_inflight: 2 }\n")).await;
    let auth = format!("Bearer {CHECKOUT_KEY}");
    let slow = |i: usize| {
        let (url, auth) = (sc.url(&format!("/v1/charges/ch_{i}")), auth.clone());
        tokio::spawn(async move {
            send(Method::GET, &url, &[("authorization", &auth), ("x-test-delay-ms", "1500")], "").await.status
        })
    };
    let (a, b) = (slow(1), slow(2));
    let state = sc.admin_url("/admin/state");
    eventually(Duration::from_secs(5), "two requests in flight", || {
        let state = state.clone();
        async move { get(&state).await.json()["inflight"] == 2 }
    })
    .await;
    let started = std::time::Instant::now();
    let r = send(Method::GET, &sc.url("/v1/charges/ch_3"), &[("authorization", &auth)], "").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_code(), "overloaded");
    assert!(started.elapsed() < Duration::from_millis(1000), "answered without waiting");
    assert_eq!(a.await.unwrap(), StatusCode::CREATED);
    assert_eq!(b.await.unwrap(), StatusCode::CREATED);
    // Slots come back.
    let r = send(Method::GET, &sc.url("/v1/charges/ch_4"), &[("authorization", &auth)], "").await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let app = upstream().await;
    let sc = sidecar(&config_yaml(app.addr, "limits: { max_body_bytes: 64 }\n")).await;
    let auth = format!("Bearer {CHECKOUT_KEY}");
    let big = vec![b'x'; 65];
    let r = send(Method::POST, &sc.url("/v1/charges"), &[("authorization", &auth)], big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let ok = send(Method::POST, &sc.url("/v1/charges"), &[("authorization", &auth)], vec![b'x'; 64]).await;
    assert_eq!(ok.status, StatusCode::CREATED);

    // A chunked body declares no length: it is cut off at the limit.
    let mut s = TcpStream::connect(sc.proxy).await.unwrap();
    let head =
        format!("POST /v1/charges HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ntransfer-encoding: chunked\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..4 {
        s.write_all(b"20\r\n01234567890123456789012345678901\r\n").await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off() {
    let app = upstream().await;
    let sc = sidecar(&config_yaml(app.addr, "limits: { header_read_timeout: 300ms }\n")).await;
    let mut s = TcpStream::connect(sc.proxy).await.unwrap();
    s.write_all(b"GET /v1/charges/ch_1 HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    // Never finish the headers: the sidecar must close the connection.
    let mut buf = vec![0u8; 1024];
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection still open");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    // A client that connects and says nothing is closed as well.
    let mut silent = TcpStream::connect(sc.proxy).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "silent connection still open");
    assert_eq!(app.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_app_gets_504() {
    let app = upstream().await;
    let sc = sidecar(&config_yaml(app.addr, "limits: { request_timeout: 300ms }\n")).await;
    let auth = format!("Bearer {CHECKOUT_KEY}");
    let r =
        send(Method::GET, &sc.url("/v1/charges/ch_1"), &[("authorization", &auth), ("x-test-delay-ms", "3000")], "")
            .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.json()["error"]["type"], "api_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_down_gives_a_fast_503() {
    // A port that was free a moment ago: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let sc = sidecar(&config_yaml(dead, "")).await;
    let started = std::time::Instant::now();
    let r = charge(&sc, CHECKOUT_KEY, "k").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_code(), "service_unavailable");
    assert!(started.elapsed() < Duration::from_secs(2), "within the connect timeout");
    let ready = get(&sc.admin_url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer() {
    let (_app, sc) = echo_sidecar().await;
    assert_eq!(get(&sc.admin_url("/healthz")).await.status, StatusCode::OK);
    ready(&sc).await;
    let state = get(&sc.admin_url("/admin/state")).await.json();
    assert_eq!(state["config"]["version"], 1);
    assert_eq!(state["config"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(state["clients"][0]["id"], "checkout");
    assert!(!state.to_string().contains(&sha256_hex(CHECKOUT_KEY)), "no secrets");
    assert_eq!(state["migration"]["charge"]["source"], "defaults");
    assert_eq!(state["components"]["access_log"]["enabled"], true);
    assert_eq!(state["ready"]["app_reachable"], true);
    assert_eq!(get(&sc.admin_url("/nope")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http2_is_served() {
    let (_app, sc) = echo_sidecar().await;
    let (mut sender, req) = h2_get(&sc, "/v1/refunds/re_1", &[]).await;
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["headers"]["x-paymesh-client"], "checkout");
    assert_eq!(echo["path"], "/v1/refunds/re_1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_burst_the_app_pool_keeps_only_its_bound_of_idle_connections() {
    // An app that answers slowly, so that a burst needs one connection
    // per request.
    let (addr, open, peak) = counting_app(Duration::from_millis(200)).await;
    let app = addr.to_string().parse().unwrap();
    let pool = paymesh_sidecar::proxy::pooled_client::<Empty<Bytes>>(&app, Duration::from_secs(2), 3, None);
    let burst: Vec<_> = (0..12)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let res = pool.get(format!("http://{addr}/").parse().unwrap()).await.unwrap();
                res.into_body().collect().await.unwrap();
            })
        })
        .collect();
    for request in burst {
        request.await.unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) >= 6, "the burst did not need many connections");
    eventually(Duration::from_secs(5), "idle connections beyond the bound closed", || async {
        open.load(Ordering::SeqCst) == 3
    })
    .await;
}

/// An app that counts its open connections (now and at the peak) and
/// answers each request after `delay`.
async fn counting_app(delay: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (open, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (counted, peaked) = (open.clone(), peak.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let open = counted.clone();
            peaked.fetch_max(open.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_pools_open_no_more_connections_than_their_shared_bound() {
    let (addr, _, peak) = counting_app(Duration::from_millis(100)).await;
    let app = addr.to_string().parse().unwrap();
    // Two pools sharing a bound of 3.
    let bound = Arc::new(tokio::sync::Semaphore::new(3));
    let pools = [
        paymesh_sidecar::proxy::pooled_client::<Empty<Bytes>>(&app, Duration::from_secs(5), 512, Some(bound.clone())),
        paymesh_sidecar::proxy::pooled_client::<Empty<Bytes>>(&app, Duration::from_secs(5), 512, Some(bound)),
    ];
    let burst: Vec<_> = (0..12)
        .map(|i| {
            let pool = pools[i % 2].clone();
            tokio::spawn(async move {
                let res = pool.get(format!("http://{addr}/").parse().unwrap()).await.map_err(|e| format!("{e:?}"))?;
                res.into_body().collect().await.map(|b| b.to_bytes()).map_err(|e| format!("{e:?}"))
            })
        })
        .collect();
    for request in burst {
        // Every request is served, in turn, on the connections there are.
        assert_eq!(&request.await.unwrap().expect("request")[..], b"ok");
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=3).contains(&peak), "{peak} app connections open at once, bound 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_finds_the_bound_full_fails_as_a_connect_error() {
    let (addr, _, peak) = counting_app(Duration::from_secs(3)).await;
    let app = addr.to_string().parse().unwrap();
    let bound = Arc::new(tokio::sync::Semaphore::new(1));
    let pool =
        paymesh_sidecar::proxy::pooled_client::<Empty<Bytes>>(&app, Duration::from_millis(300), 512, Some(bound));
    let url: http::Uri = format!("http://{addr}/").parse().unwrap();
    let first = tokio::spawn({
        let (pool, url) = (pool.clone(), url.clone());
        async move { pool.get(url).await.map(|r| r.status()) }
    });
    eventually(Duration::from_secs(2), "the first request holds the one connection", || async {
        peak.load(Ordering::SeqCst) == 1
    })
    .await;
    let err = pool.get(url).await.expect_err("no connection could be opened");
    // A connect error is what the proxy answers 503 to.
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(first.await.unwrap().expect("first request"), http::StatusCode::OK);
    assert_eq!(peak.load(Ordering::SeqCst), 1);
}

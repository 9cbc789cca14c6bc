//! The app and the orchestrator as real processes: durability across a
//! crash, failures of the backend, polling, concurrent duplicates, and a
//! clean stop.

use nix::sys::signal::Signal;
use paymesh_system_tests::{AppProcess, Client, Orchestrator, eventually};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn headers<'a>(route: &'a str, key: &'a str) -> [(&'a str, &'a str); 2] {
    [("x-paymesh-route", route), ("idempotency-key", key)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_payments_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut orchestrator = Orchestrator::start(&data, dir.path(), &[]).await;
    let port = orchestrator.port;
    let app = AppProcess::start(&orchestrator.url, dir.path(), &["--timeout", "2s"]).await;
    let client = Client::new();

    // Traffic on both paths while the orchestrator is killed mid-stream.
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, url, acked) = (client.clone(), app.url.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..400 {
                let route = if (worker + n) % 2 == 0 { "legacy" } else { "orchestration" };
                let key = format!("w{worker}-{n}");
                let body = json!({"amount": 100 + n, "currency": "usd", "source": "tok_visa"});
                let Ok(reply) = client
                    .send(
                        http::Method::POST,
                        &format!("{url}/v1/charges"),
                        &headers(route, &key),
                        body.to_string().as_bytes(),
                    )
                    .await
                else {
                    continue;
                };
                if reply.status == 201 {
                    acknowledged.push((key, reply.json()));
                    acked.fetch_add(1, Ordering::Relaxed);
                } else if reply.status.is_server_error() {
                    // The backend is gone: stop this worker.
                    break;
                }
            }
            acknowledged
        }));
    }
    // Let some payments land, then crash the service without warning.
    eventually(Duration::from_secs(30), "50 acknowledged payments", || {
        let n = acked.load(Ordering::Relaxed);
        async move { n >= 50 }
    })
    .await;
    orchestrator.process.kill9();
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    assert!(acknowledged.len() >= 50, "only {} payments were acknowledged before the kill", acknowledged.len());

    let _restarted = Orchestrator::start_on(port, &data, dir.path(), &[]).await;
    for (key, charge) in &acknowledged {
        let id = charge["id"].as_str().unwrap();
        for route in ["legacy", "orchestration"] {
            let read = client.get(&format!("{}/v1/charges/{id}", app.url), &[("x-paymesh-route", route)]).await;
            assert_eq!(read.status, 200, "charge {id} (key {key}) lost after the crash");
            assert_eq!(&read.json(), charge, "charge {id} changed");
        }
    }
    // Idempotency records survived too: a retry replays, it does not charge again.
    let (key, charge) = &acknowledged[0];
    let body = json!({"amount": charge["amount"], "currency": "usd", "source": "tok_visa"});
    let route = if key.starts_with("w0-") { "legacy" } else { "orchestration" };
    let replay = client.post(&format!("{}/v1/charges", app.url), &headers(route, key), &body).await;
    assert_eq!((replay.status.as_u16(), &replay.json()), (201, charge));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_is_a_fast_503_and_a_slow_one_a_502() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("http://127.0.0.1:{}", paymesh_system_tests::free_port());
    let app = AppProcess::start(&closed, dir.path(), &["--timeout", "500ms"]).await;
    let client = Client::new();
    let body = json!({"amount": 100, "currency": "usd", "source": "tok_visa"});
    for route in ["legacy", "orchestration"] {
        let started = Instant::now();
        let reply = client.post(&format!("{}/v1/charges", app.url), &headers(route, "k"), &body).await;
        assert_eq!(reply.status, 503, "{route}");
        assert_eq!(reply.json()["error"]["type"], "api_error");
        // A refused loopback connect is immediate; the bound only catches a hang.
        assert!(started.elapsed() < Duration::from_secs(5), "{route}: 503 took {:?}", started.elapsed());
    }

    let orchestrator = Orchestrator::start(&dir.path().join("data"), dir.path(), &["--step-delay", "800ms"]).await;
    let app = AppProcess::start(&orchestrator.url, dir.path(), &["--timeout", "300ms"]).await;
    for route in ["legacy", "orchestration"] {
        let reply = client.post(&format!("{}/v1/charges", app.url), &headers(route, route), &body).await;
        assert_eq!(reply.status, 502, "{route}: {}", reply.json());
        assert_eq!(reply.json()["error"]["code"], "upstream_error");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_executions_are_polled_and_concurrent_duplicates_get_409() {
    let dir = tempfile::tempdir().unwrap();
    let orchestrator =
        Orchestrator::start(&dir.path().join("data"), dir.path(), &["--step-delay", "60ms", "--sync-window", "10ms"])
            .await;
    let app = AppProcess::start(&orchestrator.url, dir.path(), &[]).await;
    let client = Client::new();
    let url = format!("{}/v1/charges", app.url);
    let body = json!({"amount": 700, "currency": "usd", "source": "tok_visa"});

    // Four steps of 60 ms against a 10 ms sync window: the adapter must poll.
    let polled = client.post(&url, &headers("orchestration", "slow-1"), &body).await;
    assert_eq!(polled.status, 201, "{}", polled.json());

    for route in ["legacy", "orchestration"] {
        let key = format!("dup-{route}");
        let h = headers(route, &key);
        let first = client.post(&url, &h, &body);
        let second = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            client.post(&url, &h, &body).await
        };
        let (first, second) = tokio::join!(first, second);
        assert_eq!(first.status, 201, "{route}");
        assert_eq!(second.status, 409, "{route}: {}", second.json());
        assert_eq!(second.json()["error"]["type"], "idempotency_error");
        // Once the first has finished, the same request replays it.
        let again = client.post(&url, &headers(route, &key), &body).await;
        assert_eq!((again.status.as_u16(), again.json()), (201, first.json()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_both_services_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut orchestrator, mut app) = AppProcess::with_orchestrator(dir.path()).await;
    let reply = Client::new()
        .post(
            &format!("{}/v1/charges", app.url),
            &headers("legacy", "k"),
            &json!({"amount": 1, "currency": "usd", "source": "tok_visa"}),
        )
        .await;
    assert_eq!(reply.status, 201);
    for p in [&mut app.process, &mut orchestrator.process] {
        p.signal(Signal::SIGTERM);
        let status = p.wait_exit(Duration::from_secs(10)).await.expect("exits after SIGTERM");
        assert!(status.success(), "exit status {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_and_client_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (_orchestrator, app) = AppProcess::with_orchestrator(dir.path()).await;
    let client = Client::new();
    let url = format!("{}/v1/charges", app.url);
    let body = json!({"amount": 100, "currency": "usd", "source": "tok_visa"});

    let bad = client.post(&url, &headers("sideways", "k"), &body).await;
    assert_eq!((bad.status.as_u16(), bad.json()["error"]["code"].as_str()), (400, Some("invalid_route")));

    // No route header: legacy, the behaviour before migration.
    let plain = client.post(&url, &[("idempotency-key", "k"), ("x-request-id", "req-1")], &body).await;
    assert_eq!(plain.header("x-paymesh-route"), Some("legacy"));
    assert_eq!(plain.header("x-request-id"), Some("req-1"));

    // A body refused unread closes its connection, and the client's next
    // request (on a fresh one) is served.
    for _ in 0..20 {
        let big = client
            .send(http::Method::POST, &url, &[("idempotency-key", "big")], &vec![b' '; 65 * 1024])
            .await
            .expect("413 answered");
        assert_eq!((big.status.as_u16(), big.header("connection")), (413, Some("close")));
        let next = client.get(&format!("{}/healthz", app.url), &[]).await;
        assert_eq!(next.status, 200);
    }

    // Idempotency keys are per client: the same key from another client is
    // another payment.
    let a = client.post(&url, &[("idempotency-key", "shared"), ("x-paymesh-client", "a")], &body).await;
    let b = client.post(&url, &[("idempotency-key", "shared"), ("x-paymesh-client", "b")], &body).await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (201, 201));
    assert_ne!(a.json()["id"], b.json()["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(paymesh_system_tests::bin("paymesh-orchestrator"))
        .args(["--listen", "nowhere"])
        .env_remove("PAYMESH_ORCHESTRATOR_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"), "{}", String::from_utf8_lossy(&out.stderr));
    // A data dir that cannot be a directory.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = std::process::Command::new(paymesh_system_tests::bin("paymesh-orchestrator"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open the store"));
    let out = std::process::Command::new(paymesh_system_tests::bin("paymesh-app"))
        .args(["--orchestrator", "ftp://x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"));
}

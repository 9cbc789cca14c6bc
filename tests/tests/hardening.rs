//! Regression tests of the adversarial review (issue #12) that need the
//! whole pod: a payment cut off by the sidecar's timeout converges, and the
//! URL cannot pick the route.

use paymesh_system_tests::sidecar::KEY;
use paymesh_system_tests::{Client, Pod};
use serde_json::json;
use std::time::{Duration, Instant};

/// A charge that outlives the sidecar's deadline: the client gets 504, and
/// retries with the same key see 409 only while the payment still runs,
/// then its one outcome, within a couple of seconds (it used to stay 409
/// for the whole 60 s lease on the legacy path, with the payment abandoned
/// half-way).
async fn a_timed_out_charge_converges(percent: u32) {
    // Six component calls of 300 ms each on the legacy path, and as long a
    // workflow on the orchestration path: far past the 500 ms deadline.
    let extra = format!(
        "limits: {{ request_timeout: 500ms }}\nmigration: {{ etcd_endpoints: [], defaults: {{ charge: {percent} }} }}\n"
    );
    let pod = Pod::start_with(&["--step-delay", "300ms"], &extra).await;
    let c = Client::new();
    let url = format!("{}/v1/charges", pod.sidecar.url);
    let auth = format!("Bearer {KEY}");
    let headers = [("authorization", auth.as_str()), ("idempotency-key", "slow-1")];
    let body = json!({"amount": 4200, "currency": "usd", "source": "tok_visa"});

    let first = c.post(&url, &headers, &body).await;
    assert_eq!(first.status, 504, "{}", String::from_utf8_lossy(&first.body));
    let timed_out = Instant::now();

    let mut seen_in_progress = 0;
    let mut outcome = None;
    while timed_out.elapsed() < Duration::from_secs(20) {
        let r = c.post(&url, &headers, &body).await;
        match r.status.as_u16() {
            201 => {
                outcome = Some(r.json());
                break;
            }
            409 => {
                assert_eq!(r.json()["error"]["code"], "idempotency_in_progress");
                seen_in_progress += 1;
            }
            // A retry that itself outlives the deadline: the payment is
            // still running.
            504 => {}
            other => panic!("retry answered {other}: {}", String::from_utf8_lossy(&r.body)),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converged_after = timed_out.elapsed();
    let outcome = outcome.unwrap_or_else(|| panic!("no outcome after {converged_after:?}"));
    // Six 300 ms steps, minus the 500 ms already spent, plus slack for a
    // loaded 2-core machine; the lease it used to wait for was 60 s.
    assert!(converged_after < Duration::from_secs(8), "converged only after {converged_after:?}");
    eprintln!("route {percent}%: converged {converged_after:?} after the 504, {seen_in_progress} retries saw 409");
    assert_eq!(outcome["amount"], 4200);

    // One payment: every later retry replays the same charge, and it reads
    // back as captured.
    let again = c.post(&url, &headers, &body).await;
    assert_eq!((again.status.as_u16(), again.json()), (201, outcome.clone()));
    let id = outcome["id"].as_str().unwrap();
    let read = c.get(&format!("{}/v1/charges/{id}", pod.sidecar.url), &[("authorization", &auth)]).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_legacy_charge_converges_on_retry() {
    a_timed_out_charge_converges(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_orchestration_charge_converges_on_retry() {
    a_timed_out_charge_converges(100).await;
}

/// With `charge` at 100 %, extra slashes used to reach the app as a charge
/// on the legacy path (counted as feature `other`). The sidecar and the app
/// now read paths with one parser: a non-canonical path is no charge in
/// either, so nothing is charged off the chosen route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_cannot_pick_the_route() {
    let pod = Pod::start("migration: { etcd_endpoints: [], defaults: { charge: 100 } }\n").await;
    let c = Client::new();
    let auth = format!("Bearer {KEY}");
    let body = json!({"amount": 100, "currency": "usd", "source": "tok_visa"});
    for (i, path) in
        ["//v1/charges", "///v1/charges", "/v1//charges", "/v1/./charges", "/v1/charges/"].iter().enumerate()
    {
        let key = format!("path-{i}");
        let r = c
            .post(&format!("{}{path}", pod.sidecar.url), &[("authorization", &auth), ("idempotency-key", &key)], &body)
            .await;
        assert_eq!(r.status, 404, "{path}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["error"]["code"], "route_not_found", "{path}");
    }
    let r = c
        .post(&format!("{}/v1/charges", pod.sidecar.url), &[("authorization", &auth), ("idempotency-key", "ok")], &body)
        .await;
    assert_eq!((r.status.as_u16(), r.header("x-paymesh-route")), (201, Some("orchestration")));
    let scrape = pod.sidecar.metrics().await;
    let served_legacy: f64 = scrape
        .lines()
        .filter(|l| {
            l.starts_with("paymesh_requests_total{") && l.contains("route=\"legacy\"") && l.contains("code=\"2xx\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(served_legacy, 0.0, "a request was served on the legacy path:\n{scrape}");
}

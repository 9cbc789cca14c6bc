//! The sidecar in front of the real app and orchestrator, as processes:
//! authentication, header hygiene, route choice and its hot change,
//! throttling, a dead app, and a SIGTERM drain under load.

use paymesh_system_tests::sidecar::KEY;
use paymesh_system_tests::{Client, Pod, eventually, metric};
use serde_json::json;
use std::time::{Duration, Instant};

fn charge_body() -> serde_json::Value {
    json!({"amount": 1000, "currency": "usd", "source": "tok_visa"})
}

/// A pod, a client, the sidecar's URL for `path` and the demo client's
/// `authorization` value.
async fn pod_and_client(path: &str) -> (Pod, Client, String, String) {
    let pod = Pod::start("").await;
    let url = format!("{}{path}", pod.sidecar.url);
    (pod, Client::new(), url, format!("Bearer {KEY}"))
}

/// Replaces the sidecar's config file whole (written aside, then renamed
/// over it, as an operator's tool does): a hot reload.
fn replace_config(pod: &Pod, yaml: String) {
    let tmp = pod.dir.path().join("next.yaml");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, &pod.sidecar.config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_authenticates_and_ignores_spoofed_headers() {
    let (_pod, c, url, auth) = pod_and_client("/v1/charges").await;

    let bad = c.post(&url, &[("authorization", "Bearer nope"), ("idempotency-key", "k0")], &charge_body()).await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["error"]["type"], "authentication_error");
    let none = c.post(&url, &[("idempotency-key", "k0")], &charge_body()).await;
    assert_eq!(none.status, 401);

    // The client claims the orchestration path and another identity; the
    // sidecar (at 0% orchestration) sends it legacy, as `checkout`.
    let r = c
        .post(
            &url,
            &[
                ("authorization", &auth),
                ("idempotency-key", "k1"),
                ("x-paymesh-route", "orchestration"),
                ("x-paymesh-client", "someone-else"),
            ],
            &charge_body(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-paymesh-route"), Some("legacy"));
    assert!(r.header("x-request-id").is_some());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let read = c.get(&format!("{url}/{id}"), &[("authorization", &auth)]).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["id"], id);
    // The same key and body replay the first answer.
    let replay = c.post(&url, &[("authorization", &auth), ("idempotency-key", "k1")], &charge_body()).await;
    assert_eq!(replay.json()["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_charges_to_the_orchestration_path() {
    let (pod, c, url, auth) = pod_and_client("/v1/charges").await;
    let yaml = std::fs::read_to_string(&pod.sidecar.config).unwrap()
        + "migration: { etcd_endpoints: [], defaults: { charge: 100 } }\n";
    replace_config(&pod, yaml);
    eventually(Duration::from_secs(10), "charge at 100%", || async {
        pod.sidecar.state().await["migration"]["charge"]["percent"] == 100.0
    })
    .await;
    let r = c.post(&url, &[("authorization", &auth), ("idempotency-key", "o1")], &charge_body()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-paymesh-route"), Some("orchestration"));
    // An invalid file is refused; the good one stays.
    std::fs::write(&pod.sidecar.config, "listen: [\n").unwrap();
    eventually(Duration::from_secs(10), "reload error counted", || async {
        metric(&pod.sidecar.metrics().await, "paymesh_config_reload_errors_total") == Some(1.0)
    })
    .await;
    let r = c.post(&url, &[("authorization", &auth), ("idempotency-key", "o2")], &charge_body()).await;
    assert_eq!(r.header("x-paymesh-route"), Some("orchestration"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_a_dead_app_answer_in_the_public_shape() {
    let (mut pod, c, url, auth) = pod_and_client("/v1/charges/ch_missing00000000000000000").await;
    assert_eq!(c.get(&url, &[("authorization", &auth)]).await.status, 404);

    pod.app.process.kill9();
    let started = Instant::now();
    let r = c.get(&url, &[("authorization", &auth)]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["type"], "api_error");
    assert!(started.elapsed() < Duration::from_secs(3));
    let ready = format!("{}/readyz", pod.sidecar.admin);
    eventually(Duration::from_secs(5), "readyz fails without the app", || async {
        c.get(&ready, &[]).await.status == 503
    })
    .await;

    // Tighten the demo client's rate to one per second, burst one.
    let yaml = std::fs::read_to_string(&pod.sidecar.config)
        .unwrap()
        .replace("per_second: 100000, burst: 100000", "per_second: 1, burst: 1");
    replace_config(&pod, yaml);
    eventually(Duration::from_secs(10), "rate reloaded", || async {
        pod.sidecar.state().await["clients"][0]["rate"]["burst"] == 1
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(c.get(&url, &[("authorization", &auth)]).await);
    }
    let limited = statuses.iter().find(|r| r.status == 429).expect("a 429 among three quick requests");
    assert_eq!(limited.json()["error"]["type"], "rate_limit_error");
    assert!(limited.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    eventually(Duration::from_secs(5), "throttle recovers", || async {
        c.get(&url, &[("authorization", &auth)]).await.status == 503
    })
    .await;
}

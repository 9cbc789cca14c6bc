//! What operators see: access-log lines and Prometheus metrics.

use std::collections::BTreeSet;
use std::time::Duration;

use http::{Method, StatusCode};
use paymesh_sidecar::components::Component;
use paymesh_system_tests::in_process::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_are_json_with_every_field() {
    let (_app, mut sc) = echo_sidecar().await;
    assert_eq!(charge(&sc, CHECKOUT_KEY, "k1").await.status, StatusCode::CREATED);
    assert_eq!(charge(&sc, "sk_bad", "k2").await.status, StatusCode::UNAUTHORIZED);
    let log = sc.access_log_path();
    sc.stop().await; // flushes the writer
    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(lines.len(), 2, "{text}");
    let fields = [
        "time",
        "request_id",
        "client",
        "method",
        "feature",
        "route",
        "status",
        "trace_id",
        "span_id",
        "duration_us",
        "bytes_in",
        "bytes_out",
    ];
    for l in &lines {
        let keys: BTreeSet<&str> = l.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, fields.into_iter().collect(), "{l}");
        assert!(humantime::parse_rfc3339(l["time"].as_str().unwrap()).is_ok());
        assert!(l["duration_us"].is_u64() && l["bytes_out"].as_u64().unwrap() > 0);
    }
    let ok = lines.iter().find(|l| l["status"] == 201).unwrap();
    assert_eq!(ok["client"], "checkout");
    assert_eq!(ok["method"], "POST");
    assert_eq!(ok["feature"], "charge");
    assert_eq!(ok["route"], "legacy");
    assert_eq!(ok["bytes_in"], 52);
    let refused = lines.iter().find(|l| l["status"] == 401).unwrap();
    assert!(refused["client"].is_null());
    assert_eq!(refused["route"], "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_access_log_writes_nothing() {
    let (_app, mut sc) = echo_sidecar().await;
    sc.running().shared.components.set(Component::AccessLog, false);
    assert_eq!(charge(&sc, CHECKOUT_KEY, "k1").await.status, StatusCode::CREATED);
    sc.running().shared.components.set(Component::AccessLog, true);
    assert_eq!(charge(&sc, CHECKOUT_KEY, "k2").await.status, StatusCode::CREATED);
    let log = sc.access_log_path();
    sc.stop().await;
    assert_eq!(std::fs::read_to_string(log).unwrap().lines().count(), 1);
}

/// Label values allowed per label name: bounded sets, nothing from requests.
fn allowed(label: &str, value: &str) -> bool {
    match label {
        "feature" => ["charge", "refund", "disbursement", "other"].contains(&value),
        "route" => ["legacy", "orchestration", "none"].contains(&value),
        "code" => ["1xx", "2xx", "3xx", "4xx", "5xx"].contains(&value),
        "client" => ["checkout", "payouts"].contains(&value),
        "component" => ["shadow_compare", "access_log", "detailed_metrics", "tracing", "profiling"].contains(&value),
        "outcome" => ["match", "mismatch", "shadow_error", "skipped"].contains(&value),
        "reason" => ["queue_full", "export_failed"].contains(&value),
        "state" => ["on", "off"].contains(&value),
        "kind" => ["connect", "watch", "auth", "permission"].contains(&value),
        "status" => ["fresh", "stale", "future", "unreadable", "malformed"].contains(&value),
        "le" => true,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_families_are_present_with_bounded_labels() {
    let (_app, sc) = echo_sidecar().await;
    assert_eq!(charge(&sc, CHECKOUT_KEY, "k").await.status, StatusCode::CREATED);
    // A request whose path and headers would blow up labels if used.
    let auth = format!("Bearer {CHECKOUT_KEY}");
    send(Method::GET, &sc.url("/v1/charges/ch_unique_123?x=1"), &[("authorization", &auth)], "").await;
    for _ in 0..3 {
        charge(&sc, PAYOUTS_KEY, "p").await;
    }
    let res = get(&sc.admin_url("/metrics")).await;
    assert!(res.header("content-type").unwrap().starts_with("text/plain"));
    let text = String::from_utf8(res.body.to_vec()).unwrap();
    for family in [
        "paymesh_requests_total",
        "paymesh_request_duration_seconds",
        "paymesh_throttled_total",
        "paymesh_inflight_requests",
        "paymesh_migration_percent",
        "paymesh_component_enabled",
        "paymesh_access_log_dropped_total",
        "paymesh_config_reloads_total",
        "paymesh_config_reload_errors_total",
        "paymesh_switch_events_total",
        "paymesh_telemetry_stale",
        "paymesh_telemetry_cpu_percent",
        "paymesh_telemetry_mem_used_percent",
        "paymesh_telemetry_status",
        "paymesh_etcd_connected",
        "paymesh_etcd_errors_total",
        "paymesh_shadow_compares_total",
        "paymesh_trace_spans_exported_total",
        "paymesh_trace_spans_dropped_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing");
    }
    assert_eq!(metric(&text, r#"paymesh_requests_total{code="2xx",feature="charge",route="legacy"}"#), Some(4.0));
    assert_eq!(metric(&text, r#"paymesh_requests_total{code="4xx",feature="charge",route="none"}"#), Some(1.0));
    assert_eq!(metric(&text, r#"paymesh_throttled_total{client="payouts"}"#), Some(1.0));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, labels)) = line.split_once('{') else { continue };
        let labels = labels.split_once('}').unwrap().0;
        for pair in labels.split(',') {
            let (k, v) = pair.split_once('=').unwrap();
            assert!(allowed(k, v.trim_matches('"')), "unbounded label in {line}");
        }
    }
    assert!(!text.contains("ch_unique_123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detailed_metrics_can_be_shed() {
    let (_app, sc) = echo_sidecar().await;
    sc.running().shared.components.set(Component::DetailedMetrics, false);
    charge(&sc, CHECKOUT_KEY, "k").await;
    let text = String::from_utf8(get(&sc.admin_url("/metrics")).await.body.to_vec()).unwrap();
    let hist = r#"paymesh_request_duration_seconds_count{feature="charge",route="legacy"}"#;
    assert_eq!(metric(&text, hist), Some(0.0));
    assert_eq!(
        metric(&text, r#"paymesh_requests_total{code="2xx",feature="charge",route="legacy"}"#),
        Some(1.0),
        "plain counters stay"
    );
    assert_eq!(metric(&text, r#"paymesh_component_enabled{component="detailed_metrics"}"#), Some(0.0));
}

/// A request whose client goes away before the app answered (an HTTP/2
/// reset, an HTTP/1 hang-up) still gets its access-log line and its count,
/// as status 499 with the client and route it had reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_before_its_answer_is_logged_and_counted_as_499() {
    use tokio::io::AsyncWriteExt;

    let (_app, mut sc) = echo_sidecar().await;
    // HTTP/2: the client drops the response future, hyper sends RST_STREAM.
    let (mut sender, req) = h2_get(&sc, "/v1/charges/ch_1", &[("x-test-delay-ms", "3000")]).await;
    let reset = tokio::time::timeout(Duration::from_millis(300), sender.send_request(req)).await;
    assert!(reset.is_err(), "the app waits 3 s; the client gave up first");
    // HTTP/1: the client closes its socket with the request in flight.
    let mut tcp = tokio::net::TcpStream::connect(sc.proxy).await.unwrap();
    let req = format!(
        "GET /v1/refunds/re_1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CHECKOUT_KEY}\r\nx-test-delay-ms: 3000\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(tcp);

    let metrics = sc.admin_url("/metrics");
    eventually(Duration::from_secs(5), "both cancellations counted", || {
        let metrics = metrics.clone();
        async move {
            let text = String::from_utf8_lossy(&get(&metrics).await.body).into_owned();
            let count = |feature: &str| {
                metric(&text, &format!(r#"paymesh_requests_total{{code="4xx",feature="{feature}",route="legacy"}}"#))
            };
            count("charge") == Some(1.0) && count("refund") == Some(1.0)
        }
    })
    .await;
    let log = sc.access_log_path();
    sc.stop().await; // flushes the writer
    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for feature in ["charge", "refund"] {
        let line = lines.iter().find(|l| l["feature"] == feature).unwrap_or_else(|| panic!("{feature}: {text}"));
        assert_eq!(line["status"], 499, "{line}");
        assert_eq!((line["client"].as_str(), line["route"].as_str()), (Some("checkout"), Some("legacy")));
    }
}

//! Distributed tracing through real processes and a real OTLP receiver
//! (oteltest's sinks, `tests/otlp/sink.py`): one charge through the pod is
//! one trace across the sidecar, the app and the orchestrator, correctly
//! parented and tied to the access log; shedding `tracing` stops the
//! sidecar's spans while requests succeed and the caller's `traceparent`
//! still reaches the app; a dead receiver neither fails nor blocks a
//! request, and its losses are counted.

use paymesh_system_tests::otlp::{OtlpSink, Protocol, Span};
use paymesh_system_tests::sidecar::ADMIN_AUTH;
use paymesh_system_tests::{AppProcess, Client, Orchestrator, SidecarProcess, eventually, free_port, metric};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const AUTH: (&str, &str) = ("authorization", "Bearer test-key-checkout");
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The pod, every process exporting to `endpoint` over `protocol`.
struct Pod {
    _orchestrator: Orchestrator,
    _app: AppProcess,
    sidecar: SidecarProcess,
}

async fn pod(dir: &Path, endpoint: &str, protocol: Protocol, sidecar_extra: &str) -> Pod {
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint), ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.env_value())];
    let orchestrator = Orchestrator::start_with_env(&dir.join("data"), dir, &[], &env).await;
    let app = AppProcess::start_with_env(&orchestrator.url, dir, &[], &env).await;
    let yaml = format!(
        "tracing: {{ otlp_endpoint: \"{endpoint}\", protocol: {} }}\naccess_log: {{ path: {}/access.log }}\n{sidecar_extra}",
        protocol.config_value(),
        dir.display()
    );
    let sidecar = SidecarProcess::start(dir, app.url.trim_start_matches("http://"), &yaml).await;
    Pod { _orchestrator: orchestrator, _app: app, sidecar }
}

/// A receiver, and the pod exporting to it, in a fresh directory.
async fn traced_pod(protocol: Protocol) -> (tempfile::TempDir, OtlpSink, Pod) {
    let dir = tempfile::tempdir().unwrap();
    let sink = OtlpSink::start(dir.path(), protocol).await;
    let pod = pod(dir.path(), &sink.endpoint(), protocol, "").await;
    (dir, sink, pod)
}

/// Every span received, once a batch exported a moment later had time to
/// arrive too.
async fn settled(sink: &OtlpSink) -> Vec<Span> {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sink.spans()
}

async fn charge(client: &Client, url: &str, key: &str, traceparent: Option<&str>) -> Value {
    let mut headers = vec![AUTH, ("idempotency-key", key)];
    if let Some(tp) = traceparent {
        headers.push(("traceparent", tp));
    }
    let reply = client
        .post(&format!("{url}/v1/charges"), &headers, &json!({"amount": 1000, "currency": "usd", "source": "tok_visa"}))
        .await;
    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
    reply.json()
}

fn of<'a>(spans: &'a [Span], service: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.service == service).collect()
}

fn access_log(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn one_charge_is_one_trace(protocol: Protocol) {
    let (dir, sink, pod) = traced_pod(protocol).await;
    charge(&Client::new(), &pod.sidecar.url, "trace-1", None).await;

    sink.wait_for(Duration::from_secs(15), "spans of all three services", |s| {
        !of(s, "paymesh-sidecar").is_empty()
            && !of(s, "paymesh-app").is_empty()
            && !of(s, "paymesh-orchestrator").is_empty()
    })
    .await;
    let spans = settled(&sink).await;
    let sidecar = of(&spans, "paymesh-sidecar");
    assert_eq!(sidecar.len(), 1, "{spans:#?}");
    let root = sidecar[0];
    assert!(spans.iter().all(|s| s.trace_id == root.trace_id), "one trace: {spans:#?}");
    assert_eq!(root.parent_span_id, "", "no traceparent in: the sidecar starts the trace");
    assert_eq!(root.kind, "SPAN_KIND_SERVER");
    assert_eq!(root.name, "POST /v1/charges");
    assert_eq!(root.attr_str("paymesh.client"), Some("checkout"));
    assert_eq!(root.attr_str("paymesh.feature"), Some("charge"));
    assert_eq!(root.attr("http.response.status_code"), Some(&json!(201)));
    assert!(!serde_json::to_string(&root.attributes).unwrap().contains("test-key"), "never an API key");

    let app = of(&spans, "paymesh-app");
    let app_server: Vec<_> = app.iter().filter(|s| s.kind == "SPAN_KIND_SERVER").collect();
    assert_eq!(app_server.len(), 1, "{app:#?}");
    assert_eq!(app_server[0].parent_span_id, root.span_id, "the app continues the sidecar's span");
    let calls: Vec<_> = app.iter().filter(|s| s.kind == "SPAN_KIND_CLIENT").collect();
    assert!(!calls.is_empty(), "a client span per backend call: {app:#?}");
    for c in &calls {
        assert_eq!(c.parent_span_id, app_server[0].span_id, "{c:?}");
        assert!(!c.name.contains("ch_"), "bounded names: {}", c.name);
    }
    let orchestrator = of(&spans, "paymesh-orchestrator");
    assert_eq!(orchestrator.len(), calls.len(), "one orchestrator span per call: {spans:#?}");
    for o in &orchestrator {
        assert!(calls.iter().any(|c| c.span_id == o.parent_span_id), "{o:?} under an app call");
    }

    // The access-log line carries the sidecar span's ids.
    eventually(Duration::from_secs(5), "access log", || async { !access_log(dir.path()).is_empty() }).await;
    let line = &access_log(dir.path())[0];
    assert_eq!((line["trace_id"].as_str(), line["span_id"].as_str()), (Some(&*root.trace_id), Some(&*root.span_id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_charge_is_one_trace_across_the_pod_over_grpc() {
    one_charge_is_one_trace(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_charge_is_one_trace_across_the_pod_over_http() {
    one_charge_is_one_trace(Protocol::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shedding_tracing_stops_the_sidecars_spans_and_keeps_the_callers_context() {
    let (dir, sink, pod) = traced_pod(Protocol::Grpc).await;
    let client = Client::new();
    let (admin, url) = (pod.sidecar.admin.clone(), pod.sidecar.url.clone());
    let set = |on: bool| {
        let (client, admin) = (client.clone(), admin.clone());
        async move {
            let body = json!({ "enabled": on });
            let reply = client.post(&format!("{admin}/admin/components/tracing"), &[ADMIN_AUTH], &body).await;
            assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        }
    };
    set(false).await;
    // With no traceparent from the client, nothing is traced at all.
    for i in 0..5 {
        charge(&client, &url, &format!("shed-{i}"), None).await;
    }
    // With one, it reaches the app unchanged: the app's span is a child of
    // the client's span, and the sidecar made none.
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    charge(&client, &url, "shed-traced", Some(&tp)).await;
    sink.wait_for(Duration::from_secs(15), "the app's span of the traced charge", |s| {
        s.iter().any(|x| x.service == "paymesh-app" && x.kind == "SPAN_KIND_SERVER")
    })
    .await;
    let spans = settled(&sink).await;
    assert!(of(&spans, "paymesh-sidecar").is_empty(), "shed: no sidecar span: {spans:#?}");
    assert!(spans.iter().all(|s| s.trace_id == CLIENT_TRACE), "only the client's trace: {spans:#?}");
    let app_server: Vec<_> = of(&spans, "paymesh-app").into_iter().filter(|s| s.kind == "SPAN_KIND_SERVER").collect();
    assert_eq!(app_server.len(), 1);
    assert_eq!(app_server[0].parent_span_id, CLIENT_SPAN, "the caller's traceparent reached the app unchanged");
    let lines = access_log(dir.path());
    let traced = lines.last().unwrap();
    assert_eq!((traced["trace_id"].as_str(), traced["span_id"].as_str()), (Some(CLIENT_TRACE), Some(CLIENT_SPAN)));
    assert!(lines[..lines.len() - 1].iter().all(|l| l["trace_id"].is_null()), "{lines:?}");

    // Restored, the sidecar's spans come back, continuing the caller's.
    set(true).await;
    let before = spans.len();
    charge(&client, &url, "restored", Some(&tp)).await;
    let spans = sink
        .wait_for(Duration::from_secs(15), "a sidecar span again", |s| {
            s.len() > before && !of(s, "paymesh-sidecar").is_empty()
        })
        .await;
    let root = of(&spans, "paymesh-sidecar")[0];
    assert_eq!((root.trace_id.as_str(), root.parent_span_id.as_str()), (CLIENT_TRACE, CLIENT_SPAN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_requests_are_spans_too() {
    let (_dir, sink, pod) = traced_pod(Protocol::Grpc).await;
    let client = Client::new();
    let url = format!("{}/v1/charges", pod.sidecar.url);
    let bad_key = client.post(&url, &[("authorization", "Bearer nope"), ("idempotency-key", "k")], &json!({})).await;
    assert_eq!(bad_key.status, 401);
    let spans = sink
        .wait_for(Duration::from_secs(15), "the 401's span", |s| {
            s.iter().any(|x| x.service == "paymesh-sidecar" && x.attr("http.response.status_code") == Some(&json!(401)))
        })
        .await;
    let refused = spans.iter().find(|x| x.service == "paymesh-sidecar").unwrap();
    assert_eq!(refused.attr_str("paymesh.route"), Some("none"), "answered before a route: {refused:?}");
    assert!(refused.attr("paymesh.client").is_none(), "no client was proven");
    assert!(of(&spans, "paymesh-app").is_empty(), "the app never saw it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_receiver_never_fails_a_request_and_its_losses_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let pod = pod(dir.path(), &endpoint, Protocol::Grpc, "").await;
    let client = Client::new();
    for i in 0..30 {
        charge(&client, &pod.sidecar.url, &format!("dead-{i}"), None).await;
    }
    eventually(Duration::from_secs(20), "the lost spans counted", || async {
        let m = pod.sidecar.metrics().await;
        metric(&m, "paymesh_trace_spans_dropped_total{reason=\"export_failed\"}").unwrap_or(0.0) >= 30.0
    })
    .await;
    let m = pod.sidecar.metrics().await;
    assert_eq!(metric(&m, "paymesh_trace_spans_exported_total"), Some(0.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_sampled_out_is_not_exported_but_still_propagates() {
    let (dir, sink, pod) = traced_pod(Protocol::Grpc).await;
    // A caller that decided not to sample: nobody records, the decision
    // travels on.
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    charge(&Client::new(), &pod.sidecar.url, "unsampled", Some(&tp)).await;
    charge(&Client::new(), &pod.sidecar.url, "sampled", None).await;
    sink.wait_for(Duration::from_secs(15), "the sampled charge", |s| !of(s, "paymesh-sidecar").is_empty()).await;
    let spans = settled(&sink).await;
    assert!(spans.iter().all(|s| s.trace_id != CLIENT_TRACE), "an unsampled trace is never exported: {spans:#?}");
    let line = &access_log(dir.path())[0];
    assert_eq!(line["trace_id"].as_str(), Some(CLIENT_TRACE), "but its ids are in the access log");
}

//! The OTLP receiver of the system tests ([`paymesh_system_tests::otlp`])
//! receives a real export over each protocol and hands back its spans with
//! ids, parent, kind, service, attributes and status; and it stops cleanly
//! on SIGTERM. The export is built with `opentelemetry-proto` and sent by
//! `tests/otlp/send.py` (gRPC through the TraceService stub, HTTP as a
//! protobuf POST), from the sink's own venv.

use nix::sys::signal::Signal;
use paymesh_system_tests::otlp::{OtlpSink, Protocol, venv_python};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const ROOT: &str = "b7ad6b7169203331";
const CHILD: &str = "00f067aa0ba902b7";

fn send(sink: &OtlpSink) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("otlp/send.py");
    let out = Command::new(venv_python())
        .arg(script)
        .args(["--endpoint", &sink.endpoint(), "--protocol", sink.protocol.config_value()])
        .output()
        .expect("run send.py");
    assert!(
        out.status.success(),
        "send.py to the {:?} sink failed ({}):\n{}{}\n--- sink log ---\n{}",
        sink.protocol,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        sink.process.log()
    );
}

async fn receives_an_export(protocol: Protocol) {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = OtlpSink::start(dir.path(), protocol).await;
    assert_eq!(sink.endpoint(), format!("http://127.0.0.1:{}", sink.port));
    assert!(sink.spans().is_empty());
    send(&sink);

    let spans = sink.wait_for(Duration::from_secs(10), "the two exported spans", |s| s.len() >= 2).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let root = spans.iter().find(|s| s.span_id == ROOT).expect("the root span");
    let child = spans.iter().find(|s| s.span_id == CHILD).expect("the child span");

    assert_eq!((root.trace_id.as_str(), root.parent_span_id.as_str()), (TRACE, ""));
    assert_eq!((root.name.as_str(), root.kind.as_str()), ("POST /v1/charges", "SPAN_KIND_SERVER"));
    assert_eq!(root.service, "paymesh-harness-check");
    assert_eq!(root.status, "STATUS_CODE_UNSET");
    assert_eq!(
        serde_json::Value::Object(root.attributes.clone()),
        json!({
            "http.request.method": "POST", "http.response.status_code": 201
        })
    );
    assert_eq!((root.start_unix_nano, root.end_unix_nano), (1_764_000_000_000_000_000, 1_764_000_000_250_000_000));

    assert_eq!((child.trace_id.as_str(), child.parent_span_id.as_str()), (TRACE, ROOT));
    assert_eq!((child.name.as_str(), child.kind.as_str()), ("orchestrator charge", "SPAN_KIND_CLIENT"));
    assert_eq!(child.service, "paymesh-harness-check");
    assert_eq!(child.status, "STATUS_CODE_ERROR");
    assert_eq!(child.attr_str("paymesh.feature"), Some("charge"));
    assert_eq!(child.attr("paymesh.attempt"), Some(&json!(2)));
    assert_eq!(child.attr("paymesh.percent"), Some(&json!(12.5)));
    assert_eq!(child.attr("paymesh.shadow"), Some(&json!(true)));

    // A second export is appended, not lost or merged.
    send(&sink);
    let spans = sink.wait_for(Duration::from_secs(10), "the second export", |s| s.len() >= 4).await;
    assert_eq!(spans.iter().filter(|s| s.span_id == CHILD).count(), 2);

    sink.process.signal(Signal::SIGTERM);
    let status = sink.process.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "SIGTERM: {status:?}\n{}", sink.process.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sink_receives_an_export() {
    receives_an_export(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_receives_an_export() {
    receives_an_export(Protocol::Http).await;
}

//! A real OTLP trace receiver for the system tests: oteltest's gRPC or
//! HTTP sink (`tests/otlp/sink.py`, run from the venv `target/otel-venv`
//! that `scripts/otel-venv.sh` makes) on a free loopback port, writing every
//! span it receives as a JSON line that [`OtlpSink::spans`] reads back.
//!
//! It is a receiver only: it never answers an export with an error, so a
//! test sees what the binaries sent, not what a collector would have kept.

use crate::{Process, free_port, on_free_ports};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The OTLP transport a sink serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (the `TraceService/Export` RPC).
    Grpc,
    /// OTLP/HTTP: protobuf (or JSON) POSTs to `/v1/traces`.
    Http,
}

impl Protocol {
    /// The sidecar config's `tracing.protocol` value.
    pub fn config_value(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }

    /// The `OTEL_EXPORTER_OTLP_PROTOCOL` value (app, orchestrator).
    pub fn env_value(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http/protobuf",
        }
    }
}

/// One received span, as `tests/otlp/sink.py` writes it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Span {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The OTLP enum's name: `SPAN_KIND_SERVER`, `SPAN_KIND_CLIENT`,
    /// `SPAN_KIND_INTERNAL`, … (`SPAN_KIND_UNSPECIFIED` when unset).
    pub kind: String,
    /// The resource's `service.name` (empty when it had none).
    pub service: String,
    /// Strings, integers, doubles and booleans as JSON; arrays as arrays,
    /// key-value lists as objects, bytes as hex.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// `STATUS_CODE_UNSET`, `STATUS_CODE_OK` or `STATUS_CODE_ERROR`.
    pub status: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&serde_json::Value> {
        self.attributes.get(key)
    }

    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attr(key)?.as_str()
    }
}

/// The running sink; killed when dropped (its log then is printed if the
/// test panicked).
#[derive(Debug)]
pub struct OtlpSink {
    pub process: Process,
    pub protocol: Protocol,
    pub port: u16,
    out: PathBuf,
}

impl OtlpSink {
    /// Starts a sink on a free port, its log and span file in `dir`, and
    /// waits until it listens. Panics, naming the fix, when the venv is missing.
    pub async fn start(dir: &Path, protocol: Protocol) -> OtlpSink {
        let python = venv_python();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("otlp/sink.py");
        on_free_ports(async || {
            let port = free_port();
            let out = dir.join(format!("otlp-{}-{port}.jsonl", protocol.config_value()));
            let (port_arg, out_arg) = (port.to_string(), out.to_str().expect("utf-8 path").to_owned());
            let args = [
                script.to_str().expect("utf-8 path"),
                "--port",
                &port_arg,
                "--protocol",
                protocol.config_value(),
                "--out",
                &out_arg,
            ];
            let env = [("PYTHONDONTWRITEBYTECODE", "1"), ("PYTHONUNBUFFERED", "1")];
            let mut process = Process::spawn_path("otlp-sink", &python, &args, &env, dir);
            process.ready_log("ready", Duration::from_secs(30)).await?;
            Some(OtlpSink { process, protocol, port, out })
        })
        .await
    }

    /// `http://127.0.0.1:PORT`: the sidecar's `tracing.otlp_endpoint` and
    /// the `OTEL_EXPORTER_OTLP_ENDPOINT` of the app and orchestrator (for
    /// HTTP those exporters add `/v1/traces`; see [`traces_url`](Self::traces_url)).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The full OTLP/HTTP traces URL, for an exporter given a signal URL.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint())
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // A line is whole once its newline is written; a last line without
        // one is still being written.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad span line from the sink ({e}): {line}"))
            })
            .collect()
    }

    /// Polls [`spans`](Self::spans) every 20 ms until `pred` holds of them
    /// and returns them; panics after `timeout` with `what`, the spans seen
    /// and the sink's log.
    pub async fn wait_for(&self, timeout: Duration, what: &str, pred: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if pred(&spans) {
                return spans;
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = spans
                    .iter()
                    .map(|s| {
                        format!(
                            "  {} {} {:?} trace {} span {} parent {:?}",
                            s.service, s.kind, s.name, s.trace_id, s.span_id, s.parent_span_id
                        )
                    })
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; the {:?} sink on {} received {} spans:\n{}\n--- sink log ---\n{}",
                    self.protocol,
                    self.endpoint(),
                    spans.len(),
                    seen.join("\n"),
                    self.process.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The venv's python: `PAYMESH_OTEL_VENV`, else `target/otel-venv` of the
/// workspace.
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("PAYMESH_OTEL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/otel-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: the OTLP sink needs the venv {}; run scripts/otel-venv.sh or make test",
        python.display(),
        venv.display()
    );
    python
}

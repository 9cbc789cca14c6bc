//! Spans recorded on the request path, exported in batches off it.
//!
//! A request hands a finished [`SpanRecord`] to a bounded queue with
//! `try_send` and goes on; when the queue is full the span is dropped and
//! counted, never waited for. One task per process takes up to
//! [`BATCH`] spans at a time (or what a second brought) and sends them with
//! the OTLP exporter of the `opentelemetry-otlp` crate (gRPC or
//! HTTP/protobuf). An export that fails or times out loses its batch,
//! counted, and is logged once per episode: a dead collector never slows or
//! fails a request.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use tokio::sync::mpsc;

use crate::context::TraceContext;

/// Spans waiting for export at most; beyond, new ones are dropped.
pub const QUEUE: usize = 4096;
/// Spans per export call at most.
pub const BATCH: usize = 512;
/// How long a span may wait for a batch to fill.
const LINGER: Duration = Duration::from_secs(1);
/// Bound on one export call.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    Grpc,
    /// HTTP/protobuf, to `<endpoint>/v1/traces`.
    Http,
}

impl Transport {
    /// `grpc`, or `http` (also the standard `http/protobuf`).
    pub fn from_name(name: &str) -> Option<Transport> {
        match name {
            "grpc" => Some(Transport::Grpc),
            "http" | "http/protobuf" => Some(Transport::Http),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http://host:4317` (gRPC) or `http://host:4318` (HTTP; `/v1/traces`
    /// is added unless the URL already ends with it).
    pub url: String,
    pub transport: Transport,
}

impl Endpoint {
    /// From the standard variables: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, and `OTEL_EXPORTER_OTLP_PROTOCOL`
    /// (`grpc`, the default, or `http/protobuf`). `Ok(None)` when no
    /// endpoint is set; an error names a bad variable.
    pub fn from_env() -> Result<Option<Endpoint>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let Some(url) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT")) else {
            return Ok(None);
        };
        let transport = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            None => Transport::Grpc,
            Some(p) => Transport::from_name(p.trim())
                .ok_or_else(|| format!("OTEL_EXPORTER_OTLP_PROTOCOL={p:?}: must be grpc or http/protobuf"))?,
        };
        let endpoint = Endpoint { url: url.trim().to_owned(), transport };
        endpoint.check().map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
        Ok(Some(endpoint))
    }

    /// An http:// URL with a host. TLS to the collector is not supported:
    /// spans go to a collector agent on the node or in the pod, which
    /// forwards them over TLS.
    pub fn check(&self) -> Result<(), String> {
        let uri: http::Uri = self.url.parse().map_err(|e| format!("{:?} is not a URL ({e})", self.url))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http"), Some(h)) if !h.is_empty() => Ok(()),
            (Some("https"), _) => Err(format!(
                "{:?}: TLS to the collector is not supported; point at a local collector agent over http://",
                self.url
            )),
            _ => Err(format!("{:?} must be an http:// URL with a host", self.url)),
        }
    }
}

/// How a span relates to its neighbours (OTLP's span kinds that paymesh
/// uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
}

/// One finished span, as the request path leaves it.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// The span's own context (its trace, its id).
    pub context: TraceContext,
    /// The parent span's id, and whether the parent is in another process.
    pub parent: Option<(u64, bool)>,
    pub kind: Kind,
    pub name: Cow<'static, str>,
    pub start: SystemTime,
    pub end: SystemTime,
    /// Bounded: names and values from closed sets and the config only.
    pub attributes: Vec<KeyValue>,
    /// An error status, with its short reason.
    pub error: Option<&'static str>,
}

/// Counts of what became of recorded spans.
#[derive(Debug, Default)]
pub struct Stats {
    pub exported: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Lost with a batch the collector did not take.
    pub dropped_export_failed: AtomicU64,
}

/// The span sink of one process: off, or a queue to the exporter task.
#[derive(Debug, Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<SpanRecord>,
    stats: Arc<Stats>,
}

impl Tracer {
    /// A tracer that records nothing.
    pub fn off() -> Tracer {
        Tracer { inner: None }
    }

    /// Builds the exporter for `service` and starts its task on the current
    /// tokio runtime. Fails only on a bad endpoint; an unreachable
    /// collector is an export failure later, not an error here.
    pub fn start(service: &'static str, endpoint: &Endpoint, stats: Arc<Stats>) -> Result<Tracer, String> {
        endpoint.check()?;
        let mut exporter = match endpoint.transport {
            Transport::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.url.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build(),
            Transport::Http => {
                let url = if endpoint.url.trim_end_matches('/').ends_with("/v1/traces") {
                    endpoint.url.clone()
                } else {
                    format!("{}/v1/traces", endpoint.url.trim_end_matches('/'))
                };
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(url)
                    .with_timeout(EXPORT_TIMEOUT)
                    .build()
            }
        }
        .map_err(|e| format!("cannot build the OTLP exporter for {}: {e}", endpoint.url))?;
        exporter.set_resource(&Resource::builder_empty().with_service_name(service).build());
        let (tx, rx) = mpsc::channel(QUEUE);
        let scope = InstrumentationScope::builder("paymesh").with_version(env!("CARGO_PKG_VERSION")).build();
        tokio::spawn(export_loop(rx, exporter, scope, stats.clone(), endpoint.url.clone()));
        tracing::info!(service, endpoint = %endpoint.url, transport = endpoint.transport.as_str(), "exporting spans over OTLP");
        Ok(Tracer { inner: Some(Arc::new(Inner { tx, stats })) })
    }

    /// Whether spans are exported at all.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues a finished span; never waits.
    pub fn record(&self, span: SpanRecord) {
        let Some(inner) = &self.inner else { return };
        if inner.tx.try_send(span).is_err() {
            inner.stats.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits up to `timeout` for the queued spans to be exported (at
    /// shutdown).
    pub async fn flush(&self, timeout: Duration) {
        let Some(inner) = &self.inner else { return };
        let deadline = tokio::time::Instant::now() + timeout;
        while inner.tx.capacity() < QUEUE && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn export_loop(
    mut rx: mpsc::Receiver<SpanRecord>,
    exporter: opentelemetry_otlp::SpanExporter,
    scope: InstrumentationScope,
    stats: Arc<Stats>,
    url: String,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    loop {
        let Some(first) = rx.recv().await else { return };
        batch.push(first);
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(span) => batch.push(span),
                    None => break,
                },
                () = &mut linger => break,
            }
        }
        let n = batch.len() as u64;
        let data: Vec<SpanData> = batch.drain(..).map(|s| span_data(s, &scope)).collect();
        match tokio::time::timeout(EXPORT_TIMEOUT + Duration::from_secs(1), exporter.export(data)).await {
            Ok(Ok(())) => {
                stats.exported.fetch_add(n, Ordering::Relaxed);
                if failing {
                    tracing::info!(endpoint = %url, "span export works again");
                    failing = false;
                }
            }
            Ok(Err(e)) => {
                stats.dropped_export_failed.fetch_add(n, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(endpoint = %url, error = %e, spans = n, "span export failed; spans are dropped until it works");
                    failing = true;
                }
            }
            Err(_) => {
                stats.dropped_export_failed.fetch_add(n, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(endpoint = %url, spans = n, "span export timed out; spans are dropped until it works");
                    failing = true;
                }
            }
        }
    }
}

fn span_data(s: SpanRecord, scope: &InstrumentationScope) -> SpanData {
    let flags = if s.context.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    let (parent, parent_remote) = s.parent.unwrap_or((0, false));
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(s.context.trace_id.to_be_bytes()),
            SpanId::from_bytes(s.context.span_id.to_be_bytes()),
            flags,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from_bytes(parent.to_be_bytes()),
        parent_span_is_remote: parent_remote,
        span_kind: match s.kind {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
        },
        name: s.name,
        start_time: s.start,
        end_time: s.end,
        attributes: s.attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: match s.error {
            Some(reason) => Status::error(reason),
            None => Status::Unset,
        },
        instrumentation_scope: scope.clone(),
    }
}

//! Distributed tracing for every paymesh binary (issue 18).
//!
//! - [`context`]: the W3C `traceparent`, ids and the parent-based sampler;
//! - [`export`]: finished spans, queued without waiting and exported in
//!   batches over OTLP by the `opentelemetry-otlp` exporter;
//! - here: the spans of a request handler ([`ServerSpan`]) and of the calls
//!   it makes ([`ClientSpan`]), tied together by the request's task-local
//!   context, for the app and the orchestrator. The sidecar records its
//!   own server span directly, on its request path.
//!
//! Spans carry bounded attributes only (names from closed sets, ids from
//! the config, statuses): never an API key, a body or a raw path.

pub mod context;
pub mod export;

use std::borrow::Cow;
use std::future::Future;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue};
/// Span attributes: one type with the exporter.
pub use opentelemetry::KeyValue;

pub use context::{Sampler, TraceContext, new_span_id, new_trace_id};
pub use export::{Endpoint, Kind, SpanRecord, Stats, Tracer, Transport};

/// The header W3C trace context travels in.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    static CURRENT: Current;
}

/// The span a request handler is in, for the calls it makes.
#[derive(Debug, Clone)]
struct Current {
    tracer: Tracer,
    context: TraceContext,
}

/// The server span of one request in a service behind the sidecar (the app,
/// the orchestrator): it continues the caller's trace and follows its
/// sampling decision; a request without a `traceparent` is not traced.
#[derive(Debug)]
pub struct ServerSpan {
    tracer: Tracer,
    context: Option<TraceContext>,
    parent: u64,
    name: Cow<'static, str>,
    start: SystemTime,
}

impl ServerSpan {
    pub fn start(tracer: &Tracer, headers: &HeaderMap, name: impl Into<Cow<'static, str>>) -> ServerSpan {
        let parent = headers.get(TRACEPARENT).and_then(|v| TraceContext::parse(v.as_bytes()));
        let context =
            parent.map(|p| p.child(if tracer.is_on() && p.sampled { new_span_id() } else { p.span_id }, p.sampled));
        ServerSpan {
            tracer: tracer.clone(),
            context,
            parent: parent.map_or(0, |p| p.span_id),
            name: name.into(),
            start: SystemTime::now(),
        }
    }

    /// The trace and span ids, as hex, for log lines.
    pub fn ids(&self) -> Option<(String, String)> {
        self.context.map(|c| (c.trace_hex(), c.span_hex()))
    }

    /// Runs `f` inside this span: [`ClientSpan`]s started in it are its
    /// children (and a spawned task needs `in_span` again).
    pub async fn in_span<F: Future>(&self, f: F) -> F::Output {
        match self.context {
            Some(context) => CURRENT.scope(Current { tracer: self.tracer.clone(), context }, f).await,
            None => f.await,
        }
    }

    /// Records the span with the answer's status.
    pub fn finish(self, status: u16, mut attributes: Vec<KeyValue>) {
        let Some(context) = self.context.filter(|c| c.sampled && self.tracer.is_on()) else { return };
        attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
        self.tracer.record(SpanRecord {
            context,
            parent: Some((self.parent, true)),
            kind: Kind::Server,
            name: self.name,
            start: self.start,
            end: SystemTime::now(),
            attributes,
            error: (status >= 500).then_some("server error"),
        });
    }
}

/// The current request's span, to carry into a task of its own.
pub fn current_span() -> SpanHandle {
    SpanHandle { current: CURRENT.try_with(Clone::clone).ok() }
}

/// A request's span, carried into a task of its own.
#[derive(Debug, Clone)]
pub struct SpanHandle {
    current: Option<Current>,
}

impl SpanHandle {
    pub async fn in_span<F: Future>(self, f: F) -> F::Output {
        match self.current {
            Some(current) => CURRENT.scope(current, f).await,
            None => f.await,
        }
    }
}

/// One outgoing call of the current request: its own span when the trace
/// is sampled, and the `traceparent` to send either way (an unsampled
/// trace still propagates, so downstream stays linked).
#[derive(Debug)]
pub struct ClientSpan {
    current: Option<Current>,
    context: Option<TraceContext>,
    name: Cow<'static, str>,
    start: SystemTime,
}

impl ClientSpan {
    /// A span named `name` (a bounded name: `POST /components/authorizations`,
    /// never a path with an id) under the current request's span, if any.
    pub fn start(name: impl Into<Cow<'static, str>>) -> ClientSpan {
        let current = CURRENT.try_with(Clone::clone).ok();
        let context = current.as_ref().map(|c| {
            if c.context.sampled && c.tracer.is_on() { c.context.child(new_span_id(), true) } else { c.context }
        });
        ClientSpan { current, context, name: name.into(), start: SystemTime::now() }
    }

    /// The `traceparent` for the outgoing request, if the request is traced.
    pub fn traceparent(&self) -> Option<HeaderValue> {
        self.context.map(|c| c.header())
    }

    /// Records the span: `status` of the answer, or `None` when the call
    /// failed without one.
    pub fn finish(self, status: Option<u16>, mut attributes: Vec<KeyValue>) {
        let (Some(current), Some(context)) = (self.current, self.context) else { return };
        if !context.sampled || !current.tracer.is_on() || context.span_id == current.context.span_id {
            return;
        }
        let error = match status {
            Some(s) => {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(s)));
                (s >= 500).then_some("server error")
            }
            None => Some("no answer"),
        };
        current.tracer.record(SpanRecord {
            context,
            parent: Some((current.context.span_id, false)),
            kind: Kind::Client,
            name: self.name,
            start: self.start,
            end: SystemTime::now(),
            attributes,
            error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(tp: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_str(tp).unwrap());
        h
    }

    #[tokio::test]
    async fn a_client_span_is_a_child_of_the_server_span_and_propagates() {
        let tracer = Tracer::off();
        let server =
            ServerSpan::start(&tracer, &headers("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), "s");
        // Export off: the caller's context passes on unchanged.
        let tp = server.in_span(async { ClientSpan::start("c").traceparent() }).await;
        assert_eq!(tp.unwrap().to_str().unwrap(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        // Outside any request: nothing to propagate.
        assert!(ClientSpan::start("c").traceparent().is_none());
        // No traceparent in: not traced, nothing out.
        let untraced = ServerSpan::start(&tracer, &HeaderMap::new(), "s");
        assert!(untraced.ids().is_none());
        assert!(untraced.in_span(async { ClientSpan::start("c").traceparent() }).await.is_none());
        // A spawned task keeps the span through the handle it was given.
        let handle = server.in_span(async { current_span() }).await;
        let tp = tokio::spawn(handle.in_span(async { ClientSpan::start("c").traceparent() })).await.unwrap();
        assert_eq!(tp.unwrap().to_str().unwrap(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        // Taken outside any span, the handle carries nothing.
        let tp = tokio::spawn(current_span().in_span(async { ClientSpan::start("c").traceparent() })).await.unwrap();
        assert!(tp.is_none());
    }
}

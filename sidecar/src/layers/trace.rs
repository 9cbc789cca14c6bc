//! The sidecar's span of each request, and the trace context it sends on.
//!
//! While the `tracing` component is on and `tracing.otlp_endpoint` is set,
//! a request continues the caller's W3C trace (`traceparent`) or starts
//! one, the sampler decides (parent-based, `tracing.sample_ratio` for new
//! traces), the app gets a `traceparent` naming the sidecar's span as its
//! parent, and the span (feature, route, client id, status; never a key or
//! a body) is queued for export when the answer is known, or as 499 when
//! the request is cancelled first: refusals and cancellations are spans
//! too, since this step stands outside every rejecting one. The span's ids
//! ride on the context, for the access log and every log event.
//!
//! Shed (or with no endpoint), nothing is created and the caller's
//! `traceparent` passes through unchanged, so downstream traces stay
//! linked; the context still carries the caller's ids for the logs.
//!
//! A debug span (`tracing` crate) with the request id and trace id is also
//! built, when the log filter admits debug spans, so that every event the
//! layers below log can be tied to the request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use http::HeaderName;
use paymesh_otel::{KeyValue, Kind, Sampler, SpanRecord, TraceContext, Tracer, new_span_id, new_trace_id};
use pin_project_lite::pin_project;
use tower::Service;
use tracing::Span;

use super::Step;
use super::metrics::CLIENT_CLOSED;
use crate::components::{Component, Components};
use crate::ctx::{Answer, Call, Ctx, InFlight};

pub static TRACEPARENT: HeaderName = HeaderName::from_static(paymesh_otel::TRACEPARENT);

/// The request span; needs the switches and the span sink.
#[derive(Debug, Clone)]
pub struct Trace {
    components: Arc<Components>,
    tracer: Tracer,
}

impl Trace {
    pub fn new(components: Arc<Components>, tracer: Tracer) -> Self {
        Self { components, tracer }
    }
}

/// What is needed to record the span at the end.
#[derive(Debug)]
struct Recording {
    tracer: Tracer,
    context: TraceContext,
    parent: Option<u64>,
    start: SystemTime,
    method: &'static str,
}

impl<S, B, RB> Service<Call<B>> for Step<Trace, S>
where
    S: Service<Call<B>, Response = Answer<RB>, Error = Infallible>,
    S::Future: InFlight,
{
    infallible_inner!(Answer<RB>, TraceFuture<S::Future>);

    fn call(&mut self, mut call: Call<B>) -> Self::Future {
        let parent = call.req.headers().get(&TRACEPARENT).and_then(|v| TraceContext::parse(v.as_bytes()));
        let on = self.step.components.enabled(Component::Tracing);
        let mut recording = None;
        call.ctx.trace = parent;
        if on && self.step.tracer.is_on() {
            let trace_id = parent.map_or_else(new_trace_id, |p| p.trace_id);
            let sampled = Sampler::ratio(call.ctx.snap.config.tracing.sample_ratio).sampled(parent.as_ref(), trace_id);
            let context = TraceContext { trace_id, span_id: new_span_id(), sampled };
            call.req.headers_mut().insert(TRACEPARENT.clone(), context.header());
            call.ctx.trace = Some(context);
            if sampled {
                recording = Some(Recording {
                    tracer: self.step.tracer.clone(),
                    context,
                    parent: parent.map(|p| p.span_id),
                    start: SystemTime::now(),
                    method: method_name(call.req.method()),
                });
            }
        }
        let span = if on { debug_span(&call) } else { Span::none() };
        if span.is_disabled() {
            return TraceFuture { fut: self.inner.call(call), span: None, start: Instant::now(), recording };
        }
        let fut = span.in_scope(|| self.inner.call(call));
        TraceFuture { fut, span: Some(span), start: Instant::now(), recording }
    }
}

fn debug_span<B>(call: &Call<B>) -> Span {
    let trace_id = call.ctx.trace.map(|t| t.trace_hex());
    tracing::debug_span!(
        "request",
        id = call.ctx.request_id.to_str().unwrap_or(""),
        method = %call.req.method(),
        feature = call.ctx.feature.as_str(),
        trace_id = trace_id.as_deref().unwrap_or(""),
    )
}

/// The method as a span name part: the standard ones, or `_OTHER` (a
/// client's own method name is not a bounded attribute).
fn method_name(m: &http::Method) -> &'static str {
    use http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

impl Recording {
    fn finish(self, ctx: &Ctx, status: u16) {
        let mut attributes = vec![
            KeyValue::new("http.request.method", self.method),
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("paymesh.feature", ctx.feature.as_str()),
            KeyValue::new("paymesh.route", ctx.route.as_str()),
        ];
        if let Some(client) = &ctx.client {
            attributes.push(KeyValue::new("paymesh.client", client.id.clone()));
        }
        let name = match ctx.feature.collection() {
            Some(c) => format!("{} /v1/{c}", self.method),
            None => self.method.to_owned(),
        };
        self.tracer.record(SpanRecord {
            context: self.context,
            parent: self.parent.map(|p| (p, true)),
            kind: Kind::Server,
            name: name.into(),
            start: self.start,
            end: SystemTime::now(),
            attributes,
            error: match status {
                CLIENT_CLOSED => Some("cancelled"),
                s if s >= 500 => Some("server error"),
                _ => None,
            },
        });
    }
}

pin_project! {
    #[derive(Debug)]
    pub struct TraceFuture<F>
    where
        F: InFlight,
    {
        #[pin]
        fut: F,
        span: Option<Span>,
        start: Instant,
        recording: Option<Recording>,
    }

    impl<F> PinnedDrop for TraceFuture<F>
    where
        F: InFlight,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(recording) = this.recording.take() && let Some(ctx) = this.fut.ctx() {
                recording.finish(ctx, CLIENT_CLOSED);
            }
        }
    }
}

impl<F, RB> Future for TraceFuture<F>
where
    F: Future<Output = Result<Answer<RB>, Infallible>> + InFlight,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.as_ref().map(Span::enter);
        let Ok(answer) = std::task::ready!(this.fut.poll(cx));
        let status = answer.res.status().as_u16();
        if let Some(recording) = this.recording.take() {
            recording.finish(&answer.ctx, status);
        }
        if this.span.is_some() {
            tracing::debug!(
                status,
                route = answer.ctx.route.as_str(),
                elapsed_us = this.start.elapsed().as_micros() as u64,
                "answered"
            );
        }
        Poll::Ready(Ok(answer))
    }
}

impl<F: InFlight> InFlight for TraceFuture<F> {
    fn ctx(&self) -> Option<&Ctx> {
        self.fut.ctx()
    }
}

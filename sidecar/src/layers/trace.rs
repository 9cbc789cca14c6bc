//! A debug span around each request, and a debug event for its answer.
//!
//! The span carries the request id, method and feature, so every event the
//! layers below log for this request (a timeout, an unreachable app) can be
//! tied to it. It is built only while the `tracing` component is on and the
//! log filter lets debug spans through; when `tracing` is shed, a request
//! pays one relaxed load here and nothing else. It never changes a request
//! or a response.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Span;

use crate::components::Component;
use crate::ctx::Ctx;
use crate::state::Shared;

#[derive(Debug, Clone)]
pub struct TraceLayer {
    shared: Arc<Shared>,
}

impl TraceLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner, shared: self.shared.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B, RB> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Infallible>,
{
    type Response = Response<RB>;
    type Error = Infallible;
    type Future = TraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !self.shared.components.enabled(Component::Tracing) {
            return TraceFuture::Plain { fut: self.inner.call(req) };
        }
        let span = match req.extensions().get::<Ctx>() {
            Some(ctx) => tracing::debug_span!(
                "request",
                id = ctx.request_id.to_str().unwrap_or(""),
                method = %req.method(),
                feature = ctx.feature.as_str(),
            ),
            None => tracing::debug_span!("request", method = %req.method()),
        };
        if span.is_disabled() {
            return TraceFuture::Plain { fut: self.inner.call(req) };
        }
        let fut = span.in_scope(|| self.inner.call(req));
        TraceFuture::Traced { fut, span, start: Instant::now() }
    }
}

pin_project! {
    #[project = TraceProj]
    #[derive(Debug)]
    pub enum TraceFuture<F> {
        Plain { #[pin] fut: F },
        Traced { #[pin] fut: F, span: Span, start: Instant },
    }
}

impl<F, RB> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response<RB>, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            TraceProj::Plain { fut } => fut.poll(cx),
            TraceProj::Traced { fut, span, start } => {
                let _entered = span.enter();
                let Ok(res) = std::task::ready!(fut.poll(cx));
                let route = res.extensions().get::<Ctx>().map_or("none", |c| c.route.as_str());
                tracing::debug!(
                    status = res.status().as_u16(),
                    route,
                    elapsed_us = start.elapsed().as_micros() as u64,
                    "answered"
                );
                Poll::Ready(Ok(res))
            }
        }
    }
}

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

use pin_project_lite::pin_project;
use tower::Service;
use tracing::Span;

use super::Step;
use crate::components::{Component, Components};
use crate::ctx::{Answer, Call};

/// The request span; needs only the component switches.
#[derive(Debug, Clone)]
pub struct Trace {
    components: Arc<Components>,
}

impl Trace {
    pub fn new(components: Arc<Components>) -> Self {
        Self { components }
    }
}

impl<S, B, RB> Service<Call<B>> for Step<Trace, S>
where
    S: Service<Call<B>, Response = Answer<RB>, Error = Infallible>,
{
    infallible_inner!(Answer<RB>, TraceFuture<S::Future>);

    fn call(&mut self, call: Call<B>) -> Self::Future {
        if !self.step.components.enabled(Component::Tracing) {
            return TraceFuture::Plain { fut: self.inner.call(call) };
        }
        let span = tracing::debug_span!(
            "request",
            id = call.ctx.request_id.to_str().unwrap_or(""),
            method = %call.req.method(),
            feature = call.ctx.feature.as_str(),
        );
        if span.is_disabled() {
            return TraceFuture::Plain { fut: self.inner.call(call) };
        }
        let fut = span.in_scope(|| self.inner.call(call));
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
    F: Future<Output = Result<Answer<RB>, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            TraceProj::Plain { fut } => fut.poll(cx),
            TraceProj::Traced { fut, span, start } => {
                let _entered = span.enter();
                let Ok(answer) = std::task::ready!(fut.poll(cx));
                tracing::debug!(
                    status = answer.res.status().as_u16(),
                    route = answer.ctx.route.as_str(),
                    elapsed_us = start.elapsed().as_micros() as u64,
                    "answered"
                );
                Poll::Ready(Ok(answer))
            }
        }
    }
}

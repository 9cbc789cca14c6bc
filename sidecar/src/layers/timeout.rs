//! `limits.request_timeout`: the app answers in time or the client gets 504.
//!
//! The deadline covers forwarding the request body and waiting for the
//! response headers. This layer also owns the request's `Ctx` from here on:
//! it takes it off the request (the app has no use for it) and puts it on
//! whatever response comes back, the app's or its own.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::body::ProxyBody;
use crate::ctx::{self, Ctx};
use crate::error::Reject;
use crate::state::Shared;

#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    shared: Arc<Shared>,
}

impl TimeoutLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout { inner, shared: self.shared.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let limit = self.shared.live.load().config.limits.request_timeout;
        let ctx = ctx::take(req.extensions_mut());
        TimeoutFuture { fut: self.inner.call(req), sleep: tokio::time::sleep(limit), ctx }
    }
}

pin_project! {
    #[derive(Debug)]
    pub struct TimeoutFuture<F> {
        #[pin]
        fut: F,
        #[pin]
        sleep: Sleep,
        ctx: Option<Ctx>,
    }
}

impl<F> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Poll::Ready(Ok(mut res)) = this.fut.poll(cx) {
            if let Some(ctx) = this.ctx.take() {
                res.extensions_mut().insert(ctx);
            }
            return Poll::Ready(Ok(res));
        }
        std::task::ready!(this.sleep.poll(cx));
        let ctx = this.ctx.take();
        tracing::warn!(
            request_id = ?ctx.as_ref().map(|c| &c.request_id),
            "app did not answer within limits.request_timeout"
        );
        Poll::Ready(Ok(Reject::Timeout.response(ctx)))
    }
}

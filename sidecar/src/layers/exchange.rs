//! The app exchange, under `limits.request_timeout`, and the one step that
//! puts the request's context back onto the answer.
//!
//! It takes the `Ctx` off the call (the app has no use for it), hands the
//! inner service (the proxy) the plain request with its snapshot, and gives
//! back whatever comes first as an [`Answer`] with that `Ctx`: the app's
//! response, or 504 when the deadline passes. The deadline covers
//! forwarding the request body and waiting for the response headers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::Service;

use super::Step;
use crate::body::ProxyBody;
use crate::ctx::{Answer, Call, Ctx, InFlight};
use crate::error::Reject;
use crate::state::Snapshot;

/// What the proxy gets: the request, and the snapshot naming the app and
/// its connection pool.
#[derive(Debug)]
pub struct AppRequest<B> {
    pub snap: Arc<Snapshot>,
    pub req: Request<B>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Exchange;

impl<S, B> Service<Call<B>> for Step<Exchange, S>
where
    S: Service<AppRequest<B>, Response = Response<ProxyBody>, Error = Infallible>,
{
    infallible_inner!(Answer<ProxyBody>, ExchangeFuture<S::Future>);

    fn call(&mut self, Call { ctx, req }: Call<B>) -> Self::Future {
        let limit = ctx.snap.config.limits.request_timeout;
        let fut = self.inner.call(AppRequest { snap: ctx.snap.clone(), req });
        ExchangeFuture { fut, sleep: tokio::time::sleep(limit), ctx: Some(ctx) }
    }
}

pin_project! {
    #[derive(Debug)]
    pub struct ExchangeFuture<F> {
        #[pin]
        fut: F,
        #[pin]
        sleep: Sleep,
        ctx: Option<Ctx>,
    }
}

impl<F> Future for ExchangeFuture<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = Result<Answer<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = match this.fut.poll(cx) {
            Poll::Ready(Ok(res)) => res,
            Poll::Pending => {
                std::task::ready!(this.sleep.poll(cx));
                let ctx = this.ctx.as_ref().expect("polled after completion");
                tracing::warn!(
                    request_id = ?ctx.request_id,
                    trace_id = ctx.trace.map(|t| t.trace_hex()),
                    span_id = ctx.trace.map(|t| t.span_hex()),
                    "app did not answer within limits.request_timeout"
                );
                Reject::Timeout.response()
            }
        };
        let ctx = this.ctx.take().expect("polled after completion");
        Poll::Ready(Ok(Answer { ctx, res }))
    }
}

impl<F> InFlight for ExchangeFuture<F> {
    fn ctx(&self) -> Option<&Ctx> {
        self.ctx.as_ref()
    }
}

//! `limits.max_body_bytes`: refuse what is too big, bound what is streamed.
//!
//! A declared Content-Length over the limit is refused with 413 before a byte
//! is read. Otherwise the body is wrapped so the stream fails once it passes
//! the limit; the proxy turns that failure into 413 if the app has not
//! answered yet.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use tower::{Layer, Service};

use super::Rejectable;
use crate::body::{LimitedBody, ProxyBody};
use crate::ctx;
use crate::error::Reject;
use crate::state::Shared;

#[derive(Debug, Clone)]
pub struct BodyLimitLayer {
    shared: Arc<Shared>,
}

impl BodyLimitLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit { inner, shared: self.shared.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for BodyLimit<S>
where
    S: Service<Request<LimitedBody<B>>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Rejectable<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let limit = self.shared.live.load().config.limits.max_body_bytes;
        let declared =
            req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Rejectable::reject(Reject::BodyTooLarge.response(ctx::take(req.extensions_mut())));
        }
        Rejectable::pass(self.inner.call(req.map(|b| LimitedBody::new(b, limit))))
    }
}

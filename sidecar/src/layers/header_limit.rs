//! A request with more header fields than the app accepts is refused here,
//! 431 in the public error shape, rather than by the app after the sidecar
//! has added its own.
//!
//! The limits are one set of constants shared with the app
//! (`paymesh_vocab::limits`): a client may send `CLIENT_MAX_HEADERS`, and the
//! app accepts that many plus what the sidecar adds. hyper's HTTP/1 parser
//! already stops at the same count; HTTP/2 has no count limit of its own,
//! so this layer is what holds for it. Never shed.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Request, Response};
use paymesh_vocab::limits::CLIENT_MAX_HEADERS;
use tower::{Layer, Service};

use super::Rejectable;
use crate::body::ProxyBody;
use crate::ctx::{self, Ctx};
use crate::error::Reject;

#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderLimitLayer;

impl<S> Layer<S> for HeaderLimitLayer {
    type Service = HeaderLimit<S>;

    fn layer(&self, inner: S) -> HeaderLimit<S> {
        HeaderLimit { inner }
    }
}

#[derive(Debug, Clone)]
pub struct HeaderLimit<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for HeaderLimit<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Rejectable<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // Counted as the client sent them (the server notes it in the Ctx,
        // every value of a repeated name counting, as in hyper's parser),
        // not as the hygiene layer left them: the limit is the client's.
        let sent = req.extensions().get::<Ctx>().map_or(req.headers().len(), |c| c.client_headers);
        if sent > CLIENT_MAX_HEADERS {
            return Rejectable::reject(Reject::TooManyHeaders.response(ctx::take(req.extensions_mut())));
        }
        Rejectable::pass(self.inner.call(req))
    }
}

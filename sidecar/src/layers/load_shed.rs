//! `limits.max_inflight`: answer 503 at once rather than queue without bound.
//!
//! An atomic counter of admitted requests; the slot is released when the
//! response headers are ready (or the request is abandoned). It stands
//! before authentication so an overload of bad keys is also bounded.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::Rejectable;
use crate::body::ProxyBody;
use crate::ctx;
use crate::error::Reject;
use crate::state::Shared;

#[derive(Debug, Clone)]
pub struct LoadShedLayer {
    shared: Arc<Shared>,
}

impl LoadShedLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> LoadShed<S> {
        LoadShed { inner, shared: self.shared.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct LoadShed<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for LoadShed<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Rejectable<Admitted<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let max = self.shared.live.load().config.limits.max_inflight;
        let before = self.shared.inflight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.shared.clone());
        if before >= max {
            drop(slot);
            return Rejectable::reject(Reject::Overloaded.response(ctx::take(req.extensions_mut())));
        }
        Rejectable::pass(Admitted { fut: self.inner.call(req), _slot: slot })
    }
}

/// One admitted request; gives its slot back when dropped.
#[derive(Debug)]
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    #[derive(Debug)]
    pub struct Admitted<F> {
        #[pin]
        fut: F,
        _slot: Slot,
    }
}

impl<F: Future> Future for Admitted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

//! Route choice: legacy or orchestration, sticky per payment.
//!
//! A POST is bucketed by (client id, Idempotency-Key), so a retried payment
//! takes the path its first attempt took; a GET by its resource id (the last
//! path segment), so reads of one resource are consistent. The share is the
//! client's override of the feature's percent when it has one
//! (`<prefix>/migration/<feature>/clients/<id>`), else the feature's, both
//! from the `MigrationTable` without a lock. `other` paths always go
//! legacy. Sets `x-paymesh-route`; never rejects.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Method, Request, Response};
use tower::{Layer, Service};

use crate::ctx::Ctx;
use crate::migration::{Feature, Route, bucket_for};
use crate::state::Shared;

pub static X_PAYMESH_ROUTE: HeaderName = HeaderName::from_static(paymesh_vocab::headers::ROUTE);
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

#[derive(Debug, Clone)]
pub struct RouteLayer {
    shared: Arc<Shared>,
}

impl RouteLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = RouteChoice<S>;

    fn layer(&self, inner: S) -> RouteChoice<S> {
        RouteChoice { inner, shared: self.shared.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct RouteChoice<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B, RB> Service<Request<B>> for RouteChoice<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Infallible>,
{
    type Response = Response<RB>;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let route = match req.extensions().get::<Ctx>() {
            Some(ctx) if ctx.feature != Feature::Other => match &ctx.client {
                // An authenticated client is one from the config: its
                // override, if any, decides; else the feature's percent.
                Some(client) => {
                    let bucket = request_bucket(&req, client.id.as_bytes());
                    self.shared.migration.route_for(ctx.feature, &client.id, bucket)
                }
                None => self.shared.migration.route(ctx.feature, request_bucket(&req, b"")),
            },
            _ => Route::Legacy,
        };
        if let Some(ctx) = req.extensions_mut().get_mut::<Ctx>() {
            ctx.route = route;
        }
        req.headers_mut().insert(X_PAYMESH_ROUTE.clone(), HeaderValue::from_static(route.as_str()));
        self.inner.call(req)
    }
}

/// The sticky bucket of a request (DESIGN.md "Migration").
pub fn request_bucket<B>(req: &Request<B>, client: &[u8]) -> u32 {
    if req.method() == Method::POST {
        let key = req.headers().get(&IDEMPOTENCY_KEY).map_or(&b""[..], |v| v.as_bytes());
        bucket_for(&[client, key])
    } else {
        let path = req.uri().path().trim_end_matches('/');
        let id = path.rsplit('/').next().unwrap_or("");
        bucket_for(&[id.as_bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(key: &str) -> Request<()> {
        Request::post("/v1/charges").header("idempotency-key", key).body(()).unwrap()
    }

    #[test]
    fn posts_bucket_by_client_and_key() {
        assert_eq!(request_bucket(&post("k1"), b"checkout"), bucket_for(&[b"checkout", b"k1"]));
        assert_eq!(request_bucket(&post("k1"), b"checkout"), request_bucket(&post("k1"), b"checkout"),);
    }

    #[test]
    fn gets_bucket_by_resource_id() {
        let get = |p: &str| Request::get(p).body(()).unwrap();
        let b = request_bucket(&get("/v1/charges/ch_42"), b"a");
        assert_eq!(b, bucket_for(&[b"ch_42"]));
        assert_eq!(b, request_bucket(&get("/v1/charges/ch_42/"), b"other-client"));
    }
}

//! Route choice: legacy or orchestration, sticky per payment.
//!
//! A POST is bucketed by (client id, Idempotency-Key), so a retried payment
//! takes the path its first attempt took; a GET by its resource id (the last
//! path segment), so reads of one resource are consistent. The share is the
//! client's override of the feature's percent when it has one
//! (`<prefix>/migration/<feature>/clients/<id>`), else the feature's, both
//! from the `MigrationTable` without a lock. `other` paths always go
//! legacy. Sets `x-paymesh-route`; never rejects.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, Request};

use super::Filter;
use super::auth::Authenticated;
use crate::body::ProxyBody;
use crate::ctx::{Answer, Call};
use crate::migration::{Feature, MigrationTable, Route, bucket_for};

pub static X_PAYMESH_ROUTE: HeaderName = HeaderName::from_static(paymesh_vocab::headers::ROUTE);
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Chooses the path from the migration table; needs the proven client for
/// the sticky bucket and the client's override.
#[derive(Debug, Clone)]
pub struct RouteChoice {
    migration: Arc<MigrationTable>,
}

impl RouteChoice {
    pub fn new(migration: Arc<MigrationTable>) -> Self {
        Self { migration }
    }
}

impl<B> Filter<Authenticated<B>> for RouteChoice {
    type Out = Call<B>;

    fn check(&self, call: Authenticated<B>) -> Result<Call<B>, Answer<ProxyBody>> {
        let mut call = call.into_call();
        let ctx = &mut call.ctx;
        let route = match (ctx.feature, &ctx.client) {
            (Feature::Other, _) | (_, None) => Route::Legacy,
            (feature, Some(client)) => {
                let bucket = request_bucket(&call.req, client.id.as_bytes());
                self.migration.route_for(feature, &client.id, bucket)
            }
        };
        ctx.route = route;
        call.req.headers_mut().insert(X_PAYMESH_ROUTE.clone(), HeaderValue::from_static(route.as_str()));
        Ok(call)
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

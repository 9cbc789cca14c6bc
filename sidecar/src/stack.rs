//! The request path, assembled. Read top to bottom, it is the lifecycle of
//! every request the public listener accepts.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::layer::util::{Identity, Stack};
use tower::{Service, ServiceBuilder};

use crate::body::ProxyBody;
use crate::layers::access_log::{AccessLogLayer, LoggedBody};
use crate::layers::auth::AuthLayer;
use crate::layers::body_limit::BodyLimitLayer;
use crate::layers::header_limit::HeaderLimitLayer;
use crate::layers::headers::HeadersLayer;
use crate::layers::load_shed::LoadShedLayer;
use crate::layers::metrics::MetricsLayer;
use crate::layers::route::RouteLayer;
use crate::layers::throttle::ThrottleLayer;
use crate::layers::timeout::TimeoutLayer;
use crate::layers::trace::TraceLayer;
use crate::proxy::Proxy;
use crate::state::Shared;

/// The body of every response on the public listener.
pub type ResponseBody = LoggedBody<ProxyBody>;

/// Builds the stack once; the server clones it per connection.
pub fn build(
    shared: Arc<Shared>,
) -> impl Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    // Finally, the app on loopback.
    layers(&shared).service(Proxy::new(shared))
}

/// The layers of [`layers`], outermost last (tower's nesting order).
pub type Layers = Stack<
    TimeoutLayer,
    Stack<
        BodyLimitLayer,
        Stack<
            RouteLayer,
            Stack<
                ThrottleLayer,
                Stack<
                    AuthLayer,
                    Stack<
                        LoadShedLayer,
                        Stack<
                            HeaderLimitLayer,
                            Stack<
                                AccessLogLayer,
                                Stack<MetricsLayer, Stack<TraceLayer, Stack<HeadersLayer, Identity>>>,
                            >,
                        >,
                    >,
                >,
            >,
        >,
    >,
>;

/// Every step a request passes before the app, in order. Public so that
/// the benchmarks measure this very stack in front of a stand-in app.
pub fn layers(shared: &Arc<Shared>) -> ServiceBuilder<Layers> {
    ServiceBuilder::new()
        // First, hygiene: strip hop-by-hop and client-sent x-paymesh-*
        // headers and fix the request id, so every later step (and every
        // log line, even of a refusal) sees the same clean request.
        .layer(HeadersLayer)
        // A debug span per request, named by the id just fixed, so what
        // any later step logs can be tied to its request. Only while the
        // `tracing` component is on.
        .layer(TraceLayer::new(shared.clone()))
        // Metrics wrap everything below, so refusals (401, 429, 503, 413)
        // are counted like proxied answers.
        .layer(MetricsLayer::new(shared.clone()))
        // Likewise the access log: one line per request, whoever answered.
        .layer(AccessLogLayer::new(shared.clone()))
        // A request with more header fields than the app accepts (once the
        // sidecar has added its own) is refused now, 431, not by the app.
        .layer(HeaderLimitLayer)
        // Shed load before doing any work: over max_inflight costs one
        // atomic add, not a SHA-256 and a bucket update.
        .layer(LoadShedLayer::new(shared.clone()))
        // Who is calling; sets x-paymesh-client. Everything below needs it.
        .layer(AuthLayer::new(shared.clone()))
        // Per-client token bucket: charged only for authenticated callers,
        // so a bad key cannot drain a real client's budget.
        .layer(ThrottleLayer::new(shared.clone()))
        // Pick legacy or orchestration (needs the client id for the sticky
        // bucket); sets x-paymesh-route.
        .layer(RouteLayer::new(shared.clone()))
        // Refuse or bound the body only for requests that will be sent on.
        .layer(BodyLimitLayer::new(shared.clone()))
        // The deadline covers just the app exchange; it also moves the Ctx
        // from the request onto whatever response comes back.
        .layer(TimeoutLayer::new(shared.clone()))
}

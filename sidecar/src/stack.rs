//! The request path, assembled. Read top to bottom, it is the lifecycle of
//! every request the public listener accepts.
//!
//! Each step takes only the handles it uses ([`Handles`] is where they come
//! from); a request's context is made once, by the first step, and rides
//! through every step by value (`ctx.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::Response;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::{Service, ServiceBuilder};

use crate::body::{CountedBody, LimitedBody, ProxyBody};
use crate::components::Components;
use crate::ctx::{Accepted, Answer, Call, Ctx};
use crate::layers::access_log::{AccessLog, LoggedBody};
use crate::layers::auth::Auth;
use crate::layers::body_limit::BodyLimit;
use crate::layers::exchange::{AppRequest, Exchange};
use crate::layers::header_limit::HeaderLimit;
use crate::layers::headers::Headers;
use crate::layers::load_shed::LoadShed;
use crate::layers::metrics::Count;
use crate::layers::route::RouteChoice;
use crate::layers::shadow::ShadowRead;
use crate::layers::throttle::Throttle;
use crate::layers::trace::Trace;
use crate::layers::{Step, StepLayer, filter, infallible_inner};
use crate::migration::MigrationTable;
use crate::observe::{AccessLogWriter, Metrics};
use crate::proxy::Proxy;
use crate::shadow::Shadow;
use crate::state::{Shared, Snapshot};

/// The body of every response on the public listener.
pub type ResponseBody = LoggedBody<ProxyBody>;

/// The live config snapshot, swapped whole by a reload.
pub type Live = Arc<ArcSwap<Snapshot>>;

/// What the steps of the request path use, and nothing else.
#[derive(Debug, Clone)]
pub struct Handles {
    pub live: Live,
    pub migration: Arc<MigrationTable>,
    pub components: Arc<Components>,
    pub metrics: Arc<Metrics>,
    pub access_log: Arc<AccessLogWriter>,
    pub shadow: Arc<Shadow>,
    pub tracer: paymesh_otel::Tracer,
}

impl Handles {
    pub fn of(shared: &Shared) -> Self {
        Self {
            live: shared.live.clone(),
            migration: shared.migration.clone(),
            components: shared.components.clone(),
            metrics: shared.metrics.clone(),
            access_log: shared.access_log.clone(),
            shadow: shared.shadow.clone(),
            tracer: shared.tracer.clone(),
        }
    }
}

/// The request stack as the server drives it: built once, cloned per
/// connection.
pub trait Stack:
    Service<Accepted<Incoming>, Response = Response<ResponseBody>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + Unpin
    + 'static
{
}

impl<T> Stack for T where
    T: Service<Accepted<Incoming>, Response = Response<ResponseBody>, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + Unpin
        + 'static
{
}

/// The stack in front of the app on loopback.
pub fn build(h: &Handles) -> impl Stack {
    around(h, Proxy)
}

/// Every step a request passes, in order, in front of `app`. Public so that
/// the benchmarks and tests drive this very stack in front of a stand-in.
pub fn around<B, S>(
    h: &Handles,
    app: S,
) -> impl Service<Accepted<B>, Response = Response<ResponseBody>, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static
where
    B: Send + 'static,
    S: Service<AppRequest<LimitedBody<CountedBody<B>>>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    ServiceBuilder::new()
        // First the request's context: its connection, and the config
        // snapshot it will run under from here to its last byte.
        .layer(StepLayer(NewCtx { live: h.live.clone() }))
        // Hygiene: strip hop-by-hop and client-sent x-paymesh-* headers and
        // fix the request id, so every later step (and every log line, even
        // of a refusal) sees the same clean request.
        .layer(StepLayer(Headers))
        // A debug span per request, named by the id just fixed, so what
        // any later step logs can be tied to its request. Only while the
        // `tracing` component is on.
        .layer(StepLayer(Trace::new(h.components.clone(), h.tracer.clone())))
        // Metrics wrap everything below, so refusals (401, 429, 503, 413)
        // are counted like proxied answers, and a request cancelled before
        // its answer is counted as 499.
        .layer(StepLayer(Count::new(h.metrics.clone(), h.components.clone())))
        // Likewise the access log: one line per request, whoever answered,
        // or 499 when nobody could.
        .layer(StepLayer(AccessLog::new(h.access_log.clone(), h.components.clone())))
        // A request with more header fields than the app accepts (once the
        // sidecar has added its own) is refused now, 431, not by the app.
        .layer(filter(HeaderLimit))
        // Shed load before doing any work: over max_inflight costs one
        // atomic load, not a SHA-256 and a bucket update.
        .layer(filter(LoadShed::new(h.metrics.inflight.clone())))
        // Who is calling; sets x-paymesh-client. Yields the proof of
        // identity the next two steps take.
        .layer(filter(Auth))
        // Per-client token bucket: it takes only authenticated calls, so a
        // bad key cannot drain a real client's budget, and no request can
        // pass it uncharged.
        .layer(filter(Throttle::new(h.components.clone())))
        // Pick legacy or orchestration (needs the client id for the sticky
        // bucket); sets x-paymesh-route.
        .layer(filter(RouteChoice::new(h.migration.clone())))
        // Refuse or bound the body only for requests that will be sent on.
        .layer(filter(BodyLimit))
        // A sampled share of successful reads is read again through the
        // other path once the client has its answer, and compared.
        .layer(StepLayer(ShadowRead::new(h.shadow.clone())))
        // The app exchange under the request deadline; the one step that
        // puts the context back onto the answer, the app's or the 504.
        .layer(StepLayer(Exchange))
        // Finally, the app.
        .service(app)
}

/// Makes each request's context.
#[derive(Debug, Clone)]
pub struct NewCtx {
    live: Live,
}

impl<S, B, RB> Service<Accepted<B>> for Step<NewCtx, S>
where
    S: Service<Call<B>, Response = Answer<RB>, Error = Infallible>,
{
    infallible_inner!(Response<RB>, Answered<S::Future>);

    fn call(&mut self, Accepted { conn, req }: Accepted<B>) -> Self::Future {
        let ctx = Ctx::new(conn, self.step.live.load_full(), req.headers().len());
        Answered { fut: self.inner.call(Call { ctx, req }) }
    }
}

pin_project! {
    /// The answer's response, for hyper; its context ends here.
    #[derive(Debug)]
    pub struct Answered<F> {
        #[pin]
        fut: F,
    }
}

impl<F, RB> Future for Answered<F>
where
    F: Future<Output = Result<Answer<RB>, Infallible>>,
{
    type Output = Result<Response<RB>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(answer) = std::task::ready!(self.project().fut.poll(cx));
        Poll::Ready(Ok(answer.res))
    }
}

//! Counts and times every answer, including the ones the sidecar gave itself.
//!
//! It stands outside every rejecting layer so 401/429/503 are counted too.
//! Labels come from the `Ctx` that rides on the response; handles are
//! resolved ahead of time (see `observe::metrics`). The histograms and the
//! per-client series are detailed metrics and are skipped while
//! `detailed_metrics` is shed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::components::Component;
use crate::ctx::Ctx;
use crate::migration::{Feature, Route};
use crate::state::Shared;

#[derive(Debug, Clone)]
pub struct MetricsLayer {
    shared: Arc<Shared>,
}

impl MetricsLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics { inner, shared: self.shared.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Metrics<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B, RB> Service<Request<B>> for Metrics<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Infallible>,
{
    type Response = Response<RB>;
    type Error = Infallible;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.shared.metrics.inflight.inc();
        MetricsFuture { fut: self.inner.call(req), guard: InflightGauge(self.shared.clone()), start: Instant::now() }
    }
}

/// Keeps `paymesh_inflight_requests` honest even when a request is abandoned.
#[derive(Debug)]
struct InflightGauge(Arc<Shared>);

impl Drop for InflightGauge {
    fn drop(&mut self) {
        self.0.metrics.inflight.dec();
    }
}

pin_project! {
    #[derive(Debug)]
    pub struct MetricsFuture<F> {
        #[pin]
        fut: F,
        guard: InflightGauge,
        start: Instant,
    }
}

impl<F, RB> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response<RB>, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Ok(res) = std::task::ready!(this.fut.poll(cx));
        let shared = &this.guard.0;
        let ctx = res.extensions().get::<Ctx>();
        let (feature, route) = ctx.map_or((Feature::Other, Route::None), |c| (c.feature, c.route));
        let detailed = shared.components.enabled(Component::DetailedMetrics);
        let seconds = detailed.then(|| this.start.elapsed().as_secs_f64());
        shared.metrics.record(feature, route, res.status().as_u16(), seconds);
        // Per-client series are detailed: what a per-client ramp judges.
        if detailed && let Some(client) = ctx.and_then(|c| c.client.as_ref()) {
            client.series.record(feature, route, res.status().as_u16(), seconds);
        }
        Poll::Ready(Ok(res))
    }
}

//! Counts and times every answer, including the ones the sidecar gave itself
//! and the requests cancelled before their answer.
//!
//! It stands outside every rejecting layer so 401/429/503 are counted too.
//! Labels come from the `Ctx` that rides on the answer; handles are resolved
//! ahead of time (see `observe::metrics`). A request dropped before its
//! answer (the client hung up, an HTTP/2 reset, the drain deadline) counts
//! as status 499 with the labels its context had reached. The histograms
//! and the per-client series are detailed metrics and are skipped while
//! `detailed_metrics` is shed (as the request found it when it began).
//!
//! It also keeps `paymesh_inflight_requests`, the one in-flight count, which
//! the load shedder (inside this step) reads.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use pin_project_lite::pin_project;
use tower::Service;

use super::Step;
use crate::components::{Component, Components};
use crate::ctx::{Answer, Call, Ctx, InFlight};
use crate::observe::Metrics;

/// Status recorded for a request cancelled before its answer, as nginx logs it.
pub const CLIENT_CLOSED: u16 = 499;

#[derive(Debug, Clone)]
pub struct Count {
    metrics: Arc<Metrics>,
    components: Arc<Components>,
}

impl Count {
    pub fn new(metrics: Arc<Metrics>, components: Arc<Components>) -> Self {
        Self { metrics, components }
    }
}

impl<S, B, RB> Service<Call<B>> for Step<Count, S>
where
    S: Service<Call<B>, Response = Answer<RB>, Error = Infallible>,
    S::Future: InFlight,
{
    infallible_inner!(Answer<RB>, CountFuture<S::Future>);

    fn call(&mut self, call: Call<B>) -> Self::Future {
        let metrics = self.step.metrics.clone();
        metrics.inflight.inc();
        CountFuture {
            fut: self.inner.call(call),
            metrics,
            detailed: self.step.components.enabled(Component::DetailedMetrics),
            start: Instant::now(),
            done: false,
        }
    }
}

pin_project! {
    #[derive(Debug)]
    pub struct CountFuture<F>
    where
        F: InFlight,
    {
        #[pin]
        fut: F,
        metrics: Arc<Metrics>,
        detailed: bool,
        start: Instant,
        done: bool,
    }

    impl<F> PinnedDrop for CountFuture<F>
    where
        F: InFlight,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done && let Some(ctx) = this.fut.ctx() {
                record(this.metrics, ctx, CLIENT_CLOSED, *this.detailed, this.start);
            }
            this.metrics.inflight.dec();
        }
    }
}

impl<F, RB> Future for CountFuture<F>
where
    F: Future<Output = Result<Answer<RB>, Infallible>> + InFlight,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Ok(answer) = std::task::ready!(this.fut.poll(cx));
        *this.done = true;
        record(this.metrics, &answer.ctx, answer.res.status().as_u16(), *this.detailed, this.start);
        Poll::Ready(Ok(answer))
    }
}

impl<F: InFlight> InFlight for CountFuture<F> {
    fn ctx(&self) -> Option<&Ctx> {
        self.fut.ctx()
    }
}

fn record(metrics: &Metrics, ctx: &Ctx, status: u16, detailed: bool, start: &Instant) {
    let seconds = detailed.then(|| start.elapsed().as_secs_f64());
    metrics.record(ctx.feature, ctx.route, status, seconds);
    // Per-client series are detailed: what a per-client ramp judges.
    if detailed && let Some(client) = &ctx.client {
        client.series.record(ctx.feature, ctx.route, status, seconds);
    }
}

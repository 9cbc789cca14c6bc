//! The shadow-read step: samples a read before the exchange, and once the
//! app has answered it 200, hands the body to `crate::shadow` to watch go
//! by. Never changes a request or a response.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::StatusCode;
use pin_project_lite::pin_project;
use tower::Service;

use super::Step;
use crate::body::ProxyBody;
use crate::ctx::{Answer, Call, Ctx, InFlight};
use crate::shadow::{Job, Shadow};

#[derive(Debug, Clone)]
pub struct ShadowRead {
    shadow: Arc<Shadow>,
}

impl ShadowRead {
    pub fn new(shadow: Arc<Shadow>) -> Self {
        Self { shadow }
    }
}

impl<S, B> Service<Call<B>> for Step<ShadowRead, S>
where
    S: Service<Call<B>, Response = Answer<ProxyBody>, Error = Infallible>,
{
    infallible_inner!(Answer<ProxyBody>, ShadowFuture<S::Future>);

    fn call(&mut self, call: Call<B>) -> Self::Future {
        let job = self.step.shadow.sample(&call).map(|job| (self.step.shadow.clone(), job));
        ShadowFuture { fut: self.inner.call(call), job }
    }
}

pin_project! {
    #[derive(Debug)]
    pub struct ShadowFuture<F> {
        #[pin]
        fut: F,
        job: Option<(Arc<Shadow>, Job)>,
    }
}

impl<F> Future for ShadowFuture<F>
where
    F: Future<Output = Result<Answer<ProxyBody>, Infallible>>,
{
    type Output = Result<Answer<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(answer) = std::task::ready!(this.fut.poll(cx));
        // Only a successful read is compared; any other answer, or one the
        // sidecar wrote itself (a 504), ends the sample uncounted.
        let answer = match this.job.take() {
            Some((shadow, job)) if answer.res.status() == StatusCode::OK => answer.map_body(|body| match body {
                ProxyBody::Upstream(body) => ProxyBody::Shadowed(Box::new(shadow.tee(body, job))),
                other => other,
            }),
            _ => answer,
        };
        Poll::Ready(Ok(answer))
    }
}

impl<F: InFlight> InFlight for ShadowFuture<F> {
    fn ctx(&self) -> Option<&Ctx> {
        self.fut.ctx()
    }
}

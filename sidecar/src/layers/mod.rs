//! One step per concern a request passes through.
//!
//! `stack.rs` assembles them in order. Every step is a tower service from a
//! [`Call`] to an [`Answer`]; the scaffolding is written once here:
//!
//! - a [`Filter`] looks at a call and passes it on (possibly as something
//!   more typed: auth's [`auth::Authenticated`]) or answers it itself; it is
//!   a step as [`Filtering`];
//! - the steps that wrap the whole exchange (headers, trace, metrics,
//!   access log) are services on [`Step`], holding their own handles.
//!
//! None of them takes a lock shared with other requests or does blocking
//! I/O. Every service is infallible: failures become answers, so hyper
//! never sees an error.

/// The items every step's `Service` impl shares: its answer and future
/// types, no error (failures are answers), and ready whenever its inner
/// service is (no step reserves capacity: load shedding answers in `call`).
macro_rules! infallible_inner {
    ($response:ty, $future:ty) => {
        type Response = $response;
        type Error = ::std::convert::Infallible;
        type Future = $future;

        fn poll_ready(
            &mut self,
            cx: &mut ::std::task::Context<'_>,
        ) -> ::std::task::Poll<Result<(), ::std::convert::Infallible>> {
            self.inner.poll_ready(cx)
        }
    };
}
pub(crate) use infallible_inner;

pub mod access_log;
pub mod auth;
pub mod body_limit;
pub mod exchange;
pub mod header_limit;
pub mod headers;
pub mod load_shed;
pub mod metrics;
pub mod route;
pub mod shadow;
pub mod throttle;
pub mod trace;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::ProxyBody;
use crate::ctx::{Answer, Ctx, InFlight};

/// The layer of every step: wraps an inner service with the step's handles.
#[derive(Debug, Clone)]
pub struct StepLayer<T>(pub T);

impl<T: Clone, S> Layer<S> for StepLayer<T> {
    type Service = Step<T, S>;

    fn layer(&self, inner: S) -> Step<T, S> {
        Step { step: self.0.clone(), inner }
    }
}

/// A step around an inner service.
#[derive(Debug, Clone)]
pub struct Step<T, S> {
    pub(crate) step: T,
    pub(crate) inner: S,
}

/// A [`Filter`] as a step: `StepLayer(Filtering(filter))`, or [`filter`].
#[derive(Debug, Clone)]
pub struct Filtering<F>(pub F);

/// The layer of a filter.
pub fn filter<F: Clone>(f: F) -> StepLayer<Filtering<F>> {
    StepLayer(Filtering(f))
}

/// A step that answers some calls itself and passes the others on.
pub trait Filter<In> {
    /// What the inner service takes.
    type Out;

    // The answer is as large as the call it replaces (a request or response
    // and the context); both are moved, not copied, and boxing the refusal
    // would only add an allocation to the path that sheds load.
    #[allow(clippy::result_large_err)]
    fn check(&self, call: In) -> Result<Self::Out, Answer<ProxyBody>>;
}

impl<F, S, In> Service<In> for Step<Filtering<F>, S>
where
    F: Filter<In>,
    S: Service<F::Out, Response = Answer<ProxyBody>, Error = Infallible>,
{
    infallible_inner!(Answer<ProxyBody>, Rejectable<S::Future>);

    fn call(&mut self, call: In) -> Self::Future {
        match self.step.0.check(call) {
            Ok(next) => Rejectable::Inner { fut: self.inner.call(next) },
            Err(answer) => Rejectable::Rejected { answer: Some(answer) },
        }
    }
}

pin_project! {
    /// The future of a filter: its own answer at once, or the inner
    /// service's; no boxing either way.
    #[project = RejectableProj]
    #[derive(Debug)]
    pub enum Rejectable<F> {
        Rejected { answer: Option<Answer<ProxyBody>> },
        Inner { #[pin] fut: F },
    }
}

impl<F> Future for Rejectable<F>
where
    F: Future<Output = Result<Answer<ProxyBody>, Infallible>>,
{
    type Output = Result<Answer<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RejectableProj::Rejected { answer } => Poll::Ready(Ok(answer.take().expect("polled after completion"))),
            RejectableProj::Inner { fut } => fut.poll(cx),
        }
    }
}

impl<F: InFlight> InFlight for Rejectable<F> {
    fn ctx(&self) -> Option<&Ctx> {
        match self {
            Rejectable::Rejected { answer } => answer.as_ref().map(|a| &a.ctx),
            Rejectable::Inner { fut } => fut.ctx(),
        }
    }
}

#[cfg(test)]
mod tests;

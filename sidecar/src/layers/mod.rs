//! One tower `Layer` + `Service` per concern a request passes through.
//!
//! `stack.rs` assembles them in order. Each layer either answers the request
//! itself (with a `Reject`) or passes it on; none of them takes a lock shared
//! with other requests or does blocking I/O. Every service in the stack is
//! infallible: failures become responses, so hyper never sees an error.

pub mod access_log;
pub mod auth;
pub mod body_limit;
pub mod header_limit;
pub mod headers;
pub mod load_shed;
pub mod metrics;
pub mod route;
pub mod throttle;
pub mod timeout;
pub mod trace;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::ProxyBody;

pin_project! {
    /// The future of a layer that either answers at once or calls its inner
    /// service; no boxing either way.
    #[project = RejectableProj]
    #[derive(Debug)]
    pub enum Rejectable<F> {
        Rejected { res: Option<Response<ProxyBody>> },
        Inner { #[pin] fut: F },
    }
}

impl<F> Rejectable<F> {
    pub fn reject(res: Response<ProxyBody>) -> Self {
        Rejectable::Rejected { res: Some(res) }
    }

    pub fn pass(fut: F) -> Self {
        Rejectable::Inner { fut }
    }
}

impl<F> Future for Rejectable<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RejectableProj::Rejected { res } => Poll::Ready(Ok(res.take().expect("polled after completion"))),
            RejectableProj::Inner { fut } => fut.poll(cx),
        }
    }
}

//! One access-log line per request, written when the response body ends.
//!
//! It stands outside the rejecting layers so refused requests are logged
//! too. The line is assembled from the response's `Ctx` plus byte counts
//! from both bodies, and handed to the background writer when the response
//! body finishes or is dropped (a client that hangs up is still logged).
//! While `access_log` is shed, requests pass with no counting at all.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Buf;
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::CountedBody;
use crate::components::Component;
use crate::ctx::Ctx;
use crate::migration::{Feature, Route};
use crate::observe::LogRecord;
use crate::state::Shared;

#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    shared: Arc<Shared>,
}

impl AccessLogLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner, shared: self.shared.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B, RB> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<CountedBody<B>>, Response = Response<RB>, Error = Infallible>,
{
    type Response = Response<LoggedBody<RB>>;
    type Error = Infallible;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !self.shared.components.enabled(Component::AccessLog) {
            return AccessLogFuture { fut: self.inner.call(req.map(|b| CountedBody::new(b, None))), start: None };
        }
        let bytes_in = Arc::new(AtomicU64::new(0));
        let start = Start {
            shared: self.shared.clone(),
            method: req.method().clone(),
            time: SystemTime::now(),
            instant: Instant::now(),
            bytes_in: bytes_in.clone(),
        };
        AccessLogFuture { fut: self.inner.call(req.map(|b| CountedBody::new(b, Some(bytes_in)))), start: Some(start) }
    }
}

#[derive(Debug)]
struct Start {
    shared: Arc<Shared>,
    method: Method,
    time: SystemTime,
    instant: Instant,
    bytes_in: Arc<AtomicU64>,
}

pin_project! {
    #[derive(Debug)]
    pub struct AccessLogFuture<F> {
        #[pin]
        fut: F,
        start: Option<Start>,
    }
}

impl<F, RB> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<RB>, Infallible>>,
{
    type Output = Result<Response<LoggedBody<RB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(res) = std::task::ready!(this.fut.poll(cx));
        let line = this.start.take().map(|s| {
            let ctx = res.extensions().get::<Ctx>();
            Pending {
                record: Some(LogRecord {
                    time: s.time,
                    request_id: ctx.map(|c| c.request_id.clone()).unwrap_or_else(|| http::HeaderValue::from_static("")),
                    client: ctx.and_then(|c| c.client.clone()),
                    method: s.method,
                    feature: ctx.map_or(Feature::Other, |c| c.feature),
                    route: ctx.map_or(Route::None, |c| c.route),
                    status: res.status().as_u16(),
                    duration_us: 0,
                    bytes_in: 0,
                    bytes_out: 0,
                }),
                instant: s.instant,
                bytes_in: s.bytes_in,
                shared: s.shared,
            }
        });
        Poll::Ready(Ok(res.map(|inner| LoggedBody { inner, line })))
    }
}

/// A line waiting for its response body to end; sent when dropped.
#[derive(Debug)]
struct Pending {
    record: Option<LogRecord>,
    instant: Instant,
    bytes_in: Arc<AtomicU64>,
    shared: Arc<Shared>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.duration_us = self.instant.elapsed().as_micros() as u64;
            record.bytes_in = self.bytes_in.load(Ordering::Relaxed);
            self.shared.access_log.send(record);
        }
    }
}

pin_project! {
    /// The response body, counting bytes out and carrying the pending line.
    #[derive(Debug)]
    pub struct LoggedBody<B> {
        #[pin]
        inner: B,
        line: Option<Pending>,
    }
}

impl<B: Body> Body for LoggedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(Pending { record: Some(r), .. })) = (frame.data_ref(), this.line.as_mut()) {
                    r.bytes_out += data.remaining() as u64;
                }
            }
            // The end of the body is the end of the exchange: log it now
            // rather than whenever hyper drops the body.
            Poll::Ready(None | Some(Err(_))) => drop(this.line.take()),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

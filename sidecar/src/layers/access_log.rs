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
use http::Method;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::Service;

use super::Step;
use super::metrics::CLIENT_CLOSED;
use crate::body::CountedBody;
use crate::components::{Component, Components};
use crate::ctx::{Answer, Call, Ctx, InFlight};
use crate::observe::{AccessLogWriter, LogRecord};

#[derive(Debug, Clone)]
pub struct AccessLog {
    writer: Arc<AccessLogWriter>,
    components: Arc<Components>,
}

impl AccessLog {
    pub fn new(writer: Arc<AccessLogWriter>, components: Arc<Components>) -> Self {
        Self { writer, components }
    }
}

impl<S, B, RB> Service<Call<B>> for Step<AccessLog, S>
where
    S: Service<Call<CountedBody<B>>, Response = Answer<RB>, Error = Infallible>,
    S::Future: InFlight,
{
    infallible_inner!(Answer<LoggedBody<RB>>, AccessLogFuture<S::Future>);

    fn call(&mut self, call: Call<B>) -> Self::Future {
        if !self.step.components.enabled(Component::AccessLog) {
            return AccessLogFuture { fut: self.inner.call(call.map_body(|b| CountedBody::new(b, None))), start: None };
        }
        let bytes_in = Arc::new(AtomicU64::new(0));
        let start = Start {
            writer: self.step.writer.clone(),
            method: call.req.method().clone(),
            time: SystemTime::now(),
            instant: Instant::now(),
            bytes_in: bytes_in.clone(),
        };
        let call = call.map_body(|b| CountedBody::new(b, Some(bytes_in)));
        AccessLogFuture { fut: self.inner.call(call), start: Some(start) }
    }
}

#[derive(Debug)]
struct Start {
    writer: Arc<AccessLogWriter>,
    method: Method,
    time: SystemTime,
    instant: Instant,
    bytes_in: Arc<AtomicU64>,
}

impl Start {
    fn line(self, ctx: &Ctx, status: u16) -> Pending {
        Pending {
            record: Some(LogRecord {
                time: self.time,
                request_id: ctx.request_id.clone(),
                client: ctx.client.clone(),
                method: self.method,
                feature: ctx.feature,
                route: ctx.route,
                status,
                trace: ctx.trace,
                duration_us: 0,
                bytes_in: 0,
                bytes_out: 0,
            }),
            instant: self.instant,
            bytes_in: self.bytes_in,
            writer: self.writer,
        }
    }
}

pin_project! {
    /// Until the answer: a request dropped here (cancelled before its
    /// answer) is logged with status 499 and what its context had reached.
    #[derive(Debug)]
    pub struct AccessLogFuture<F>
    where
        F: InFlight,
    {
        #[pin]
        fut: F,
        start: Option<Start>,
    }

    impl<F> PinnedDrop for AccessLogFuture<F>
    where
        F: InFlight,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let (Some(start), Some(ctx)) = (this.start.take(), this.fut.ctx()) {
                drop(start.line(ctx, CLIENT_CLOSED));
            }
        }
    }
}

impl<F, RB> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Answer<RB>, Infallible>> + InFlight,
{
    type Output = Result<Answer<LoggedBody<RB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(answer) = std::task::ready!(this.fut.poll(cx));
        let line = this.start.take().map(|s| s.line(&answer.ctx, answer.res.status().as_u16()));
        Poll::Ready(Ok(answer.map_body(|inner| LoggedBody { inner, line })))
    }
}

impl<F: InFlight> InFlight for AccessLogFuture<F> {
    fn ctx(&self) -> Option<&Ctx> {
        self.fut.ctx()
    }
}

/// A line waiting for its response body to end; sent when dropped.
#[derive(Debug)]
struct Pending {
    record: Option<LogRecord>,
    instant: Instant,
    bytes_in: Arc<AtomicU64>,
    writer: Arc<AccessLogWriter>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.duration_us = self.instant.elapsed().as_micros() as u64;
            record.bytes_in = self.bytes_in.load(Ordering::Relaxed);
            self.writer.send(record);
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

//! Body types on the request path: what the app receives and what clients get.
//!
//! Bodies are streamed frame by frame, never buffered whole. The wrappers
//! only count and limit; they add no copies.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body the sidecar sends to the app.
pub type UpstreamBody = LimitedBody<CountedBody<Incoming>>;

/// A response body: streamed from the app, or one the sidecar wrote itself.
#[derive(Debug)]
pub enum ProxyBody {
    Upstream(Incoming),
    Full(Option<Bytes>),
    /// The app's body, seen in passing for a shadow read.
    Shadowed(Box<crate::shadow::Teed>),
}

impl ProxyBody {
    pub fn full(bytes: Bytes) -> Self {
        ProxyBody::Full(Some(bytes))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Shadowed(b) => Pin::new(&mut **b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(b) => b.is_end_stream(),
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Shadowed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(b) => b.size_hint(),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Shadowed(b) => b.size_hint(),
        }
    }
}

/// A request body grew past `limits.max_body_bytes` while streaming.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

pin_project! {
    /// Fails the stream once more than `limit` bytes went through, so a
    /// client that lies about (or omits) Content-Length is still bounded.
    #[derive(Debug)]
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
    }
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, limit: u64) -> Self {
        Self { inner, remaining: limit, limit }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.remaining() as u64;
                    if n > *this.remaining {
                        *this.remaining = 0;
                        let limit = *this.limit;
                        return Poll::Ready(Some(Err(BodyTooLarge { limit }.into())));
                    }
                    *this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Counts the data bytes that pass, into a counter shared with the access
    /// log (the body is read on the connection task, the line written later).
    #[derive(Debug)]
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        counter: Option<Arc<AtomicU64>>,
    }
}

impl<B> CountedBody<B> {
    pub fn new(inner: B, counter: Option<Arc<AtomicU64>>) -> Self {
        Self { inner, counter }
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(counter)) = (&polled, this.counter.as_ref()) {
            if let Some(data) = frame.data_ref() {
                counter.fetch_add(data.remaining() as u64, Ordering::Relaxed);
            }
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

/// Whether `err` (or anything in its source chain) is a [`BodyTooLarge`].
pub fn is_body_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyTooLarge>() {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::collections::VecDeque;

    /// Yields its chunks one frame at a time, like a streamed upload.
    struct Chunks(VecDeque<&'static str>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(Bytes::from(c)))))
        }
    }

    #[tokio::test]
    async fn limited_body_fails_past_the_limit() {
        let body = LimitedBody::new(Chunks(["hello ", "world"].into()), 8);
        let err = body.collect().await.unwrap_err();
        assert!(is_body_too_large(err.as_ref()));
        let ok = LimitedBody::new(Chunks(["1234", "5678"].into()), 8);
        assert_eq!(ok.collect().await.unwrap().to_bytes().len(), 8);
    }

    #[tokio::test]
    async fn counted_body_counts() {
        let counter = Arc::new(AtomicU64::new(0));
        let body = CountedBody::new(Full::new(Bytes::from("abcdef")), Some(counter.clone()));
        body.collect().await.unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), 6);
    }
}

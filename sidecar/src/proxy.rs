//! The innermost service: forward the request to the app on loopback.
//!
//! One pooled hyper client (HTTP/1.1 keep-alive to the app) per config
//! snapshot; bodies stream through in both directions. Failures map to the
//! public error shape: app unreachable → 503 within the connect timeout, a
//! body over the limit → 413, anything else → 502. The cause goes to the
//! log with the request id, never to the client.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Response, Uri, Version};
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project_lite::pin_project;
use tokio::sync::Semaphore;
use tower::Service;

use crate::app_conn::AppConnector;
use crate::body::{ProxyBody, UpstreamBody, is_body_too_large};
use crate::error::Reject;
use crate::layers::exchange::AppRequest;
use crate::layers::headers::X_REQUEST_ID;
use crate::layers::trace::TRACEPARENT;
use paymesh_otel::TraceContext;
use paymesh_process::Address;

pub type Upstream = Client<AppConnector, UpstreamBody>;
/// The pool of the sidecar's own requests to the app.
pub type SidePool = Client<AppConnector, http_body_util::Empty<bytes::Bytes>>;

/// Idle app connections the pool keeps at most. A burst of 10,000
/// concurrent requests opens as many app connections; unbounded, they would
/// all stay for the idle timeout (8,372 of them, 240 MB, measured after such
/// a burst), while steady traffic needs only as many as are in flight at
/// once, and those are not idle.
pub const APP_POOL_MAX_IDLE: usize = 512;

/// A pooled keep-alive client to the app at `app`, keeping at most
/// [`APP_POOL_MAX_IDLE`] idle connections and, with `open`, opening one
/// only with a permit of it ([`AppConnector`]).
pub fn upstream_client<B>(
    app: &Address,
    connect_timeout: Duration,
    open: Option<Arc<Semaphore>>,
) -> Client<AppConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pooled_client(app, connect_timeout, APP_POOL_MAX_IDLE, open)
}

/// [`upstream_client`] with another bound on idle connections.
pub fn pooled_client<B>(
    app: &Address,
    connect_timeout: Duration,
    max_idle: usize,
    open: Option<Arc<Semaphore>>,
) -> Client<AppConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(max_idle)
        .build(AppConnector::new(app, connect_timeout, open))
}

/// The app on loopback, through the snapshot's connection pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Proxy;

impl Service<AppRequest<UpstreamBody>> for Proxy {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, AppRequest { snap, mut req }: AppRequest<UpstreamBody>) -> ProxyFuture {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(snap.app_authority.clone());
        parts.path_and_query =
            Some(req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
        *req.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path are set");
        // Whatever the client spoke, the app hop is HTTP/1.1 keep-alive.
        *req.version_mut() = Version::HTTP_11;
        let request_id = req.headers().get(&X_REQUEST_ID).cloned();
        let traceparent = req.headers().get(&TRACEPARENT).cloned();
        ProxyFuture { fut: snap.upstream.request(req), request_id, traceparent }
    }
}

pin_project! {
    #[derive(Debug)]
    pub struct ProxyFuture {
        #[pin]
        fut: ResponseFuture,
        request_id: Option<HeaderValue>,
        // Parsed only when there is something to log.
        traceparent: Option<HeaderValue>,
    }
}

impl Future for ProxyFuture {
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(Ok(match std::task::ready!(this.fut.poll(cx)) {
            Ok(res) => res.map(ProxyBody::Upstream),
            Err(e) => {
                let reject = if e.is_connect() {
                    Reject::AppUnavailable
                } else if is_body_too_large(&e) {
                    Reject::BodyTooLarge
                } else {
                    Reject::BadGateway
                };
                if reject != Reject::BodyTooLarge {
                    let trace = this.traceparent.as_ref().and_then(|v| TraceContext::parse(v.as_bytes()));
                    tracing::warn!(
                        request_id = ?this.request_id,
                        trace_id = trace.map(|t| t.trace_hex()),
                        span_id = trace.map(|t| t.span_hex()),
                        error = %ErrorChain(&e),
                        status = reject.status().as_u16(),
                        "app request failed"
                    );
                }
                reject.response()
            }
        }))
    }
}

/// Displays an error with its sources, `a: b: c`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}

//! The admin listener: health, readiness, metrics and state for operators.
//!
//! Plain HTTP/1.1 on its own port, apart from client traffic. Reads
//! (`/healthz`, `/readyz`, `/metrics`, `/admin/state`) are open to any peer
//! that can reach the port and change nothing; anything that changes state
//! or costs CPU (reload, component pins, profiles) answers only loopback
//! peers that present the admin token (`admin.token_file`), and nobody at
//! all while no token is configured: inside a pod, loopback is shared with
//! every container and a mesh proxy, so it is no boundary by itself. It
//! keeps serving while the proxy drains, so `/readyz` can say 503 to the load
//! balancer, and while the public listener is saturated: it has its own
//! small connection budget inside the descriptors the public one leaves.

mod components;
mod profile;
mod state;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::connections::ADMIN_MAX_CONNECTIONS;
use crate::error::Reject;
use crate::readiness::readiness;
use crate::state::Shared;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Beyond the budget, connections wait in the accept queue (holding no
    // descriptor of ours) until one of the served ones ends; each is
    // bounded by the header timeout below.
    let budget = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    loop {
        let permit = budget.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (stream, peer) = paymesh_process::accept(&listener, std::time::Duration::from_millis(50)).await;
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(req, shared, peer).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The endpoints that read a body or take time, then the quick ones.
async fn route(req: Request<Incoming>, shared: Arc<Shared>, peer: SocketAddr) -> Response<Full<Bytes>> {
    if let Some(name) = req.uri().path().strip_prefix(components::PREFIX) {
        let name = name.to_owned();
        return components::handle(req, &shared, peer, &name).await;
    }
    if req.uri().path() == profile::PATH {
        return profile::handle(req, shared, peer).await;
    }
    handle(&req, &shared, peer)
}

fn handle(req: &Request<Incoming>, shared: &Shared, peer: SocketAddr) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => match readiness(shared) {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
        },
        (&Method::GET, "/metrics") => {
            let body = shared.metrics.render(&shared.migration, &shared.components);
            let mut res = text(StatusCode::OK, body);
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            res
        }
        (&Method::GET, "/admin/state") => json(StatusCode::OK, state::render(shared)),
        (&Method::POST, "/admin/reload") => {
            if let Some(refused) = authorize(req, shared, peer) {
                return refused;
            }
            shared.reload.notify_one();
            text(StatusCode::ACCEPTED, "reload requested\n")
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/admin/state" | "/admin/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `None` if a state-changing request may go ahead, else the refusal:
/// 403 unless the peer is on loopback (an IPv4-mapped one too, for an admin
/// listener on `[::]`), then 401 unless it presents the admin token.
fn authorize<B>(req: &Request<B>, shared: &Shared, peer: SocketAddr) -> Option<Response<Full<Bytes>>> {
    if !peer.ip().to_canonical().is_loopback() {
        return Some(text(StatusCode::FORBIDDEN, "state changes and profiles are allowed from loopback only\n"));
    }
    let reject = match (&shared.live.load().config.admin_token, bearer(req)) {
        (None, _) => Reject::AdminTokenNotConfigured,
        (Some(_), None) => Reject::AdminTokenMissing,
        (Some(token), Some(presented)) if token.matches(presented) => return None,
        (Some(_), Some(_)) => Reject::AdminTokenInvalid,
    };
    tracing::warn!(%peer, path = req.uri().path(), reason = %reject, "admin request refused");
    let mut res = json(reject.status(), reject.body().to_owned());
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"paymesh-admin\""));
    Some(res)
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer<B>(req: &Request<B>) -> Option<&[u8]> {
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| value[7..].trim_ascii())
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = text(status, body);
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

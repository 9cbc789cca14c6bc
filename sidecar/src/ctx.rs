//! What the sidecar knows about one request, carried through the stack.
//!
//! A [`Ctx`] is made once per request, by the first step of the stack
//! (`stack::NewCtx`), with the live config snapshot loaded once for the
//! whole request. It travels by value: each step takes a [`Call`] (the
//! request and its context) and gives back an [`Answer`] (the response and
//! the same context), so no step can meet a request without one, and the
//! outer steps (metrics, access log) label every answer from it. The
//! request's own extensions stay the client's.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};

use crate::migration::{Feature, Route};
use crate::state::{ClientEntry, Snapshot};

/// Facts about the connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The client id a verified TLS client certificate maps to, if any.
    pub cert_client: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub struct Ctx {
    pub conn: Arc<ConnInfo>,
    /// The config this request runs under, start to end, even if a reload
    /// swaps in another meanwhile.
    pub snap: Arc<Snapshot>,
    pub request_id: HeaderValue,
    pub feature: Feature,
    pub route: Route,
    /// Set by authentication (see `layers::auth::Authenticated`).
    pub client: Option<Arc<ClientEntry>>,
    /// Header fields as the client sent them, before the sidecar removed or
    /// added any: what `limits::CLIENT_MAX_HEADERS` bounds.
    pub client_headers: usize,
    /// The sidecar's span of this request (set by `layers::trace`), or the
    /// caller's when the sidecar records none: what log lines carry.
    pub trace: Option<paymesh_otel::TraceContext>,
}

impl Ctx {
    pub fn new(conn: Arc<ConnInfo>, snap: Arc<Snapshot>, client_headers: usize) -> Self {
        Self {
            conn,
            snap,
            request_id: HeaderValue::from_static(""),
            feature: Feature::Other,
            route: Route::None,
            client: None,
            client_headers,
            trace: None,
        }
    }
}

/// A request as it enters the stack: the connection it came on.
#[derive(Debug)]
pub struct Accepted<B> {
    pub conn: Arc<ConnInfo>,
    pub req: Request<B>,
}

/// A request on its way through the stack, with its context.
#[derive(Debug)]
pub struct Call<B> {
    pub ctx: Ctx,
    pub req: Request<B>,
}

impl<B> Call<B> {
    /// The answer to this call.
    pub fn answer<RB>(self, res: Response<RB>) -> Answer<RB> {
        Answer { ctx: self.ctx, res }
    }

    pub fn map_body<B2>(self, f: impl FnOnce(B) -> B2) -> Call<B2> {
        Call { ctx: self.ctx, req: self.req.map(f) }
    }
}

/// A response on its way out of the stack, with the request's context.
#[derive(Debug)]
pub struct Answer<B> {
    pub ctx: Ctx,
    pub res: Response<B>,
}

impl<B> Answer<B> {
    pub fn map_body<B2>(self, f: impl FnOnce(B) -> B2) -> Answer<B2> {
        Answer { ctx: self.ctx, res: self.res.map(f) }
    }
}

/// A request future that can tell where its request stands: what the outer
/// steps log and count for a request cancelled before its answer (a client
/// that hung up, an HTTP/2 `RST_STREAM`, the drain deadline).
pub trait InFlight {
    /// The context as the innermost step holding it has it now.
    fn ctx(&self) -> Option<&Ctx>;
}

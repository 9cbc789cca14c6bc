//! What the sidecar knows about one request, carried through the stack.
//!
//! The server puts a `Ctx` in the request's extensions; layers fill it in
//! (request id, feature, client, route) and whichever service answers moves
//! it into the response's extensions, so the outer layers (metrics, access
//! log) can label the answer without sharing state across tasks.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;

use crate::migration::{Feature, Route};
use crate::state::ClientEntry;

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
    pub request_id: HeaderValue,
    pub feature: Feature,
    pub route: Route,
    pub client: Option<Arc<ClientEntry>>,
    /// Header fields as the client sent them, before the sidecar removed or
    /// added any: what `limits::CLIENT_MAX_HEADERS` bounds.
    pub client_headers: usize,
}

impl Ctx {
    pub fn new(conn: Arc<ConnInfo>) -> Self {
        Self {
            conn,
            request_id: HeaderValue::from_static(""),
            feature: Feature::Other,
            route: Route::None,
            client: None,
            client_headers: 0,
        }
    }
}

/// Takes the `Ctx` out of a request or response's extensions.
pub fn take(ext: &mut http::Extensions) -> Option<Ctx> {
    ext.remove::<Ctx>()
}

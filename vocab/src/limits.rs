//! Limits the sidecar and the app must agree on, or a request the sidecar
//! accepted could be refused by the app for the sidecar's own additions.

/// Header fields a client's request may carry into the sidecar: hyper's
/// HTTP/1 parser stops there (431), and the sidecar refuses an HTTP/2
/// request with more (431, in the public error shape).
pub const CLIENT_MAX_HEADERS: usize = 100;

/// Header fields the sidecar may add on the way to the app: `x-request-id`,
/// `x-paymesh-client`, `x-paymesh-route`, `host` (an HTTP/2 client sends
/// `:authority` instead) and `transfer-encoding` (a body of unknown length
/// on the HTTP/1.1 app hop), with room for a few more. What it strips
/// (hop-by-hop headers, a client's `x-paymesh-*`) only lowers the count.
pub const SIDECAR_ADDED_HEADERS: usize = 8;

/// Header fields the app (and every service behind the shared accept loop)
/// accepts: all that a request the sidecar accepted can carry.
pub const APP_MAX_HEADERS: usize = CLIENT_MAX_HEADERS + SIDECAR_ADDED_HEADERS;

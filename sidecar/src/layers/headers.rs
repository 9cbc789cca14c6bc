//! Header hygiene at the edge: what must not pass, and a request id for all.
//!
//! Removes hop-by-hop headers (RFC 9110 §7.6.1) in both directions and every
//! `x-paymesh-*` header a client sent, so that only the sidecar's own reach
//! the app. Keeps a sane client `x-request-id` or makes one, and returns it
//! on the response. Never rejects a request.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};
use pin_project_lite::pin_project;
use tower::Service;

use super::Step;
use crate::ctx::{Answer, Call};
use crate::migration::Feature;
use paymesh_vocab::headers;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static(headers::REQUEST_ID);
const PAYMESH_PREFIX: &str = headers::PAYMESH_PREFIX;
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Header hygiene; holds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers;

impl<S, B, RB> Service<Call<B>> for Step<Headers, S>
where
    S: Service<Call<B>, Response = Answer<RB>, Error = Infallible>,
{
    infallible_inner!(Answer<RB>, HeadersFuture<S::Future>);

    fn call(&mut self, mut call: Call<B>) -> Self::Future {
        let headers = call.req.headers_mut();
        strip_hop_by_hop(headers);
        strip_paymesh(headers);
        let request_id = match headers.get(&X_REQUEST_ID) {
            Some(v) if acceptable_request_id(v) => v.clone(),
            _ => {
                let id = next_request_id();
                headers.insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        call.ctx.feature = Feature::from_path(call.req.uri().path());
        call.ctx.request_id = request_id;
        HeadersFuture { fut: self.inner.call(call) }
    }
}

pin_project! {
    #[derive(Debug)]
    pub struct HeadersFuture<F> {
        #[pin]
        fut: F,
    }
}

impl<F, RB> Future for HeadersFuture<F>
where
    F: Future<Output = Result<Answer<RB>, Infallible>>,
{
    type Output = Result<Answer<RB>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(mut answer) = std::task::ready!(self.project().fut.poll(cx));
        let headers = answer.res.headers_mut();
        strip_hop_by_hop(headers);
        headers.entry(&X_REQUEST_ID).or_insert_with(|| answer.ctx.request_id.clone());
        Poll::Ready(Ok(answer))
    }
}

/// Removes the hop-by-hop headers, including any the Connection header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        // Collect only names beyond the fixed set below, so the common
        // `Connection: keep-alive` / `close` costs no allocation.
        let listed: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| {
                !t.eq_ignore_ascii_case("close")
                    && !t.eq_ignore_ascii_case("keep-alive")
                    && !t.eq_ignore_ascii_case("upgrade")
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    for name in [KEEP_ALIVE, PROXY_CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
}

/// Removes every `x-paymesh-*` header; only the sidecar may set them.
pub fn strip_paymesh(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| k.as_str().starts_with(PAYMESH_PREFIX)) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with(PAYMESH_PREFIX)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// A client's id is kept if it is short visible ASCII, so it is safe to
/// log and to echo back.
pub fn acceptable_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| (0x21..0x7f).contains(c))
}

thread_local! {
    // A random per-thread prefix and a counter: unique without sharing a
    // counter (and its cache line) across cores.
    static ID_STATE: Cell<(u64, u64)> = Cell::new((random_u64(), 0));
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

/// A fresh 32-hex-digit request id.
pub fn next_request_id() -> HeaderValue {
    let (prefix, n) = ID_STATE.with(|s| {
        let (p, n) = s.get();
        s.set((p, n.wrapping_add(1)));
        (p, n)
    });
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, v) in [prefix, n].into_iter().enumerate() {
        for j in 0..16 {
            buf[i * 16 + j] = HEX[((v >> (60 - 4 * j)) & 0xf) as usize];
        }
    }
    HeaderValue::from_bytes(&buf).expect("hex is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paymesh_headers_are_stripped_whatever_their_case() {
        let mut h = HeaderMap::new();
        h.insert("X-Paymesh-Route", HeaderValue::from_static("orchestration"));
        h.insert("x-paymesh-client", HeaderValue::from_static("admin"));
        h.insert("x-paymesh-anything", HeaderValue::from_static("1"));
        h.insert("x-paymeshy", HeaderValue::from_static("kept"));
        h.insert("authorization", HeaderValue::from_static("Bearer k"));
        strip_paymesh(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(h.contains_key("x-paymeshy") && h.contains_key("authorization"));
    }

    #[test]
    fn hop_by_hop_headers_and_connection_listed_ones_go() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.append(CONNECTION, HeaderValue::from_static("x-other"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("traceparent", HeaderValue::from_static("00-abc-def-01"));
        h.insert("content-length", HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["content-length", "traceparent"]);
    }

    #[test]
    fn request_ids_are_unique_hex() {
        let a = next_request_id();
        let b = next_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert!(acceptable_request_id(&a));
        assert!(!acceptable_request_id(&HeaderValue::from_static("has space")));
        assert!(!acceptable_request_id(&HeaderValue::from_static("")));
    }
}

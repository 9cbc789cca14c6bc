//! Authentication: who is calling, from an API key or a client certificate.
//!
//! `Authorization: Bearer <key>` is hashed with SHA-256 and compared with
//! every configured hash in constant time. Without a key, a verified mTLS
//! certificate that maps to a client (`cert_names`) authenticates it. On
//! success the client id goes into `x-paymesh-client` and the key itself
//! stops here: the app never sees it. Never shed, never skipped.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, Request, Response};
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

use super::Rejectable;
use crate::body::ProxyBody;
use crate::ctx::{self, Ctx};
use crate::error::Reject;
use crate::state::{ClientEntry, Shared};

pub static X_PAYMESH_CLIENT: HeaderName = HeaderName::from_static(paymesh_vocab::headers::CLIENT);

#[derive(Debug, Clone)]
pub struct AuthLayer {
    shared: Arc<Shared>,
}

impl AuthLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, shared: self.shared.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Rejectable<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.authenticate(&req) {
            Ok(client) => {
                let headers = req.headers_mut();
                headers.remove(AUTHORIZATION);
                headers.insert(X_PAYMESH_CLIENT.clone(), client.header.clone());
                if let Some(ctx) = req.extensions_mut().get_mut::<Ctx>() {
                    ctx.client = Some(client);
                }
                Rejectable::pass(self.inner.call(req))
            }
            Err(reject) => Rejectable::reject(reject.response(ctx::take(req.extensions_mut()))),
        }
    }
}

impl<S> Auth<S> {
    fn authenticate<B>(&self, req: &Request<B>) -> Result<Arc<ClientEntry>, Reject> {
        let snap = self.shared.live.load();
        let cert_client = req.extensions().get::<Ctx>().and_then(|c| c.conn.cert_client.as_deref());
        match req.headers().get(AUTHORIZATION) {
            Some(value) => {
                let key = bearer_token(value).ok_or(Reject::InvalidKey)?;
                let digest: [u8; 32] = Sha256::digest(key).into();
                let client = snap.clients.by_key_digest(&digest).ok_or(Reject::InvalidKey)?;
                // A key and a certificate that name different clients is
                // someone borrowing credentials: refuse rather than guess.
                match cert_client {
                    Some(id) if id != &*client.id => Err(Reject::InvalidKey),
                    _ => Ok(client.clone()),
                }
            }
            None => cert_client.and_then(|id| snap.clients.by_id(id)).cloned().ok_or(Reject::MissingKey),
        }
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive.
pub fn bearer_token(value: &HeaderValue) -> Option<&[u8]> {
    let v = value.as_bytes();
    let (scheme, rest) = v.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_parse() {
        let t = |s: &'static str| bearer_token(&HeaderValue::from_static(s)).map(<[u8]>::to_vec);
        assert_eq!(t("Bearer sk_test_1"), Some(b"sk_test_1".to_vec()));
        assert_eq!(t("bearer  sk_test_1 "), Some(b"sk_test_1".to_vec()));
        assert_eq!(t("Basic abc"), None);
        assert_eq!(t("Bearer "), None);
        assert_eq!(t("Bearer"), None);
    }
}

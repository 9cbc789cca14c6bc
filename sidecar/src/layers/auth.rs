//! Authentication: who is calling, from an API key or a client certificate.
//!
//! `Authorization: Bearer <key>` is hashed with SHA-256 and looked up by
//! that digest (the cost does not grow with the number of clients; see
//! `Clients::by_key_digest`). Without a key, a verified mTLS certificate
//! that maps to a client (`cert_names`) authenticates it. On success the
//! client id goes into `x-paymesh-client` and the key itself stops here:
//! the app never sees it. Never shed, never skipped.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::Filter;
use crate::body::ProxyBody;
use crate::ctx::{Answer, Call, Ctx};
use crate::error::Reject;
use crate::state::ClientEntry;

pub static X_PAYMESH_CLIENT: HeaderName = HeaderName::from_static(paymesh_vocab::headers::CLIENT);

/// A call whose client is proven: only this module can make one, so a step
/// that takes it (the throttle) can never meet an unauthenticated request.
#[derive(Debug)]
pub struct Authenticated<B> {
    call: Call<B>,
    client: Arc<ClientEntry>,
}

impl<B> Authenticated<B> {
    pub fn client(&self) -> &Arc<ClientEntry> {
        &self.client
    }

    pub fn call(&self) -> &Call<B> {
        &self.call
    }

    /// The call, its context now naming the client.
    pub fn into_call(self) -> Call<B> {
        let mut call = self.call;
        call.ctx.client = Some(self.client);
        call
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Auth;

impl<B> Filter<Call<B>> for Auth {
    type Out = Authenticated<B>;

    fn check(&self, mut call: Call<B>) -> Result<Authenticated<B>, Answer<ProxyBody>> {
        match authenticate(&call.ctx, call.req.headers().get(AUTHORIZATION)) {
            Ok(client) => {
                let headers = call.req.headers_mut();
                headers.remove(AUTHORIZATION);
                headers.insert(X_PAYMESH_CLIENT.clone(), client.header.clone());
                Ok(Authenticated { call, client })
            }
            Err(reject) => Err(call.answer(reject.response())),
        }
    }
}

/// The client a request's key (or, without one, its verified certificate)
/// names, in the clients of the request's snapshot.
fn authenticate(ctx: &Ctx, authorization: Option<&HeaderValue>) -> Result<Arc<ClientEntry>, Reject> {
    let clients = &ctx.snap.clients;
    let cert_client = ctx.conn.cert_client.as_deref();
    match authorization {
        Some(value) => {
            let key = bearer_token(value).ok_or(Reject::InvalidKey)?;
            let digest: [u8; 32] = Sha256::digest(key).into();
            let client = clients.by_key_digest(&digest).ok_or(Reject::InvalidKey)?;
            // A key and a certificate that name different clients is
            // someone borrowing credentials: refuse rather than guess.
            match cert_client {
                Some(id) if id != &*client.id => Err(Reject::InvalidKey),
                _ => Ok(client.clone()),
            }
        }
        None => cert_client.and_then(|id| clients.by_id(id)).cloned().ok_or(Reject::MissingKey),
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

//! A request with more header fields than the app accepts is refused here,
//! 431 in the public error shape, rather than by the app after the sidecar
//! has added its own.
//!
//! The limits are one set of constants shared with the app
//! (`paymesh_vocab::limits`): a client may send `CLIENT_MAX_HEADERS`, and the
//! app accepts that many plus what the sidecar adds. hyper's HTTP/1 parser
//! already stops at the same count; HTTP/2 has no count limit of its own,
//! so this layer is what holds for it. Never shed.

use paymesh_vocab::limits::CLIENT_MAX_HEADERS;

use super::Filter;
use crate::body::ProxyBody;
use crate::ctx::{Answer, Call};
use crate::error::Reject;

#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderLimit;

impl<B> Filter<Call<B>> for HeaderLimit {
    type Out = Call<B>;

    fn check(&self, call: Call<B>) -> Result<Call<B>, Answer<ProxyBody>> {
        // Counted as the client sent them (the server notes it in the Ctx,
        // every value of a repeated name counting, as in hyper's parser),
        // not as the hygiene layer left them: the limit is the client's.
        if call.ctx.client_headers > CLIENT_MAX_HEADERS {
            return Err(call.answer(Reject::TooManyHeaders.response()));
        }
        Ok(call)
    }
}

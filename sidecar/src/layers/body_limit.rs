//! `limits.max_body_bytes`: refuse what is too big, bound what is streamed.
//!
//! A declared Content-Length over the limit is refused with 413 before a byte
//! is read. Otherwise the body is wrapped so the stream fails once it passes
//! the limit; the proxy turns that failure into 413 if the app has not
//! answered yet.

use http::header::CONTENT_LENGTH;

use super::Filter;
use crate::body::{LimitedBody, ProxyBody};
use crate::ctx::{Answer, Call};
use crate::error::Reject;

#[derive(Debug, Clone, Copy, Default)]
pub struct BodyLimit;

impl<B> Filter<Call<B>> for BodyLimit {
    type Out = Call<LimitedBody<B>>;

    fn check(&self, call: Call<B>) -> Result<Call<LimitedBody<B>>, Answer<ProxyBody>> {
        let limit = call.ctx.snap.config.limits.max_body_bytes;
        let declared =
            call.req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(call.answer(Reject::BodyTooLarge.response()));
        }
        Ok(call.map_body(|b| LimitedBody::new(b, limit)))
    }
}

//! `limits.max_inflight`: answer 503 at once rather than queue without bound.
//!
//! The count is the one `paymesh_inflight_requests` gauge, which the metrics
//! step (outside this one) raises for every request until its response
//! headers are ready or it is abandoned; so it includes this request, and
//! the check is one relaxed load. It stands before authentication so an
//! overload of bad keys is also bounded.

use prometheus::IntGauge;

use super::Filter;
use crate::body::ProxyBody;
use crate::ctx::{Answer, Call};
use crate::error::Reject;

#[derive(Debug, Clone)]
pub struct LoadShed {
    inflight: IntGauge,
}

impl LoadShed {
    /// `inflight` must count this request already: the metrics step's gauge.
    pub fn new(inflight: IntGauge) -> Self {
        Self { inflight }
    }
}

impl<B> Filter<Call<B>> for LoadShed {
    type Out = Call<B>;

    fn check(&self, call: Call<B>) -> Result<Call<B>, Answer<ProxyBody>> {
        // Others in flight (this one aside) at max_inflight: refuse.
        if self.inflight.get() > i64::from(call.ctx.snap.config.limits.max_inflight) {
            return Err(call.answer(Reject::Overloaded.response()));
        }
        Ok(call)
    }
}

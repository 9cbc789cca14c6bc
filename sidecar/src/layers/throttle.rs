//! Per-client throttling with a lock-free token bucket.
//!
//! Each client has a GCRA bucket (the "virtual scheduling" form of a token
//! bucket) in a single `AtomicU64`: one compare-and-swap per request, no
//! lock, no background refill. Over the rate, the answer is 429 with
//! `Retry-After` and the `RateLimit-*` headers. Never shed.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::RETRY_AFTER;
use http::{HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

use super::Rejectable;
use crate::body::ProxyBody;
use crate::components::Component;
use crate::config::Rate;
use crate::ctx::{self, Ctx};
use crate::error::Reject;
use crate::state::Shared;

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// A token bucket of `burst` tokens refilled at `per_second`.
#[derive(Debug)]
pub struct TokenBucket {
    /// Theoretical arrival time of the next request, in ns since `epoch()`.
    tat: AtomicU64,
    /// Nanoseconds per token.
    interval: u64,
    /// How far `tat` may run ahead of now: `burst` tokens' worth.
    tolerance: u64,
    burst: u32,
}

/// The bucket's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow { remaining: u32 },
    Deny { retry_after: Duration, reset: Duration },
}

/// The longest span the bucket's arithmetic works with: a token's interval
/// and a burst's window must each fit in it. A quarter of `u64` nanoseconds
/// (about 146 years) leaves room for `now + tolerance + interval` without
/// overflow for as long as any process runs.
pub const MAX_SPAN_NS: u64 = u64::MAX / 4;

impl TokenBucket {
    /// Whether `rate`'s arithmetic is representable: a token every 1 ns or
    /// slower, and a burst window of at most [`MAX_SPAN_NS`]. Config
    /// validation refuses a rate this refuses; `new` clamps one anyway.
    pub fn check(rate: Rate) -> Result<(), String> {
        if !rate.per_second.is_finite() || rate.per_second <= 0.0 {
            return Err("per_second must be a positive number".into());
        }
        if rate.per_second > 1e9 {
            return Err(format!("per_second {} is above the highest representable rate, 1e9", rate.per_second));
        }
        let interval = 1e9 / rate.per_second;
        let window = interval * f64::from(rate.burst);
        if interval > MAX_SPAN_NS as f64 || window > MAX_SPAN_NS as f64 {
            return Err(format!(
                "burst {} at per_second {} refills over {:.0} years; at most {:.0} years can be represented",
                rate.burst,
                rate.per_second,
                window / 1e9 / 31_557_600.0,
                MAX_SPAN_NS as f64 / 1e9 / 31_557_600.0,
            ));
        }
        Ok(())
    }

    pub fn new(rate: Rate) -> Self {
        // `as` saturates (and NaN becomes 0): clamp into [1, MAX_SPAN_NS] so
        // the sums in `try_acquire` cannot reach `u64::MAX` either.
        let interval = ((1e9 / rate.per_second) as u64).clamp(1, MAX_SPAN_NS);
        Self {
            tat: AtomicU64::new(0),
            interval,
            tolerance: interval.saturating_mul(u64::from(rate.burst)).min(MAX_SPAN_NS),
            burst: rate.burst,
        }
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Takes a token at time `now` (ns since `epoch()`), if there is one.
    pub fn try_acquire(&self, now: u64) -> Decision {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            // Saturating: no rate, burst or clock reading may panic or wrap.
            let next = tat.max(now).saturating_add(self.interval);
            let limit = now.saturating_add(self.tolerance);
            if next > limit {
                return Decision::Deny {
                    retry_after: Duration::from_nanos(next - limit),
                    reset: Duration::from_nanos(tat.saturating_sub(now)),
                };
            }
            match self.tat.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    let remaining = (limit - next) / self.interval;
                    return Decision::Allow { remaining: remaining.min(u64::from(u32::MAX)) as u32 };
                }
                Err(actual) => tat = actual,
            }
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Now, in ns since the process's bucket epoch.
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

#[derive(Debug, Clone)]
pub struct ThrottleLayer {
    shared: Arc<Shared>,
}

impl ThrottleLayer {
    pub fn new(shared: Arc<Shared>) -> Self {
        // Fix the epoch before the first request races to do it.
        let _ = epoch();
        Self { shared }
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle { inner, shared: self.shared.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Throttle<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for Throttle<S>
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
        let Some(client) = req.extensions().get::<Ctx>().and_then(|c| c.client.clone()) else {
            // Auth stands before this layer; without a client there is
            // nothing to charge.
            return Rejectable::pass(self.inner.call(req));
        };
        match client.bucket.try_acquire(now_ns()) {
            Decision::Allow { .. } => Rejectable::pass(self.inner.call(req)),
            Decision::Deny { retry_after, reset } => {
                if self.shared.components.enabled(Component::DetailedMetrics) {
                    client.throttled.inc();
                }
                let mut res = Reject::RateLimited.response(ctx::take(req.extensions_mut()));
                let h = res.headers_mut();
                h.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(retry_after)));
                h.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(client.bucket.burst()));
                h.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from_static("0"));
                h.insert(RATELIMIT_RESET.clone(), HeaderValue::from(ceil_secs(reset)));
                Rejectable::reject(res)
            }
        }
    }
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn bucket(per_second: f64, burst: u32) -> TokenBucket {
        TokenBucket::new(Rate { per_second, burst })
    }

    #[test]
    fn burst_then_refill() {
        let b = bucket(10.0, 3);
        let t0 = 100 * S;
        assert_eq!(b.try_acquire(t0), Decision::Allow { remaining: 2 });
        assert_eq!(b.try_acquire(t0), Decision::Allow { remaining: 1 });
        assert_eq!(b.try_acquire(t0), Decision::Allow { remaining: 0 });
        let Decision::Deny { retry_after, reset } = b.try_acquire(t0) else {
            panic!("fourth request in the same instant must be denied");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        assert_eq!(reset, Duration::from_millis(300));
        // One token back after 100 ms.
        assert_eq!(b.try_acquire(t0 + S / 10), Decision::Allow { remaining: 0 });
        // Full again after a long pause, never more than burst.
        assert_eq!(b.try_acquire(t0 + 10 * S), Decision::Allow { remaining: 2 });
    }

    #[test]
    fn sustained_rate_is_respected() {
        let b = bucket(100.0, 10);
        let mut allowed = 0;
        // 10 seconds of 1000 requests per second.
        for i in 0..10_000u64 {
            if matches!(b.try_acquire(S + i * S / 1000), Decision::Allow { .. }) {
                allowed += 1;
            }
        }
        assert!((1000..=1011).contains(&allowed), "{allowed}");
    }

    #[test]
    fn concurrent_takers_never_exceed_burst() {
        let b = Arc::new(bucket(0.001, 100));
        let now = 5 * S;
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..100).filter(|_| matches!(b.try_acquire(now), Decision::Allow { .. })).count()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 100);
    }

    #[test]
    fn extreme_rates_neither_panic_nor_wrap() {
        // The review's case: a token every 1000 s, burst 4e9 (a window of
        // 1.3e5 years), on the very first request.
        let b = bucket(0.001, 4_000_000_000);
        assert!(matches!(b.try_acquire(S), Decision::Allow { .. }));
        assert!(matches!(b.try_acquire(u64::MAX), Decision::Allow { .. } | Decision::Deny { .. }));
        // A token every nanosecond, burst 1.
        let b = bucket(1e9, 1);
        assert_eq!(b.try_acquire(S), Decision::Allow { remaining: 0 });
        assert!(matches!(b.try_acquire(S), Decision::Deny { .. }));
        assert_eq!(b.try_acquire(S + 1), Decision::Allow { remaining: 0 });
        // The largest burst at a sane rate.
        let b = bucket(1000.0, u32::MAX);
        assert!(matches!(b.try_acquire(S), Decision::Allow { remaining } if remaining == u32::MAX - 1));
        // A vanishing rate: one token, then a denial that waits the clamped
        // interval, whatever the clock says.
        for per_second in [1e-300, f64::MIN_POSITIVE, 1e-12] {
            let b = bucket(per_second, 1);
            assert!(matches!(b.try_acquire(S), Decision::Allow { .. }));
            assert!(matches!(b.try_acquire(S), Decision::Deny { .. }));
            let _ = b.try_acquire(u64::MAX);
            let _ = b.try_acquire(u64::MAX - 1);
        }
        // Far more than representable, so clamped: still no panic.
        let b = bucket(1e300, u32::MAX);
        for t in [0, S, u64::MAX / 2, u64::MAX] {
            let _ = b.try_acquire(t);
        }
    }

    #[test]
    fn check_refuses_what_cannot_be_represented() {
        let rate = |per_second, burst| Rate { per_second, burst };
        assert!(TokenBucket::check(rate(0.001, 4_000_000_000)).is_err());
        assert!(TokenBucket::check(rate(1e-12, 1)).is_err());
        assert!(TokenBucket::check(rate(2e9, 1)).is_err());
        assert!(TokenBucket::check(rate(f64::INFINITY, 1)).is_err());
        assert!(TokenBucket::check(rate(0.0, 1)).is_err());
        assert!(TokenBucket::check(rate(1e9, 1)).is_ok());
        assert!(TokenBucket::check(rate(1000.0, u32::MAX)).is_ok());
        assert!(TokenBucket::check(rate(0.001, 1000)).is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
    }
}

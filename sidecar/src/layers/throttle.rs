//! Per-client throttling with a lock-free token bucket.
//!
//! Each client has a GCRA bucket (the "virtual scheduling" form of a token
//! bucket) in a single `AtomicU64`: one compare-and-swap per request, no
//! lock, no background refill. Over the rate, the answer is 429 with
//! `Retry-After` and the `RateLimit-*` headers. Never shed.
//!
//! A `scope: fleet` client's bucket is the same bucket: the fleet task
//! (`crate::fleet`) swaps its rate and burst with [`TokenBucket::set_rate`],
//! plain atomic stores that the request path reads with relaxed loads, so a
//! share change costs a request nothing. Every bucket also counts what it
//! admitted and refused (one relaxed add beside the compare-and-swap, in the
//! same cache line), which is the demand the fleet task reports.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::RETRY_AFTER;
use http::{HeaderName, HeaderValue};

use super::Filter;
use super::auth::Authenticated;
use crate::body::ProxyBody;
use crate::components::{Component, Components};
use crate::config::Rate;
use crate::ctx::Answer;
use crate::error::Reject;

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// A token bucket of `burst` tokens refilled at `per_second`.
///
/// `interval`, `tolerance` and `burst` are atomics only so that
/// [`set_rate`](Self::set_rate) can change them under running requests; a
/// request that reads one old and one new value during a change decides as
/// either rate would have, give or take one token.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct TokenBucket {
    /// Theoretical arrival time of the next request, in ns since `epoch()`.
    tat: AtomicU64,
    /// Requests admitted and refused since the fleet task last took them.
    admitted: AtomicU64,
    refused: AtomicU64,
    /// Nanoseconds per token.
    interval: AtomicU64,
    /// How far `tat` may run ahead of now: `burst` tokens' worth.
    tolerance: AtomicU64,
    burst: AtomicU32,
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
        let (interval, tolerance) = Self::params(rate);
        Self {
            tat: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            interval: AtomicU64::new(interval),
            tolerance: AtomicU64::new(tolerance),
            burst: AtomicU32::new(rate.burst),
        }
    }

    /// `rate` as (ns per token, ns of burst window).
    fn params(rate: Rate) -> (u64, u64) {
        // `as` saturates (and NaN becomes 0): clamp into [1, MAX_SPAN_NS] so
        // the sums in `try_acquire` cannot reach `u64::MAX` either.
        let interval = ((1e9 / rate.per_second) as u64).clamp(1, MAX_SPAN_NS);
        (interval, interval.saturating_mul(u64::from(rate.burst)).min(MAX_SPAN_NS))
    }

    /// Changes the rate and burst in place, keeping the bucket's state: a
    /// lower rate makes requests wait out what they already took, a higher
    /// one is no free burst beyond the new `burst`.
    pub fn set_rate(&self, rate: Rate) {
        let (interval, tolerance) = Self::params(rate);
        self.interval.store(interval, Ordering::Relaxed);
        self.tolerance.store(tolerance, Ordering::Relaxed);
        self.burst.store(rate.burst, Ordering::Relaxed);
    }

    /// The rate in force, as requests per second.
    pub fn per_second(&self) -> f64 {
        1e9 / self.interval.load(Ordering::Relaxed) as f64
    }

    pub fn burst(&self) -> u32 {
        self.burst.load(Ordering::Relaxed)
    }

    /// Admitted and refused requests since the last call (each counter is
    /// taken and zeroed atomically).
    pub fn take_counts(&self) -> (u64, u64) {
        (self.admitted.swap(0, Ordering::Relaxed), self.refused.swap(0, Ordering::Relaxed))
    }

    /// Takes a token at time `now` (ns since `epoch()`), if there is one.
    pub fn try_acquire(&self, now: u64) -> Decision {
        let interval = self.interval.load(Ordering::Relaxed);
        let tolerance = self.tolerance.load(Ordering::Relaxed);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            // Saturating: no rate, burst or clock reading may panic or wrap.
            let next = tat.max(now).saturating_add(interval);
            let limit = now.saturating_add(tolerance);
            if next > limit {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Decision::Deny {
                    retry_after: Duration::from_nanos(next - limit),
                    reset: Duration::from_nanos(tat.saturating_sub(now)),
                };
            }
            match self.tat.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    self.admitted.fetch_add(1, Ordering::Relaxed);
                    let remaining = (limit - next) / interval;
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

/// The per-client throttle. It takes only authenticated calls: a request
/// without a proven client cannot reach it, so cannot pass uncharged.
#[derive(Debug, Clone)]
pub struct Throttle {
    components: Arc<Components>,
}

impl Throttle {
    pub fn new(components: Arc<Components>) -> Self {
        // Fix the epoch before the first request races to do it.
        let _ = epoch();
        Self { components }
    }
}

impl<B> Filter<Authenticated<B>> for Throttle {
    type Out = Authenticated<B>;

    fn check(&self, call: Authenticated<B>) -> Result<Authenticated<B>, Answer<ProxyBody>> {
        let client = call.client();
        match client.bucket.try_acquire(now_ns()) {
            Decision::Allow { .. } => Ok(call),
            Decision::Deny { retry_after, reset } => {
                if self.components.enabled(Component::DetailedMetrics) {
                    client.throttled.inc();
                }
                let mut res = Reject::RateLimited.response();
                let h = res.headers_mut();
                h.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(retry_after)));
                h.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(client.bucket.burst()));
                h.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from_static("0"));
                h.insert(RATELIMIT_RESET.clone(), HeaderValue::from(ceil_secs(reset)));
                Err(call.into_call().answer(res))
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
    fn set_rate_changes_a_running_bucket_in_place() {
        let b = bucket(10.0, 2);
        let t0 = 100 * S;
        assert!(matches!(b.try_acquire(t0), Decision::Allow { .. }));
        assert!(matches!(b.try_acquire(t0), Decision::Allow { .. }));
        assert!(matches!(b.try_acquire(t0), Decision::Deny { .. }));
        // Faster: a token every 10 ms, burst 4. What was taken stays taken
        // (the old rate's 200 ms), so the new rate admits from 170 ms on.
        b.set_rate(Rate { per_second: 100.0, burst: 4 });
        assert_eq!(b.burst(), 4);
        assert!((b.per_second() - 100.0).abs() < 1e-6);
        let allowed = (0..100).filter(|i| matches!(b.try_acquire(t0 + i * S / 100), Decision::Allow { .. })).count();
        assert_eq!(allowed, 83);
        // Slower: one per second from now on, no burst beyond one.
        b.set_rate(Rate { per_second: 1.0, burst: 1 });
        let t1 = t0 + 10 * S;
        let allowed = (0..1000).filter(|i| matches!(b.try_acquire(t1 + i * S / 100), Decision::Allow { .. })).count();
        assert!((10..=11).contains(&allowed), "{allowed}");
        let (admitted, refused) = b.take_counts();
        assert_eq!(admitted as usize + refused as usize, 3 + 100 + 1000);
        assert_eq!(b.take_counts(), (0, 0));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
    }
}

//! W3C trace context (`traceparent`), ids and the sampler.
//!
//! The parser is exact and allocation-free: a header is either a valid
//! version-00 `traceparent` (or a later version read as 00, as the
//! specification asks) or it is ignored and a new trace begins. A hostile
//! header can neither panic the parser nor smuggle bytes into the one we
//! send on.

use std::cell::Cell;

use http::HeaderValue;

/// A span's place in a trace: what `traceparent` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceContext {
    /// A `traceparent` value, or `None` when it is not a valid one.
    pub fn parse(header: &[u8]) -> Option<TraceContext> {
        // version "-" trace-id "-" parent-id "-" trace-flags
        if header.len() < 55 || header[2] != b'-' || header[35] != b'-' || header[52] != b'-' {
            return None;
        }
        let version = hex_u128(&header[0..2])? as u8;
        // ff is forbidden; 00 is exactly 55 bytes; a later version may add
        // fields after another '-'.
        if version == 0xff || (version == 0 && header.len() != 55) || (header.len() > 55 && header[55] != b'-') {
            return None;
        }
        let trace_id = hex_u128(&header[3..35])?;
        let span_id = hex_u128(&header[36..52])? as u64;
        let flags = hex_u128(&header[53..55])? as u8;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(TraceContext { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// The context of a new span of this trace, `span_id` its id.
    pub fn child(&self, span_id: u64, sampled: bool) -> TraceContext {
        TraceContext { trace_id: self.trace_id, span_id, sampled }
    }

    /// The `traceparent` value naming this span as the parent.
    pub fn header(&self) -> HeaderValue {
        let text = format!("00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled));
        HeaderValue::from_str(&text).expect("hex and dashes are a valid header value")
    }

    pub fn trace_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    pub fn span_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}

/// Lowercase hex only (W3C), at most 32 digits.
fn hex_u128(digits: &[u8]) -> Option<u128> {
    let mut v: u128 = 0;
    for &d in digits {
        let n = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u128::from(n);
    }
    Some(v)
}

thread_local! {
    /// Per-thread SplitMix64 state, seeded from the OS once per thread:
    /// ids must not collide across processes, and must cost nothing.
    static STATE: Cell<u64> = Cell::new(getrandom::u64().unwrap_or(0x853c_49e6_748f_ea9b) | 1);
}

fn next_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A new, non-zero span id.
pub fn new_span_id() -> u64 {
    loop {
        let id = next_u64();
        if id != 0 {
            return id;
        }
    }
}

/// A new, non-zero trace id.
pub fn new_trace_id() -> u128 {
    (u128::from(next_u64()) << 64) | u128::from(new_span_id())
}

/// Parent-based sampling with a ratio for new traces: a request that comes
/// with a context keeps its caller's decision; a new trace is sampled when
/// its id falls in the ratio (the same rule as OpenTelemetry's
/// `TraceIdRatioBased`, on the id's low 64 bits, so every service that
/// sees the id decides alike).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// `ratio × 2^64`, saturated.
    bound: u64,
    all: bool,
}

impl Sampler {
    /// `ratio` in [0, 1]; outside, clamped.
    pub fn ratio(ratio: f64) -> Sampler {
        let ratio = if ratio.is_nan() { 0.0 } else { ratio.clamp(0.0, 1.0) };
        Sampler { bound: (ratio * u64::MAX as f64) as u64, all: ratio >= 1.0 }
    }

    pub fn sampled(&self, parent: Option<&TraceContext>, trace_id: u128) -> bool {
        match parent {
            Some(p) => p.sampled,
            None => self.all || (trace_id as u64) < self.bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_a_traceparent() {
        let c = TraceContext::parse(GOOD).unwrap();
        assert_eq!(c.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(c.span_id, 0x00f067aa0ba902b7);
        assert!(c.sampled);
        assert_eq!(c.header().as_bytes(), GOOD);
        let unsampled = TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled);
        // A later version is read as 00, with its extra fields ignored.
        let future = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert_eq!(TraceContext::parse(future), Some(c));
    }

    #[test]
    fn refuses_every_malformed_header() {
        let bad: &[&[u8]] = &[
            b"",
            b"00",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b\u{e9}-01".as_bytes(),
        ];
        for b in bad {
            assert_eq!(TraceContext::parse(b), None, "{:?}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn ids_are_non_zero_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(new_span_id()));
            assert_ne!(new_trace_id(), 0);
        }
    }

    #[test]
    fn the_sampler_follows_the_parent_and_the_ratio() {
        let parent = TraceContext::parse(GOOD).unwrap();
        let off = Sampler::ratio(0.0);
        assert!(off.sampled(Some(&parent), 1), "a sampled parent wins");
        assert!(!Sampler::ratio(1.0).sampled(Some(&TraceContext { sampled: false, ..parent }), 1));
        assert!(!off.sampled(None, new_trace_id()));
        assert!(Sampler::ratio(1.0).sampled(None, u128::MAX));
        let quarter = Sampler::ratio(0.25);
        let n = (0..100_000).filter(|_| quarter.sampled(None, new_trace_id())).count();
        assert!((23_000..27_000).contains(&n), "{n} of 100000 at 0.25");
        assert_eq!(Sampler::ratio(f64::NAN), off);
    }
}

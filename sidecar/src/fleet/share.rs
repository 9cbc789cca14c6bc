//! The pure part of fleet quotas: the member record every sidecar writes
//! to `<prefix>/fleet/<pod>`, its parser, and the split of a client's fleet
//! rate into per-member shares.
//!
//! Member records come from etcd, which any holder of the prefix's write
//! permission can fill: everything here treats them as untrusted. A record
//! that is too large, not JSON, of another version, for another pod, or
//! holding a negative, huge or non-finite number is refused whole; a client
//! this sidecar does not know is skipped and counted. No record can push
//! another member below its floor or the shares' sum past the rate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The record format this code writes and reads.
pub const VERSION: u32 = 1;
/// Larger values are refused unread: a record names a few clients.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Clients per record; more is refused.
pub const MAX_CLIENTS: usize = 1024;
/// Members one sidecar keeps in view; records past it are refused.
pub const MAX_MEMBERS: usize = 1024;
/// The most demand (requests per second) one member may claim for one
/// client: far above what a sidecar serves, far below where float sums
/// lose the other members' demand.
pub const MAX_DEMAND: f64 = 1e7;
/// Pod names are DNS labels or subdomains.
pub const MAX_POD: usize = 253;
/// Longest counted interval a record may claim: an hour.
const MAX_INTERVAL_MS: u64 = 3_600_000;

/// One client's figures in a member record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientReport {
    /// Requests admitted over the record's interval.
    pub admitted: f64,
    /// Requests refused (429) over the interval.
    pub refused: f64,
    /// The share in force on that member, requests per second (shown by
    /// `paymeshctl fleet`; other sidecars do not use it).
    pub share: f64,
}

/// The value of `<prefix>/fleet/<pod>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRecord {
    pub v: u32,
    pub pod: String,
    /// Unix milliseconds when the record was written.
    pub at_ms: u64,
    /// Length of the counted interval; 0 on the record a member writes when
    /// it joins, before it has counted anything.
    pub interval_ms: u64,
    /// Reports written since the member started; 0 while joining.
    pub reports: u64,
    /// The member's `scope: fleet` clients.
    pub clients: BTreeMap<String, ClientReport>,
}

impl MemberRecord {
    /// Whether this member has reported demand yet.
    pub fn joining(&self) -> bool {
        self.reports == 0
    }

    /// Offered requests per second for `client`: admitted plus refused over
    /// the interval. `None` while joining or when the client is not listed.
    pub fn demand(&self, client: &str) -> Option<f64> {
        let c = self.clients.get(client)?;
        if self.joining() {
            return None;
        }
        Some(((c.admitted + c.refused) * 1000.0 / self.interval_ms as f64).min(MAX_DEMAND))
    }
}

/// Why a record was refused (a metric label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TooLarge,
    Malformed(String),
    Version(u32),
    /// The record names another pod than its key.
    Pod,
    Interval,
    /// A count or share is negative, not finite or too large.
    Number(String),
    TooManyClients,
    TooManyMembers,
}

impl Refusal {
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::Malformed(_) => "malformed",
            Refusal::Version(_) => "version",
            Refusal::Pod => "pod",
            Refusal::Interval => "interval",
            Refusal::Number(_) => "number",
            Refusal::TooManyClients => "too_many_clients",
            Refusal::TooManyMembers => "too_many_members",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooLarge => write!(f, "larger than {MAX_RECORD_BYTES} bytes"),
            Refusal::Malformed(e) => write!(f, "not a member record: {e}"),
            Refusal::Version(v) => write!(f, "version {v}, expected {VERSION}"),
            Refusal::Pod => f.write_str("the record's pod differs from its key"),
            Refusal::Interval => write!(f, "interval_ms outside 1..={MAX_INTERVAL_MS}"),
            Refusal::Number(what) => write!(f, "{what} is negative, not finite or too large"),
            Refusal::TooManyClients => write!(f, "more than {MAX_CLIENTS} clients"),
            Refusal::TooManyMembers => write!(f, "more than {MAX_MEMBERS} members"),
        }
    }
}

/// A pod name as a key segment: 1..=253 bytes of `[A-Za-z0-9._-]`.
pub fn valid_pod(pod: &str) -> bool {
    !pod.is_empty() && pod.len() <= MAX_POD && pod.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Parses and checks the value of `<prefix>/fleet/<pod>`.
pub fn parse_record(pod: &str, value: &[u8]) -> Result<MemberRecord, Refusal> {
    if value.len() > MAX_RECORD_BYTES {
        return Err(Refusal::TooLarge);
    }
    // serde_json refuses NaN and infinities (JSON has none) and numbers
    // beyond f64; the checks below catch the rest.
    let r: MemberRecord = serde_json::from_slice(value).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if r.v != VERSION {
        return Err(Refusal::Version(r.v));
    }
    if r.pod != pod {
        return Err(Refusal::Pod);
    }
    if !r.joining() && !(1..=MAX_INTERVAL_MS).contains(&r.interval_ms) {
        return Err(Refusal::Interval);
    }
    if r.clients.len() > MAX_CLIENTS {
        return Err(Refusal::TooManyClients);
    }
    // Counts over the interval may reach MAX_DEMAND per second of it.
    let max_count = MAX_DEMAND * (r.interval_ms.max(1) as f64 / 1000.0);
    for (id, c) in &r.clients {
        for (what, v, max) in
            [("admitted", c.admitted, max_count), ("refused", c.refused, max_count), ("share", c.share, 1e9)]
        {
            if !(v.is_finite() && v >= 0.0 && v <= max) {
                return Err(Refusal::Number(format!("clients.{}.{what}", id.chars().take(64).collect::<String>())));
            }
        }
    }
    Ok(r)
}

/// Splits `rate` among members by demand. `demands[i]` is member i's
/// offered requests per second, `None` for a member that has not reported
/// yet.
///
/// A member without a report gets an even split, `rate / n`, as a new
/// sidecar gives itself. The rest is `k` even splits for the `k` reporting
/// members: each keeps `min_share` of an even split as its floor, and the
/// remainder follows demand. Every member then refuses about the same
/// fraction of what it is offered. The shares always sum to `rate`; a
/// hostile or broken demand is treated as zero or capped, so it moves at
/// most the remainder, never another member's floor.
pub fn allocate(rate: f64, min_share: f64, demands: &[Option<f64>]) -> Vec<f64> {
    let n = demands.len();
    if n == 0 || !rate.is_finite() || rate <= 0.0 {
        return vec![0.0; n];
    }
    let min_share = if min_share.is_finite() { min_share.clamp(0.0, 1.0) } else { 1.0 };
    let even = rate / n as f64;
    let clean = |d: f64| if d.is_finite() && d > 0.0 { d.min(MAX_DEMAND) } else { 0.0 };
    let reporting = demands.iter().filter(|d| d.is_some()).count();
    let total: f64 = demands.iter().flatten().map(|&d| clean(d)).sum();
    let floor = even * min_share;
    let spread = (even - floor) * reporting as f64;
    demands
        .iter()
        .map(|d| match d {
            None => even,
            Some(_) if total <= 0.0 => even,
            Some(d) => floor + spread * clean(*d) / total,
        })
        .collect()
}

/// A share's burst: the client's burst scaled by the share, at least one.
pub fn share_burst(burst: u32, rate: f64, share: f64) -> u32 {
    if !(rate > 0.0 && share.is_finite() && share > 0.0) {
        return 1;
    }
    ((f64::from(burst) * (share / rate).min(1.0)).round() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(v: &[f64]) -> f64 {
        v.iter().sum()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn shares_follow_demand_above_a_floor_and_sum_to_the_rate() {
        // 70/10/10/10 of 1,000 req/s at 300 req/s, floor 10 % of 75.
        let s = allocate(300.0, 0.1, &[Some(700.0), Some(100.0), Some(100.0), Some(100.0)]);
        assert!(close(sum(&s), 300.0), "{s:?}");
        assert!(close(s[0], 7.5 + 270.0 * 0.7), "{s:?}");
        assert!(close(s[1], 7.5 + 270.0 * 0.1), "{s:?}");
        // Each member refuses a similar fraction of what it is offered.
        let admitted: Vec<f64> = s.iter().zip([700.0, 100.0, 100.0, 100.0]).map(|(s, d)| s / d).collect();
        assert!(admitted[0] > 0.25 && admitted[1] < 0.4, "{admitted:?}");
        // An idle member keeps its floor; all idle is an even split.
        let s = allocate(300.0, 0.1, &[Some(500.0), Some(0.0)]);
        assert!(close(s[1], 15.0) && close(sum(&s), 300.0), "{s:?}");
        assert_eq!(allocate(300.0, 0.1, &[Some(0.0), Some(0.0), Some(0.0)]), vec![100.0; 3]);
        // min_share 1: even whatever the demand.
        assert_eq!(allocate(200.0, 1.0, &[Some(900.0), Some(1.0)]), vec![100.0; 2]);
        assert!(allocate(300.0, 0.1, &[]).is_empty());
    }

    #[test]
    fn a_member_without_a_report_gets_an_even_split() {
        // Three reporting members and a new one: rate / (members + 1).
        let s = allocate(300.0, 0.1, &[Some(700.0), Some(100.0), Some(100.0), None]);
        assert!(close(s[3], 75.0), "{s:?}");
        assert!(close(sum(&s), 300.0), "{s:?}");
        assert_eq!(allocate(300.0, 0.1, &[None]), vec![300.0]);
    }

    #[test]
    fn hostile_demands_move_the_remainder_only() {
        for bad in [f64::NAN, f64::INFINITY, -1e300, f64::MAX, 1e30, -5.0] {
            let s = allocate(300.0, 0.1, &[Some(bad), Some(100.0), Some(100.0)]);
            assert!(close(sum(&s), 300.0), "{bad}: {s:?}");
            assert!(s.iter().all(|&x| x.is_finite() && x >= 10.0 - 1e-9), "{bad}: {s:?}");
        }
        // A silly rate or floor neither panics nor makes a non-finite share.
        for (rate, min) in [(f64::NAN, 0.1), (-1.0, 0.1), (300.0, f64::NAN), (300.0, -3.0), (300.0, 7.0)] {
            let s = allocate(rate, min, &[Some(1.0), None]);
            assert!(s.iter().all(|x| x.is_finite()), "{rate} {min}: {s:?}");
        }
    }

    #[test]
    fn burst_scales_with_the_share() {
        assert_eq!(share_burst(400, 300.0, 75.0), 100);
        assert_eq!(share_burst(400, 300.0, 0.01), 1);
        assert_eq!(share_burst(400, 300.0, 900.0), 400);
        assert_eq!(share_burst(400, 300.0, f64::NAN), 1);
    }

    fn record(clients: &str) -> String {
        format!(r#"{{"v":1,"pod":"p-1","at_ms":1,"interval_ms":1000,"reports":3,"clients":{clients}}}"#)
    }

    #[test]
    fn good_records_parse() {
        let r = parse_record("p-1", record(r#"{"a":{"admitted":70,"refused":30,"share":75}}"#).as_bytes()).unwrap();
        assert_eq!(r.demand("a"), Some(100.0));
        assert_eq!(r.demand("b"), None);
        let joining = br#"{"v":1,"pod":"p-1","at_ms":1,"interval_ms":0,"reports":0,"clients":{"a":{"admitted":0,"refused":0,"share":0}}}"#;
        let r = parse_record("p-1", joining).unwrap();
        assert!(r.joining());
        assert_eq!(r.demand("a"), None);
    }

    #[test]
    fn hostile_records_are_refused() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "malformed"),
            (b"".to_vec(), "malformed"),
            (b"[]".to_vec(), "malformed"),
            (b"{\"v\":1}".to_vec(), "malformed"),
            (record(r#"{"a":{"admitted":-1,"refused":0,"share":1}}"#).into_bytes(), "number"),
            (record(r#"{"a":{"admitted":1e300,"refused":0,"share":1}}"#).into_bytes(), "number"),
            (record(r#"{"a":{"admitted":1e999,"refused":0,"share":1}}"#).into_bytes(), "malformed"),
            (record(r#"{"a":{"admitted":NaN,"refused":0,"share":1}}"#).into_bytes(), "malformed"),
            (record(r#"{"a":{"admitted":1,"refused":0,"share":-0.5}}"#).into_bytes(), "number"),
            (record(r#"{"a":{"admitted":"1","refused":0,"share":1}}"#).into_bytes(), "malformed"),
            (record(r#"{"a":{"admitted":1,"refused":0,"share":1,"extra":1}}"#).into_bytes(), "malformed"),
            (record("{}").replace("\"v\":1", "\"v\":2").into_bytes(), "version"),
            (record("{}").replace("p-1", "p-2").into_bytes(), "pod"),
            (record("{}").replace("\"interval_ms\":1000", "\"interval_ms\":0").into_bytes(), "interval"),
            (record("{}").replace("\"interval_ms\":1000", "\"interval_ms\":-5").into_bytes(), "malformed"),
            (record("{}").replace("\"at_ms\":1", "\"at_ms\":1e400").into_bytes(), "malformed"),
            (vec![b' '; MAX_RECORD_BYTES + 1], "too_large"),
        ];
        for (value, want) in cases {
            let got = parse_record("p-1", &value).unwrap_err();
            assert_eq!(got.label(), want, "{:?}: {got}", String::from_utf8_lossy(&value[..value.len().min(120)]));
        }
        let many: Vec<String> =
            (0..=MAX_CLIENTS).map(|i| format!(r#""c{i}":{{"admitted":0,"refused":0,"share":0}}"#)).collect();
        let big = record(&format!("{{{}}}", many.join(",")));
        assert!(big.len() <= MAX_RECORD_BYTES, "{}", big.len());
        assert_eq!(parse_record("p-1", big.as_bytes()).unwrap_err(), Refusal::TooManyClients);
    }

    #[test]
    fn pod_names_are_single_key_segments() {
        assert!(valid_pod("paymesh-7d9f-abcde"));
        assert!(!valid_pod(""));
        assert!(!valid_pod("a/b"));
        assert!(!valid_pod(&"a".repeat(254)));
        assert!(!valid_pod("naïve"));
    }
}

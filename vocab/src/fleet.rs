//! The fleet member record every sidecar writes to `<prefix>/fleet/<pod>`,
//! and its parser: the sidecars read each other's records with it, and
//! `paymeshctl fleet` shows them with it, so a record the sidecars refuse is
//! shown as refused, with the reason.
//!
//! Member records come from etcd, which any holder of the prefix's write
//! permission can fill: everything here treats them as untrusted. A record
//! that is too large, not JSON, of another version, for another pod, or
//! holding a negative, huge or non-finite number is refused whole.

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

#[cfg(test)]
mod tests {
    use super::*;

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

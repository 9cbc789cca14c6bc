//! `clients[].rate.scope` and the `fleet` section: raw form, typed form and
//! their checks, kept apart from the rest of the config so that fleet
//! quotas change one file here.

use std::time::Duration;

use serde::Deserialize;

/// Where a client's `rate` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// On this sidecar alone: N replicas admit up to N × rate.
    #[default]
    Local,
    /// Across every live sidecar that shares the etcd prefix.
    Fleet,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Fleet => "fleet",
        }
    }
}

pub const REPORT_INTERVAL: &str = "1s";
/// The default lease TTL is this many report intervals (at least
/// [`MIN_LEASE_TTL`]).
pub const LEASE_TTL_INTERVALS: u32 = 3;
/// etcd refuses shorter leases (its minimum is about 1.5 s with default
/// timing), and a lease's TTL is whole seconds.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
pub const MIN_SHARE: f64 = 0.1;
pub const GRACE: &str = "10s";
/// Below this the report traffic to etcd (one put per sidecar per interval)
/// outweighs what a faster reaction buys.
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_millis(50);

/// `fleet:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFleet {
    pub report_interval: String,
    /// `None`: [`LEASE_TTL_INTERVALS`] report intervals.
    pub lease_ttl: Option<String>,
    pub min_share: f64,
    pub grace: String,
}

impl Default for RawFleet {
    fn default() -> Self {
        Self { report_interval: REPORT_INTERVAL.into(), lease_ttl: None, min_share: MIN_SHARE, grace: GRACE.into() }
    }
}

/// The fleet quota settings, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fleet {
    /// How often each sidecar writes its demand and recomputes its shares.
    pub report_interval: Duration,
    /// TTL of the lease behind `<prefix>/fleet/<pod>`: a sidecar silent
    /// this long stops counting. Whole seconds.
    pub lease_ttl: Duration,
    /// The part of an even split (rate / members) every member keeps
    /// whatever its demand, so an idle replica can admit a first burst.
    pub min_share: f64,
    /// etcd unreachable: how long the last shares stand before the fallback
    /// (rate / the last known member count).
    pub grace: Duration,
}

impl Default for Fleet {
    fn default() -> Self {
        Self {
            report_interval: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(3),
            min_share: MIN_SHARE,
            grace: Duration::from_secs(10),
        }
    }
}

/// Checks `raw`; every problem goes to `push(key, message)`.
pub fn validate(raw: &RawFleet, push: &mut dyn FnMut(&str, String)) -> Fleet {
    let mut duration = |key: &str, s: &str, fallback: Duration| match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            push(key, "must be longer than zero".into());
            fallback
        }
        Err(e) => {
            push(key, format!("{s:?} is not a duration like 250ms or 10s ({e})"));
            fallback
        }
    };
    let d = Fleet::default();
    let report_interval = duration("fleet.report_interval", &raw.report_interval, d.report_interval);
    let grace = duration("fleet.grace", &raw.grace, d.grace);
    let lease_ttl = match &raw.lease_ttl {
        Some(s) => duration("fleet.lease_ttl", s, d.lease_ttl),
        None => (report_interval * LEASE_TTL_INTERVALS).max(MIN_LEASE_TTL),
    };
    // Whole seconds, rounded up: what an etcd lease can hold.
    let lease_ttl = Duration::from_secs(lease_ttl.as_secs() + u64::from(lease_ttl.subsec_nanos() > 0));
    if report_interval < MIN_REPORT_INTERVAL {
        push("fleet.report_interval", format!("must be at least {}", humantime::format_duration(MIN_REPORT_INTERVAL)));
    }
    if raw.lease_ttl.is_some() && lease_ttl < MIN_LEASE_TTL {
        push("fleet.lease_ttl", format!("must be at least {} (etcd's shortest lease)", MIN_LEASE_TTL.as_secs()));
    }
    if lease_ttl < report_interval * 2 {
        push(
            "fleet.lease_ttl",
            "must be at least two report intervals, or one late report would drop a live member".into(),
        );
    }
    if !(raw.min_share > 0.0 && raw.min_share <= 1.0) {
        push("fleet.min_share", "must be a fraction in (0, 1] of the even split".into());
    }
    Fleet { report_interval, lease_ttl, min_share: raw.min_share, grace }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawFleet) -> Result<Fleet, Vec<String>> {
        let mut errs = Vec::new();
        let f = validate(&raw, &mut |k, m| errs.push(format!("{k}: {m}")));
        if errs.is_empty() { Ok(f) } else { Err(errs) }
    }

    const CLIENT: &str = r#"
listen: "127.0.0.1:8080"
app: "127.0.0.1:8081"
clients:
  - id: checkout
    api_key_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
"#;

    #[test]
    fn scope_is_local_unless_fleet_and_fleet_needs_etcd() {
        let c = crate::config::from_yaml(format!("{CLIENT}    rate: {{ per_second: 300 }}\n").as_bytes()).unwrap();
        assert_eq!(c.clients[0].scope, Scope::Local);
        assert_eq!(c.fleet, Fleet::default());
        let yaml =
            format!("{CLIENT}    rate: {{ per_second: 300, scope: fleet }}\nfleet: {{ report_interval: 500ms }}\n");
        let c = crate::config::from_yaml(yaml.as_bytes()).unwrap();
        assert_eq!(c.clients[0].scope, Scope::Fleet);
        assert_eq!(c.fleet.report_interval, Duration::from_millis(500));
        assert_eq!(c.fleet.lease_ttl, MIN_LEASE_TTL);
        let yaml = format!("{CLIENT}    rate: {{ scope: fleet }}\nmigration: {{ etcd_endpoints: [] }}\n");
        let e = crate::config::from_yaml(yaml.as_bytes()).unwrap_err();
        assert_eq!(e.0[0].key, "clients[0].rate.scope", "{e}");
        let e = crate::config::from_yaml(format!("{CLIENT}    rate: {{ scope: global }}\n").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("global"), "{e}");
        let e = crate::config::from_yaml(format!("{CLIENT}fleet: {{ interval: 1s }}\n").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("interval"), "{e}");
    }

    #[test]
    fn defaults_and_derived_lease() {
        assert_eq!(check(RawFleet::default()).unwrap(), Fleet::default());
        let f = check(RawFleet { report_interval: "250ms".into(), ..RawFleet::default() }).unwrap();
        assert_eq!(f.lease_ttl, MIN_LEASE_TTL);
        let f = check(RawFleet { report_interval: "1500ms".into(), ..RawFleet::default() }).unwrap();
        assert_eq!(f.lease_ttl, Duration::from_secs(5)); // 4.5 s rounded up
    }

    #[test]
    fn bad_values_name_their_keys() {
        let errs = check(RawFleet {
            report_interval: "10ms".into(),
            lease_ttl: Some("1s".into()),
            min_share: 0.0,
            grace: "soon".into(),
        })
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(keys, ["fleet.grace", "fleet.report_interval", "fleet.lease_ttl", "fleet.min_share"], "{errs:?}");
        let errs =
            check(RawFleet { report_interval: "2s".into(), lease_ttl: Some("3s".into()), ..RawFleet::default() })
                .unwrap_err();
        assert!(errs[0].contains("two report intervals"), "{errs:?}");
        assert!(check(RawFleet { min_share: f64::NAN, ..RawFleet::default() }).is_err());
        assert!(check(RawFleet { min_share: 1.5, ..RawFleet::default() }).is_err());
    }
}

//! Fleet-wide client quotas: a `scope: fleet` client's rate holds across
//! every live sidecar that shares the etcd prefix, with no extra service
//! and no per-request round trip.
//!
//! Each sidecar keeps `<prefix>/fleet/<pod>` alive under a lease and, every
//! `fleet.report_interval`, writes there what each fleet client offered it
//! (admitted and refused) over the last interval (`sync`). It watches
//! `<prefix>/fleet/` and sets its own share of each client's rate in
//! proportion to its share of that client's demand, above a floor
//! (`share`, a pure function). A share change is an atomic update of the
//! client's existing token bucket (`TokenBucket::set_rate`): the request
//! path does exactly what it does for a local client.
//!
//! Failure behaviour: etcd unreachable, the last shares stand for
//! `fleet.grace`, then each sidecar admits rate / the last member count it
//! saw (never the full rate on every replica). A sidecar that dies stops
//! counting when its lease expires. A new one starts at rate / (members + 1)
//! until its first report; before it has reached etcd at all it admits
//! `min_share` of the rate. Member records are untrusted input (`share`).
//!
//! Nothing here may block a request or take the process down.

pub mod share;
mod sync;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde_json::{Value, json};

use crate::config::Rate;
pub use share::{ClientReport, MemberRecord};
pub use sync::run;

/// Where this sidecar's shares come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No `scope: fleet` client, or no etcd: nothing to share.
    #[default]
    Off,
    /// etcd not reached since start: `min_share` of each rate.
    Startup,
    /// Shares follow the fleet's demand, as etcd reports it.
    Live,
    /// etcd lost, within `fleet.grace`: the last shares stand.
    Grace,
    /// etcd lost for longer: rate / the last known member count.
    Fallback,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Startup => "startup",
            Mode::Live => "live",
            Mode::Grace => "grace",
            Mode::Fallback => "fallback",
        }
    }
}

/// One client's share on this sidecar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// Requests per second this sidecar may admit.
    pub per_second: f64,
    pub burst: u32,
    /// Members the rate was split among (this one included).
    pub members: usize,
}

/// The share a fleet client's bucket starts with, before this sidecar has
/// seen the fleet: `min_share` of the rate and of the burst.
pub fn startup_rate(rate: Rate, min_share: f64) -> Rate {
    let per_second = rate.per_second * min_share;
    Rate { per_second, burst: share::share_burst(rate.burst, rate.per_second, per_second) }
}

/// What `/admin/state` and the metrics show; written by the fleet task.
#[derive(Debug, Default)]
struct Status {
    mode: Mode,
    connected: bool,
    /// When this sidecar's last report reached etcd.
    last_report: Option<SystemTime>,
    /// The other members as last seen, and this one's own record.
    members: BTreeMap<String, MemberRecord>,
    shares: BTreeMap<String, Share>,
}

/// The fleet task's window onto the rest of the process.
#[derive(Debug)]
pub struct FleetControl {
    /// This sidecar's member key segment.
    pub pod: String,
    status: Mutex<Status>,
    share_gauge: GaugeVec,
    members_gauge: IntGauge,
    refused: IntCounterVec,
    unknown_clients: IntCounter,
}

impl FleetControl {
    pub fn new(registry: &Registry) -> Self {
        let share_gauge = GaugeVec::new(
            Opts::new(
                "paymesh_quota_share",
                "Requests per second this sidecar may admit for a scope: fleet client (its share of the fleet rate).",
            ),
            &["client"],
        )
        .expect("valid metric");
        let members_gauge =
            IntGauge::new("paymesh_fleet_members", "Live fleet members this sidecar counts, itself included.")
                .expect("valid metric");
        let refused = IntCounterVec::new(
            Opts::new("paymesh_fleet_records_refused_total", "Fleet member records from etcd refused, by reason."),
            &["reason"],
        )
        .expect("valid metric");
        let unknown_clients = IntCounter::new(
            "paymesh_fleet_unknown_clients_total",
            "Client entries in fleet member records for clients this sidecar does not have as scope: fleet.",
        )
        .expect("valid metric");
        for m in [
            Box::new(share_gauge.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(members_gauge.clone()),
            Box::new(refused.clone()),
            Box::new(unknown_clients.clone()),
        ] {
            registry.register(m).expect("fleet metrics registered once");
        }
        Self {
            pod: sanitize_pod(&crate::overload::pod_name()),
            status: Mutex::default(),
            share_gauge,
            members_gauge,
            refused,
            unknown_clients,
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `fleet` section of `/admin/state`.
    pub fn state(&self) -> Value {
        let s = self.status();
        let now = SystemTime::now();
        let members: Vec<Value> = s
            .members
            .values()
            .map(|m| {
                let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(m.at_ms);
                let clients: serde_json::Map<String, Value> = m
                    .clients
                    .iter()
                    .map(|(id, c)| {
                        let demand = m.demand(id);
                        (id.clone(), json!({ "demand_per_second": demand, "share_per_second": c.share }))
                    })
                    .collect();
                json!({
                    "pod": m.pod,
                    "self": m.pod == self.pod,
                    "joining": m.joining(),
                    "reports": m.reports,
                    "reported_at": humantime::format_rfc3339_millis(at).to_string(),
                    "age_ms": now.duration_since(at).map_or(0, |d| d.as_millis() as u64),
                    "clients": clients,
                })
            })
            .collect();
        let shares: serde_json::Map<String, Value> = s
            .shares
            .iter()
            .map(|(id, sh)| {
                (id.clone(), json!({ "per_second": sh.per_second, "burst": sh.burst, "members": sh.members }))
            })
            .collect();
        json!({
            "pod": self.pod,
            "mode": s.mode.as_str(),
            "connected": s.connected,
            "last_report": s.last_report.map(|t| humantime::format_rfc3339_millis(t).to_string()),
            "members": members,
            "shares": shares,
        })
    }
}

/// A pod name usable as one key segment: anything outside `[A-Za-z0-9._-]`
/// becomes `_`.
fn sanitize_pod(pod: &str) -> String {
    let mut s: String = pod
        .chars()
        .take(share::MAX_POD)
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect();
    if s.is_empty() {
        s.push_str("unknown");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_rate_is_the_floor() {
        let r = startup_rate(Rate { per_second: 300.0, burst: 400 }, 0.1);
        assert!((r.per_second - 30.0).abs() < 1e-9);
        assert_eq!(r.burst, 40);
    }

    #[test]
    fn pod_names_become_key_segments() {
        assert_eq!(sanitize_pod("web-1"), "web-1");
        assert_eq!(sanitize_pod("a/b c"), "a_b_c");
        assert_eq!(sanitize_pod(""), "unknown");
        assert!(share::valid_pod(&sanitize_pod(&"é".repeat(300))));
    }
}

//! Just enough of the Prometheus text format to judge a ramp step: counters
//! and histogram buckets of `paymesh_requests_total` and
//! `paymesh_request_duration_seconds` (or, for one client, of
//! `paymesh_client_requests_total` and
//! `paymesh_client_request_duration_seconds`), summed over sidecars and
//! diffed over an interval; plus what tells whether those figures are
//! evidence at all: whether `detailed_metrics` is on, how often it was
//! switched off, and the percent the sidecar serves. And the feature's
//! shadow compares (`paymesh_shadow_compares_total`), which have no client
//! label: a client's ramp reads its feature's.

use anyhow::{Context, bail};
use paymesh_vocab::{Component, Route};
use std::collections::BTreeMap;

/// Shedding it removes the histograms a ramp is judged by.
const DETAILED: &str = Component::DetailedMetrics.as_str();

/// One scrape's figures for a (feature, route).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub requests: f64,
    pub errors: f64,
    /// Cumulative histogram: upper bound → count (`+Inf` as `f64::INFINITY`).
    pub buckets: BTreeMap<OrderedF64, f64>,
}

/// An `f64` usable as a map key (bucket bounds are never NaN).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrderedF64(pub f64);
impl Eq for OrderedF64 {}
impl Ord for OrderedF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl PartialOrd for OrderedF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The sidecar's shadow reads of one feature by outcome
/// (`paymesh_shadow_compares_total{feature,outcome}`); `skipped` ones are
/// not counted: they compared nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Compares {
    /// `outcome="match"`: both paths answered the same.
    pub matches: f64,
    /// `outcome="mismatch"`: the paths' answers differ.
    pub mismatches: f64,
    /// `outcome="shadow_error"`: the shadow read failed; says nothing about
    /// agreement.
    pub errors: f64,
}

impl Compares {
    /// Compares that say whether the paths agree: matches and mismatches.
    pub fn compared(&self) -> f64 {
        self.matches + self.mismatches
    }

    pub fn add(&mut self, other: &Compares) {
        self.matches += other.matches;
        self.mismatches += other.mismatches;
        self.errors += other.errors;
    }

    /// `self - earlier`; a counter that went down (a restarted sidecar)
    /// counts from zero.
    pub fn since(&self, earlier: &Compares) -> Compares {
        let delta = |now: f64, then: f64| if now >= then { now - then } else { now };
        Compares {
            matches: delta(self.matches, earlier.matches),
            mismatches: delta(self.mismatches, earlier.mismatches),
            errors: delta(self.errors, earlier.errors),
        }
    }
}

/// One sidecar's scrape, seen from one ramp's scope.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    pub orchestration: Figures,
    pub legacy: Figures,
    /// `paymesh_component_enabled{component="detailed_metrics"}`.
    pub detailed: Option<bool>,
    /// `paymesh_switch_events_total{component="detailed_metrics",state="off"}`.
    pub detailed_offs: f64,
    /// The percent this sidecar serves the scope at.
    pub percent: Option<f64>,
    /// The feature's shadow compares (for a client's scope too: the metric
    /// has no client label).
    pub shadow: Compares,
    /// For a client's scope: the sidecar shows the client's series (it
    /// shows only some clients' with `metrics.client_series` set, and a
    /// ramped one's once its override is applied).
    pub client_series: bool,
}

impl View {
    /// `client`: the scope is that client's traffic and override.
    pub fn parse(text: &str, feature: &str, client: Option<&str>) -> View {
        let mut v = View {
            orchestration: Figures::parse_scoped(text, feature, client, Route::Orchestration.as_str()),
            legacy: Figures::parse_scoped(text, feature, client, Route::Legacy.as_str()),
            ..View::default()
        };
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let Some((name, labels, value)) = split(line) else { continue };
            match name {
                "paymesh_component_enabled" if label(labels, "component") == Some(DETAILED) => {
                    v.detailed = Some(value >= 1.0);
                }
                "paymesh_switch_events_total"
                    if label(labels, "component") == Some(DETAILED) && label(labels, "state") == Some("off") =>
                {
                    v.detailed_offs += value;
                }
                "paymesh_migration_percent"
                    if label(labels, "feature") == Some(feature) && label(labels, "client") == client =>
                {
                    v.percent = Some(value);
                }
                "paymesh_client_requests_total" if client.is_some() && label(labels, "client") == client => {
                    v.client_series = true;
                }
                "paymesh_shadow_compares_total" if label(labels, "feature") == Some(feature) => {
                    match label(labels, "outcome") {
                        Some("match") => v.shadow.matches += value,
                        Some("mismatch") => v.shadow.mismatches += value,
                        Some("shadow_error") => v.shadow.errors += value,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        v
    }
}

impl Figures {
    /// Extracts the figures for `feature` on `route` from a scrape.
    #[cfg(test)]
    pub fn parse(text: &str, feature: &str, route: &str) -> Figures {
        Self::parse_scoped(text, feature, None, route)
    }

    /// Like [`parse`](Self::parse), for one client's series with `client`.
    pub fn parse_scoped(text: &str, feature: &str, client: Option<&str>, route: &str) -> Figures {
        let (requests, buckets) = match client {
            None => ("paymesh_requests_total", "paymesh_request_duration_seconds_bucket"),
            Some(_) => ("paymesh_client_requests_total", "paymesh_client_request_duration_seconds_bucket"),
        };
        let mut f = Figures::default();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let Some((name, labels, value)) = split(line) else { continue };
            if label(labels, "feature") != Some(feature) || label(labels, "route") != Some(route) {
                continue;
            }
            if client.is_some() && label(labels, "client") != client {
                continue;
            }
            match name {
                n if n == requests => {
                    f.requests += value;
                    if label(labels, "code") == Some("5xx") {
                        f.errors += value;
                    }
                }
                n if n == buckets => {
                    let le = match label(labels, "le") {
                        Some("+Inf") => f64::INFINITY,
                        Some(v) => match v.parse() {
                            Ok(v) => v,
                            Err(_) => continue,
                        },
                        None => continue,
                    };
                    *f.buckets.entry(OrderedF64(le)).or_default() += value;
                }
                _ => {}
            }
        }
        f
    }

    pub fn add(&mut self, other: &Figures) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (le, n) in &other.buckets {
            *self.buckets.entry(*le).or_default() += n;
        }
    }

    /// `self - earlier`; a counter that went down (a restarted sidecar)
    /// counts from zero.
    pub fn since(&self, earlier: &Figures) -> Figures {
        let delta = |now: f64, then: f64| if now >= then { now - then } else { now };
        Figures {
            requests: delta(self.requests, earlier.requests),
            errors: delta(self.errors, earlier.errors),
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| (*le, delta(*n, earlier.buckets.get(le).copied().unwrap_or(0.0))))
                .collect(),
        }
    }

    /// Observations in the histogram (its `+Inf` bucket).
    pub fn observed(&self) -> f64 {
        self.buckets.get(&OrderedF64(f64::INFINITY)).copied().unwrap_or(0.0)
    }

    /// The q-quantile in seconds, interpolated inside its bucket as
    /// Prometheus' `histogram_quantile` does; `None` without observations,
    /// or when the buckets make no histogram (a count that is not finite or
    /// goes down): a figure that cannot be trusted is no evidence, and must
    /// never pass a guard the way a NaN passes every comparison.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<f64> = self.buckets.values().copied().collect();
        if counts.iter().any(|c| !c.is_finite() || *c < 0.0) || counts.windows(2).any(|w| w[1] < w[0]) {
            return None;
        }
        if self.buckets.keys().any(|le| le.0.is_nan() || le.0 < 0.0) {
            return None;
        }
        let total =
            self.buckets.get(&OrderedF64(f64::INFINITY)).copied().or_else(|| self.buckets.values().last().copied())?;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (le, count) in &self.buckets {
            if *count >= rank {
                if le.0.is_infinite() {
                    return Some(lower);
                }
                let in_bucket = count - below;
                let fraction = if in_bucket > 0.0 { (rank - below) / in_bucket } else { 1.0 };
                return Some(lower + (le.0 - lower) * fraction);
            }
            lower = le.0;
            below = *count;
        }
        Some(lower)
    }
}

/// `name{labels} value` → (name, labels, value).
fn split(line: &str) -> Option<(&str, &str, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    match series.find('{') {
        Some(i) => Some((&series[..i], series[i + 1..].strip_suffix('}')?, value)),
        None => Some((series, "", value)),
    }
}

/// The value of `name` in `a="x",b="y"` (values never contain quotes here:
/// the sidecar's labels are bounded identifiers).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The single value of an instant-vector answer; `None` when empty.
pub fn scalar(body: &str) -> anyhow::Result<Option<f64>> {
    let v: serde_json::Value = serde_json::from_str(body).context("Prometheus answer is not JSON")?;
    if v["status"] != "success" {
        bail!("Prometheus query failed: {}", v["error"]);
    }
    let Some(first) = v["data"]["result"].as_array().and_then(|r| r.first()) else { return Ok(None) };
    let text = first["value"][1].as_str().context("Prometheus sample without a value")?;
    Ok(Some(text.parse().with_context(|| format!("Prometheus value {text:?}"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP paymesh_requests_total Requests.
# TYPE paymesh_requests_total counter
paymesh_requests_total{code="2xx",feature="charge",route="orchestration"} 90
paymesh_requests_total{code="5xx",feature="charge",route="orchestration"} 10
paymesh_requests_total{code="2xx",feature="charge",route="legacy"} 500
paymesh_requests_total{code="5xx",feature="refund",route="orchestration"} 3
paymesh_request_duration_seconds_bucket{feature="charge",route="orchestration",le="0.01"} 50
paymesh_request_duration_seconds_bucket{feature="charge",route="orchestration",le="0.1"} 99
paymesh_request_duration_seconds_bucket{feature="charge",route="orchestration",le="1"} 100
paymesh_request_duration_seconds_bucket{feature="charge",route="orchestration",le="+Inf"} 100
paymesh_request_duration_seconds_sum{feature="charge",route="orchestration"} 2.5
"#;

    #[test]
    fn parses_the_figures_of_one_feature_and_route() {
        let f = Figures::parse(SCRAPE, "charge", "orchestration");
        assert_eq!((f.requests, f.errors), (100.0, 10.0));
        assert_eq!(f.buckets.len(), 4);
        assert_eq!(Figures::parse(SCRAPE, "refund", "orchestration").errors, 3.0);
        assert_eq!(Figures::parse(SCRAPE, "charge", "legacy").requests, 500.0);
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let f = Figures::parse(SCRAPE, "charge", "orchestration");
        let p50 = f.quantile(0.5).unwrap();
        assert!((p50 - 0.01).abs() < 1e-9, "{p50}");
        let p99 = f.quantile(0.99).unwrap();
        assert!((p99 - 0.1).abs() < 1e-9, "{p99}");
        let p995 = f.quantile(0.995).unwrap();
        assert!(p995 > 0.1 && p995 < 1.0, "{p995}");
        assert_eq!(Figures::default().quantile(0.99), None);
    }

    #[test]
    fn client_scopes_read_the_client_series_and_the_evidence_gauges() {
        let text = r#"paymesh_client_requests_total{client="ops",code="2xx",feature="charge",route="orchestration"} 7
paymesh_client_requests_total{client="web",code="2xx",feature="charge",route="orchestration"} 70
paymesh_client_request_duration_seconds_bucket{client="ops",feature="charge",route="orchestration",le="+Inf"} 7
paymesh_component_enabled{component="detailed_metrics"} 0
paymesh_switch_events_total{component="detailed_metrics",state="off"} 2
paymesh_migration_percent{feature="charge"} 10
paymesh_migration_percent{client="ops",feature="charge"} 40
"#;
        let ops = View::parse(text, "charge", Some("ops"));
        assert_eq!((ops.orchestration.requests, ops.orchestration.observed()), (7.0, 7.0));
        assert_eq!((ops.detailed, ops.detailed_offs, ops.percent), (Some(false), 2.0, Some(40.0)));
        assert_eq!(View::parse(text, "charge", None).percent, Some(10.0));
        assert_eq!(View::parse(text, "charge", None).orchestration.requests, 0.0);
        assert_eq!(View::parse(text, "charge", Some("new")).percent, None);
        assert!(ops.client_series);
        assert!(!View::parse(text, "charge", Some("new")).client_series, "a client the sidecar does not show");
    }

    /// As the sidecar exports it: all twelve series, other metrics around.
    const SHADOW_SCRAPE: &str = r#"# HELP paymesh_shadow_compares_total Shadow reads of the other path, by outcome.
# TYPE paymesh_shadow_compares_total counter
paymesh_shadow_compares_total{feature="charge",outcome="match"} 37
paymesh_shadow_compares_total{feature="charge",outcome="mismatch"} 3
paymesh_shadow_compares_total{feature="charge",outcome="shadow_error"} 2
paymesh_shadow_compares_total{feature="charge",outcome="skipped"} 11
paymesh_shadow_compares_total{feature="disbursement",outcome="match"} 5
paymesh_shadow_compares_total{feature="disbursement",outcome="mismatch"} 0
paymesh_shadow_compares_total{feature="disbursement",outcome="shadow_error"} 0
paymesh_shadow_compares_total{feature="disbursement",outcome="skipped"} 0
paymesh_shadow_compares_total{feature="refund",outcome="match"} 0
paymesh_shadow_compares_total{feature="refund",outcome="mismatch"} 9
paymesh_shadow_compares_total{feature="refund",outcome="shadow_error"} 0
paymesh_shadow_compares_total{feature="refund",outcome="skipped"} 0
# HELP paymesh_migration_percent Orchestration share.
# TYPE paymesh_migration_percent gauge
paymesh_migration_percent{feature="charge"} 20
paymesh_migration_percent{client="ops",feature="charge"} 40
"#;

    #[test]
    fn reads_the_shadow_compares_of_the_feature() {
        let charge = View::parse(SHADOW_SCRAPE, "charge", None).shadow;
        assert_eq!(charge, Compares { matches: 37.0, mismatches: 3.0, errors: 2.0 });
        assert_eq!(charge.compared(), 40.0);
        // A client's scope reads the feature's compares: no client label.
        assert_eq!(View::parse(SHADOW_SCRAPE, "charge", Some("ops")).shadow, charge);
        assert_eq!(View::parse(SHADOW_SCRAPE, "refund", None).shadow.mismatches, 9.0);
        assert_eq!(View::parse(SHADOW_SCRAPE, "disbursement", None).shadow.compared(), 5.0);
        // A sidecar without shadow reads has none.
        assert_eq!(View::parse(SCRAPE, "charge", None).shadow, Compares::default());

        let mut later = charge;
        later.add(&Compares { matches: 10.0, mismatches: 1.0, errors: 0.0 });
        assert_eq!(later.since(&charge), Compares { matches: 10.0, mismatches: 1.0, errors: 0.0 });
        let restarted = Compares { matches: 4.0, ..Compares::default() };
        assert_eq!(restarted.since(&charge), Compares { matches: 4.0, mismatches: 0.0, errors: 0.0 });
    }

    #[test]
    fn diffs_sum_and_survive_restarts() {
        let before = Figures::parse(SCRAPE, "charge", "orchestration");
        let mut after = before.clone();
        after.add(&before);
        let d = after.since(&before);
        assert_eq!((d.requests, d.errors), (100.0, 10.0));
        let restarted = Figures { requests: 5.0, ..Figures::default() };
        assert_eq!(restarted.since(&before).requests, 5.0);
    }
}

//! Just enough of the Prometheus text format to judge a ramp step: counters
//! and histogram buckets of `paymesh_requests_total` and
//! `paymesh_request_duration_seconds`, summed over sidecars and diffed over
//! an interval.

use std::collections::BTreeMap;

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

impl Figures {
    /// Extracts the figures for `feature` on `route` from a scrape.
    pub fn parse(text: &str, feature: &str, route: &str) -> Figures {
        let mut f = Figures::default();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let Some((name, labels, value)) = split(line) else { continue };
            if label(labels, "feature") != Some(feature) || label(labels, "route") != Some(route) {
                continue;
            }
            match name {
                "paymesh_requests_total" => {
                    f.requests += value;
                    if label(labels, "code") == Some("5xx") {
                        f.errors += value;
                    }
                }
                "paymesh_request_duration_seconds_bucket" => {
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

    /// The q-quantile in seconds, interpolated inside its bucket as
    /// Prometheus' `histogram_quantile` does; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
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

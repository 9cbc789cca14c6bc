//! Where a ramp reads the health of the traffic it moves: each sidecar's
//! `/metrics` (scraped at both ends of the interval and diffed) or a
//! Prometheus server (PromQL over the interval).
//!
//! Either way the answer is [`Evidence`]: the orchestration and legacy
//! paths' figures for the ramp's scope (a feature, or one client of it),
//! the feature's shadow compares (`paymesh_shadow_compares_total` has no
//! client label, so a client's ramp sees its feature's), and every reason those figures are not enough to call a step healthy: a
//! sidecar that did not answer, histograms shed with `detailed_metrics`, a
//! sidecar not yet serving the step's percent, Prometheus unreachable or
//! short of samples. A missing signal is never read as a healthy one.

use crate::prometheus::Prometheus;
use crate::store::format_percent;
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use paymesh_vocab::{Component, Route};
use paymeshctl::prom::{Compares, Figures, View};
use paymeshctl::promql::Matchers;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Http {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Http {
    pub fn new() -> Http {
        Http { client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()) }
    }

    pub async fn get(&self, url: &str) -> anyhow::Result<String> {
        let uri: http::Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
        let fetch = async {
            let resp = self.client.get(uri).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .context("timed out")?
            .with_context(|| format!("GET {url}"))?;
        if !status.is_success() {
            bail!("GET {url}: {status}");
        }
        String::from_utf8(body.to_vec()).with_context(|| format!("GET {url}: not UTF-8"))
    }
}

/// The metrics source of a ramp.
#[derive(Clone, Debug)]
pub enum Source {
    /// Admin base URLs of every sidecar, e.g. `http://10.0.0.7:9901`.
    Sidecars(Vec<String>),
    /// A Prometheus server, with its extra label matchers
    /// (`job="paymesh"`) for every query.
    Prometheus(Box<Prometheus>),
}

/// What a ramp judges: a feature's traffic, or one client's, at a percent.
#[derive(Clone, Debug)]
pub struct Scope {
    pub feature: String,
    pub client: Option<String>,
    /// The percent every sidecar should be serving the scope at.
    pub percent: f64,
}

/// What a source saw at the start of an interval.
#[derive(Debug)]
pub enum Mark {
    /// One scrape per sidecar, in `Source::Sidecars` order.
    Scraped(Vec<Result<View, String>>),
    Clock(Instant),
}

/// One path's figures over the interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Side {
    pub requests: f64,
    pub errors: f64,
    /// Seconds; `None` without observations.
    pub p99: Option<f64>,
    /// Requests the latency histogram saw.
    pub observed: f64,
}

impl Side {
    pub fn error_rate(&self) -> f64 {
        if self.requests > 0.0 { self.errors / self.requests } else { 0.0 }
    }

    fn from(f: &Figures) -> Side {
        Side { requests: f.requests, errors: f.errors, p99: f.quantile(0.99), observed: f.observed() }
    }
}

/// Observations over one interval, and why they may fall short.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    pub orchestration: Side,
    pub legacy: Side,
    /// The feature's shadow compares over the interval.
    pub shadow: Compares,
    /// Every reason these figures cannot show the step healthy.
    pub missing: Vec<String>,
}

impl Source {
    pub async fn mark(&self, http: &Http, scope: &Scope) -> Mark {
        match self {
            Source::Sidecars(urls) => Mark::Scraped(scrape_all(http, urls, scope).await),
            Source::Prometheus(_) => Mark::Clock(Instant::now()),
        }
    }

    /// The scope's figures since `mark`.
    pub async fn since(&self, http: &Http, scope: &Scope, mark: &Mark) -> Evidence {
        match (self, mark) {
            (Source::Sidecars(urls), Mark::Scraped(before)) => {
                let after = scrape_all(http, urls, scope).await;
                sidecar_evidence(urls, scope, before, &after)
            }
            (Source::Prometheus(p), Mark::Clock(start)) => prometheus(p, scope, start.elapsed()).await,
            _ => Evidence { missing: vec!["internal: mark of another source".into()], ..Evidence::default() },
        }
    }
}

async fn scrape_all(http: &Http, urls: &[String], scope: &Scope) -> Vec<Result<View, String>> {
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        let text = http.get(&format!("{}/metrics", url.trim_end_matches('/'))).await;
        out.push(text.map(|t| View::parse(&t, &scope.feature, scope.client.as_deref())).map_err(|e| format!("{e:#}")));
    }
    out
}

/// Sums what every sidecar saw between two scrapes; a sidecar with a
/// missing scrape, shed histograms or another percent makes the window
/// incomplete, whatever the others say.
pub fn sidecar_evidence(
    urls: &[String],
    scope: &Scope,
    before: &[Result<View, String>],
    after: &[Result<View, String>],
) -> Evidence {
    let mut orch = Figures::default();
    let mut legacy = Figures::default();
    let mut shadow = Compares::default();
    let mut missing = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let (b, a) = match (before.get(i), after.get(i)) {
            (Some(Ok(b)), Some(Ok(a))) => (b, a),
            (Some(Err(e)), _) | (_, Some(Err(e))) => {
                missing.push(format!("no data from sidecar {url}: {e}"));
                continue;
            }
            _ => {
                missing.push(format!("no data from sidecar {url}"));
                continue;
            }
        };
        orch.add(&a.orchestration.since(&b.orchestration));
        legacy.add(&a.legacy.since(&b.legacy));
        shadow.add(&a.shadow.since(&b.shadow));
        if b.detailed == Some(false) || a.detailed == Some(false) || a.detailed_offs > b.detailed_offs {
            let what =
                if scope.client.is_some() { "latency histograms and per-client series" } else { "latency histograms" };
            missing.push(format!("detailed_metrics is shed on sidecar {url}: no {what}"));
        } else if let Some(client) = &scope.client
            && !(b.client_series && a.client_series)
        {
            // Counts that appear mid-interval are totals since the start,
            // not what the interval saw.
            missing.push(format!(
                "sidecar {url} showed no series for client {client} at {} of the interval (not in its \
                 metrics.client_series, and the override not applied yet?)",
                if b.client_series { "the end" } else { "the start" }
            ));
        }
        match a.percent {
            Some(p) if (p - scope.percent).abs() < 0.005 => {}
            Some(p) => missing.push(format!(
                "sidecar {url} serves {}%, not {}% (etcd not reached yet?)",
                format_percent(p),
                format_percent(scope.percent)
            )),
            None => missing.push(format!("sidecar {url} shows no percent for {}", describe(scope))),
        }
    }
    let orchestration = Side::from(&orch);
    covered(&orchestration, &mut missing);
    Evidence { orchestration, legacy: Side::from(&legacy), shadow, missing }
}

/// Histograms that saw clearly fewer requests than the counters (shed for
/// part of the interval) do not give a p99 of the interval.
fn covered(orch: &Side, missing: &mut Vec<String>) {
    if orch.requests > 0.0 && orch.observed < orch.requests * 0.95 - 1.0 && missing.is_empty() {
        missing.push(format!(
            "latency histograms saw only {:.0} of {:.0} requests (detailed_metrics shed during the interval?)",
            orch.observed, orch.requests
        ));
    }
}

fn describe(scope: &Scope) -> String {
    match &scope.client {
        Some(c) => format!("{} client {c} (is the client in its config?)", scope.feature),
        None => scope.feature.clone(),
    }
}

/// The PromQL a Prometheus-judged interval asks, every series selector
/// carrying the `--selector` matchers.
#[derive(Debug, PartialEq)]
pub struct Queries {
    pub requests: String,
    pub errors: String,
    pub p99: String,
    pub observed: String,
    pub legacy_requests: String,
    pub legacy_errors: String,
    pub shed: String,
    pub down: String,
    pub percent: String,
    /// The feature's shadow compares by outcome (no client label).
    pub shadow_matches: String,
    pub shadow_mismatches: String,
    pub shadow_errors: String,
}

impl Queries {
    pub fn new(m: &Matchers, scope: &Scope, secs: u64) -> Queries {
        let (requests, histogram) = match &scope.client {
            None => ("paymesh_requests_total", "paymesh_request_duration_seconds"),
            Some(_) => ("paymesh_client_requests_total", "paymesh_client_request_duration_seconds"),
        };
        let feature = scope.feature.as_str();
        let labels = |route: &'static str, code: Option<&'static str>| {
            let mut l = vec![("feature", feature), ("route", route)];
            l.extend(scope.client.as_deref().map(|c| ("client", c)));
            l.extend(code.map(|c| ("code", c)));
            l
        };
        let sum = |metric: &str, l: &[(&str, &str)]| format!("sum(increase({}[{secs}s]))", m.series(metric, l));
        let (orch, legacy) = (Route::Orchestration.as_str(), Route::Legacy.as_str());
        let client_label = scope.client.as_deref().unwrap_or("");
        let shadow =
            |outcome: &str| sum("paymesh_shadow_compares_total", &[("feature", feature), ("outcome", outcome)]);
        Queries {
            requests: sum(requests, &labels(orch, None)),
            errors: sum(requests, &labels(orch, Some("5xx"))),
            p99: format!(
                "histogram_quantile(0.99, sum by (le) (increase({}[{secs}s])))",
                m.series(&format!("{histogram}_bucket"), &labels(orch, None))
            ),
            observed: sum(&format!("{histogram}_count"), &labels(orch, None)),
            legacy_requests: sum(requests, &labels(legacy, None)),
            legacy_errors: sum(requests, &labels(legacy, Some("5xx"))),
            shed: format!(
                "count(min_over_time({}[{secs}s]) == 0)",
                m.series("paymesh_component_enabled", &[("component", Component::DetailedMetrics.as_str())])
            ),
            down: format!(
                "count((min_over_time({}[{secs}s]) == 0) and on (instance, job) last_over_time({}[1h]))",
                m.series("up", &[]),
                m.series("paymesh_inflight_requests", &[])
            ),
            percent: format!(
                "count({} != {})",
                m.series("paymesh_migration_percent", &[("feature", feature), ("client", client_label)]),
                format_percent(scope.percent)
            ),
            shadow_matches: shadow("match"),
            shadow_mismatches: shadow("mismatch"),
            shadow_errors: shadow("shadow_error"),
        }
    }
}

async fn prometheus(p: &Prometheus, scope: &Scope, elapsed: Duration) -> Evidence {
    let q = Queries::new(&p.matchers, scope, elapsed.as_secs().max(1));
    let base = &p.base;
    let mut missing = Vec::new();
    let mut read = async |q: String, what: &str| match p.query(&q).await {
        Ok(v) => v,
        Err(e) => {
            let reason = format!("Prometheus at {base}: {what}: {e:#}");
            if !missing.iter().any(|m: &String| m.starts_with(&format!("Prometheus at {base}"))) {
                missing.push(reason);
            }
            None
        }
    };
    let orchestration = Side {
        requests: read(q.requests, "requests").await.unwrap_or(0.0),
        errors: read(q.errors, "errors").await.unwrap_or(0.0),
        p99: read(q.p99, "p99").await.filter(|v| v.is_finite()),
        observed: read(q.observed, "histogram count").await.unwrap_or(0.0),
    };
    let legacy = Side {
        requests: read(q.legacy_requests, "legacy requests").await.unwrap_or(0.0),
        errors: read(q.legacy_errors, "legacy errors").await.unwrap_or(0.0),
        p99: None,
        observed: 0.0,
    };
    let shadow = Compares {
        matches: read(q.shadow_matches, "shadow matches").await.unwrap_or(0.0),
        mismatches: read(q.shadow_mismatches, "shadow mismatches").await.unwrap_or(0.0),
        errors: read(q.shadow_errors, "shadow errors").await.unwrap_or(0.0),
    };
    let shed = read(q.shed, Component::DetailedMetrics.as_str()).await.unwrap_or(0.0);
    let down = read(q.down, "targets").await.unwrap_or(0.0);
    let off = read(q.percent, "percent").await.unwrap_or(0.0);
    if shed > 0.0 {
        missing.push(format!("detailed_metrics is shed on {shed} sidecar(s): no latency histograms"));
    }
    if down > 0.0 {
        missing.push(format!("no data from {down} sidecar(s): Prometheus could not scrape them"));
    }
    if off > 0.0 {
        missing.push(format!("{off} sidecar(s) do not serve {}% yet", format_percent(scope.percent)));
    }
    covered(&orchestration, &mut missing);
    Evidence { orchestration, legacy, shadow, missing }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paymeshctl::prom::scalar;

    #[test]
    fn prometheus_answers() {
        let ok = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"42.5"]}]}}"#;
        assert_eq!(scalar(ok).unwrap(), Some(42.5));
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(scalar(empty).unwrap(), None);
        let nan = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert!(scalar(nan).unwrap().unwrap().is_nan());
        assert!(scalar(r#"{"status":"error","error":"bad query"}"#).is_err());
    }

    #[test]
    fn every_series_selector_carries_the_selector() {
        let m = Matchers::parse(r#"namespace="payments",cluster="eu-1""#).unwrap();
        let scope = Scope { feature: "charge".into(), client: Some("ops".into()), percent: 20.0 };
        let q = Queries::new(&m, &scope, 60);
        let sel = r#"namespace="payments",cluster="eu-1""#;
        assert_eq!(
            q.errors,
            format!(
                r#"sum(increase(paymesh_client_requests_total{{feature="charge",route="orchestration",client="ops",code="5xx",{sel}}}[60s]))"#
            )
        );
        assert_eq!(
            q.p99,
            format!(
                r#"histogram_quantile(0.99, sum by (le) (increase(paymesh_client_request_duration_seconds_bucket{{feature="charge",route="orchestration",client="ops",{sel}}}[60s])))"#
            )
        );
        assert_eq!(
            q.down,
            format!(
                r#"count((min_over_time(up{{{sel}}}[60s]) == 0) and on (instance, job) last_over_time(paymesh_inflight_requests{{{sel}}}[1h]))"#
            )
        );
        assert_eq!(
            q.percent,
            format!(r#"count(paymesh_migration_percent{{feature="charge",client="ops",{sel}}} != 20)"#)
        );
        // No client label on shadow compares: a client's ramp reads its feature's.
        assert_eq!(
            q.shadow_mismatches,
            format!(
                r#"sum(increase(paymesh_shadow_compares_total{{feature="charge",outcome="mismatch",{sel}}}[60s]))"#
            )
        );
        assert_eq!(
            q.shed,
            format!(
                r#"count(min_over_time(paymesh_component_enabled{{component="detailed_metrics",{sel}}}[60s]) == 0)"#
            )
        );
        // Every selector of every query: count the metric names and the matchers.
        for query in [
            &q.requests,
            &q.errors,
            &q.p99,
            &q.observed,
            &q.legacy_requests,
            &q.legacy_errors,
            &q.shed,
            &q.down,
            &q.percent,
            &q.shadow_matches,
            &q.shadow_mismatches,
            &q.shadow_errors,
        ] {
            assert_eq!(query.matches("{").count(), query.matches(sel).count(), "{query}");
        }

        let plain = Queries::new(&Matchers::default(), &Scope { client: None, ..scope }, 5);
        assert_eq!(
            plain.legacy_requests,
            r#"sum(increase(paymesh_requests_total{feature="charge",route="legacy"}[5s]))"#
        );
        assert_eq!(
            plain.down,
            "count((min_over_time(up[5s]) == 0) and on (instance, job) last_over_time(paymesh_inflight_requests[1h]))"
        );
        assert_eq!(plain.percent, r#"count(paymesh_migration_percent{feature="charge",client=""} != 20)"#);
        assert_eq!(
            plain.shadow_matches,
            r#"sum(increase(paymesh_shadow_compares_total{feature="charge",outcome="match"}[5s]))"#
        );
        assert_eq!(
            plain.shadow_errors,
            r#"sum(increase(paymesh_shadow_compares_total{feature="charge",outcome="shadow_error"}[5s]))"#
        );
    }

    fn view(requests: f64, observed: f64, detailed: bool, percent: f64) -> View {
        let mut v = View { detailed: Some(detailed), percent: Some(percent), client_series: true, ..View::default() };
        v.orchestration.requests = requests;
        v.orchestration.buckets.insert(paymeshctl::prom::OrderedF64(0.01), observed);
        v.orchestration.buckets.insert(paymeshctl::prom::OrderedF64(f64::INFINITY), observed);
        v
    }

    #[test]
    fn shadow_compares_are_summed_over_sidecars_and_diffed() {
        let urls = vec!["http://a".to_owned(), "http://b".to_owned()];
        let scope = Scope { feature: "charge".into(), client: Some("ops".into()), percent: 20.0 };
        let with = |matches: f64, mismatches: f64, errors: f64| {
            let mut v = view(0.0, 0.0, true, 20.0);
            v.shadow = Compares { matches, mismatches, errors };
            v
        };
        let e = sidecar_evidence(
            &urls,
            &scope,
            &[Ok(with(100.0, 1.0, 0.0)), Ok(with(50.0, 0.0, 4.0))],
            // b restarted: its counters start again from zero.
            &[Ok(with(130.0, 3.0, 1.0)), Ok(with(8.0, 1.0, 2.0))],
        );
        assert_eq!(e.shadow, Compares { matches: 38.0, mismatches: 3.0, errors: 3.0 });
    }

    #[test]
    fn a_missing_sidecar_shed_histograms_or_a_stale_percent_are_not_evidence() {
        let urls = vec!["http://a".to_owned(), "http://b".to_owned()];
        let scope = Scope { feature: "charge".into(), client: None, percent: 20.0 };
        let ok = sidecar_evidence(
            &urls,
            &scope,
            &[Ok(view(0.0, 0.0, true, 20.0)), Ok(view(0.0, 0.0, true, 20.0))],
            &[Ok(view(100.0, 100.0, true, 20.0)), Ok(view(50.0, 50.0, true, 20.0))],
        );
        assert!(ok.missing.is_empty(), "{:?}", ok.missing);
        assert_eq!(ok.orchestration.requests, 150.0);
        assert_eq!(ok.shadow, Compares::default());
        assert!(ok.orchestration.p99.is_some());

        let down = sidecar_evidence(
            &urls,
            &scope,
            &[Ok(view(0.0, 0.0, true, 20.0)), Err("refused".into())],
            &[Ok(view(100.0, 100.0, true, 20.0)), Ok(view(50.0, 50.0, true, 20.0))],
        );
        assert!(down.missing[0].contains("no data from sidecar http://b"), "{:?}", down.missing);

        // The evidence of sidecar a alone, seen `before` and `after`.
        let one = |before, after| sidecar_evidence(&urls[..1], &scope, &[Ok(before)], &[Ok(after)]);
        let shed = one(view(0.0, 0.0, true, 20.0), view(100.0, 0.0, false, 20.0));
        assert!(shed.missing.iter().any(|m| m.contains("detailed_metrics is shed")), "{:?}", shed.missing);
        let stale = one(view(0.0, 0.0, true, 10.0), view(100.0, 100.0, true, 10.0));
        assert!(stale.missing[0].contains("serves 10%, not 20%"), "{:?}", stale.missing);
        let partial = one(view(0.0, 0.0, true, 20.0), view(100.0, 40.0, true, 20.0));
        assert!(partial.missing[0].contains("saw only 40 of 100"), "{:?}", partial.missing);
    }

    #[test]
    fn a_client_whose_series_appear_mid_interval_is_not_evidence() {
        let urls = vec!["http://a".to_owned()];
        let scope = Scope { feature: "charge".into(), client: Some("ops".into()), percent: 20.0 };
        let hidden = View { client_series: false, ..view(0.0, 0.0, true, 20.0) };
        // Totals since the sidecar started, shown once the override landed.
        let e = sidecar_evidence(&urls, &scope, &[Ok(hidden)], &[Ok(view(5000.0, 5000.0, true, 20.0))]);
        assert_eq!(e.missing.len(), 1, "{:?}", e.missing);
        assert!(e.missing[0].contains("no series for client ops at the start"), "{:?}", e.missing);
        let shown =
            sidecar_evidence(&urls, &scope, &[Ok(view(0.0, 0.0, true, 20.0))], &[Ok(view(50.0, 50.0, true, 20.0))]);
        assert!(shown.missing.is_empty(), "{:?}", shown.missing);
    }
}

//! Where a ramp reads the health of the traffic it moves: each sidecar's
//! `/metrics` (scraped at both ends of the interval and diffed) or a
//! Prometheus server (PromQL over the interval).
//!
//! Either way the answer is [`Evidence`]: the orchestration and legacy
//! paths' figures for the ramp's scope (a feature, or one client of it),
//! and every reason those figures are not enough to call a step healthy: a
//! sidecar that did not answer, histograms shed with `detailed_metrics`, a
//! sidecar not yet serving the step's percent, Prometheus unreachable or
//! short of samples. A missing signal is never read as a healthy one.

use crate::prom::{Figures, View, scalar};
use crate::store::format_percent;
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use paymesh_vocab::{Component, Route};
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
    /// A Prometheus server's base URL and extra label matchers
    /// (`job="paymesh"`) for every query.
    Prometheus { url: String, selector: Option<String> },
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
    /// Every reason these figures cannot show the step healthy.
    pub missing: Vec<String>,
}

impl Source {
    pub async fn mark(&self, http: &Http, scope: &Scope) -> Mark {
        match self {
            Source::Sidecars(urls) => Mark::Scraped(scrape_all(http, urls, scope).await),
            Source::Prometheus { .. } => Mark::Clock(Instant::now()),
        }
    }

    /// The scope's figures since `mark`.
    pub async fn since(&self, http: &Http, scope: &Scope, mark: &Mark) -> Evidence {
        match (self, mark) {
            (Source::Sidecars(urls), Mark::Scraped(before)) => {
                let after = scrape_all(http, urls, scope).await;
                sidecar_evidence(urls, scope, before, &after)
            }
            (Source::Prometheus { url, selector }, Mark::Clock(start)) => {
                prometheus(http, url, selector.as_deref(), scope, start.elapsed()).await
            }
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
        if b.detailed == Some(false) || a.detailed == Some(false) || a.detailed_offs > b.detailed_offs {
            let what =
                if scope.client.is_some() { "latency histograms and per-client series" } else { "latency histograms" };
            missing.push(format!("detailed_metrics is shed on sidecar {url}: no {what}"));
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
    Evidence { orchestration, legacy: Side::from(&legacy), missing }
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

async fn prometheus(http: &Http, base: &str, selector: Option<&str>, scope: &Scope, elapsed: Duration) -> Evidence {
    let secs = elapsed.as_secs().max(1);
    let extra = selector.map(|s| format!(",{}", s.trim_matches(|c| c == '{' || c == '}'))).unwrap_or_default();
    let (requests, histogram, who) = match &scope.client {
        None => ("paymesh_requests_total", "paymesh_request_duration_seconds", String::new()),
        Some(c) => {
            ("paymesh_client_requests_total", "paymesh_client_request_duration_seconds", format!(",client=\"{c}\""))
        }
    };
    let feature = &scope.feature;
    let sel = |route: &str| format!("{{feature=\"{feature}\",route=\"{route}\"{who}{extra}}}");
    let sum = |q: String| format!("sum(increase({q}[{secs}s]))");
    let query = |q: String| async move {
        let url = format!("{}/api/v1/query?query={}", base.trim_end_matches('/'), encode(&q));
        scalar(&http.get(&url).await?)
    };
    let mut missing = Vec::new();
    let side = |route: &'static str| {
        let s = sel(route);
        let errors = format!("{requests}{}", s.replacen('}', ",code=\"5xx\"}", 1));
        (sum(format!("{requests}{s}")), sum(errors), format!("{histogram}_count{s}"), format!("{histogram}_bucket{s}"))
    };
    let (o_req, o_err, o_count, o_bucket) = side(Route::Orchestration.as_str());
    let (l_req, l_err, _, _) = side(Route::Legacy.as_str());
    let p99 = format!("histogram_quantile(0.99, sum by (le) (increase({o_bucket}[{secs}s])))");
    let shed = format!(
        "count(min_over_time(paymesh_component_enabled{{component=\"{}\"{extra}}}[{secs}s]) == 0)",
        Component::DetailedMetrics.as_str()
    );
    let down = format!(
        "count((min_over_time(up[{secs}s]) == 0) and on (instance, job) last_over_time(paymesh_inflight_requests{{{}}}[1h]))",
        extra.trim_start_matches(',')
    );
    let client_label = scope.client.as_deref().unwrap_or("");
    let percent = format!(
        "count(paymesh_migration_percent{{feature=\"{feature}\",client=\"{client_label}\"{extra}}} != {})",
        format_percent(scope.percent)
    );
    let mut read = async |q: String, what: &str| match query(q).await {
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
        requests: read(o_req, "requests").await.unwrap_or(0.0),
        errors: read(o_err, "errors").await.unwrap_or(0.0),
        p99: read(p99, "p99").await.filter(|v| v.is_finite()),
        observed: read(sum(o_count), "histogram count").await.unwrap_or(0.0),
    };
    let legacy = Side {
        requests: read(l_req, "legacy requests").await.unwrap_or(0.0),
        errors: read(l_err, "legacy errors").await.unwrap_or(0.0),
        p99: None,
        observed: 0.0,
    };
    let shed = read(shed, Component::DetailedMetrics.as_str()).await.unwrap_or(0.0);
    let down = read(down, "targets").await.unwrap_or(0.0);
    let off = read(percent, "percent").await.unwrap_or(0.0);
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
    Evidence { orchestration, legacy, missing }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn queries_are_url_encoded() {
        assert_eq!(encode("sum(x{a=\"b\"})"), "sum%28x%7Ba%3D%22b%22%7D%29");
    }

    fn view(requests: f64, observed: f64, detailed: bool, percent: f64) -> View {
        let mut v = View { detailed: Some(detailed), percent: Some(percent), ..View::default() };
        v.orchestration.requests = requests;
        v.orchestration.buckets.insert(crate::prom::OrderedF64(0.01), observed);
        v.orchestration.buckets.insert(crate::prom::OrderedF64(f64::INFINITY), observed);
        v
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
        assert!(ok.orchestration.p99.is_some());

        let down = sidecar_evidence(
            &urls,
            &scope,
            &[Ok(view(0.0, 0.0, true, 20.0)), Err("refused".into())],
            &[Ok(view(100.0, 100.0, true, 20.0)), Ok(view(50.0, 50.0, true, 20.0))],
        );
        assert!(down.missing[0].contains("no data from sidecar http://b"), "{:?}", down.missing);

        let shed = sidecar_evidence(
            &urls[..1],
            &scope,
            &[Ok(view(0.0, 0.0, true, 20.0))],
            &[Ok(view(100.0, 0.0, false, 20.0))],
        );
        assert!(shed.missing.iter().any(|m| m.contains("detailed_metrics is shed")), "{:?}", shed.missing);

        let stale = sidecar_evidence(
            &urls[..1],
            &scope,
            &[Ok(view(0.0, 0.0, true, 10.0))],
            &[Ok(view(100.0, 100.0, true, 10.0))],
        );
        assert!(stale.missing[0].contains("serves 10%, not 20%"), "{:?}", stale.missing);

        let partial = sidecar_evidence(
            &urls[..1],
            &scope,
            &[Ok(view(0.0, 0.0, true, 20.0))],
            &[Ok(view(100.0, 40.0, true, 20.0))],
        );
        assert!(partial.missing[0].contains("saw only 40 of 100"), "{:?}", partial.missing);
    }
}

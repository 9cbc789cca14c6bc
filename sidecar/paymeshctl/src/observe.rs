//! Where a ramp reads the orchestration path's health: each sidecar's
//! `/metrics` (scraped at both ends of the interval and diffed) or a
//! Prometheus server (PromQL over the interval).

use crate::prom::Figures;
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

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
    /// A Prometheus server's base URL.
    Prometheus(String),
}

/// What a source saw at the start of an interval.
#[derive(Debug)]
pub enum Mark {
    Scraped(Figures),
    Clock,
}

impl Source {
    pub async fn mark(&self, http: &Http, feature: &str) -> anyhow::Result<Mark> {
        match self {
            Source::Sidecars(urls) => Ok(Mark::Scraped(scrape_all(http, urls, feature).await?)),
            Source::Prometheus(_) => Ok(Mark::Clock),
        }
    }

    /// The orchestration path's figures for `feature` since `mark`, which
    /// was taken `interval` ago.
    pub async fn since(&self, http: &Http, feature: &str, mark: &Mark, interval: Duration) -> anyhow::Result<Window> {
        match (self, mark) {
            (Source::Sidecars(urls), Mark::Scraped(before)) => {
                let now = scrape_all(http, urls, feature).await?;
                let d = now.since(before);
                Ok(Window { requests: d.requests, errors: d.errors, p99: d.quantile(0.99) })
            }
            (Source::Prometheus(base), _) => prometheus(http, base, feature, interval).await,
            (Source::Sidecars(_), Mark::Clock) => bail!("a sidecar window needs a scrape mark"),
        }
    }
}

/// Observations over one interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub requests: f64,
    pub errors: f64,
    /// Seconds; `None` without observations.
    pub p99: Option<f64>,
}

impl Window {
    pub fn error_rate(&self) -> f64 {
        if self.requests > 0.0 { self.errors / self.requests } else { 0.0 }
    }
}

async fn scrape_all(http: &Http, urls: &[String], feature: &str) -> anyhow::Result<Figures> {
    let mut total = Figures::default();
    for url in urls {
        let text = http.get(&format!("{}/metrics", url.trim_end_matches('/'))).await?;
        total.add(&Figures::parse(&text, feature, "orchestration"));
    }
    Ok(total)
}

async fn prometheus(http: &Http, base: &str, feature: &str, interval: Duration) -> anyhow::Result<Window> {
    let secs = interval.as_secs().max(1);
    let selector = format!("feature=\"{feature}\",route=\"orchestration\"");
    let requests = format!("sum(increase(paymesh_requests_total{{{selector}}}[{secs}s]))");
    let errors = format!("sum(increase(paymesh_requests_total{{{selector},code=\"5xx\"}}[{secs}s]))");
    let p99 = format!(
        "histogram_quantile(0.99, sum by (le) (increase(paymesh_request_duration_seconds_bucket{{{selector}}}[{secs}s])))"
    );
    let query = |q: String| async move {
        let url = format!("{}/api/v1/query?query={}", base.trim_end_matches('/'), encode(&q));
        scalar(&http.get(&url).await?)
    };
    Ok(Window {
        requests: query(requests).await?.unwrap_or(0.0),
        errors: query(errors).await?.unwrap_or(0.0),
        p99: query(p99).await?.filter(|v| v.is_finite()),
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
}

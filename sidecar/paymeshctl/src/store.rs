//! Migration percents and their history in etcd.
//!
//! Keys: `<prefix>/migration/<feature>` holds the percent of the feature's
//! traffic sent to the orchestration path, as plain text;
//! `<prefix>/migration-history/<feature>/<unix ms>` records each change a
//! person or a ramp made, as JSON.

use anyhow::{Context, bail};
use etcd_client::{Client, GetOptions, SortOrder, SortTarget};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

pub const FEATURES: [&str; 3] = ["charge", "refund", "disbursement"];

/// Parses a percent with the sidecars' own parser, so this tool accepts
/// exactly what they apply: a finite decimal in [0, 100], kept to basis
/// points (two decimals).
pub fn parse_percent(text: &str) -> anyhow::Result<f64> {
    match paymesh_sidecar::migration::parse_percent(text) {
        Ok(basis_points) => Ok(f64::from(basis_points) / 100.0),
        Err(e) => bail!(e),
    }
}

pub fn check_feature(feature: &str) -> anyhow::Result<()> {
    if FEATURES.contains(&feature) {
        Ok(())
    } else {
        bail!("unknown feature {feature:?}: expected one of {}", FEATURES.join(", "))
    }
}

/// One feature's stored percent.
#[derive(Debug)]
pub struct Stored {
    pub feature: String,
    /// `None`: no key; the sidecars use their configured default.
    pub percent: Option<Result<f64, String>>,
    pub mod_revision: i64,
}

pub struct Store {
    client: Client,
    prefix: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl Store {
    pub async fn connect(endpoints: &[String], prefix: &str) -> anyhow::Result<Store> {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(3))
            .with_timeout(std::time::Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options))
            .await
            .with_context(|| format!("cannot connect to etcd at {}", endpoints.join(",")))?;
        Ok(Store { client, prefix: prefix.trim_end_matches('/').to_owned() })
    }

    fn key(&self, feature: &str) -> String {
        format!("{}/migration/{feature}", self.prefix)
    }

    /// Every feature's percent, and the store's revision.
    pub async fn get_all(&mut self) -> anyhow::Result<(Vec<Stored>, i64)> {
        let prefix = format!("{}/migration/", self.prefix);
        let resp = self.client.get(prefix.as_str(), Some(GetOptions::new().with_prefix())).await.context("etcd get")?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut out: Vec<Stored> =
            FEATURES.iter().map(|f| Stored { feature: (*f).to_owned(), percent: None, mod_revision: 0 }).collect();
        for kv in resp.kvs() {
            let feature = kv.key_str().unwrap_or_default().trim_start_matches(prefix.as_str());
            let value = kv.value_str().unwrap_or_default();
            let percent = Some(parse_percent(value).map_err(|e| e.to_string()));
            match out.iter_mut().find(|s| s.feature == feature) {
                Some(s) => {
                    s.percent = percent;
                    s.mod_revision = kv.mod_revision();
                }
                None => out.push(Stored { feature: feature.to_owned(), percent, mod_revision: kv.mod_revision() }),
            }
        }
        Ok((out, revision))
    }

    /// The feature's valid percent, or 0 when unset.
    pub async fn get(&mut self, feature: &str) -> anyhow::Result<f64> {
        let resp = self.client.get(self.key(feature), None).await.context("etcd get")?;
        match resp.kvs().first() {
            None => Ok(0.0),
            Some(kv) => parse_percent(kv.value_str().unwrap_or_default())
                .with_context(|| format!("the stored value of {} is not a valid percent", self.key(feature))),
        }
    }

    /// Validates, then writes the percent and a history record.
    pub async fn set(&mut self, feature: &str, percent: f64, history: Value) -> anyhow::Result<i64> {
        check_feature(feature)?;
        let text = format_percent(percent);
        parse_percent(&text)?;
        let resp = self.client.put(self.key(feature), text, None).await.context("etcd put")?;
        let revision = resp.header().map_or(0, |h| h.revision());
        self.record(feature, history).await?;
        Ok(revision)
    }

    async fn record(&mut self, feature: &str, mut entry: Value) -> anyhow::Result<()> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        entry["time_ms"] = json!(now as u64);
        entry["feature"] = json!(feature);
        let key = format!("{}/migration-history/{feature}/{now:013}", self.prefix);
        self.client.put(key, entry.to_string(), None).await.context("etcd put history")?;
        Ok(())
    }

    /// The newest `limit` history records of a feature, oldest first.
    pub async fn history(&mut self, feature: &str, limit: i64) -> anyhow::Result<Vec<Value>> {
        let prefix = format!("{}/migration-history/{feature}/", self.prefix);
        let options = GetOptions::new().with_prefix().with_sort(SortTarget::Key, SortOrder::Descend).with_limit(limit);
        let resp = self.client.get(prefix, Some(options)).await.context("etcd get history")?;
        let mut out: Vec<Value> = resp.kvs().iter().filter_map(|kv| serde_json::from_slice(kv.value()).ok()).collect();
        out.reverse();
        Ok(out)
    }

    /// Every value under `<prefix>/<sub>/`, with its key, in key order.
    pub async fn list(&mut self, sub: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let prefix = format!("{}/{sub}/", self.prefix);
        let resp = self.client.get(prefix, Some(GetOptions::new().with_prefix())).await.context("etcd get")?;
        Ok(resp.kvs().iter().map(|kv| (kv.key_str().unwrap_or_default().to_owned(), kv.value().to_vec())).collect())
    }
}

/// `12.5` → `"12.5"`, `30.0` → `"30"`.
pub fn format_percent(p: f64) -> String {
    let s = format!("{p:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_are_finite_and_in_range() {
        assert_eq!(parse_percent("12.5").unwrap(), 12.5);
        assert_eq!(parse_percent("33.333").unwrap(), 33.33);
        assert_eq!(parse_percent(" 100 ").unwrap(), 100.0);
        assert_eq!(parse_percent("0").unwrap(), 0.0);
        for bad in ["", "abc", "-1", "100.01", "NaN", "inf", "1e3", "50%"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percents_format_compactly() {
        assert_eq!(format_percent(30.0), "30");
        assert_eq!(format_percent(12.5), "12.5");
        assert_eq!(format_percent(0.01), "0.01");
    }

    #[test]
    fn features_are_the_three_migrating_ones() {
        assert!(check_feature("charge").is_ok());
        assert!(check_feature("other").is_err());
    }
}

//! Migration percents, their per-client overrides and their history in etcd.
//!
//! Keys: `<prefix>/migration/<feature>` holds the percent of the feature's
//! traffic sent to the orchestration path, as plain text;
//! `<prefix>/migration/<feature>/clients/<client-id>` overrides it for one
//! client; `<prefix>/migration-history/<feature>/<unix ms>-<pid>-<n>`
//! records each change a person or a ramp made, as JSON (a `client` field
//! names the override it was about). Ramp writes are compare-and-swaps on
//! the key's mod revision (see [`Store::cas`]); an operator's `set` is a
//! plain write, so it always wins.

use anyhow::{Context, bail};
use etcd_client::{Client, Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse};
/// `12.5` → `"12.5"`, `30.0` → `"30"`: as the sidecars read it back.
pub use paymesh_vocab::percent::format_percent;
use paymesh_vocab::{Feature, percent};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const FEATURES: [&str; 3] = [Feature::Charge.as_str(), Feature::Refund.as_str(), Feature::Disbursement.as_str()];

/// Parses a percent with the sidecars' own parser, so this tool accepts
/// exactly what they apply: a finite decimal in [0, 100], kept to basis
/// points (two decimals).
pub fn parse_percent(text: &str) -> anyhow::Result<f64> {
    match percent::parse_percent(text) {
        Ok(basis_points) => Ok(percent::percent(basis_points)),
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

/// A client id as the sidecars' config accepts it (`clients[].id`).
pub fn check_client(id: &str) -> anyhow::Result<()> {
    if paymesh_vocab::ids::valid_client_id(id) {
        Ok(())
    } else {
        bail!("{id:?} is not a client id: 1-64 characters of [A-Za-z0-9._-], as in the config")
    }
}

/// What a migration key is about: a feature, or one client's override of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub feature: String,
    pub client: Option<String>,
}

impl Target {
    pub fn new(feature: &str, client: Option<&str>) -> anyhow::Result<Target> {
        check_feature(feature)?;
        if let Some(c) = client {
            check_client(c)?;
        }
        Ok(Target { feature: feature.to_owned(), client: client.map(str::to_owned) })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.client {
            Some(c) => write!(f, "{} (client {c})", self.feature),
            None => f.write_str(&self.feature),
        }
    }
}

/// One key's stored value.
#[derive(Clone, Debug, PartialEq)]
pub struct Current {
    /// `None`: no key.
    pub percent: Option<Result<f64, String>>,
    /// The raw value, for reports.
    pub raw: Option<String>,
    /// 0 when the key does not exist.
    pub mod_revision: i64,
}

/// One feature's stored percent and its client overrides.
#[derive(Debug)]
pub struct Stored {
    pub feature: String,
    /// `None`: no key; the sidecars use their configured default.
    pub percent: Option<Result<f64, String>>,
    pub mod_revision: i64,
    /// (client id, its override, mod revision), in id order.
    pub clients: Vec<(String, Result<f64, String>, i64)>,
}

/// What a compare-and-swap found.
#[derive(Debug, PartialEq)]
pub enum Cas {
    /// Written at this store revision.
    Written(i64),
    /// Someone else changed the key since `expected`: nothing was written.
    Preempted(Current),
    /// The ramp's lock is gone (its lease expired): nothing was written.
    LostLock,
}

/// Who is acting: `user@host pid N`, in history records and lock values.
pub fn actor() -> Value {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .or_else(user_from_uid)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into());
    json!({ "user": user, "host": host, "pid": std::process::id() })
}

/// The login name of this process's uid, from /etc/passwd (no `USER` in
/// containers and cron jobs).
fn user_from_uid() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == uid).then(|| name.to_owned())
        })
        .or(Some(format!("uid {uid}")))
}

/// `alice@box pid 42`.
pub fn actor_text(v: &Value) -> String {
    match (v["user"].as_str(), v["host"].as_str()) {
        (Some(u), Some(h)) => match v["pid"].as_u64() {
            Some(pid) => format!("{u}@{h} pid {pid}"),
            None => format!("{u}@{h}"),
        },
        _ => "-".to_owned(),
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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
    /// Over the endpoints, TLS and credentials of `etcd` (`--etcd*`).
    pub async fn connect(etcd: &crate::etcd::EtcdArgs, prefix: &str) -> anyhow::Result<Store> {
        let options = etcd.connect_options()?;
        let endpoints = &etcd.endpoints;
        let client = Client::connect(endpoints, Some(options))
            .await
            .with_context(|| format!("cannot connect to etcd at {}", endpoints.join(",")))?;
        Ok(Store { client, prefix: prefix.trim_end_matches('/').to_owned() })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of a feature's percent or of a client's override.
    pub fn key(&self, t: &Target) -> String {
        match &t.client {
            Some(c) => format!("{}/migration/{}/clients/{c}", self.prefix, t.feature),
            None => format!("{}/migration/{}", self.prefix, t.feature),
        }
    }

    /// Every feature's percent and overrides, and the store's revision.
    pub async fn get_all(&mut self) -> anyhow::Result<(Vec<Stored>, i64)> {
        let prefix = format!("{}/migration/", self.prefix);
        let resp = self.client.get(prefix.as_str(), Some(GetOptions::new().with_prefix())).await.context("etcd get")?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut out: Vec<Stored> = FEATURES
            .iter()
            .map(|f| Stored { feature: (*f).to_owned(), percent: None, mod_revision: 0, clients: Vec::new() })
            .collect();
        for kv in resp.kvs() {
            let name = kv.key_str().unwrap_or_default().trim_start_matches(prefix.as_str());
            let value = kv.value_str().unwrap_or_default();
            let percent = parse_percent(value).map_err(|e| e.to_string());
            let (feature, client) = match name.split_once("/clients/") {
                Some((f, c)) => (f, Some(c)),
                None => (name, None),
            };
            let slot = match out.iter().position(|s| s.feature == feature) {
                Some(i) => i,
                None => {
                    out.push(Stored { feature: feature.to_owned(), percent: None, mod_revision: 0, clients: vec![] });
                    out.len() - 1
                }
            };
            let s = &mut out[slot];
            match client {
                Some(c) => s.clients.push((c.to_owned(), percent, kv.mod_revision())),
                None => {
                    s.percent = Some(percent);
                    s.mod_revision = kv.mod_revision();
                }
            }
        }
        Ok((out, revision))
    }

    /// One key's value and mod revision.
    pub async fn read(&mut self, t: &Target) -> anyhow::Result<Current> {
        let resp = self.client.get(self.key(t), None).await.context("etcd get")?;
        Ok(current(resp.kvs().first()))
    }

    /// The percent `t` is served at now: the key's valid value; for a client
    /// without an override, its feature's; 0 when unset.
    pub async fn effective(&mut self, t: &Target) -> anyhow::Result<(f64, Current)> {
        let cur = self.read(t).await?;
        let percent = match &cur.percent {
            Some(Ok(p)) => *p,
            Some(Err(e)) => bail!("the stored value of {} is not a valid percent: {e}", self.key(t)),
            None if t.client.is_some() => {
                let feature = Target { client: None, ..t.clone() };
                match self.read(&feature).await?.percent {
                    Some(Ok(p)) => p,
                    _ => 0.0,
                }
            }
            None => 0.0,
        };
        Ok((percent, cur))
    }

    /// Validates, then writes the percent and a history record: a person's
    /// write, unconditional.
    pub async fn set(&mut self, t: &Target, percent: f64, history: Value) -> anyhow::Result<i64> {
        let text = format_percent(percent);
        parse_percent(&text)?;
        let ops = vec![TxnOp::put(self.key(t), text, None), self.history_op(t, history)];
        let resp = self.client.txn(Txn::new().and_then(ops)).await.context("etcd put")?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Deletes a client's override (it falls back to the feature's percent).
    pub async fn delete(&mut self, t: &Target, history: Value) -> anyhow::Result<i64> {
        let ops = vec![TxnOp::delete(self.key(t), None), self.history_op(t, history)];
        let resp = self.client.txn(Txn::new().and_then(ops)).await.context("etcd delete")?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Writes `percent` and its history record in one transaction, only if
    /// the key's mod revision is still `expected` (0: the key must not
    /// exist) and, with `lock`, the lock key is still held by that lease.
    /// Otherwise nothing is written and the key's current value is returned.
    pub async fn cas(
        &mut self,
        t: &Target,
        expected: i64,
        lock: Option<(&str, i64)>,
        percent: f64,
        history: Value,
    ) -> anyhow::Result<Cas> {
        let text = format_percent(percent);
        parse_percent(&text)?;
        let key = self.key(t);
        let mut when = vec![Compare::mod_revision(key.as_str(), CompareOp::Equal, expected)];
        if let Some((lock_key, lease)) = lock {
            when.push(Compare::lease(lock_key, CompareOp::Equal, lease));
        }
        let mut or_else = vec![TxnOp::get(key.as_str(), None)];
        if let Some((lock_key, _)) = lock {
            or_else.push(TxnOp::get(lock_key, None));
        }
        let txn = Txn::new()
            .when(when)
            .and_then(vec![TxnOp::put(key.as_str(), text, None), self.history_op(t, history)])
            .or_else(or_else);
        let resp = self.client.txn(txn).await.context("etcd transaction")?;
        if resp.succeeded() {
            return Ok(Cas::Written(resp.header().map_or(0, |h| h.revision())));
        }
        let gets: Vec<_> = resp
            .op_responses()
            .into_iter()
            .filter_map(|r| match r {
                TxnOpResponse::Get(g) => Some(g),
                _ => None,
            })
            .collect();
        let now = current(gets.first().and_then(|g| g.kvs().first()));
        if now.mod_revision != expected {
            return Ok(Cas::Preempted(now));
        }
        Ok(Cas::LostLock)
    }

    /// Appends a history record outside any transaction (a ramp's stop).
    pub async fn record(&mut self, t: &Target, entry: Value) -> anyhow::Result<()> {
        let op = self.history_op(t, entry);
        self.client.txn(Txn::new().and_then(vec![op])).await.context("etcd put history")?;
        Ok(())
    }

    fn history_op(&self, t: &Target, mut entry: Value) -> TxnOp {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let now = now_ms();
        entry["time_ms"] = json!(now);
        entry["feature"] = json!(t.feature);
        if let Some(c) = &t.client {
            entry["client"] = json!(c);
        }
        if entry.get("by").is_none() {
            entry["by"] = actor();
        }
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let key = format!("{}/migration-history/{}/{now:013}-{}-{seq}", self.prefix, t.feature, std::process::id());
        TxnOp::put(key, entry.to_string(), None)
    }

    /// The newest `limit` history records of a feature (of one client's
    /// override, with `client`), oldest first.
    pub async fn history(&mut self, feature: &str, client: Option<&str>, limit: i64) -> anyhow::Result<Vec<Value>> {
        let prefix = format!("{}/migration-history/{feature}/", self.prefix);
        let options = GetOptions::new().with_prefix().with_sort(SortTarget::Key, SortOrder::Descend);
        // A client filter reads more, then keeps that client's records.
        let options = if client.is_none() { options.with_limit(limit) } else { options };
        let resp = self.client.get(prefix, Some(options)).await.context("etcd get history")?;
        let mut out: Vec<Value> = resp
            .kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(kv.value()).ok())
            .filter(|v| client.is_none_or(|c| v["client"] == c))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
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

fn current(kv: Option<&etcd_client::KeyValue>) -> Current {
    match kv {
        None => Current { percent: None, raw: None, mod_revision: 0 },
        Some(kv) => {
            let raw = String::from_utf8_lossy(kv.value()).into_owned();
            Current {
                percent: Some(parse_percent(&raw).map_err(|e| e.to_string())),
                raw: Some(raw),
                mod_revision: kv.mod_revision(),
            }
        }
    }
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

    #[test]
    fn client_ids_are_single_key_segments() {
        assert!(Target::new("charge", Some("internal-billing")).is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_client(bad).is_err(), "{bad:?}");
        }
        let t = Target::new("refund", Some("ops")).unwrap();
        assert_eq!(t.to_string(), "refund (client ops)");
    }

    #[test]
    fn actors_render_as_user_at_host() {
        assert_eq!(actor_text(&json!({"user": "ann", "host": "h1", "pid": 7})), "ann@h1 pid 7");
        assert_eq!(actor_text(&Value::Null), "-");
    }
}

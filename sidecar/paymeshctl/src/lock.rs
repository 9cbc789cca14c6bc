//! One ramp per key at a time: a lease-backed lock in etcd.
//!
//! `<prefix>/locks/ramp/<feature>` for a feature's ramp,
//! `<prefix>/locks/ramp/<feature>/clients/<client-id>` for one client's. The
//! value names the holder (user, host, pid, what it ramps, since when). The
//! key lives on a lease the ramp keeps alive while it runs; a ramp that
//! crashes stops renewing it, so its lock goes with the lease after
//! [`TTL_SECONDS`]. Every write the ramp makes also compares the lock's
//! lease (see `Store::cas`), so a ramp that lost its lock cannot write.

use crate::store::{Store, Target, actor, now_ms};
use anyhow::Context;
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde_json::Value;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a crashed ramp's lock outlives it.
pub const TTL_SECONDS: i64 = 10;

pub struct RampLock {
    pub key: String,
    pub lease: i64,
    client: Client,
    keeper: JoinHandle<()>,
}

impl std::fmt::Debug for RampLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RampLock").field("key", &self.key).field("lease", &self.lease).finish_non_exhaustive()
    }
}

/// Why a ramp could not take its lock.
#[derive(Debug)]
pub struct Held {
    pub key: String,
    /// The holder's record, as JSON (or the raw value if it is not JSON).
    pub holder: Value,
}

pub fn lock_key(store: &Store, t: &Target) -> String {
    match &t.client {
        Some(c) => format!("{}/locks/ramp/{}/clients/{c}", store.prefix(), t.feature),
        None => format!("{}/locks/ramp/{}", store.prefix(), t.feature),
    }
}

impl RampLock {
    /// Takes the lock, or says who holds it.
    pub async fn acquire(store: &Store, t: &Target, plan: Value) -> anyhow::Result<Result<RampLock, Held>> {
        let mut client = store.client();
        let key = lock_key(store, t);
        let lease = client.lease_grant(TTL_SECONDS, None).await.context("etcd lease grant")?.id();
        let mut holder = actor();
        holder["since_ms"] = now_ms().into();
        holder["since"] = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().into();
        holder["target"] = t.to_string().into();
        holder["plan"] = plan;
        let txn = Txn::new()
            .when(vec![Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(key.as_str(), holder.to_string(), Some(PutOptions::new().with_lease(lease)))])
            .or_else(vec![TxnOp::get(key.as_str(), None)]);
        let resp = client.txn(txn).await.context("etcd lock transaction")?;
        if !resp.succeeded() {
            let _ = client.lease_revoke(lease).await;
            let raw = resp
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                    _ => None,
                })
                .unwrap_or_default();
            let holder = serde_json::from_slice(&raw)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
            return Ok(Err(Held { key, holder }));
        }
        let (mut keeper, mut stream) = client.lease_keep_alive(lease).await.context("etcd lease keep-alive")?;
        let keeper = tokio::spawn(async move {
            // Renew at a third of the TTL; a failed renewal is retried on
            // the next tick, and the ramp's lease compare catches a loss.
            let mut tick = tokio::time::interval(Duration::from_secs((TTL_SECONDS / 3).max(1) as u64));
            loop {
                tick.tick().await;
                if keeper.keep_alive().await.is_err() {
                    continue;
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), stream.message()).await;
            }
        });
        Ok(Ok(RampLock { key, lease, client, keeper }))
    }

    /// Deletes the lock (if still ours) and revokes its lease.
    pub async fn release(mut self) {
        self.keeper.abort();
        let txn = Txn::new()
            .when(vec![Compare::lease(self.key.as_str(), CompareOp::Equal, self.lease)])
            .and_then(vec![TxnOp::delete(self.key.as_str(), None)]);
        let _ = self.client.txn(txn).await;
        let _ = self.client.lease_revoke(self.lease).await;
    }
}

/// The lock key of `t` and its holder, if a ramp holds it.
pub async fn holder(store: &mut Store, t: &Target) -> Option<(String, Value)> {
    let key = lock_key(store, t);
    let resp = store.client().get(key.as_str(), None).await.ok()?;
    let raw = resp.kvs().first()?.value().to_vec();
    let holder =
        serde_json::from_slice(&raw).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
    Some((key, holder))
}

/// `alice@box pid 42 since 2026-12-01T10:00:00Z (charge: 0% → 50% …)`.
pub fn describe(holder: &Value) -> String {
    if let Value::String(s) = holder {
        return format!("an unknown holder ({s:?})");
    }
    let mut text = crate::store::actor_text(holder);
    if let Some(since) = holder["since"].as_str() {
        text.push_str(&format!(" since {since}"));
    }
    if let Some(ms) = holder["since_ms"].as_u64() {
        let ago = crate::store::now_ms().saturating_sub(ms) / 1000;
        text.push_str(&format!(" ({} ago)", humantime::format_duration(Duration::from_secs(ago))));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn holders_are_named_with_their_start() {
        let h = json!({"user": "ann", "host": "h1", "pid": 7, "since": "2026-12-01T10:00:00Z"});
        assert_eq!(describe(&h), "ann@h1 pid 7 since 2026-12-01T10:00:00Z");
        assert!(describe(&json!("garbage")).contains("unknown holder"));
    }
}

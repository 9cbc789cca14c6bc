//! Keeps the [`MigrationTable`] in step with etcd, off the request path.
//!
//! At start the table holds the last-known-good cache file's percents (else
//! the configured defaults), so the sidecar serves at once whether or not
//! etcd is up. A background task then reads `<prefix>/migration/` whole at
//! a fresh revision and watches it from the next one; every applied change
//! is written back to the cache file atomically. After any error — etcd
//! down, a broken stream, a compaction — it reconnects (over the sidecar's
//! one etcd connection, `crate::etcd`) after a jittered, capped backoff and
//! reads the whole prefix again, so no update is ever missed. It stops at
//! shutdown, like every other task.
//!
//! Per-client overrides live under the same prefix,
//! `<prefix>/migration/<feature>/clients/<client-id>`, with the same value
//! rules; they are read, watched and cached with the feature keys. An
//! override for an id that is not in the config is kept (a reload may add
//! the client) but routes nothing; it is logged and counted.
//!
//! A value that is not a number in [0, 100] is refused: the last good value
//! stays, and the refusal is logged and counted. A deleted feature key falls
//! back to the configured default; a deleted client key to the feature's
//! percent. Requests never wait on any of this.

use super::table::{Override, Overrides};
use super::{Feature, Source};
use crate::etcd::{Backoff, Conn, ErrorKind, Etcd, EtcdStatus};
use crate::state::Shared;
use etcd_client::{EventType, GetOptions, WatchOptions};
use paymesh_vocab::percent::parse_percent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bounds on what etcd can make a sidecar hold: overrides are written by
/// operators, a handful per feature; anything past these is refused.
const MAX_OVERRIDES: usize = 10_000;
const MAX_CLIENT_ID: usize = 128;

/// What `/admin/state` shows of the sync and of the etcd connection.
#[derive(Debug, Default)]
pub struct SyncStatus {
    /// etcd revision of the last applied snapshot or change; 0 before any.
    pub revision: AtomicI64,
    /// The sidecar's etcd connection (every etcd task's, this one's too).
    pub etcd: Arc<EtcdStatus>,
}

/// The cache file: the etcd view last applied (`None`: no key, default).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    pub revision: i64,
    pub charge: Option<f64>,
    pub refund: Option<f64>,
    pub disbursement: Option<f64>,
    /// Per-client overrides: feature → client id → percent. Absent when
    /// there are none, so such a file reads as before overrides existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Cache {
    fn slot(&mut self, f: Feature) -> Option<&mut Option<f64>> {
        match f {
            Feature::Charge => Some(&mut self.charge),
            Feature::Refund => Some(&mut self.refund),
            Feature::Disbursement => Some(&mut self.disbursement),
            Feature::Other => None,
        }
    }

    pub fn load(path: &Path) -> Result<Cache, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        Self::parse(&bytes)
    }

    /// Parses and checks a cache file's bytes: every percent as an etcd
    /// value would be checked.
    pub fn parse(bytes: &[u8]) -> Result<Cache, String> {
        let cache: Cache = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        for (name, v) in [("charge", cache.charge), ("refund", cache.refund), ("disbursement", cache.disbursement)] {
            if let Some(p) = v {
                parse_percent(&p.to_string()).map_err(|e| format!("{name}: {e}"))?;
            }
        }
        for (feature, clients) in &cache.clients {
            if !Feature::MIGRATING.iter().any(|f| f.as_str() == feature) {
                return Err(format!("clients: unknown feature {feature:?}"));
            }
            for (id, p) in clients {
                parse_percent(&p.to_string()).map_err(|e| format!("clients.{feature}.{id}: {e}"))?;
            }
        }
        Ok(cache)
    }

    /// Replaces the file whole (`write_atomic`): a crash leaves the old
    /// cache or the new one.
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        Ok(paymesh_process::write_atomic(path, &bytes)?)
    }
}

/// The background task's state. Where to watch and where the cache lives
/// are fixed at start (a change needs a restart); the defaults a deleted key
/// falls back to are read from the live config, so a reload changes them.
#[derive(Debug)]
pub struct MigrationSync {
    /// For the table, the live config and the counters.
    shared: Arc<Shared>,
    prefix: String,
    cache_file: PathBuf,
    cache: Cache,
    /// The overrides as applied; pushed to the table whole on a change.
    overrides: Overrides,
}

/// Which migration key an etcd key is.
#[derive(Debug, PartialEq)]
enum KeyOf<'a> {
    Feature(Feature),
    Client(Feature, &'a str),
}

impl MigrationSync {
    pub fn new(shared: Arc<Shared>) -> MigrationSync {
        let cfg = &shared.live.load().config.migration;
        MigrationSync {
            prefix: format!("{}/migration/", cfg.prefix.trim_end_matches('/')),
            cache_file: cfg.cache_file.clone(),
            cache: Cache::default(),
            overrides: Overrides::default(),
            shared: shared.clone(),
        }
    }

    fn status(&self) -> &SyncStatus {
        &self.shared.migration_sync
    }

    /// Applies the cache file, if there is a good one: what etcd said last.
    pub fn load_cache(&mut self) {
        match Cache::load(&self.cache_file) {
            Ok(cache) => {
                for f in Feature::MIGRATING {
                    let value = match f {
                        Feature::Charge => cache.charge,
                        Feature::Refund => cache.refund,
                        _ => cache.disbursement,
                    };
                    if let Some(p) = value {
                        self.shared.migration.set(f, (p * 100.0).round() as u32, Source::Cache);
                    }
                    for (id, p) in cache.clients.get(f.as_str()).into_iter().flatten() {
                        let o = Override { basis_points: (p * 100.0).round() as u32, source: Source::Cache };
                        self.overrides[f.index()].insert(id.clone(), o);
                    }
                }
                self.shared.migration.set_overrides(self.overrides.clone());
                tracing::info!(path = %self.cache_file.display(), revision = cache.revision, "migration percents from the cache file");
                self.status().revision.store(cache.revision, Ordering::Relaxed);
                self.cache = cache;
            }
            Err(e) if self.cache_file.exists() => {
                tracing::warn!(path = %self.cache_file.display(), error = %e, "ignoring a bad migration cache file; using defaults");
            }
            Err(_) => tracing::info!("no migration cache file yet; using defaults"),
        }
    }

    /// Runs until shutdown. Without endpoints there is nothing to watch:
    /// the cache and defaults stand.
    pub async fn run(mut self, etcd: Etcd, mut shutdown: watch::Receiver<bool>) {
        if !etcd.configured() {
            tracing::info!("no etcd endpoints: migration percents are the configured defaults");
            return;
        }
        let mut backoff = Backoff::new(BACKOFF_FIRST, BACKOFF_MAX);
        loop {
            // Cancelled at any await: a cache file being written finishes
            // on its own thread (temp file and rename, never half-written).
            tokio::select! {
                _ = crate::server::stopped(&mut shutdown) => return,
                () = self.connect_and_sync(&etcd, &mut backoff) => {}
            }
            if !backoff.wait(&mut shutdown).await {
                return;
            }
        }
    }

    /// One session: gets the shared client, reads, watches; returns once
    /// the session has failed (recorded with the connection).
    async fn connect_and_sync(&mut self, etcd: &Etcd, backoff: &mut Backoff) {
        match etcd.connect().await {
            Ok(conn) => {
                let err = self.sync(etcd, &conn, backoff).await;
                etcd.failed(Some(&conn), ErrorKind::Watch, &err);
                tracing::warn!(error = %err, "etcd watch ended; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach etcd; serving the last known percents"),
        }
    }

    /// Reads the whole prefix, then watches it; returns why it stopped.
    async fn sync(&mut self, etcd: &Etcd, conn: &Conn, backoff: &mut Backoff) -> String {
        let mut client = conn.client.clone();
        let snapshot = match client.get(self.prefix.as_str(), Some(GetOptions::new().with_prefix())).await {
            Ok(r) => r,
            Err(e) => return format!("read: {e}"),
        };
        let revision = snapshot.header().map_or(0, |h| h.revision());
        let mut seen = [false; 3];
        // Overrides deleted while the watch was down must not survive.
        let before = std::mem::take(&mut self.overrides);
        self.cache.clients.clear();
        for kv in snapshot.kvs() {
            match self.key_of(kv.key()) {
                Some(KeyOf::Feature(f)) => {
                    seen[f.index()] = true;
                    self.apply(f, Some(kv.value()));
                }
                Some(KeyOf::Client(f, id)) => {
                    let id = id.to_owned();
                    let kept = before[f.index()].get(&id).copied();
                    self.apply_client(f, &id, Some(kv.value()), kept);
                }
                None => {}
            }
        }
        for f in Feature::MIGRATING {
            if !seen[f.index()] {
                self.apply(f, None);
            }
        }
        self.shared.migration.set_overrides(self.overrides.clone());
        self.commit(revision).await;
        etcd.ok();
        backoff.reset();

        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let mut stream = match client.watch(self.prefix.as_str(), Some(options)).await {
            Ok(w) => w,
            Err(e) => return format!("watch: {e}"),
        };
        loop {
            let resp = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return "watch stream closed".into(),
                Err(e) => return format!("watch: {e}"),
            };
            if resp.compact_revision() > 0 {
                return format!("watch compacted at revision {}; re-reading", resp.compact_revision());
            }
            if resp.canceled() {
                return format!("watch canceled: {}", resp.cancel_reason());
            }
            etcd.ok();
            let mut changed = false;
            let mut clients_changed = false;
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let value = match event.event_type() {
                    EventType::Put => Some(kv.value()),
                    EventType::Delete => None,
                };
                match self.key_of(kv.key()) {
                    Some(KeyOf::Feature(f)) => self.apply(f, value),
                    Some(KeyOf::Client(f, id)) => {
                        let id = id.to_owned();
                        let kept = self.overrides[f.index()].get(&id).copied();
                        self.apply_client(f, &id, value, kept);
                        clients_changed = true;
                    }
                    None => continue,
                }
                changed = true;
            }
            if clients_changed {
                self.shared.migration.set_overrides(self.overrides.clone());
            }
            if changed {
                self.commit(resp.header().map_or(revision, |h| h.revision())).await;
            }
        }
    }

    fn key_of<'k>(&self, key: &'k [u8]) -> Option<KeyOf<'k>> {
        key_of(&self.prefix, key)
    }

    /// Applies one client override (`None`: deleted). `kept` is the
    /// override in force before, which a refused value leaves in place.
    fn apply_client(&mut self, f: Feature, id: &str, value: Option<&[u8]>, kept: Option<Override>) {
        let slot = f.index();
        let Some(value) = value else {
            if self.overrides[slot].remove(id).is_some() {
                tracing::info!(
                    feature = f.as_str(),
                    client = id,
                    "client override removed; the client follows the feature's percent"
                );
            }
            self.cache.clients.entry(f.as_str().to_owned()).or_default().remove(id);
            self.cache.clients.retain(|_, m| !m.is_empty());
            return;
        };
        let total: usize = self.overrides.iter().map(BTreeMap::len).sum();
        let parsed = if id.is_empty() || id.len() > MAX_CLIENT_ID {
            Err(format!("client id of {} bytes is outside 1..={MAX_CLIENT_ID}", id.len()))
        } else if kept.is_none() && total >= MAX_OVERRIDES {
            Err(format!("more than {MAX_OVERRIDES} client overrides"))
        } else {
            std::str::from_utf8(value).map_err(|_| "not UTF-8".to_owned()).and_then(parse_percent)
        };
        match parsed {
            Ok(bp) => {
                self.overrides[slot].insert(id.to_owned(), Override { basis_points: bp, source: Source::Etcd });
                self.cache
                    .clients
                    .entry(f.as_str().to_owned())
                    .or_default()
                    .insert(id.to_owned(), f64::from(bp) / 100.0);
                let known = self.shared.live.load().clients.by_id(id).is_some();
                if !known {
                    self.shared.metrics.migration_unknown_client_overrides.inc();
                    tracing::warn!(
                        feature = f.as_str(),
                        client = id,
                        "override for a client that is not in the config: ignored until the config has it"
                    );
                } else if kept.map(|o| o.basis_points) != Some(bp) {
                    tracing::info!(
                        feature = f.as_str(),
                        client = id,
                        percent = f64::from(bp) / 100.0,
                        "client override applied"
                    );
                }
            }
            Err(e) => {
                self.shared.metrics.migration_config_errors.inc();
                // A refused value keeps what was in force: the old override,
                // or none (the feature's percent).
                match kept {
                    Some(o) => {
                        self.overrides[slot].insert(id.to_owned(), o);
                    }
                    None => {
                        self.overrides[slot].remove(id);
                    }
                }
                tracing::warn!(
                    feature = f.as_str(),
                    client = %id.chars().take(MAX_CLIENT_ID).collect::<String>(),
                    value = %String::from_utf8_lossy(value),
                    error = %e,
                    "refused a client override; the last good one stays"
                );
            }
        }
    }

    /// Applies one key's value (`None`: deleted or absent).
    fn apply(&mut self, f: Feature, value: Option<&[u8]>) {
        let Some(value) = value else {
            let defaults = self.shared.live.load().config.migration.defaults_bp;
            self.shared.migration.set(f, defaults[f.index()], Source::Defaults);
            if let Some(slot) = self.cache.slot(f) {
                *slot = None;
            }
            return;
        };
        match std::str::from_utf8(value).map_err(|_| "not UTF-8".to_owned()).and_then(parse_percent) {
            Ok(bp) => {
                let before = self.shared.migration.basis_points(f);
                self.shared.migration.set(f, bp, Source::Etcd);
                if before != bp {
                    tracing::info!(feature = f.as_str(), percent = f64::from(bp) / 100.0, "migration percent applied");
                }
                if let Some(slot) = self.cache.slot(f) {
                    *slot = Some(f64::from(bp) / 100.0);
                }
            }
            Err(e) => {
                self.shared.metrics.migration_config_errors.inc();
                tracing::warn!(
                    feature = f.as_str(),
                    value = %String::from_utf8_lossy(value),
                    error = %e,
                    kept = f64::from(self.shared.migration.basis_points(f)) / 100.0,
                    "refused a migration value; the last good one stays"
                );
            }
        }
    }

    /// Records the revision and writes the cache file (off the runtime).
    async fn commit(&mut self, revision: i64) {
        self.cache.revision = revision;
        self.status().revision.store(revision, Ordering::Relaxed);
        let cache = self.cache.clone();
        let path = self.cache_file.clone();
        let written = tokio::task::spawn_blocking(move || cache.store(&path)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(path = %self.cache_file.display(), error = %e, "cannot write the migration cache file")
            }
            Err(e) => tracing::warn!(error = %e, "cache writer panicked"),
        }
    }
}

/// `<prefix>charge` → the feature; `<prefix>charge/clients/<id>` → a client
/// override; anything else under the prefix is not ours.
fn key_of<'k>(prefix: &str, key: &'k [u8]) -> Option<KeyOf<'k>> {
    let name = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    let (feature, client) = match name.split_once("/clients/") {
        Some((f, id)) if !id.contains('/') => (f, Some(id)),
        Some(_) => return None,
        None => (name, None),
    };
    let f = Feature::MIGRATING.into_iter().find(|f| f.as_str() == feature)?;
    Some(match client {
        Some(id) => KeyOf::Client(f, id),
        None => KeyOf::Feature(f),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_a_feature_or_a_client_override() {
        let p = "/paymesh/migration/";
        assert_eq!(key_of(p, b"/paymesh/migration/charge"), Some(KeyOf::Feature(Feature::Charge)));
        assert_eq!(
            key_of(p, b"/paymesh/migration/refund/clients/internal"),
            Some(KeyOf::Client(Feature::Refund, "internal"))
        );
        assert_eq!(key_of(p, b"/paymesh/migration/refund/clients/a/b"), None);
        assert_eq!(key_of(p, b"/paymesh/migration/other/clients/a"), None);
        assert_eq!(key_of(p, b"/paymesh/migration/chargeX"), None);
        assert_eq!(key_of(p, b"/paymesh/migration-history/charge/1"), None);
    }

    #[test]
    fn the_cache_file_round_trips_atomically_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/migration.json");
        let mut cache =
            Cache { revision: 7, charge: Some(12.5), refund: None, disbursement: Some(100.0), ..Cache::default() };
        cache.store(&path).unwrap();
        assert_eq!(Cache::load(&path).unwrap(), cache);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("clients"), "no overrides, no new field");
        cache.clients.entry("charge".into()).or_default().insert("internal".into(), 50.0);
        cache.store(&path).unwrap();
        assert_eq!(Cache::load(&path).unwrap(), cache);
        std::fs::write(&path, b"{\"revision\":1,\"clients\":{\"charge\":{\"a\":101}}}").unwrap();
        assert!(Cache::load(&path).unwrap_err().contains("clients.charge.a"));
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temp file left");
        std::fs::write(&path, b"{\"revision\":1,\"charge\":250}").unwrap();
        assert!(Cache::load(&path).unwrap_err().contains("charge"));
        std::fs::write(&path, b"not json").unwrap();
        assert!(Cache::load(&path).is_err());
    }
}

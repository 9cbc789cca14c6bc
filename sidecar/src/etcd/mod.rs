//! The sidecar's one etcd connection, shared by every task that uses etcd.
//!
//! Three background tasks talk to etcd: the migration watch
//! (`migration::sync`), the switch-record mirror (`overload::etcd`) and
//! fleet membership (`fleet::sync`). They share one `etcd_client::Client`
//! (one gRPC channel that multiplexes their calls), made here from the live
//! config's `migration` section, and they report every success and failure
//! here, so `paymesh_etcd_connected`, `paymesh_etcd_errors_total{kind}` and
//! the `etcd` section of `/admin/state` describe one connection in one way.
//!
//! A failure drops the shared client: the next task to ask gets a new one,
//! made from the config in force then (so a reload that moves etcd takes
//! effect at the next connection), while a task whose calls still work
//! keeps the client it holds. A task retries after its own [`Backoff`]:
//! capped, exponential and jittered, so sidecars that lost etcd together do
//! not come back in lockstep. Nothing here runs on the request path, and
//! every wait here ends on shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use etcd_client::{Client, ConnectOptions};
use prometheus::{IntCounter, IntGauge};
use serde_json::{Value, json};

use crate::config;

mod backoff;
pub use backoff::Backoff;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings, also while idle: a dead etcd (or a dead path to it) ends
/// every call and watch on the connection within about two of these.
const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// What a connection is made from: the etcd part of the `migration`
/// section. Two equal `Settings` make the same connection, so a reload
/// that leaves them alone keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoints: Vec<String>,
}

impl Settings {
    /// `None` without endpoints: etcd is not configured.
    pub fn from_config(migration: &config::Migration) -> Option<Settings> {
        if migration.etcd_endpoints.is_empty() {
            return None;
        }
        Some(Settings { endpoints: migration.etcd_endpoints.clone() })
    }

    /// The options of every connection: one place for timeouts and pings
    /// (and, as the config grows, TLS and credentials).
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE, KEEP_ALIVE)
            .with_keep_alive_while_idle(true)
    }
}

/// Which `paymesh_etcd_errors_total{kind}` a failure counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `connect`: no connection could be made.
    Connect,
    /// `watch`: a call, a watch or a lease over the connection failed or
    /// ended (etcd down, a compaction, a lost lease).
    Watch,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Watch => "watch",
        }
    }
}

/// The connection's series, resolved once.
#[derive(Debug, Clone)]
pub struct EtcdMetrics {
    /// `paymesh_etcd_connected`.
    pub connected: IntGauge,
    /// `paymesh_etcd_errors_total{kind}`, indexed by [`ErrorKind`].
    pub errors: [IntCounter; 2],
}

impl EtcdMetrics {
    pub fn new(metrics: &crate::observe::Metrics) -> Self {
        Self { connected: metrics.etcd_connected.clone(), errors: metrics.etcd_errors.clone() }
    }
}

/// What `/admin/state` shows of the connection.
#[derive(Debug, Default)]
pub struct EtcdStatus {
    connected: AtomicBool,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Of the last connection made; empty before the first.
    endpoints: Vec<String>,
    last_error: Option<(ErrorKind, String, SystemTime)>,
}

impl EtcdStatus {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The endpoints of the connection in use (or last used).
    pub fn endpoints(&self) -> Vec<String> {
        self.seen().endpoints.clone()
    }

    /// The `etcd` section of `/admin/state`, less the migration revision
    /// (the migration view's, added by the caller).
    pub fn state(&self) -> Value {
        let seen = self.seen();
        json!({
            "endpoints": seen.endpoints,
            "connected": self.connected(),
            "last_error": seen.last_error.as_ref().map(|(kind, error, at)| json!({
                "kind": kind.as_str(),
                "error": error,
                "at": humantime::format_rfc3339_millis(*at).to_string(),
            })),
        })
    }
}

/// A client on the shared connection. Clone it freely; report how its
/// calls went with [`Etcd::ok`] and [`Etcd::failed`].
#[derive(Clone)]
pub struct Conn {
    pub client: Client,
    id: u64,
    settings: Settings,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("id", &self.id).field("endpoints", &self.settings.endpoints).finish()
    }
}

type LiveConfig = dyn Fn() -> config::Migration + Send + Sync;

/// The handle every etcd task holds; cheap to clone.
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    /// The live config's `migration` section.
    live: Box<LiveConfig>,
    current: Mutex<Option<Conn>>,
    /// One connection is made at a time; the others wait for it.
    connecting: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    status: Arc<EtcdStatus>,
    metrics: EtcdMetrics,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd").field("status", &self.inner.status).finish_non_exhaustive()
    }
}

impl Etcd {
    /// `live` returns the `migration` section in force (read on every
    /// connection and by [`Etcd::config`]); `status` is where
    /// `/admin/state` reads the connection.
    pub fn new(
        live: impl Fn() -> config::Migration + Send + Sync + 'static,
        status: Arc<EtcdStatus>,
        metrics: EtcdMetrics,
    ) -> Etcd {
        metrics.connected.set(0);
        Etcd {
            inner: Arc::new(Inner {
                live: Box::new(live),
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                next_id: AtomicU64::new(0),
                status,
                metrics,
            }),
        }
    }

    /// The `migration` section in force (the prefix, the endpoints).
    pub fn config(&self) -> config::Migration {
        (self.inner.live)()
    }

    /// Whether the config in force names any etcd endpoint.
    pub fn configured(&self) -> bool {
        Settings::from_config(&self.config()).is_some()
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<Conn>> {
        self.inner.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared client, made now if there is none or the config in
    /// force asks for another. A failure is counted (`connect`).
    pub async fn connect(&self) -> Result<Conn, String> {
        let Some(settings) = Settings::from_config(&self.config()) else {
            return Err("no etcd endpoints are configured (migration.etcd_endpoints)".into());
        };
        let _one_at_a_time = self.inner.connecting.lock().await;
        if let Some(conn) = self.current().as_ref().filter(|c| c.settings == settings) {
            return Ok(conn.clone());
        }
        let options = settings.connect_options();
        let made = tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(&settings.endpoints, Some(options))).await;
        let client = match made {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(self.failed(None, ErrorKind::Connect, &format!("connect: {e}"))),
            Err(_) => {
                let error = format!("connect: no answer in {CONNECT_TIMEOUT:?}");
                return Err(self.failed(None, ErrorKind::Connect, &error));
            }
        };
        let conn = Conn { client, id: self.inner.next_id.fetch_add(1, Ordering::Relaxed), settings };
        tracing::debug!(endpoints = ?conn.settings.endpoints, "etcd connection made");
        self.inner.status.seen().endpoints = conn.settings.endpoints.clone();
        *self.current() = Some(conn.clone());
        Ok(conn)
    }

    /// A call over the connection succeeded: etcd is reachable.
    pub fn ok(&self) {
        self.inner.status.connected.store(true, Ordering::Relaxed);
        self.inner.metrics.connected.set(1);
    }

    /// A call over `conn` (or, `None`, making a connection) failed: counts
    /// it, marks etcd unreachable until the next success, and drops the
    /// shared client if it is `conn`'s, so the next [`Etcd::connect`]
    /// makes a new one. Returns `error`, for the caller's log.
    pub fn failed(&self, conn: Option<&Conn>, kind: ErrorKind, error: &str) -> String {
        let metrics = &self.inner.metrics;
        metrics.errors[kind as usize].inc();
        metrics.connected.set(0);
        self.inner.status.connected.store(false, Ordering::Relaxed);
        self.inner.status.seen().last_error = Some((kind, error.to_owned(), SystemTime::now()));
        if let Some(conn) = conn {
            let mut current = self.current();
            if current.as_ref().is_some_and(|c| c.id == conn.id) {
                *current = None;
            }
        }
        error.to_owned()
    }
}

/// `call`, given up after `limit`: an etcd that takes the connection but
/// never answers must not hold a task forever.
pub async fn timed<T>(
    what: &str,
    limit: Duration,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer in {limit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(endpoints: &[&str]) -> config::Migration {
        config::Migration {
            etcd_endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            prefix: "/paymesh".into(),
            cache_file: "/nonexistent/migration.json".into(),
            defaults_bp: [0; 3],
        }
    }

    fn handle(live: Arc<Mutex<config::Migration>>) -> (Etcd, Arc<EtcdStatus>, EtcdMetrics) {
        let metrics = crate::observe::Metrics::new();
        let metrics = EtcdMetrics::new(&metrics);
        let status = Arc::new(EtcdStatus::default());
        let etcd = Etcd::new(move || live.lock().unwrap().clone(), status.clone(), metrics.clone());
        (etcd, status, metrics)
    }

    #[test]
    fn settings_come_from_the_migration_section() {
        assert_eq!(Settings::from_config(&migration(&[])), None);
        let s = Settings::from_config(&migration(&["http://a:2379", "http://b:2379"])).unwrap();
        assert_eq!(s.endpoints, ["http://a:2379", "http://b:2379"]);
    }

    // The client connects lazily: making one opens no socket, so these run
    // against addresses nothing listens on.
    #[tokio::test]
    async fn one_client_is_shared_until_a_failure_or_a_new_config() {
        let live = Arc::new(Mutex::new(migration(&["http://127.0.0.1:9"])));
        let (etcd, status, metrics) = handle(live.clone());
        assert_eq!(status.endpoints(), Vec::<String>::new(), "nothing in use before the first connection");

        let a = etcd.connect().await.unwrap();
        let b = etcd.connect().await.unwrap();
        assert_eq!(a.id, b.id, "one connection for every task");
        assert_eq!(status.endpoints(), ["http://127.0.0.1:9"]);

        etcd.ok();
        assert!(status.connected() && metrics.connected.get() == 1);
        etcd.failed(Some(&a), ErrorKind::Watch, "watch: gone");
        assert!(!status.connected() && metrics.connected.get() == 0);
        assert_eq!(metrics.errors[ErrorKind::Watch as usize].get(), 1);
        assert_eq!(status.state()["last_error"]["kind"], "watch");
        assert_eq!(status.state()["last_error"]["error"], "watch: gone");
        let c = etcd.connect().await.unwrap();
        assert_ne!(c.id, a.id, "a failure drops the shared client");
        // A late failure of the old client leaves the new one alone.
        etcd.failed(Some(&a), ErrorKind::Watch, "watch: gone again");
        assert_eq!(etcd.connect().await.unwrap().id, c.id);

        // A reload that moves etcd: the next connection goes there, and
        // /admin/state says so.
        *live.lock().unwrap() = migration(&["http://127.0.0.2:9"]);
        let d = etcd.connect().await.unwrap();
        assert_ne!(d.id, c.id);
        assert_eq!(status.state()["endpoints"], json!(["http://127.0.0.2:9"]));

        *live.lock().unwrap() = migration(&[]);
        assert!(!etcd.configured());
        assert!(etcd.connect().await.is_err());
    }

    #[tokio::test]
    async fn a_connection_that_cannot_be_made_is_counted() {
        let live = Arc::new(Mutex::new(migration(&["http://[::1"])));
        let (etcd, status, metrics) = handle(live);
        let e = etcd.connect().await.unwrap_err();
        assert!(e.starts_with("connect:"), "{e}");
        assert_eq!(metrics.errors[ErrorKind::Connect as usize].get(), 1);
        assert_eq!(status.state()["last_error"]["kind"], "connect");
        assert_eq!(status.endpoints(), Vec::<String>::new());
    }
}

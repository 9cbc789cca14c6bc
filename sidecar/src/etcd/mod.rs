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
//! The connection is plain or TLS (`migration.etcd_tls`: a CA, optionally
//! a client certificate) and may log in (`migration.etcd_auth`). The files
//! are read each time a connection is made, and a connection made from
//! files whose contents have changed since is replaced at the next
//! [`Etcd::connect`]: rotated certificates and passwords need no reload.
//! A failure that names its cause (a certificate refused, wrong
//! credentials, a missing permission) is counted by that cause and logged
//! with what to fix, since no retry will mend it: once when the cause
//! appears, again every five minutes while it lasts.
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
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
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
/// How often the line of a cause that persists is written again.
const WARN_AGAIN: Duration = Duration::from_secs(300);

/// What a connection is made from: the etcd part of the `migration`
/// section, with the contents of the files it names. Two equal `Settings`
/// make the same connection, so a reload that leaves them alone keeps it,
/// and a rotated certificate or password (same paths, new contents) makes a
/// new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoints: Vec<String>,
    /// `migration.etcd_tls`, read.
    pub tls: Option<config::TlsPem>,
    /// `migration.etcd_auth`: the user name and the password from its file.
    pub user: Option<(String, config::Password)>,
}

impl Settings {
    /// `Ok(None)` without endpoints: etcd is not configured. Reads the TLS
    /// and password files now (a few small files, off the request path);
    /// an error names the config key whose file is missing or broken.
    pub fn from_config(migration: &config::Migration) -> Result<Option<Settings>, String> {
        if migration.etcd_endpoints.is_empty() {
            return Ok(None);
        }
        let tls = migration.etcd_tls.as_ref().map(config::read_tls).transpose().map_err(|e| e.to_string())?;
        let user = match &migration.etcd_auth {
            None => None,
            Some(a) => Some((a.username.clone(), config::read_password(a).map_err(|e| e.to_string())?)),
        };
        Ok(Some(Settings { endpoints: migration.etcd_endpoints.clone(), tls, user }))
    }

    /// The options of every connection: one place for timeouts, pings, TLS
    /// and credentials.
    pub fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE, KEEP_ALIVE)
            .with_keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            // Only the configured CA: etcd clusters run their own, and a
            // public root has no business vouching for one.
            let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca));
            if let Some((cert, key)) = &tls.client_cert {
                t = t.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(t);
        }
        if let Some((name, password)) = &self.user {
            // etcd's tokens expire (5 minutes by default): a long-lived
            // sidecar must authenticate again, not fail every call after.
            options = options.with_user(name, password.expose()).with_auto_token_refresh(true);
        }
        options
    }
}

/// Which `paymesh_etcd_errors_total{kind}` a failure counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `connect`: no connection could be made (etcd down, a TLS handshake
    /// that failed on a certificate, a TLS or password file unreadable).
    Connect,
    /// `watch`: a call, a watch or a lease over the connection failed or
    /// ended (etcd down, a compaction, a lost lease).
    Watch,
    /// `auth`: etcd refused the user name or password.
    Auth,
    /// `permission`: etcd's roles do not let this user read or write a key.
    Permission,
}

impl ErrorKind {
    /// Every kind, in the order of their metric series.
    pub const ALL: [ErrorKind; 4] = [ErrorKind::Connect, ErrorKind::Watch, ErrorKind::Auth, ErrorKind::Permission];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Watch => "watch",
            ErrorKind::Auth => "auth",
            ErrorKind::Permission => "permission",
        }
    }
}

/// A failure an operator must fix (no retry will): the kind it counts as
/// and the one log line that says what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Certificate,
    Auth,
    Permission,
}

impl Cause {
    /// What a failure's text says. The tasks report failures as text
    /// (`read: grpc request error: …`), and the causes are stable in it:
    /// etcd's own messages (`etcdserver: permission denied`,
    /// `etcdserver: authentication failed, invalid user ID or password`),
    /// gRPC's status codes, and rustls's certificate and alert errors.
    fn of(error: &str) -> Option<Cause> {
        let e = error.to_ascii_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| e.contains(w));
        if any(&["permission denied", "permissiondenied", "does not have permission"]) {
            Some(Cause::Permission)
        } else if any(&["authentication", "auth token", "user name is empty", "unauthenticated"]) {
            Some(Cause::Auth)
        } else if any(&["certificate", "fatal alert", "unknownca", "unknown ca", "handshake"]) {
            Some(Cause::Certificate)
        } else {
            None
        }
    }

    fn kind(self) -> ErrorKind {
        match self {
            Cause::Certificate => ErrorKind::Connect,
            Cause::Auth => ErrorKind::Auth,
            Cause::Permission => ErrorKind::Permission,
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Cause::Certificate => {
                "etcd TLS handshake failed on a certificate: etcd's certificate is not signed by \
                 migration.etcd_tls.ca (or does not name the endpoint's host), or etcd refused this \
                 sidecar's client certificate (migration.etcd_tls.cert); the sidecar keeps serving"
            }
            Cause::Auth => {
                "etcd refused the credentials: wrong user name or password (migration.etcd_auth), \
                 or auth is not enabled in etcd; the sidecar keeps serving"
            }
            Cause::Permission => {
                "etcd denied permission: the etcd user's roles lack a key range paymesh uses \
                 (read on <prefix>/migration/, readwrite on <prefix>/switch-events/, and \
                 <prefix>/fleet/ with fleet quotas); the sidecar keeps serving"
            }
        }
    }
}

/// The connection's series, resolved once.
#[derive(Debug, Clone)]
pub struct EtcdMetrics {
    /// `paymesh_etcd_connected`.
    pub connected: IntGauge,
    /// `paymesh_etcd_errors_total{kind}`, indexed by [`ErrorKind`].
    pub errors: [IntCounter; 4],
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
    /// Whether it uses TLS, and as which etcd user.
    tls: bool,
    user: Option<String>,
    last_error: Option<(ErrorKind, String, SystemTime)>,
    /// The [`Cause`] last logged and when: its line is written once (again
    /// after [`WARN_AGAIN`]), not at every retry of every task.
    warned: Option<(Cause, Instant)>,
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
            "tls": seen.tls,
            "user": seen.user,
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
        !self.config().etcd_endpoints.is_empty()
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<Conn>> {
        self.inner.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared client, made now if there is none or the config in
    /// force asks for another. A failure is counted (`connect`).
    pub async fn connect(&self) -> Result<Conn, String> {
        let settings = match Settings::from_config(&self.config()) {
            Ok(Some(settings)) => settings,
            Ok(None) => return Err("no etcd endpoints are configured (migration.etcd_endpoints)".into()),
            // A TLS or password file gone or broken since the config was
            // loaded: the key is named, and nothing is tried with it.
            Err(e) => return Err(self.failed(None, ErrorKind::Connect, &format!("connect: {e}"))),
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
        {
            let mut seen = self.inner.status.seen();
            seen.endpoints = conn.settings.endpoints.clone();
            seen.tls = conn.settings.tls.is_some();
            seen.user = conn.settings.user.as_ref().map(|(name, _)| name.clone());
        }
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
    ///
    /// A failure that names its cause (a certificate, the credentials, a
    /// permission) counts as that cause's kind whatever `kind` the caller
    /// saw it as, and is logged once, with what to fix.
    pub fn failed(&self, conn: Option<&Conn>, kind: ErrorKind, error: &str) -> String {
        let cause = Cause::of(error);
        let kind = cause.map_or(kind, Cause::kind);
        let metrics = &self.inner.metrics;
        metrics.errors[kind as usize].inc();
        // A call on a client that another task has already replaced says
        // nothing about the connection in use now.
        let stale = conn.is_some_and(|conn| self.current().as_ref().is_some_and(|c| c.id != conn.id));
        if !stale {
            metrics.connected.set(0);
            self.inner.status.connected.store(false, Ordering::Relaxed);
        }
        let mut seen = self.inner.status.seen();
        seen.last_error = Some((kind, error.to_owned(), SystemTime::now()));
        let warn = cause.filter(|&cause| seen.warned.is_none_or(|(c, at)| c != cause || at.elapsed() >= WARN_AGAIN));
        if let Some(cause) = warn {
            seen.warned = Some((cause, Instant::now()));
        }
        drop(seen);
        if let Some(cause) = warn {
            tracing::warn!(kind = kind.as_str(), error = %error, "{}", cause.explain());
        }
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
            etcd_tls: None,
            etcd_auth: None,
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
        assert_eq!(Settings::from_config(&migration(&[])), Ok(None));
        let s = Settings::from_config(&migration(&["http://a:2379", "http://b:2379"])).unwrap().unwrap();
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
        // A late failure of the old client leaves the new one alone, and
        // does not mark it down.
        etcd.ok();
        etcd.failed(Some(&a), ErrorKind::Watch, "watch: gone again");
        assert_eq!(etcd.connect().await.unwrap().id, c.id);
        assert!(status.connected() && metrics.connected.get() == 1, "a stale client's failure");
        assert_eq!(metrics.errors[ErrorKind::Watch as usize].get(), 2, "still counted");

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

    #[test]
    fn failures_are_classified_by_their_cause() {
        let cases = [
            (
                "read: grpc request error: code: 'Permission denied', message: \"etcdserver: permission denied\"",
                Some(Cause::Permission),
            ),
            (
                "connect: grpc request error: code: 'Invalid argument', message: \"etcdserver: authentication failed, invalid user ID or password\"",
                Some(Cause::Auth),
            ),
            (
                "put: grpc request error: code: 'Unauthenticated', message: \"etcdserver: invalid auth token\"",
                Some(Cause::Auth),
            ),
            ("read: transport error: invalid peer certificate: UnknownIssuer", Some(Cause::Certificate)),
            ("read: status: Unavailable, received fatal alert: UnknownCA", Some(Cause::Certificate)),
            ("read: transport error: tcp connect error: Connection refused (os error 111)", None),
            ("watch stream closed", None),
        ];
        for (error, cause) in cases {
            assert_eq!(Cause::of(error), cause, "{error}");
        }
    }

    #[tokio::test]
    async fn a_named_cause_counts_as_its_kind_and_is_logged_when_it_changes() {
        let live = Arc::new(Mutex::new(migration(&["http://127.0.0.1:9"])));
        let (etcd, status, metrics) = handle(live);
        let conn = etcd.connect().await.unwrap();
        let denied = "read: grpc request error: message: \"etcdserver: permission denied\"";
        etcd.failed(Some(&conn), ErrorKind::Watch, denied);
        assert_eq!(metrics.errors[ErrorKind::Permission as usize].get(), 1);
        assert_eq!(metrics.errors[ErrorKind::Watch as usize].get(), 0);
        assert_eq!(status.state()["last_error"]["kind"], "permission");
        assert_eq!(status.seen().warned.map(|(c, _)| c), Some(Cause::Permission));
        etcd.failed(None, ErrorKind::Connect, "connect: etcdserver: authentication failed");
        assert_eq!(metrics.errors[ErrorKind::Auth as usize].get(), 1);
        assert_eq!(status.state()["last_error"]["kind"], "auth");
        etcd.failed(None, ErrorKind::Watch, "read: invalid peer certificate: UnknownIssuer");
        assert_eq!(metrics.errors[ErrorKind::Connect as usize].get(), 1, "a certificate is a connect error");
        assert_eq!(status.seen().warned.map(|(c, _)| c), Some(Cause::Certificate), "a new cause is logged");
    }

    /// A CA and a client certificate for it, as PEM files in `dir`.
    fn tls_files(dir: &std::path::Path) -> config::EtcdTls {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["paymesh".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
        config::EtcdTls { ca: dir.join("ca.crt"), client_cert: Some((dir.join("tls.crt"), dir.join("tls.key"))) }
    }

    #[tokio::test]
    async fn rotated_files_make_a_new_connection_and_broken_ones_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = migration(&["https://127.0.0.1:9"]);
        m.etcd_tls = Some(tls_files(dir.path()));
        std::fs::write(dir.path().join("password"), "one\n").unwrap();
        m.etcd_auth = Some(config::EtcdAuth { username: "paymesh".into(), password_file: dir.path().join("password") });
        let s = Settings::from_config(&m).unwrap().unwrap();
        assert_eq!(s.user.as_ref().map(|(n, p)| (n.as_str(), p.expose())), Some(("paymesh", "one")));
        assert!(!format!("{s:?}").contains("one\""), "no password in the debug form: {s:?}");

        // Without credentials the client connects lazily: no etcd needed.
        m.etcd_auth = None;
        let live = Arc::new(Mutex::new(m));
        let (etcd, status, metrics) = handle(live.clone());
        let a = etcd.connect().await.unwrap();
        assert_eq!(etcd.connect().await.unwrap().id, a.id, "same files, same connection");
        assert_eq!(status.state()["tls"], true);

        tls_files(dir.path()); // rotated: same paths, new certificates
        let b = etcd.connect().await.unwrap();
        assert_ne!(b.id, a.id, "new contents, new connection");

        std::fs::write(dir.path().join("ca.crt"), "gone bad").unwrap();
        let e = etcd.connect().await.unwrap_err();
        assert!(e.contains("migration.etcd_tls.ca"), "{e}");
        assert_eq!(metrics.errors[ErrorKind::Connect as usize].get(), 1);
    }
}

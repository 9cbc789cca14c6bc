//! The state shared by the request path and the background tasks.
//!
//! `Shared` lives for the whole process. Its `live` field holds the current
//! `Snapshot` (config, client table, TLS acceptor, upstream pool) behind an
//! `ArcSwap`: requests load it without a lock, and a reload swaps in a new
//! one atomically while requests that began under the old one finish with it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use http::HeaderValue;
use http::uri::Authority;
use prometheus::IntCounter;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use crate::components::Components;
use crate::config::{Config, ConfigErrors, Loaded, MANY_CLIENTS, Rate, Scope, ShownClients};
use crate::fleet::FleetControl;
use crate::layers::throttle::TokenBucket;
use crate::migration::{MigrationTable, SyncStatus};
use crate::observe::metrics::ClientSeries;
use crate::observe::{AccessLogWriter, Metrics};
use crate::overload::OverloadControl;
use crate::proxy::{Upstream, upstream_client};
use crate::stack::Live;

/// A configured client, ready for the request path.
#[derive(Debug)]
pub struct ClientEntry {
    pub id: Arc<str>,
    /// The `x-paymesh-client` value, built once.
    pub header: HeaderValue,
    pub rate: Rate,
    /// `Fleet`: `bucket` holds this sidecar's share, set by `crate::fleet`.
    pub scope: Scope,
    pub bucket: Arc<TokenBucket>,
    /// `paymesh_throttled_total{client}`, resolved once.
    pub throttled: IntCounter,
    /// `paymesh_client_requests_total{client,…}` and its histogram.
    pub series: ClientSeries,
    pub cert_names: Vec<String>,
}

/// The client table of one config.
#[derive(Debug)]
pub struct Clients {
    entries: Vec<Arc<ClientEntry>>,
    /// Index of `entries` by the SHA-256 of the client's key, and by id:
    /// the per-request cost must not grow with the number of clients.
    by_digest: HashMap<[u8; 32], usize>,
    by_id: HashMap<Arc<str>, usize>,
}

impl Clients {
    fn build(config: &Config, metrics: &Metrics, previous: Option<&Clients>) -> Self {
        let entries = config
            .clients
            .iter()
            .map(|c| {
                // Keep a client's bucket across reloads unless its rate
                // changed, so a reload is not a free burst. A fleet client's
                // new bucket starts at the floor until the fleet task sets
                // its share.
                let bucket = previous
                    .and_then(|p| p.by_id(&c.id))
                    .filter(|old| old.rate == c.rate && old.scope == c.scope)
                    .map(|old| old.bucket.clone())
                    .unwrap_or_else(|| {
                        Arc::new(TokenBucket::new(match c.scope {
                            Scope::Local => c.rate,
                            Scope::Fleet => crate::fleet::startup_rate(c.rate, config.fleet.min_share),
                        }))
                    });
                Arc::new(ClientEntry {
                    id: Arc::from(c.id.as_str()),
                    header: HeaderValue::from_str(&c.id).expect("validated client id"),
                    rate: c.rate,
                    scope: c.scope,
                    bucket,
                    throttled: metrics.throttled_for(&c.id),
                    series: metrics.client_series(&c.id),
                    cert_names: c.cert_names.clone(),
                })
            })
            .collect::<Vec<Arc<ClientEntry>>>();
        let by_digest =
            config.clients.iter().enumerate().filter_map(|(i, c)| c.api_key_sha256.map(|h| (h, i))).collect();
        let by_id = entries.iter().enumerate().map(|(i, e)| (e.id.clone(), i)).collect();
        Self { entries, by_digest, by_id }
    }

    /// The client whose key hashes to `digest`, in time independent of the
    /// number of clients: one lookup by the digest. What its timing could
    /// tell is about SHA-256 digests under the map's random SipHash key,
    /// never about a key itself (the map's own compare already decided, so
    /// a second, constant-time compare would add nothing).
    pub fn by_key_digest(&self, digest: &[u8; 32]) -> Option<&Arc<ClientEntry>> {
        self.by_digest.get(digest).map(|&i| &self.entries[i])
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<ClientEntry>> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ClientEntry>> {
        self.entries.iter()
    }
}

/// Everything that a config reload replaces at once.
pub struct Snapshot {
    pub config: Config,
    /// Bumped on each successful reload; 1 for the file loaded at start.
    pub version: u64,
    pub sha256: [u8; 32],
    pub loaded_at: SystemTime,
    pub clients: Clients,
    pub tls: Option<TlsAcceptor>,
    pub app_authority: Authority,
    pub upstream: Upstream,
    /// A pool of its own for the sidecar's own requests to the app (the
    /// readiness probe, shadow reads): never a connection a client
    /// request could use.
    pub side: crate::proxy::SidePool,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("config", &self.config)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    pub fn build(
        loaded: Loaded,
        version: u64,
        metrics: &Metrics,
        previous: Option<&Snapshot>,
    ) -> Result<Self, ConfigErrors> {
        let config = loaded.config;
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let clients = Clients::build(&config, metrics, previous.map(|p| &p.clients));
        metrics.set_config_clients(clients.iter().map(|c| c.id.clone()).collect(), &config.metrics.client_series);
        if config.metrics.client_series == ShownClients::All && config.clients.len() > MANY_CLIENTS {
            tracing::warn!(
                clients = config.clients.len(),
                "metrics.client_series is all: every scrape shows each client's series, about 15 KB a client; \
                 list the clients to chart (a client with a migration override is always shown)"
            );
        }
        // Over a Unix socket the URI's authority is only the Host header.
        let authority = match &config.app {
            paymesh_process::Address::Tcp(a) => a.to_string(),
            paymesh_process::Address::Unix(_) => "localhost".to_owned(),
        };
        let app_authority = Authority::try_from(authority).map_err(|e| ConfigErrors::one("app", e.to_string()))?;
        // Reuse the pools (and their warm keep-alive connections) unless
        // the app, the connect timeout or the connection bound changed.
        // The proxy's app connections, like client ones, are at most
        // `limits.max_connections` (see `AppConnector`).
        let (upstream, side) = match previous {
            Some(p)
                if p.config.limits.connect_timeout == config.limits.connect_timeout
                    && p.config.limits.max_connections == config.limits.max_connections
                    && p.config.app == config.app =>
            {
                (p.upstream.clone(), p.side.clone())
            }
            _ => {
                let open = Arc::new(tokio::sync::Semaphore::new(config.limits.max_connections as usize));
                (
                    upstream_client(&config.app, config.limits.connect_timeout, Some(open)),
                    upstream_client(&config.app, config.limits.connect_timeout, None),
                )
            }
        };
        Ok(Self {
            config,
            version,
            sha256: loaded.sha256,
            loaded_at: SystemTime::now(),
            clients,
            tls,
            app_authority,
            upstream,
            side,
        })
    }
}

/// Process-wide state.
#[derive(Debug)]
pub struct Shared {
    pub live: Live,
    pub migration: Arc<MigrationTable>,
    /// The etcd sync's revision and connection, for `/admin/state`.
    pub migration_sync: SyncStatus,
    pub components: Arc<Components>,
    /// The switch board that flips `components` under overload.
    pub overload: OverloadControl,
    /// Fleet membership and this sidecar's shares of `scope: fleet` rates.
    pub fleet: FleetControl,
    pub metrics: Arc<Metrics>,
    pub access_log: Arc<AccessLogWriter>,
    /// Shadow reads: their counters and their own pool.
    pub shadow: Arc<crate::shadow::Shadow>,
    /// Span export (off without `tracing.otlp_endpoint`).
    pub tracer: paymesh_otel::Tracer,
    /// Last result of the background `/healthz` probe of the app.
    pub app_reachable: AtomicBool,
    pub draining: AtomicBool,
    /// Wakes the reload task (`POST /admin/reload`).
    pub reload: Notify,
    pub config_path: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use crate::test_util::{config, handles};

    #[test]
    fn every_key_of_ten_thousand_clients_finds_its_client_and_no_other() {
        let mut yaml = String::from("listen: \"127.0.0.1:0\"\napp: \"127.0.0.1:1\"\nclients:\n");
        let digest = |i: usize| -> [u8; 32] { Sha256::digest(format!("key-{i}")).into() };
        let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        for i in 0..10_000 {
            yaml.push_str(&format!("  - id: c{i}\n    api_key_sha256: \"{}\"\n", hex(digest(i))));
        }
        let h = handles(config(&yaml), Some(std::path::Path::new("/dev/null")));
        let snap = h.live.load();
        for i in [0, 1, 4_999, 9_999] {
            assert_eq!(&*snap.clients.by_key_digest(&digest(i)).unwrap().id, format!("c{i}"));
            assert_eq!(&*snap.clients.by_id(&format!("c{i}")).unwrap().id, format!("c{i}"));
        }
        assert!(snap.clients.by_key_digest(&digest(10_000)).is_none());
        assert!(snap.clients.by_key_digest(&[0; 32]).is_none());
        assert!(snap.clients.by_id("c10000").is_none());
    }
}

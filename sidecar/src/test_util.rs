//! The request path's state without sockets or background tasks: what the
//! steps' unit tests and the benchmarks build the stack from.
//!
//! [`handles`] makes exactly what `server::start` hands the stack (the
//! snapshot, the migration table, the switches, the metrics, the access
//! log writer) from a config, and [`accepted`] a request as the server
//! hands it over. Nothing here listens, connects or spawns a task; the
//! access-log writer is the real one, on its own thread.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::Request;

use crate::components::Components;
use crate::config::{self, Config, Loaded};
use crate::ctx::{Accepted, ConnInfo};
use crate::migration::MigrationTable;
use crate::observe::{AccessLogWriter, Metrics};
use crate::shadow::Shadow;
use crate::stack::Handles;
use crate::state::Snapshot;

/// A config from YAML; panics with the errors (a test's own input).
pub fn config(yaml: &str) -> Config {
    config::from_yaml(yaml.as_bytes()).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// The handles of a sidecar running `config`, its access log written to
/// `access_log` (or the config's own path).
pub fn handles(config: Config, access_log: Option<&Path>) -> Handles {
    let metrics = Arc::new(Metrics::new());
    let path = access_log.or(config.access_log.path.as_deref()).map(Path::to_owned);
    let writer = AccessLogWriter::start(
        path.as_deref(),
        config.access_log.rotate,
        config.access_log.buffer_lines,
        metrics.access_log_dropped.clone(),
    )
    .expect("access log opens");
    let migration = MigrationTable::new(config.migration.defaults_bp);
    let (components, access_log) = (Arc::new(Components::default()), Arc::new(writer));
    let shadow = Shadow::new(&metrics.registry, components.clone(), access_log.clone());
    let snapshot = Snapshot::build(Loaded { config, sha256: [0; 32] }, 1, &metrics, None).expect("snapshot builds");
    Handles {
        live: Arc::new(ArcSwap::from_pointee(snapshot)),
        migration: Arc::new(migration),
        components,
        metrics,
        access_log,
        shadow,
        tracer: paymesh_otel::Tracer::off(),
    }
}

/// The connection of a plain-TCP client on loopback.
pub fn conn() -> Arc<ConnInfo> {
    Arc::new(ConnInfo { peer: SocketAddr::from(([127, 0, 0, 1], 40000)), cert_client: None })
}

/// `req` as the server hands it to the stack.
pub fn accepted<B>(req: Request<B>) -> Accepted<B> {
    Accepted { conn: conn(), req }
}

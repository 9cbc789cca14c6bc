//! The sidecar's typed configuration and its one loader.
//!
//! `load` reads YAML, refuses unknown keys, validates every value and returns
//! either a `Config` whose fields are ready to use (parsed addresses,
//! durations, hashes) or every problem found, each naming its key. The same
//! function serves `--check-config`, hot reload and the Helm chart's tests.
//! Nothing here touches the network or starts a task.

mod admin_token;
pub mod defaults;
mod etcd;
mod fleet;
mod metrics;
mod raw;
mod shadow;
#[cfg(test)]
mod tests;
mod tracing;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use crate::observe::Rotate;

pub use admin_token::AdminToken;
pub use etcd::{EtcdAuth, EtcdTls, Password, TlsPem, read_password, read_tls};
pub use fleet::{Fleet, Scope};
pub use metrics::{MANY_CLIENTS, Metrics, ShownClients};
pub use shadow::{FieldPath, Shadow};
pub use tracing::Tracing;
pub use validate::from_yaml;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Loopback `ip:port`, or `unix:/path` (`paymesh_process::Address`).
    pub app: paymesh_process::Address,
    pub admin: SocketAddr,
    /// `admin.token_file`, read: without one, state-changing admin requests
    /// are refused.
    pub admin_token: Option<AdminToken>,
    /// Tokio worker threads; defaults to the available parallelism.
    pub workers: usize,
    pub tls: Option<Tls>,
    pub clients: Vec<Client>,
    pub limits: Limits,
    pub migration: Migration,
    pub overload: Overload,
    pub access_log: AccessLog,
    pub fleet: Fleet,
    pub shadow: Shadow,
    pub tracing: Tracing,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

#[derive(Clone, PartialEq)]
pub struct Client {
    pub id: String,
    /// SHA-256 of the client's API key; `None` for a client known only by
    /// its TLS certificate.
    pub api_key_sha256: Option<[u8; 32]>,
    pub rate: Rate,
    /// `rate.scope`: `Fleet` makes `rate` the total over every sidecar.
    pub scope: Scope,
    /// DNS subject alternative names of client certificates that identify
    /// this client under mTLS.
    pub cert_names: Vec<String>,
}

impl fmt::Debug for Client {
    // The hash is not the key, but it still has no business in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("api_key", &self.api_key_sha256.map(|_| "<sha256>"))
            .field("rate", &self.rate)
            .field("scope", &self.scope)
            .field("cert_names", &self.cert_names)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Open client connections on the public listener.
    pub max_connections: u32,
    pub max_inflight: u32,
    pub max_body_bytes: u64,
    pub request_timeout: Duration,
    /// From accept to the first request's headers, every phase included.
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    pub etcd_endpoints: Vec<String>,
    /// `migration.etcd_tls`: set exactly when the endpoints are https://.
    pub etcd_tls: Option<EtcdTls>,
    /// `migration.etcd_auth`: etcd's user and password file.
    pub etcd_auth: Option<EtcdAuth>,
    pub prefix: String,
    pub cache_file: PathBuf,
    /// Default orchestration share per feature in basis points (percent × 100),
    /// indexed by `Feature::index()`.
    pub defaults_bp: [u32; 3],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Overload {
    pub telemetry_file: PathBuf,
    pub check_interval: Duration,
    pub shed: Thresholds,
    pub restore: Thresholds,
    pub hold: Duration,
    pub components: Vec<String>,
    pub events_file: PathBuf,
    pub events_rotate: Rotate,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub cpu_percent: f64,
    pub mem_percent: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    /// `None` means standard output.
    pub path: Option<PathBuf>,
    pub buffer_lines: usize,
    /// Applies to a file `path` only.
    pub rotate: Rotate,
}

/// One configuration problem, named by its key (`clients[1].rate.burst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    /// A problem with `key`. Both are printed one per line (`--check-config`,
    /// the reload log), and both may quote the file's own bytes (serde names
    /// an unknown key as written): control characters are escaped, so a
    /// hostile or broken file cannot forge or split report lines.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: one_line(key.into()), message: one_line(message.into()) }
    }
}

fn one_line(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    pub fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![ConfigError::new(key, message)])
    }
}

/// A loaded file: the config and the SHA-256 of the bytes it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub sha256: [u8; 32],
}

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_digest(path).map(|l| l.config)
}

/// Like [`load`], and also returns the digest of the file's bytes, which
/// `/admin/state` shows so an operator can tell which file is in force.
pub fn load_with_digest(path: &Path) -> Result<Loaded, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|e| ConfigErrors::one("(file)", format!("{}: {e}", path.display())))?;
    let config = from_yaml(&bytes)?;
    Ok(Loaded { config, sha256: Sha256::digest(&bytes).into() })
}

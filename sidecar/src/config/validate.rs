//! Turns the raw YAML structs into a typed `Config`, collecting every problem.
//!
//! Each check names the key it is about, so an operator can fix a file in one
//! pass. Only shape errors that serde itself finds (an unknown key, a string
//! where a number belongs) stop early, as they leave nothing to check.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::connections;
use crate::migration::Feature;
use paymesh_process::Address;

use super::defaults::{ROTATE_MAX_KEEP, ROTATE_MIN_BYTES};
use super::raw::{RawConfig, RawRotate, RawThresholds};
use super::{
    AccessLog, AdminToken, Client, Config, ConfigError, ConfigErrors, FieldPath, Limits, Metrics, Migration, Overload,
    Rate, Rotate, Shadow, Thresholds, Tls, Tracing,
};

/// Components that `overload.components` may name.
pub const KNOWN_COMPONENTS: &[&str] = super::defaults::COMPONENTS;

/// Stands in for an address that failed to parse; never escapes `from_yaml`.
const UNSET_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Parses and validates a configuration document.
pub fn from_yaml(bytes: &[u8]) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = serde_yaml::from_slice(bytes).map_err(shape_error)?;
    let mut v = Problems::default();
    let config = v.config(raw);
    if v.0.is_empty() { Ok(config) } else { Err(ConfigErrors(v.0)) }
}

/// serde_yaml prefixes its message with the path of the offending key
/// (`clients[0].rate: unknown field ...`); lift it into `key`.
fn shape_error(e: serde_yaml::Error) -> ConfigErrors {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => ConfigErrors::one(path, rest),
        _ => ConfigErrors::one("(root)", text),
    }
}

#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(key, message));
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let listen = self.addr("listen", &raw.listen);
        let app = match raw.app.parse::<Address>() {
            Ok(Address::Tcp(a)) if !a.ip().is_loopback() => {
                self.push(
                    "app",
                    "must be a loopback address or a unix: socket: the app trusts x-paymesh-* headers, so only the sidecar may reach it",
                );
                Address::Tcp(a)
            }
            Ok(a) => a,
            Err(e) => {
                self.push("app", e);
                Address::Tcp(UNSET_ADDR)
            }
        };
        let admin_key = if raw.admin.mapped { "admin.listen" } else { "admin" };
        let admin = self.addr(admin_key, &raw.admin.listen);
        let admin_token = raw.admin.token_file.as_deref().and_then(|f| self.admin_token(f));
        if listen == admin && listen.is_some_and(|a| a.port() != 0) {
            self.push(admin_key, "must differ from listen");
        }
        let [listen, admin] = [listen, admin].map(|a| a.unwrap_or(UNSET_ADDR));
        let workers = match raw.workers {
            Some(0) => {
                self.push("workers", "must be at least 1");
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let tls = raw.tls.map(|t| Tls {
            cert: self.file("tls.cert", &t.cert),
            key: self.file("tls.key", &t.key),
            client_ca: t.client_ca.map(|ca| self.file("tls.client_ca", &ca)),
        });
        let mtls = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        let clients = self.clients(raw.clients, mtls);
        let l = raw.limits;
        let limits = Limits {
            max_connections: self.max_connections(l.max_connections),
            max_inflight: self.at_least("limits.max_inflight", l.max_inflight, 1),
            max_body_bytes: self.at_least("limits.max_body_bytes", l.max_body_bytes, 1),
            request_timeout: self.duration("limits.request_timeout", &l.request_timeout),
            header_read_timeout: self.duration("limits.header_read_timeout", &l.header_read_timeout),
            idle_timeout: self.duration("limits.idle_timeout", &l.idle_timeout),
            connect_timeout: self.duration("limits.connect_timeout", &l.connect_timeout),
            drain_timeout: self.duration("limits.drain_timeout", &l.drain_timeout),
        };
        let m = raw.migration;
        for (i, e) in m.etcd_endpoints.iter().enumerate() {
            if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() < 9 {
                self.push(format!("migration.etcd_endpoints[{i}]"), format!("{e:?} is not an http:// or https:// URL"));
            }
        }
        if !m.prefix.starts_with('/') || (m.prefix.len() > 1 && m.prefix.ends_with('/')) {
            self.push("migration.prefix", "must start with '/' and not end with '/' (e.g. /paymesh)");
        }
        let (etcd_tls, etcd_auth) =
            super::etcd::validate(&m.etcd_endpoints, m.etcd_tls, m.etcd_auth, &mut |k, msg| self.push(k, msg));
        let migration = Migration {
            etcd_endpoints: m.etcd_endpoints,
            etcd_tls,
            etcd_auth,
            prefix: m.prefix,
            cache_file: self.path("migration.cache_file", &m.cache_file),
            defaults_bp: [
                self.percent_bp("migration.defaults.charge", m.defaults.charge),
                self.percent_bp("migration.defaults.refund", m.defaults.refund),
                self.percent_bp("migration.defaults.disbursement", m.defaults.disbursement),
            ],
        };
        let o = raw.overload;
        let shed = self.thresholds("overload.shed", &o.shed);
        let restore = self.thresholds("overload.restore", &o.restore);
        if restore.cpu_percent >= shed.cpu_percent {
            self.push("overload.restore.cpu_percent", "must be below overload.shed.cpu_percent (hysteresis)");
        }
        if restore.mem_percent >= shed.mem_percent {
            self.push("overload.restore.mem_percent", "must be below overload.shed.mem_percent (hysteresis)");
        }
        let mut seen = HashSet::new();
        for (i, c) in o.components.iter().enumerate() {
            if !KNOWN_COMPONENTS.contains(&c.as_str()) {
                self.push(
                    format!("overload.components[{i}]"),
                    format!("unknown component {c:?}; known: {}", KNOWN_COMPONENTS.join(", ")),
                );
            } else if !seen.insert(c.as_str()) {
                self.push(format!("overload.components[{i}]"), format!("{c:?} listed twice"));
            }
        }
        let overload = Overload {
            telemetry_file: self.path("overload.telemetry_file", &o.telemetry_file),
            check_interval: self.duration("overload.check_interval", &o.check_interval),
            shed,
            restore,
            hold: self.duration("overload.hold", &o.hold),
            components: o.components,
            events_file: self.path("overload.events_file", &o.events_file),
            events_rotate: self.rotate("overload.events_rotate", &o.events_rotate),
        };
        let a = raw.access_log;
        let access_log = AccessLog {
            path: match a.path.as_str() {
                "stdout" | "-" => None,
                p => Some(self.path("access_log.path", p)),
            },
            buffer_lines: self.at_least("access_log.buffer_lines", a.buffer_lines, 1),
            rotate: self.rotate("access_log.rotate", &a.rotate),
        };
        let fleet = super::fleet::validate(&raw.fleet, &mut |k, m| self.push(k, m));
        for (i, c) in clients.iter().enumerate() {
            if c.scope == super::Scope::Fleet && migration.etcd_endpoints.is_empty() {
                self.push(format!("clients[{i}].rate.scope"), "fleet needs etcd (migration.etcd_endpoints)");
            }
        }
        let shadow = self.shadow(raw.shadow);
        let tracing = self.tracing(raw.tracing);
        let metrics = self.metrics(raw.metrics, &clients);
        Config {
            listen,
            app,
            admin,
            admin_token,
            workers,
            tls,
            clients,
            limits,
            migration,
            overload,
            access_log,
            fleet,
            shadow,
            tracing,
            metrics,
        }
    }

    fn metrics(&mut self, m: super::metrics::RawMetrics, clients: &[Client]) -> Metrics {
        use super::metrics::{RawShownClients, ShownClients};
        let client_series = match m.client_series {
            RawShownClients::All => ShownClients::All,
            RawShownClients::Listed(ids) => {
                let configured: HashSet<&str> = clients.iter().map(|c| c.id.as_str()).collect();
                let mut seen = HashSet::new();
                for (i, id) in ids.iter().enumerate() {
                    if !configured.contains(id.as_str()) {
                        self.push(format!("metrics.client_series[{i}]"), format!("{id:?} is not a configured client"));
                    } else if !seen.insert(id.as_str()) {
                        self.push(format!("metrics.client_series[{i}]"), format!("{id:?} listed twice"));
                    }
                }
                ShownClients::Listed(ids)
            }
        };
        Metrics { client_series }
    }

    fn tracing(&mut self, t: super::tracing::RawTracing) -> Tracing {
        use super::tracing::{Endpoint, Transport};
        let transport = Transport::from_name(&t.protocol).unwrap_or_else(|| {
            self.push("tracing.protocol", format!("{:?} must be grpc or http", t.protocol));
            Transport::Grpc
        });
        let endpoint = match t.otlp_endpoint.trim() {
            "" => None,
            url => {
                let endpoint = Endpoint { url: url.to_owned(), transport };
                if let Err(e) = endpoint.check() {
                    self.push("tracing.otlp_endpoint", e);
                }
                Some(endpoint)
            }
        };
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            self.push("tracing.sample_ratio", "must be a fraction in [0, 1]");
        }
        Tracing { endpoint, sample_ratio: t.sample_ratio.clamp(0.0, 1.0) }
    }

    fn shadow(&mut self, s: super::shadow::RawShadow) -> Shadow {
        use super::shadow::{MAX_IGNORE_FIELDS, MAX_INFLIGHT_CEILING, MAX_TIMEOUT, RawSample};
        let sample_bp = match s.sample_percent {
            RawSample::All(p) => [self.percent_bp("shadow.sample_percent", p); 3],
            RawSample::PerFeature(entries) => {
                let mut bp = [0; 3];
                for (name, p) in entries {
                    let key = format!("shadow.sample_percent.{name}");
                    match Feature::from_name(&name).filter(|f| Feature::MIGRATING.contains(f)) {
                        Some(f) => bp[f.index()] = self.percent_bp(&key, p),
                        None => self.push(key, "unknown feature; known: charge, refund, disbursement"),
                    }
                }
                bp
            }
        };
        let max_inflight = self.at_least("shadow.max_inflight", s.max_inflight, 1);
        if max_inflight > MAX_INFLIGHT_CEILING {
            self.push("shadow.max_inflight", format!("must be at most {MAX_INFLIGHT_CEILING}"));
        }
        let timeout = self.duration("shadow.timeout", &s.timeout);
        if timeout > MAX_TIMEOUT {
            self.push("shadow.timeout", format!("must be at most {}s", MAX_TIMEOUT.as_secs()));
        }
        if s.ignore_fields.len() > MAX_IGNORE_FIELDS {
            self.push("shadow.ignore_fields", format!("at most {MAX_IGNORE_FIELDS} fields"));
        }
        let mut ignore_fields = Vec::new();
        for (i, f) in s.ignore_fields.iter().enumerate() {
            match FieldPath::parse(f) {
                Ok(path) => ignore_fields.push(path),
                Err(why) => self.push(format!("shadow.ignore_fields[{i}]"), format!("{f:?} {why}")),
            }
        }
        Shadow { sample_bp, max_inflight, timeout, ignore_fields }
    }

    fn clients(&mut self, raw: Vec<super::raw::RawClient>, mtls: bool) -> Vec<Client> {
        if raw.is_empty() {
            self.push("clients", "at least one client is required");
        }
        let mut ids = HashSet::new();
        let mut hashes = HashSet::new();
        let mut names = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, c) in raw.into_iter().enumerate() {
            let key = |k: &str| format!("clients[{i}].{k}");
            if !paymesh_vocab::ids::valid_client_id(&c.id) {
                self.push(
                    key("id"),
                    "must be 1-64 characters of [A-Za-z0-9._-] (it is a metric label and a header value)",
                );
            } else if !ids.insert(c.id.clone()) {
                self.push(key("id"), format!("duplicate client id {:?}", c.id));
            }
            let api_key_sha256 = c.api_key_sha256.as_deref().and_then(|h| {
                let parsed = parse_sha256(h);
                if parsed.is_none() {
                    self.push(key("api_key_sha256"), "must be 64 hex characters");
                } else if !hashes.insert(parsed) {
                    self.push(key("api_key_sha256"), "the same key hash belongs to another client");
                }
                parsed
            });
            if c.api_key_sha256.is_none() && c.cert_names.is_empty() {
                self.push(key("api_key_sha256"), "required (or cert_names, for a client known by its certificate)");
            }
            if !c.rate.per_second.is_finite() || c.rate.per_second <= 0.0 {
                self.push(key("rate.per_second"), "must be a positive number");
            }
            if c.rate.burst == 0 {
                self.push(key("rate.burst"), "must be at least 1");
            }
            let rate = Rate { per_second: c.rate.per_second, burst: c.rate.burst };
            if c.rate.per_second.is_finite() && c.rate.per_second > 0.0 && c.rate.burst > 0 {
                // The throttle's bucket must be able to do this rate's
                // arithmetic; a rate it would have to clamp is a typo.
                if let Err(why) = crate::layers::throttle::TokenBucket::check(rate) {
                    self.push(key("rate"), why);
                }
            }
            if !c.cert_names.is_empty() && !mtls {
                self.push(key("cert_names"), "needs tls.client_ca (mTLS) to mean anything");
            }
            for (j, n) in c.cert_names.iter().enumerate() {
                if ServerName::try_from(n.as_str()).is_err() {
                    self.push(format!("clients[{i}].cert_names[{j}]"), "not a valid DNS name");
                } else if !names.insert(n.to_ascii_lowercase()) {
                    self.push(format!("clients[{i}].cert_names[{j}]"), format!("{n:?} already names another client"));
                }
            }
            out.push(Client { id: c.id, api_key_sha256, rate, scope: c.rate.scope, cert_names: c.cert_names });
        }
        out
    }

    fn admin_token(&mut self, file: &str) -> Option<AdminToken> {
        if file.is_empty() {
            self.push("admin.token_file", "must not be empty (leave it out for no token)");
            return None;
        }
        AdminToken::read(Path::new(file)).map_err(|e| self.push("admin.token_file", e)).ok()
    }

    /// Beyond the descriptor budget the cap no longer protects anything: the
    /// process would run out of descriptors first.
    fn max_connections(&mut self, configured: Option<u32>) -> u32 {
        let Some(n) = configured else {
            return connections::default_max_connections();
        };
        if n == 0 {
            self.push("limits.max_connections", "must be at least 1");
            return 1;
        }
        if let Some(fds) = connections::fd_soft_limit() {
            let budget = connections::fd_budget(fds);
            if n > budget {
                self.push(
                    "limits.max_connections",
                    format!(
                        "{n} exceeds what the open-file limit ({fds}) can carry: at most {budget} \
                         ((limit - {}) / 2); raise the limit (ulimit -n) or lower this",
                        connections::FD_RESERVE
                    ),
                );
            }
        }
        n
    }

    fn addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
        let a = s.parse().ok();
        if a.is_none() {
            self.push(key, format!("{s:?} is not an ip:port address"));
        }
        a
    }

    fn duration(&mut self, key: &str, s: &str) -> Duration {
        match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.push(key, "must be longer than zero");
                Duration::from_secs(1)
            }
            Err(e) => {
                self.push(key, format!("{s:?} is not a duration like 250ms or 10s ({e})"));
                Duration::from_secs(1)
            }
        }
    }

    fn path(&mut self, key: &str, s: &str) -> PathBuf {
        if s.is_empty() {
            self.push(key, "must not be empty");
        }
        PathBuf::from(s)
    }

    fn file(&mut self, key: &str, s: &str) -> PathBuf {
        let p = self.path(key, s);
        if !s.is_empty() && !Path::new(s).is_file() {
            self.push(key, format!("{s}: no such readable file"));
        }
        p
    }

    fn at_least<T: PartialOrd + Copy + std::fmt::Display>(&mut self, key: &str, v: T, min: T) -> T {
        if v < min {
            self.push(key, format!("must be at least {min}"));
        }
        v
    }

    fn percent_bp(&mut self, key: &str, p: f64) -> u32 {
        paymesh_vocab::percent::basis_points(p).unwrap_or_else(|| {
            self.push(key, "must be a percent in [0, 100]");
            0
        })
    }

    fn rotate(&mut self, key: &str, r: &RawRotate) -> Rotate {
        let max_bytes = self.at_least(&format!("{key}.max_bytes"), r.max_bytes, ROTATE_MIN_BYTES);
        let keep = self.at_least(&format!("{key}.keep"), r.keep, 1);
        if keep > ROTATE_MAX_KEEP {
            self.push(format!("{key}.keep"), format!("must be at most {ROTATE_MAX_KEEP}"));
        }
        Rotate { max_bytes, keep }
    }

    fn thresholds(&mut self, key: &str, t: &RawThresholds) -> Thresholds {
        for (k, v) in [("cpu_percent", t.cpu_percent), ("mem_percent", t.mem_percent)] {
            if !(v > 0.0 && v <= 100.0) {
                self.push(format!("{key}.{k}"), "must be a percent in (0, 100]");
            }
        }
        Thresholds { cpu_percent: t.cpu_percent, mem_percent: t.mem_percent }
    }
}

pub(super) fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

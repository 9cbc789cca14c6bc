//! The configuration exactly as written in YAML, before validation.
//!
//! Leaf values that can be wrong in interesting ways (addresses, durations,
//! hashes) stay strings here, so that validation can report every problem at
//! once instead of serde stopping at the first. Unknown keys are refused.

use serde::Deserialize;

use super::defaults as d;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: String,
    pub app: String,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(default)]
    pub tls: Option<RawTls>,
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub migration: RawMigration,
    #[serde(default)]
    pub overload: RawOverload,
    #[serde(default)]
    pub access_log: RawAccessLog,
    #[serde(default)]
    pub fleet: super::fleet::RawFleet,
    #[serde(default)]
    pub shadow: super::shadow::RawShadow,
    #[serde(default)]
    pub tracing: super::tracing::RawTracing,
    #[serde(default)]
    pub metrics: super::metrics::RawMetrics,
}

/// `admin: "0.0.0.0:9901"` or `admin: { listen: "0.0.0.0:9901", token_file: FILE }`.
#[derive(Debug)]
pub struct RawAdmin {
    pub listen: String,
    pub token_file: Option<String>,
    /// Written as a mapping: errors then name `admin.listen`.
    pub mapped: bool,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self { listen: admin_listen(), token_file: None, mapped: false }
    }
}

fn admin_listen() -> String {
    d::ADMIN.to_owned()
}

/// The mapping form of `admin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdminMap {
    #[serde(default = "admin_listen")]
    listen: String,
    #[serde(default)]
    token_file: Option<String>,
}

/// Hand-written rather than `#[serde(untagged)]`, whose one error for every
/// mistake ("did not match any variant") would hide which key was wrong.
impl<'de> Deserialize<'de> for RawAdmin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Form;
        impl<'de> serde::de::Visitor<'de> for Form {
            type Value = RawAdmin;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an ip:port address or { listen, token_file }")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawAdmin, E> {
                Ok(RawAdmin { listen: s.to_owned(), token_file: None, mapped: false })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawAdmin, A::Error> {
                let m = RawAdminMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawAdmin { listen: m.listen, token_file: m.token_file, mapped: true })
            }
        }
        d.deserialize_any(Form)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
    #[serde(default)]
    pub client_ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub id: String,
    #[serde(default)]
    pub api_key_sha256: Option<String>,
    #[serde(default)]
    pub rate: RawRate,
    #[serde(default)]
    pub cert_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRate {
    pub per_second: f64,
    pub burst: u32,
    pub scope: super::fleet::Scope,
}

impl Default for RawRate {
    fn default() -> Self {
        Self { per_second: d::RATE_PER_SECOND, burst: d::RATE_BURST, scope: Default::default() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// `None`: sized from the descriptor limit (`connections::default_max_connections`).
    pub max_connections: Option<u32>,
    pub max_inflight: u32,
    pub max_body_bytes: u64,
    pub request_timeout: String,
    pub header_read_timeout: String,
    pub idle_timeout: String,
    pub connect_timeout: String,
    pub drain_timeout: String,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_connections: None,
            max_inflight: d::MAX_INFLIGHT,
            max_body_bytes: d::MAX_BODY_BYTES,
            request_timeout: d::REQUEST_TIMEOUT.into(),
            header_read_timeout: d::HEADER_READ_TIMEOUT.into(),
            idle_timeout: d::IDLE_TIMEOUT.into(),
            connect_timeout: d::CONNECT_TIMEOUT.into(),
            drain_timeout: d::DRAIN_TIMEOUT.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMigration {
    pub etcd_endpoints: Vec<String>,
    pub etcd_tls: Option<super::etcd::RawEtcdTls>,
    pub etcd_auth: Option<super::etcd::RawEtcdAuth>,
    pub prefix: String,
    pub cache_file: String,
    pub defaults: RawPercents,
}

impl Default for RawMigration {
    fn default() -> Self {
        Self {
            etcd_endpoints: d::ETCD_ENDPOINTS.iter().map(|s| (*s).into()).collect(),
            etcd_tls: None,
            etcd_auth: None,
            prefix: d::MIGRATION_PREFIX.into(),
            cache_file: d::MIGRATION_CACHE_FILE.into(),
            defaults: RawPercents::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPercents {
    pub charge: f64,
    pub refund: f64,
    pub disbursement: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOverload {
    pub telemetry_file: String,
    pub check_interval: String,
    pub shed: RawThresholds,
    pub restore: RawThresholds,
    pub hold: String,
    pub components: Vec<String>,
    pub events_file: String,
    pub events_rotate: RawRotate,
}

impl Default for RawOverload {
    fn default() -> Self {
        Self {
            telemetry_file: d::TELEMETRY_FILE.into(),
            check_interval: d::CHECK_INTERVAL.into(),
            shed: RawThresholds { cpu_percent: d::SHED_CPU_PERCENT, mem_percent: d::SHED_MEM_PERCENT },
            restore: RawThresholds { cpu_percent: d::RESTORE_CPU_PERCENT, mem_percent: d::RESTORE_MEM_PERCENT },
            hold: d::HOLD.into(),
            components: d::COMPONENTS.iter().map(|s| (*s).into()).collect(),
            events_file: d::EVENTS_FILE.into(),
            events_rotate: RawRotate { max_bytes: d::EVENTS_ROTATE_MAX_BYTES, keep: d::EVENTS_ROTATE_KEEP },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholds {
    pub cpu_percent: f64,
    pub mem_percent: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccessLog {
    pub path: String,
    pub buffer_lines: usize,
    pub rotate: RawRotate,
}

impl Default for RawAccessLog {
    fn default() -> Self {
        Self {
            path: d::ACCESS_LOG_PATH.into(),
            buffer_lines: d::ACCESS_LOG_BUFFER_LINES,
            rotate: RawRotate { max_bytes: d::ACCESS_LOG_ROTATE_MAX_BYTES, keep: d::ACCESS_LOG_ROTATE_KEEP },
        }
    }
}

/// `{ max_bytes, keep }`; a key left out keeps its default (the same for
/// both files).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRotate {
    pub max_bytes: u64,
    pub keep: u32,
}

impl Default for RawRotate {
    fn default() -> Self {
        Self { max_bytes: d::ACCESS_LOG_ROTATE_MAX_BYTES, keep: d::ACCESS_LOG_ROTATE_KEEP }
    }
}

//! Every default of the sidecar configuration, in one place.
//!
//! The raw (serde) structs and the README both point here; change a default
//! in this file and nowhere else.

pub const ADMIN: &str = "0.0.0.0:9901";

pub const RATE_PER_SECOND: f64 = 1000.0;
pub const RATE_BURST: u32 = 2000;

pub const MAX_INFLIGHT: u32 = 1024;
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const REQUEST_TIMEOUT: &str = "10s";
/// Everything before a connection's first request: TLS handshake, protocol
/// detection, the request's headers.
pub const HEADER_READ_TIMEOUT: &str = "10s";
/// A connection with nothing in flight this long is closed (HTTP/2 with a
/// GOAWAY). `limits.max_connections` defaults to
/// `connections::default_max_connections()`, from the descriptor limit.
pub const IDLE_TIMEOUT: &str = "60s";
pub const CONNECT_TIMEOUT: &str = "1s";
pub const DRAIN_TIMEOUT: &str = "20s";

pub const ETCD_ENDPOINTS: &[&str] = &["http://127.0.0.1:2379"];
pub const MIGRATION_PREFIX: &str = "/paymesh";
pub const MIGRATION_CACHE_FILE: &str = "/var/lib/paymesh/migration.json";

pub const TELEMETRY_FILE: &str = "/run/paymesh/telemetry.json";
pub const CHECK_INTERVAL: &str = "1s";
pub const SHED_CPU_PERCENT: f64 = 85.0;
pub const SHED_MEM_PERCENT: f64 = 90.0;
pub const RESTORE_CPU_PERCENT: f64 = 60.0;
pub const RESTORE_MEM_PERCENT: f64 = 75.0;
pub const HOLD: &str = "10s";
pub const COMPONENTS: &[&str] = &paymesh_vocab::Component::NAMES;
pub const EVENTS_FILE: &str = "/var/lib/paymesh/switch-events.jsonl";
pub const EVENTS_ROTATE_MAX_BYTES: u64 = 100 * 1024 * 1024;
pub const EVENTS_ROTATE_KEEP: u32 = 5;

pub const ACCESS_LOG_PATH: &str = "stdout";
pub const ACCESS_LOG_BUFFER_LINES: usize = 4096;
pub const ACCESS_LOG_ROTATE_MAX_BYTES: u64 = 100 * 1024 * 1024;
pub const ACCESS_LOG_ROTATE_KEEP: u32 = 5;

/// The smallest `max_bytes` a rotated file may have: below it the renames
/// cost more than the lines they make room for.
pub const ROTATE_MIN_BYTES: u64 = 64 * 1024;
/// The most rotated files one log may keep.
pub const ROTATE_MAX_KEEP: u32 = 1000;

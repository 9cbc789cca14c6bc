//! Where observations go: the Prometheus registry and the access-log writer
//! (and the size-based rotation it shares with the switch-events file).
//!
//! The layers in `layers/metrics.rs` and `layers/access_log.rs` feed these;
//! neither sink may block or allocate much on the request path.

pub mod access_log;
pub mod metrics;
pub mod rotate;
mod traces;

pub use access_log::{AccessLogWriter, LogRecord};
pub use metrics::Metrics;
pub use rotate::Rotate;
pub use traces::register_trace_stats;

//! The parts of `paymeshctl` that read untrusted input, as a library: the
//! Prometheus text a sidecar serves and the answers of a Prometheus server
//! (the fuzz targets call them), and the `--selector` matchers it adds to
//! every PromQL query. The command itself is `main.rs`.

pub mod prom;
pub mod promql;

//! paymesh-sidecar: the process that takes every request first.
//!
//! It authenticates the caller, throttles it, picks the orchestration path,
//! logs and measures the request, and proxies it to the app on loopback. The
//! request path is a tower stack (`stack.rs`, one layer per concern in
//! `layers/`); background work (config reload, readiness probe, access-log
//! writer, admin listener) lives in its own modules and never blocks a
//! request. The sidecar must never forward a client's own `x-paymesh-*`
//! headers, never let a slow client or a dead app hold resources without
//! bound, and never lose an accepted request on a clean shutdown.

pub mod admin;
pub mod app_conn;
pub mod body;
pub mod components;
pub mod config;
pub mod connections;
pub mod ctx;
pub mod error;
pub mod etcd;
pub mod fleet;
pub mod layers;
pub mod memory;
pub mod migration;
pub mod observe;
pub mod overload;
pub mod park;
pub mod proxy;
pub mod readiness;
pub mod reload;
pub mod server;
pub mod shadow;
pub mod stack;
pub mod state;
pub mod test_util;
pub mod tls;

pub use server::{Running, StartError, start};

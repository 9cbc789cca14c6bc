//! Process plumbing every paymesh binary shares, so that they all log, stop,
//! drain and write files alike: log set-up (`--log-format`, `RUST_LOG`), the
//! stop signal (SIGTERM/SIGINT), the accept loop with a bounded graceful
//! drain, atomic file replacement, and reading PEM certificates.
//!
//! It must never hold policy: what a connection may do, how many may be
//! open, which headers a request may carry stay with the binary that owns
//! the listener. This crate only gives the mechanics they share.

mod activity;
mod address;
mod logging;
pub mod pem;
mod serve;
mod signal;
mod write;

pub use activity::{Activity, RequestGuard, idle_between};
pub use address::{Address, MAX_SOCKET_PATH, bind_unix};
pub use logging::{LogFormat, init_logging};
pub use serve::{
    DEEP_BACKLOG, Drain, DrainWatch, IDLE_GRACE, LISTEN_BACKLOG, accept, accept_backlog, accept_until, listen,
    listen_with_backlog, plain, serve_http, serve_http_unix,
};
pub use signal::{StopSignal, stop_signal};
pub use write::{WriteError, write_atomic};

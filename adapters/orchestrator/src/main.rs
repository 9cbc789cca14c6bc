//! `paymesh-orchestrator`: the reference orchestration service.
//!
//! The adaptee of the orchestration path and the component backend of the
//! legacy path, over one durable store: a payment made through either path
//! is visible through both. Acknowledged writes are fsync'd first; see
//! `store.rs` and `wal.rs`.

// Handlers return a ready response as their error: one per request, not hot.
#![allow(clippy::result_large_err)]

mod components;
mod http;
mod model;
mod store;
mod wal;
mod workflows;

use clap::Parser;
use paymesh_adapters::service::{self, LogFormat};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use workflows::Pace;

/// Reference orchestration service: workflow executions and payment
/// components over one durable store.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Directory of the durable store (created if missing).
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_DATA_DIR")]
    data_dir: PathBuf,
    /// Simulated latency of each component call and workflow step, e.g. `20ms`.
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_STEP_DELAY", default_value = "0ms", value_parser = humantime::parse_duration)]
    step_delay: Duration,
    /// How long starting an execution waits for it before answering RUNNING.
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_SYNC_WINDOW", default_value = "250ms", value_parser = humantime::parse_duration)]
    sync_window: Duration,
    /// Log format: json or text.
    #[arg(long, env = "PAYMESH_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    service::init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let store = Arc::new(
        Store::open(&args.data_dir)
            .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", args.data_dir.display()))?,
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, data_dir = %args.data_dir.display(), "orchestrator serving");

    let expiry = store.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let n = expiry.expire();
            if n > 0 {
                tracing::info!(expired = n, "forgot idempotency keys past retention");
            }
        }
    });

    let pace = Pace { step_delay: args.step_delay, sync_window: args.sync_window };
    let handle = move |req: hyper::Request<hyper::body::Incoming>| {
        let store = store.clone();
        async move { route(&store, pace, req).await }
    };
    service::serve(listener, handle, service::stop_signal(), Duration::from_secs(10)).await;
    Ok(())
}

async fn route(store: &Arc<Store>, pace: Pace, req: hyper::Request<hyper::body::Incoming>) -> http::Resp {
    use serde_json::json;
    let (parts, body) = req.into_parts();
    let path: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    let method = &parts.method;
    match (method.as_str(), path.as_slice()) {
        ("GET", ["healthz"]) => http::json(200, &json!({ "status": "ok" })),
        ("GET", ["components", rest @ ..]) => components::get(store, rest),
        ("GET", ["workflows", "v1", rest @ ..]) => workflows::get(store, rest),
        ("POST", ["components", ..]) | ("POST", ["workflows", "v1", "executions"]) => {
            let body = match http::read_body(body).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if path[0] == "components" {
                if !pace.step_delay.is_zero() {
                    tokio::time::sleep(pace.step_delay).await;
                }
                components::post(store, &path[1..], &body).await
            } else {
                workflows::start(store, pace, &body).await
            }
        }
        _ => http::json(404, &json!({ "error": "no_such_endpoint" })),
    }
}

//! `paymesh-orchestrator`: the reference orchestration service.
//!
//! The adaptee of the orchestration path and the component backend of the
//! legacy path, over one durable store: a payment made through either path
//! is visible through both. The store is SQLite (WAL, `synchronous=FULL`):
//! every operation is one transaction, answered after its COMMIT; see
//! `store.rs`.

// Handlers return a ready response as their error: one per request, not hot.
#![allow(clippy::result_large_err)]

mod components;
mod http;
mod model;
mod store;
mod tls;
mod workflows;

use clap::Parser;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use paymesh_process::{LogFormat, init_logging, plain, serve_http, stop_signal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::{Config, Store};
use workflows::{Pace, Skew};

/// Reference orchestration service: workflow executions and payment
/// components over one durable store.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Directory of the durable store (created if missing). It holds the
    /// SQLite database (`paymesh.db` and its `-wal`/`-shm` files) only.
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_DATA_DIR")]
    data_dir: PathBuf,
    /// SQLite page cache in MiB (shared by the writer and the reader
    /// connection): the bound on the store's memory, whatever the data size.
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_CACHE_MIB", default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=4096))]
    cache_mib: u32,
    /// How long a pending idempotency claim holds its key without a step of
    /// its attempt renewing it; then a retry takes it over (fenced: the old
    /// attempt's later steps are refused).
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_CLAIM_LEASE", default_value = "5s", value_parser = humantime::parse_duration)]
    claim_lease: Duration,
    /// Simulated latency of each component call and workflow step, e.g. `20ms`.
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_STEP_DELAY", default_value = "0ms", value_parser = humantime::parse_duration)]
    step_delay: Duration,
    /// How long starting an execution waits for it before answering RUNNING.
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_SYNC_WINDOW", default_value = "250ms", value_parser = humantime::parse_duration)]
    sync_window: Duration,
    /// Serve TLS with this certificate chain (PEM); with --tls-key.
    /// Default: plain HTTP.
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require a client certificate signed by this CA bundle (PEM): mTLS.
    #[arg(long, env = "PAYMESH_ORCHESTRATOR_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Test only: orchestration-path reads of this kind of resource
    /// (`charge`, `refund` or `payout`, via `GET /workflows/v1/…/<id>`)
    /// report an amount one minor unit higher than stored; component reads,
    /// executions and the stored data stay exact. It exists only so tests
    /// can prove that shadow reads catch a path that answers wrong; never
    /// set it in production. Default: every read is exact.
    #[arg(long, value_enum, env = "PAYMESH_ORCHESTRATOR_TEST_ONLY_SKEW_AMOUNT", value_name = "KIND")]
    test_only_skew_amount: Option<Skew>,
    /// Log format: json or text.
    #[arg(long, value_enum, env = "PAYMESH_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Before the store: a bad certificate is a start-up error, not a
    // listener that refuses every client.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(&tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.tls_client_ca.clone(),
        })?),
        _ => None,
    };
    let config = Config { cache_mib: args.cache_mib, lease: args.claim_lease, ..Config::default() };
    let store = Arc::new(
        Store::open_with(&args.data_dir, config)
            .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", args.data_dir.display()))?,
    );
    let pace = Pace { step_delay: args.step_delay, sync_window: args.sync_window };
    let skew = args.test_only_skew_amount;
    if let Some(kind) = skew {
        tracing::warn!(
            kind = kind.as_str(),
            "--test-only-skew-amount is set: orchestration-path reads of this kind answer an amount one minor unit high; never use it in production"
        );
    }
    match workflows::resume(&store, pace).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(resumed = n, "resumed workflow executions that were running at the last stop"),
        // Not fatal: a client's retry takes the execution over as well.
        Err(e) => tracing::error!(error = %e, "could not look for executions to resume"),
    }
    // Each app's pool may open many connections at once.
    let listener = paymesh_process::listen_with_backlog(args.listen, paymesh_process::DEEP_BACKLOG)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        data_dir = %args.data_dir.display(),
        tls = tls.is_some(),
        mtls = args.tls_client_ca.is_some(),
        "orchestrator serving"
    );

    let expiry = store.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match expiry.expire().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "forgot idempotency keys past retention"),
                Err(e) => tracing::warn!(error = %e, "idempotency expiry failed; retrying at the next tick"),
            }
        }
    });

    let otlp = paymesh_otel::Endpoint::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tracer = match &otlp {
        Some(endpoint) => paymesh_otel::Tracer::start("paymesh-orchestrator", endpoint, Default::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        None => paymesh_otel::Tracer::off(),
    };
    let traces = tracer.clone();
    let handle = move |req: hyper::Request<hyper::body::Incoming>| {
        let (store, tracer) = (store.clone(), traces.clone());
        async move {
            // Continues the app's trace: one server span per request.
            let span = paymesh_otel::ServerSpan::start(&tracer, req.headers(), span_name(&req));
            let resp = route(&store, pace, skew, req).await;
            span.finish(resp.status().as_u16(), Vec::new());
            resp
        }
    };
    let mut http = auto::Builder::new(TokioExecutor::new());
    // The limit the app's server has: whatever reaches the app may be
    // passed on here.
    http.http1().max_headers(paymesh_vocab::limits::APP_MAX_HEADERS);
    let drain = Duration::from_secs(10);
    match tls {
        Some(acceptor) => serve_http(listener, http, handle, stop_signal(), drain, tls::handshake(acceptor)).await,
        None => serve_http(listener, http, handle, stop_signal(), drain, plain).await,
    }
    tracer.flush(Duration::from_secs(2)).await;
    Ok(())
}

/// A bounded span name: the method and the endpoint, ids cut
/// (`POST /components/authorizations`, `GET /workflows/v1/executions/{id}`).
fn span_name(req: &hyper::Request<hyper::body::Incoming>) -> String {
    let mut name = format!("{} ", req.method().as_str());
    for (i, segment) in req.uri().path().trim_matches('/').split('/').take(4).enumerate() {
        name.push('/');
        let id = i >= 2 && (segment.contains('_') || segment.len() > 24);
        name.push_str(if id || segment.len() > 32 { "{id}" } else { segment });
    }
    name
}

async fn route(
    store: &Arc<Store>,
    pace: Pace,
    skew: Option<Skew>,
    req: hyper::Request<hyper::body::Incoming>,
) -> http::Resp {
    use serde_json::json;
    let (parts, body) = req.into_parts();
    let path: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    let method = &parts.method;
    match (method.as_str(), path.as_slice()) {
        ("GET", ["healthz"]) => http::json(200, &json!({ "status": "ok" })),
        ("GET", ["components", rest @ ..]) => components::get(store, rest, parts.uri.query()).await,
        ("GET", ["workflows", "v1", rest @ ..]) => workflows::get(store, skew, rest, parts.uri.query()).await,
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

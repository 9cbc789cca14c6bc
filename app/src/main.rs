//! `paymesh-app` entry point: flags, logging, the listener; `--probe` asks
//! a running app's `/healthz` instead (`probe.rs`).

mod probe;

use clap::Parser;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use paymesh_adapters::TlsFiles;
use paymesh_app::backends::{Backends, Override};
use paymesh_app::{App, Settings};
use paymesh_process::{Address, LogFormat, init_logging, plain, serve_http, serve_http_unix, stop_signal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The thin payments app: validation and core routing to the legacy or the
/// orchestration path, behind the sidecar on loopback or a Unix socket.
///
/// `paymesh-app --probe` serves nothing: it sends `GET /healthz` to the app
/// at --listen (TCP or unix:) and exits 0 on a 200, else 1 with the reason
/// on stderr (no socket file, connection refused, no answer within
/// --probe-timeout, another status): the app's liveness and readiness
/// probe in a pod, where the kubelet's httpGet cannot reach it.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where to listen: `ip:port` (keep it on loopback: only the sidecar may
    /// call) or `unix:/run/paymesh/app.sock`, a socket only this user can
    /// open (mode 0600; a dead socket file left by a crash is replaced).
    #[arg(long, env = "PAYMESH_APP_LISTEN", default_value = "127.0.0.1:8081", value_parser = Address::from_str)]
    listen: Address,
    /// Base URL (http:// or https://) of the default orchestration service,
    /// which is also the legacy path's component service.
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR", default_value = "http://127.0.0.1:8090")]
    orchestrator: String,
    /// Orchestration service of charges (and so of their refunds).
    /// Default: --orchestrator.
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_CHARGE")]
    orchestrator_charge: Option<String>,
    /// Orchestration service of refunds: must be the charge service (a
    /// refund goes where its charge is). Default: the charge service.
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_REFUND")]
    orchestrator_refund: Option<String>,
    /// Orchestration service of disbursements. Default: --orchestrator.
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_DISBURSEMENT")]
    orchestrator_disbursement: Option<String>,
    /// CA bundle (PEM) that verifies every https:// orchestration service.
    /// Default: the host's trust store.
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_CA")]
    orchestrator_ca: Option<PathBuf>,
    /// Client certificate (PEM) for https:// orchestration services (mTLS);
    /// with --orchestrator-key.
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_CERT", requires = "orchestrator_key")]
    orchestrator_cert: Option<PathBuf>,
    /// Private key (PEM) of --orchestrator-cert.
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_KEY", requires = "orchestrator_cert")]
    orchestrator_key: Option<PathBuf>,
    /// CA bundle for the charge service only (instead of --orchestrator-ca).
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_CHARGE_CA")]
    orchestrator_charge_ca: Option<PathBuf>,
    /// CA bundle for the disbursement service only (instead of
    /// --orchestrator-ca).
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_DISBURSEMENT_CA")]
    orchestrator_disbursement_ca: Option<PathBuf>,
    /// Client certificate (PEM) for the charge service only (instead of
    /// --orchestrator-cert), with --orchestrator-charge-key.
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_CHARGE_CERT", requires = "orchestrator_charge_key")]
    orchestrator_charge_cert: Option<PathBuf>,
    /// Private key (PEM) of --orchestrator-charge-cert.
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_CHARGE_KEY", requires = "orchestrator_charge_cert")]
    orchestrator_charge_key: Option<PathBuf>,
    /// Client certificate (PEM) for the disbursement service only (instead
    /// of --orchestrator-cert), with --orchestrator-disbursement-key.
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_DISBURSEMENT_CERT", requires = "orchestrator_disbursement_key")]
    orchestrator_disbursement_cert: Option<PathBuf>,
    /// Private key (PEM) of --orchestrator-disbursement-cert.
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_DISBURSEMENT_KEY", requires = "orchestrator_disbursement_cert")]
    orchestrator_disbursement_key: Option<PathBuf>,
    /// Bound on one call to the charge service (instead of --timeout).
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_CHARGE_TIMEOUT", value_parser = humantime::parse_duration)]
    orchestrator_charge_timeout: Option<Duration>,
    /// Bound on one call to the disbursement service (instead of --timeout).
    #[arg(long, env = "PAYMESH_APP_ORCHESTRATOR_DISBURSEMENT_TIMEOUT", value_parser = humantime::parse_duration)]
    orchestrator_disbursement_timeout: Option<Duration>,
    /// Bound on one backend call and on one orchestration execution.
    #[arg(long, env = "PAYMESH_APP_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Bound on connecting to the orchestration service.
    #[arg(long, env = "PAYMESH_APP_CONNECT_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Client ids (comma-separated) of platform operators: their reads may
    /// look up any client's resource. Everyone else reads only the
    /// resources they created (another client's answer 404). Default: none.
    #[arg(long, env = "PAYMESH_APP_OPERATOR_CLIENTS", value_delimiter = ',')]
    operator_clients: Vec<String>,
    /// Log format: json or text.
    #[arg(long, value_enum, env = "PAYMESH_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Do not serve: probe the app at --listen (GET /healthz), exit 0 on a
    /// 200 and 1 otherwise, with the reason on stderr.
    #[arg(long, env = "PAYMESH_APP_PROBE")]
    probe: bool,
    /// Bound on the whole --probe: connect, request and status line.
    #[arg(long, env = "PAYMESH_APP_PROBE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    probe_timeout: Duration,
}

/// The app's listener: TCP, or a Unix socket.
enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if args.probe {
        return Ok(match probe::probe(&args.listen, args.probe_timeout) {
            Ok(answer) => {
                println!("{answer}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("paymesh-app --probe: {why}");
                ExitCode::FAILURE
            }
        });
    }
    init_logging(args.log_format);
    let backends = Backends {
        orchestrator: args.orchestrator.clone(),
        charge: Override {
            url: args.orchestrator_charge.clone(),
            ca: args.orchestrator_charge_ca.clone(),
            cert: args.orchestrator_charge_cert.clone(),
            key: args.orchestrator_charge_key.clone(),
            timeout: args.orchestrator_charge_timeout,
        },
        refund: args.orchestrator_refund.clone(),
        disbursement: Override {
            url: args.orchestrator_disbursement.clone(),
            ca: args.orchestrator_disbursement_ca.clone(),
            cert: args.orchestrator_disbursement_cert.clone(),
            key: args.orchestrator_disbursement_key.clone(),
            timeout: args.orchestrator_disbursement_timeout,
        },
        tls: TlsFiles {
            ca: args.orchestrator_ca.clone(),
            cert: args.orchestrator_cert.clone(),
            key: args.orchestrator_key.clone(),
        },
    };
    if let Address::Tcp(listen) = &args.listen
        && !listen.ip().is_loopback()
    {
        tracing::warn!(listen = %args.listen, "listening off loopback: anything that can reach this port can set x-paymesh-* headers");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let otlp = paymesh_otel::Endpoint::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    runtime.block_on(async {
        let tracer = match &otlp {
            Some(endpoint) => paymesh_otel::Tracer::start("paymesh-app", endpoint, Default::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            None => paymesh_otel::Tracer::off(),
        };
        let app = App::new(&Settings {
            tracer: tracer.clone(),
            backends,
            connect_timeout: args.connect_timeout,
            timeout: args.timeout,
            operator_clients: args.operator_clients.iter().filter(|c| !c.is_empty()).cloned().collect(),
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let app = Arc::new(app);
        let bound = match &args.listen {
            Address::Tcp(addr) => Bound::Tcp(
                // The sidecar opens as many app connections at once as it
                // has requests in flight: a shallow queue would leave a
                // burst of them waiting for SYN-ACK retransmits.
                paymesh_process::listen_with_backlog(*addr, paymesh_process::DEEP_BACKLOG)
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
            ),
            Address::Unix(path) => Bound::Unix(
                paymesh_process::bind_unix(path)
                    .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?,
            ),
        };
        let listening = match &bound {
            Bound::Tcp(l) => l.local_addr()?.to_string(),
            Bound::Unix(_) => args.listen.to_string(),
        };
        tracing::info!(
            listen = %listening,
            orchestrator = %args.orchestrator,
            charge = args.orchestrator_charge.as_deref().unwrap_or("default"),
            disbursement = args.orchestrator_disbursement.as_deref().unwrap_or("default"),
            "app serving"
        );
        let handle = move |req| {
            let app = app.clone();
            async move { app.handle(req).await }
        };
        let mut http = auto::Builder::new(TokioExecutor::new());
        // Room for every header a request the sidecar accepted can carry,
        // its own additions included (hyper's default of 100 is the
        // sidecar's client limit: a request at that limit would be refused
        // here).
        http.http1().max_headers(paymesh_vocab::limits::APP_MAX_HEADERS);
        let drain = Duration::from_secs(15);
        match bound {
            Bound::Tcp(listener) => serve_http(listener, http, handle, stop_signal(), drain, plain).await,
            Bound::Unix(listener) => serve_http_unix(listener, http, handle, stop_signal(), drain).await,
        }
        tracer.flush(Duration::from_secs(2)).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

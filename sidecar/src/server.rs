//! Startup, the public listener's accept loop, and the graceful drain.
//!
//! `start` builds the shared state, binds both listeners and spawns every
//! task; it returns a `Running` handle the binary (or a test) drives. On
//! shutdown `/readyz` turns 503, the listener closes, open connections
//! finish their in-flight requests within `limits.drain_timeout`, and the
//! access log is flushed.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tower::Service;

use crate::components::Components;
use crate::config::{ConfigErrors, Loaded};
use crate::ctx::{ConnInfo, Ctx};
use crate::migration::{MigrationSync, MigrationTable, SyncStatus};
use crate::observe::{AccessLogWriter, Metrics};
use crate::overload::OverloadControl;
use crate::stack::{self, ResponseBody};
use crate::state::{Shared, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind { key: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot open access_log.path: {0}")]
    AccessLog(std::io::Error),
}

/// A started sidecar.
#[derive(Debug)]
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    proxy: JoinHandle<()>,
    admin: JoinHandle<()>,
}

impl Running {
    /// Starts the drain: readiness fails and the listener stops accepting.
    pub fn shutdown(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
    }

    /// Waits until the drain is over and the access log is flushed.
    pub async fn wait(self) {
        let _ = self.proxy.await;
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.access_log.sync(Duration::from_secs(5))).await;
        let _ = self.shutdown.send(true);
        self.admin.abort();
    }
}

/// Builds the state from a loaded config, binds and spawns everything.
pub async fn start(loaded: Loaded, config_path: Option<PathBuf>) -> Result<Running, StartError> {
    let metrics = Metrics::new();
    let config = &loaded.config;
    let access_log = AccessLogWriter::start(
        config.access_log.path.as_deref(),
        config.access_log.rotate,
        config.access_log.buffer_lines,
        metrics.access_log_dropped.clone(),
    )
    .map_err(StartError::AccessLog)?;
    let (listen, admin_addr) = (config.listen, config.admin);
    let overload = OverloadControl::new(&metrics.registry, &config.overload);
    let migration = MigrationTable::new(config.migration.defaults_bp);
    let snapshot = Snapshot::build(loaded, 1, &metrics, None)?;
    let proxy_listener = bind("listen", listen)?;
    let admin_listener = bind("admin", admin_addr)?;
    let shared = Arc::new(Shared {
        live: ArcSwap::from_pointee(snapshot),
        migration,
        migration_sync: SyncStatus::default(),
        components: Components::default(),
        overload,
        metrics,
        access_log,
        inflight: AtomicU32::new(0),
        app_reachable: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        reload: Notify::new(),
        config_path,
    });
    let (shutdown, rx) = watch::channel(false);
    let running = Running {
        proxy_addr: proxy_listener.local_addr().expect("bound socket"),
        admin_addr: admin_listener.local_addr().expect("bound socket"),
        shared: shared.clone(),
        proxy: tokio::spawn(serve(proxy_listener, shared.clone(), rx.clone())),
        admin: tokio::spawn(crate::admin::serve(admin_listener, shared.clone())),
        shutdown,
    };
    // The cache file's percents apply before the first request; etcd's
    // arrive in the background whenever it answers.
    let mut sync = MigrationSync::new(shared.clone());
    sync.load_cache();
    tokio::spawn(sync.run());
    crate::overload::spawn(&shared, rx.clone());
    tokio::spawn(crate::readiness::probe_loop(shared.clone(), rx.clone()));
    tokio::spawn(crate::reload::watch(shared, rx));
    tracing::info!(
        listen = %running.proxy_addr,
        admin = %running.admin_addr,
        "paymesh-sidecar started"
    );
    Ok(running)
}

/// Resolves once shutdown has been asked for (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}

fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let err = |source| StartError::Bind { key, addr, source };
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(1024).map_err(err)
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let stack = stack::build(shared.clone());
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off a
                    // little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let snap = shared.live.load_full();
        tokio::spawn(serve_conn(stream, peer, snap, stack.clone(), Some(graceful.watcher())));
    }
    // Connections the kernel completed before we stopped accepting are,
    // as far as their clients know, accepted: serve one request on each
    // instead of resetting them with the listener.
    let mut late = tokio::task::JoinSet::new();
    for (stream, peer) in accept_backlog(&listener) {
        let snap = shared.live.load_full();
        late.spawn(serve_conn(stream, peer, snap, stack.clone(), None));
    }
    drop(listener);
    let drain = shared.live.load().config.limits.drain_timeout;
    tracing::info!(?drain, late = late.len(), "draining connections");
    let all_done = async { tokio::join!(graceful.shutdown(), async { while late.join_next().await.is_some() {} }) };
    tokio::select! {
        _ = all_done => tracing::info!("drained"),
        _ = tokio::time::sleep(drain) => tracing::warn!("drain timeout passed; closing the remaining connections"),
    }
}

/// Takes what is already in the accept queue, without waiting for more.
fn accept_backlog(listener: &TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut backlog = Vec::new();
    while let std::task::Poll::Ready(Ok(conn)) = listener.poll_accept(&mut cx) {
        backlog.push(conn);
    }
    backlog
}

async fn serve_conn<S>(stream: TcpStream, peer: SocketAddr, snap: Arc<Snapshot>, stack: S, watcher: Option<Watcher>)
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let limits = snap.config.limits;
    let Some(acceptor) = &snap.tls else {
        // hyper's header timeout starts once the protocol is known; a
        // client that connects and says nothing is bounded here.
        let mut first = [0u8; 1];
        match tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return,
            Err(_) => {
                tracing::debug!(%peer, "client sent nothing; closing");
                return;
            }
        }
        let conn = ConnInfo { peer, cert_client: None };
        return serve_io(stream, ConnService::new(stack, conn), limits, watcher, None).await;
    };
    // The handshake is bounded like a header read: a silent client must
    // not hold a task and a socket.
    let tls = match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let cert_client = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::tls::cert_client(&snap.clients, c));
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let conn = ConnInfo { peer, cert_client };
    serve_io(tls, ConnService::new(stack, conn), limits, watcher, alpn.as_deref()).await;
}

/// Serves one connection; `alpn` (from TLS) fixes the protocol, otherwise
/// hyper-util tells HTTP/1.1 from HTTP/2 by the first bytes.
async fn serve_io<IO, S>(
    io: IO,
    svc: ConnService<S>,
    limits: crate::config::Limits,
    watcher: Option<Watcher>,
    alpn: Option<&[u8]>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = match alpn {
        Some(b"h2") => auto::Builder::new(TokioExecutor::new()).http2_only(),
        Some(b"http/1.1") => auto::Builder::new(TokioExecutor::new()).http1_only(),
        _ => auto::Builder::new(TokioExecutor::new()),
    };
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(20)));
    let result = match watcher {
        Some(watcher) => watcher.watch(builder.serve_connection(TokioIo::new(io), svc)).await,
        None => {
            // Accepted while draining: one request, then close.
            builder.http1().keep_alive(false);
            builder.serve_connection(TokioIo::new(io), svc).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Adapts the tower stack to hyper for one connection, stamping each
/// request with a fresh `Ctx` that knows the connection.
///
/// The connection owns its copy of the stack: hyper calls `call` from the
/// connection's own task, one request at a time (HTTP/2 streams too; only
/// their futures run concurrently), so the stack is borrowed, not cloned,
/// per request. Cloning it would touch every layer's shared reference
/// count, a cache line both cores fight over.
#[derive(Debug)]
struct ConnService<S> {
    stack: RefCell<S>,
    conn: Arc<ConnInfo>,
}

impl<S> ConnService<S> {
    fn new(stack: S, conn: ConnInfo) -> Self {
        Self { stack: RefCell::new(stack), conn: Arc::new(conn) }
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = S::Future;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(Ctx::new(self.conn.clone()));
        let mut stack = self.stack.borrow_mut();
        // No layer reserves capacity in poll_ready (load shedding answers
        // in `call` instead), so the stack is always ready; poll once to
        // honour tower's contract all the same.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let ready = stack.poll_ready(&mut cx);
        debug_assert!(ready.is_ready(), "the request stack is always ready");
        stack.call(req)
    }
}

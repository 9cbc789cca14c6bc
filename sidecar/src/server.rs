//! Startup, the public listener's accept loop, and the graceful drain.
//!
//! `start` builds the shared state, binds both listeners and spawns every
//! task; it returns a `Running` handle the binary (or a test) drives. On
//! shutdown `/readyz` turns 503, the listener closes, open connections
//! finish their in-flight requests within `limits.drain_timeout`, and the
//! access log is flushed.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use paymesh_process::{Activity, Drain, DrainWatch, RequestGuard, idle_between};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::Service;

use crate::components::Components;
use crate::config::{ConfigErrors, Limits, Loaded};
use crate::connections::{ConnectionPermit, OpenConnections};
use crate::ctx::{Accepted, ConnInfo};
use crate::migration::{MigrationSync, MigrationTable, SyncStatus};
use crate::observe::{AccessLogWriter, Metrics};
use crate::overload::OverloadControl;
use crate::park::{self, PARK_AFTER, Protocol, Rewind};
use crate::stack::{self, ResponseBody, Stack};
use crate::state::{Shared, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind { key: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot open access_log.path: {0}")]
    AccessLog(std::io::Error),
    #[error("span export: {0}")]
    Tracing(String),
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
        self.shared.tracer.flush(Duration::from_secs(2)).await;
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
    // As deep an accept queue as the connections the sidecar takes, so a
    // burst of clients reconnecting waits in the kernel's queue for its
    // turn instead of for SYN-ACK retransmits (`listen_with_backlog`).
    let backlog = config.limits.max_connections.max(paymesh_process::LISTEN_BACKLOG);
    let overload = OverloadControl::new(&metrics.registry, &config.overload);
    let open_connections = OpenConnections::register(&metrics.registry);
    let migration = MigrationTable::new(config.migration.defaults_bp);
    let trace_stats = Arc::new(paymesh_otel::Stats::default());
    // `tracing.otlp_endpoint` wins; without it, the standard variables
    // (`OTEL_EXPORTER_OTLP_ENDPOINT`, `_PROTOCOL`) may turn export on.
    let endpoint = match &config.tracing.endpoint {
        Some(endpoint) => Some(endpoint.clone()),
        None => paymesh_otel::Endpoint::from_env().map_err(StartError::Tracing)?,
    };
    let tracer = match &endpoint {
        Some(endpoint) => paymesh_otel::Tracer::start("paymesh-sidecar", endpoint, trace_stats.clone())
            .map_err(StartError::Tracing)?,
        None => paymesh_otel::Tracer::off(),
    };
    crate::observe::register_trace_stats(&metrics.registry, trace_stats);
    let snapshot = Snapshot::build(loaded, 1, &metrics, None)?;
    let proxy_listener = bind("listen", listen, backlog)?;
    let admin_listener = bind("admin", admin_addr, paymesh_process::LISTEN_BACKLOG)?;
    let components = Arc::new(Components::default());
    let access_log = Arc::new(access_log);
    let shadow = crate::shadow::Shadow::new(&metrics.registry, components.clone(), access_log.clone());
    let shared = Arc::new(Shared {
        live: Arc::new(ArcSwap::from_pointee(snapshot)),
        migration: Arc::new(migration),
        migration_sync: SyncStatus::default(),
        components,
        overload,
        fleet: crate::fleet::FleetControl::new(&metrics.registry),
        metrics: Arc::new(metrics),
        access_log,
        shadow,
        tracer,
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
        proxy: tokio::spawn(serve(proxy_listener, shared.clone(), open_connections, rx.clone())),
        admin: tokio::spawn(crate::admin::serve(admin_listener, shared.clone())),
        shutdown,
    };
    // The cache file's percents apply before the first request; etcd's
    // arrive in the background whenever it answers.
    let mut sync = MigrationSync::new(shared.clone());
    sync.load_cache();
    // One etcd connection for every etcd task, made from the live config.
    let etcd = {
        let s = shared.clone();
        let metrics = crate::etcd::EtcdMetrics::new(&shared.metrics);
        crate::etcd::Etcd::new(
            move || s.live.load().config.migration.clone(),
            shared.migration_sync.etcd.clone(),
            metrics,
        )
    };
    tokio::spawn(sync.run(etcd.clone(), rx.clone()));
    crate::overload::spawn(&shared, etcd.clone(), rx.clone());
    tokio::spawn(crate::fleet::run(shared.clone(), etcd, rx.clone()));
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

fn bind(key: &'static str, addr: SocketAddr, backlog: u32) -> Result<TcpListener, StartError> {
    paymesh_process::listen_with_backlog(addr, backlog).map_err(|source| StartError::Bind { key, addr, source })
}

/// Out of file descriptors and the like: back off a little instead of
/// spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    open: Arc<OpenConnections>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stack = stack::build(&stack::Handles::of(&shared));
    let drain = Drain::new();
    paymesh_process::accept_until(&listener, ACCEPT_BACKOFF, stopped(&mut shutdown), |stream, peer| {
        let snap = shared.live.load_full();
        let Some(permit) = open.try_open(snap.config.limits.max_connections) else {
            // Accepted only to be closed: left in the backlog it would
            // still hold a slot there, and the client would wait instead of
            // trying another replica. Counted in paymesh_connections_refused_total.
            tracing::debug!(%peer, "limits.max_connections are open; closing the new connection");
            return;
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnBounds { accepted: Instant::now(), late: false, drain: drain.watch(), permit };
        tokio::spawn(serve_conn(stream, peer, snap, stack.clone(), conn));
    })
    .await;
    drain.begin();
    // Connections the kernel completed before we stopped accepting are,
    // as far as their clients know, accepted: serve one request on each
    // instead of resetting them with the listener.
    let mut late = 0;
    for (stream, peer) in paymesh_process::accept_backlog(&listener) {
        let snap = shared.live.load_full();
        let Some(permit) = open.try_open(snap.config.limits.max_connections) else { continue };
        let conn = ConnBounds { accepted: Instant::now(), late: true, drain: drain.watch(), permit };
        tokio::spawn(serve_conn(stream, peer, snap, stack.clone(), conn));
        late += 1;
    }
    drop(listener);
    let deadline = shared.live.load().config.limits.drain_timeout;
    tracing::info!(drain = ?deadline, late, "draining connections");
    drain.wait(deadline).await;
}

/// What bounds one connection's life.
#[derive(Debug)]
struct ConnBounds {
    /// Everything before the first request's headers must be over by
    /// `accepted + limits.header_read_timeout`.
    accepted: Instant,
    /// Accepted while draining: serves one request, then closes.
    late: bool,
    /// Tells the connection when the drain begins; the drain waits for it.
    drain: DrainWatch,
    permit: ConnectionPermit,
}

/// One accepted connection's task.
///
/// Its future stays small, because a parked connection keeps it: what only
/// a busy or a TLS connection needs (hyper's connection, the TLS session)
/// is boxed, allocated when used and freed when done.
async fn serve_conn<S>(stream: TcpStream, peer: SocketAddr, snap: Arc<Snapshot>, stack: S, bounds: ConnBounds)
where
    S: Stack,
{
    if snap.tls.is_none() {
        let conn = ConnInfo { peer, cert_client: None };
        serve_plain(stream, stack, conn, snap.config.limits, bounds).await;
    } else {
        Box::pin(serve_tls(stream, peer, snap, stack, bounds)).await;
    }
}

async fn serve_tls<S: Stack>(stream: TcpStream, peer: SocketAddr, snap: Arc<Snapshot>, stack: S, bounds: ConnBounds) {
    let limits = snap.config.limits;
    let acceptor = snap.tls.as_ref().expect("a TLS listener");
    // The handshake is the first phase under the connection's one
    // deadline: a silent client must not hold a task and a socket.
    let deadline = bounds.accepted + limits.header_read_timeout;
    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
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
    serve_io(tls, stack, conn, limits, bounds, alpn.as_deref()).await;
}

/// Serves a plain-TCP connection: HTTP/1 in parked cycles (see
/// [`crate::park`]), HTTP/2 and the undecided through [`serve_io`].
///
/// Until its first bytes the connection is parked: no request within
/// `limits.header_read_timeout` of the accept and it is closed.
async fn serve_plain<S: Stack>(stream: TcpStream, stack: S, conn: ConnInfo, limits: Limits, mut bounds: ConnBounds) {
    let peer = conn.peer;
    let activity = Arc::new(Activity::default());
    let first_deadline = bounds.accepted + limits.header_read_timeout;
    let mut first = [0u8; park::DETECT_LEN];
    let peeked = {
        let _parked = bounds.permit.parked();
        parked(&stream, &mut first, first_deadline, &mut bounds.drain, bounds.late, &activity).await
    };
    let n = match peeked {
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return,
        None => {
            tracing::debug!(%peer, "no request within limits.header_read_timeout; closing");
            return;
        }
    };
    match park::detect(&first[..n]) {
        Protocol::Http1 => {}
        Protocol::Http2 => return Box::pin(serve_io(stream, stack, conn, limits, bounds, Some(b"h2"))).await,
        Protocol::Unsure => return Box::pin(serve_io(stream, stack, conn, limits, bounds, None)).await,
    }
    let mut io = Rewind::new(stream);
    let mut svc = ConnService::new(stack, conn, activity.clone());
    // Each `period`, a look at whether anything began or is in flight. It
    // stays well inside the header deadline: hyper counts a keep-alive
    // connection's wait for its next request against that deadline, and a
    // parked one is no longer hyper's.
    let period = PARK_AFTER.min(limits.idle_timeout).min(limits.header_read_timeout / 3);
    let mut head_deadline = first_deadline;
    loop {
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        if bounds.late {
            // Accepted while draining: one request, then close.
            builder.keep_alive(false);
        }
        let mut http = Box::new(builder.serve_connection(TokioIo::new(io), svc));
        // A cycle begins with bytes to read, and a request must begin by
        // `head_deadline`: `limits.header_read_timeout` after the accept,
        // or after the bytes of a later request began to arrive.
        let begun = activity.mark();
        let timer = tokio::time::sleep(period);
        tokio::pin!(timer);
        let mut mark = begun;
        let mut closing = false;
        loop {
            tokio::select! {
                result = &mut *http => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = &mut timer => {
                    let now = activity.mark();
                    if now.0 == begun.0 {
                        if Instant::now() >= head_deadline {
                            tracing::debug!(%peer, "no request within limits.header_read_timeout; closing");
                            return;
                        }
                        timer.as_mut().reset(head_deadline.min(Instant::now() + period));
                        continue;
                    }
                    if idle_between(mark, now) && !closing {
                        break;
                    }
                    mark = now;
                    timer.as_mut().reset(Instant::now() + period);
                }
                () = bounds.drain.close_due(&activity), if !closing && !bounds.late => {
                    Pin::new(&mut *http).graceful_shutdown();
                    closing = true;
                }
            }
        }
        // Nothing in flight for a period: end hyper's connection, keeping
        // the socket. Its last response may still be flushing to a slow
        // reader; that is bounded like any idle time.
        Pin::new(&mut *http).graceful_shutdown();
        let ending = Box::pin(http.without_shutdown());
        let parts = match tokio::time::timeout(limits.idle_timeout, ending).await {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "connection ended with an error");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "last response not taken within limits.idle_timeout; dropping the connection");
                return;
            }
        };
        svc = parts.service;
        io = parts.io.into_inner();
        let unread = parts.read_buf;
        if !unread.is_empty() {
            // The next request had begun to arrive: serve it now. If its
            // headers do not complete, the next cycle's deadline closes it.
            io.rewind(unread);
            head_deadline = Instant::now() + limits.header_read_timeout;
            continue;
        }
        // Even empty, it is a view of hyper's read buffer, and would keep
        // all of it for as long as the connection is parked.
        drop(unread);
        let _parked = bounds.permit.parked();
        let idle_until = Instant::now() + limits.idle_timeout.saturating_sub(period);
        match parked(io.get_ref(), &mut [0], idle_until, &mut bounds.drain, bounds.late, &activity).await {
            Some(Ok(n)) if n > 0 => {}
            // Closed by the client (or reset): nothing to answer.
            Some(_) => return,
            None => {
                tracing::debug!(%peer, "idle for limits.idle_timeout, or draining; closing");
                return;
            }
        }
        head_deadline = Instant::now() + limits.header_read_timeout;
    }
}

/// Waits, holding no buffer but `peek`, until `stream` has bytes to read
/// and peeks at them (without taking them): how many, 0 at the end of the
/// stream. `None` at `until`, or when the drain asks the connection to close.
///
/// A peek, not `readable()`: readiness can be left set after the last read
/// that took bytes, and a wake-up without bytes must not start a cycle.
async fn parked(
    stream: &TcpStream,
    peek: &mut [u8],
    until: Instant,
    drain: &mut DrainWatch,
    late: bool,
    activity: &Activity,
) -> Option<std::io::Result<usize>> {
    let mut buf = ReadBuf::new(peek);
    tokio::select! {
        peeked = std::future::poll_fn(|cx| stream.poll_peek(cx, &mut buf)) => Some(peeked),
        () = tokio::time::sleep_until(until) => None,
        () = drain.close_due(activity), if !late => None,
    }
}

/// Serves one connection; `alpn` (from TLS) fixes the protocol, otherwise
/// hyper-util tells HTTP/1.1 from HTTP/2 by the first bytes.
///
/// hyper bounds each HTTP/1 request's headers, but not its own protocol
/// detection, nor an HTTP/2 connection that opens no stream, nor one kept
/// alive by pings with nothing in flight; so a watchdog here closes the
/// connection if no request has begun by the deadline, and after that if
/// it has been idle for `limits.idle_timeout` (HTTP/2 gets a GOAWAY; a
/// second idle period after it, and the socket is dropped).
async fn serve_io<IO, S>(io: IO, stack: S, conn: ConnInfo, limits: Limits, mut bounds: ConnBounds, alpn: Option<&[u8]>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Stack,
{
    let peer = conn.peer;
    let activity = Arc::new(Activity::default());
    let svc = ConnService::new(stack, conn, activity.clone());
    let mut builder = match alpn {
        Some(b"h2") => auto::Builder::new(TokioExecutor::new()).http2_only(),
        Some(b"http/1.1") => auto::Builder::new(TokioExecutor::new()).http1_only(),
        _ => auto::Builder::new(TokioExecutor::new()),
    };
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    if bounds.late {
        // Accepted while draining: one request, then close.
        builder.http1().keep_alive(false);
    }
    let connection = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(connection);
    let first_deadline = bounds.accepted + limits.header_read_timeout;
    let timer = tokio::time::sleep_until(bounds.accepted + limits.header_read_timeout.min(limits.idle_timeout));
    tokio::pin!(timer);
    let mut mark = activity.mark();
    let mut closing = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = &mut timer => {
                if !activity.any_request() {
                    if Instant::now() >= first_deadline {
                        tracing::debug!(%peer, "no request within limits.header_read_timeout; closing");
                        return;
                    }
                    timer.as_mut().reset(first_deadline);
                    continue;
                }
                let now = activity.mark();
                if idle_between(mark, now) {
                    if closing {
                        tracing::debug!(%peer, "idle connection did not close; dropping it");
                        return;
                    }
                    tracing::debug!(%peer, "idle for limits.idle_timeout; closing");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                mark = now;
                timer.as_mut().reset(Instant::now() + limits.idle_timeout);
            }
            () = bounds.drain.close_due(&activity), if !closing && !bounds.late => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Adapts the tower stack to hyper for one connection, handing it each
/// request with the connection it came on.
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
    activity: Arc<Activity>,
}

impl<S> ConnService<S> {
    fn new(stack: S, conn: ConnInfo, activity: Arc<Activity>) -> Self {
        Self { stack: RefCell::new(stack), conn: Arc::new(conn), activity }
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Accepted<Incoming>, Response = Response<ResponseBody>, Error = Infallible>,
{
    type Response = Response<Tracked<ResponseBody>>;
    type Error = Infallible;
    type Future = Tracked<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let mut stack = self.stack.borrow_mut();
        // No layer reserves capacity in poll_ready (load shedding answers
        // in `call` instead), so the stack is always ready; poll once to
        // honour tower's contract all the same.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let ready = stack.poll_ready(&mut cx);
        debug_assert!(ready.is_ready(), "the request stack is always ready");
        let req = Accepted { conn: self.conn.clone(), req };
        Tracked { inner: stack.call(req), guard: Some(self.activity.start()) }
    }
}

pin_project! {
    /// A request's future, then its response body, holding the guard that
    /// tells the connection's watchdog the request is still in flight.
    #[derive(Debug)]
    struct Tracked<T> {
        #[pin]
        inner: T,
        guard: Option<RequestGuard>,
    }
}

impl<F, B> Future for Tracked<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<Tracked<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(res) = std::task::ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(Ok(res.map(|inner| Tracked { inner, guard })))
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! Listening, the accept loop and the graceful drain.
//!
//! The loop's shape is the same for every listener: accept until told to
//! stop, never die of an accept error (out of descriptors: back off and try
//! again), then stop accepting and give the open connections a bounded time
//! to finish what they are doing. What a connection is allowed (limits,
//! timeouts, protocols) is the caller's: `accept_until` hands each new
//! connection to a closure, and `Drain` only counts connections and tells
//! them when the drain begins.

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::Activity;

/// The accept queue [`listen`] asks for; tokio's own `bind` asks for 128.
pub const LISTEN_BACKLOG: u32 = 1024;

/// The accept queue of a server behind a pool that may open hundreds of
/// connections at once (the app behind the sidecar, the orchestrator
/// behind the app): Linux's default `net.core.somaxconn`, which caps it.
pub const DEEP_BACKLOG: u32 = 4096;

/// Binds `addr` and listens with room for [`LISTEN_BACKLOG`] connections in
/// the kernel's accept queue (what `accept_backlog` serves after the stop).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    listen_with_backlog(addr, LISTEN_BACKLOG)
}

/// [`listen`] with room for `backlog` connections in the accept queue (the
/// kernel cuts it to `net.core.somaxconn`). A connection the kernel
/// completes while the queue is full is not refused: its client believes
/// it open and sends its request, and the server side drops the handshake's
/// last ACK and retransmits its SYN-ACK, so the request waits a second or
/// more before anyone reads it. A listener that may see a burst of new
/// connections (clients reconnecting after a deploy) wants the queue as
/// deep as the connections it accepts.
pub fn listen_with_backlog(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// The next connection. An accept error (out of file descriptors and the
/// like) is logged and retried after `backoff`, so a bad moment neither
/// ends the loop nor spins it.
pub async fn accept(listener: &TcpListener, backoff: Duration) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!(listener = ?listener.local_addr().ok(), error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Hands every new connection to `conn` until `stop` resolves. A stop that
/// is due wins over a connection that is ready at the same moment.
pub async fn accept_until(
    listener: &TcpListener,
    backoff: Duration,
    stop: impl Future<Output = ()>,
    mut conn: impl FnMut(TcpStream, SocketAddr),
) {
    let mut stop = pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => return,
            (stream, peer) = accept(listener, backoff) => conn(stream, peer),
        }
    }
}

/// Takes what is already in the accept queue, without waiting for more:
/// the connections the kernel completed before the stop are, as far as
/// their clients know, accepted, and a caller may rather serve them than
/// reset them by closing the listener.
pub fn accept_backlog(listener: &TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut backlog = Vec::new();
    while let std::task::Poll::Ready(Ok(conn)) = listener.poll_accept(&mut cx) {
        backlog.push(conn);
    }
    backlog
}

/// The connections of one listener, for the drain: each holds a
/// `DrainWatch`, which tells it when the drain begins; `wait` returns once
/// every watch is gone, or at the deadline.
#[derive(Debug)]
pub struct Drain {
    begun: watch::Sender<bool>,
    alive: mpsc::Sender<()>,
    closed: mpsc::Receiver<()>,
}

/// One connection's part in the drain: hold it as long as the connection
/// lives.
#[derive(Debug)]
pub struct DrainWatch {
    begun: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
    /// Set when `close_due` first sees the drain: the count of requests
    /// started by then, and until when a new one is still waited for.
    grace: Option<(u64, Instant)>,
}

/// How long the drain waits, on a connection it finds with nothing in
/// flight, for a request to begin before closing it. Such a connection may
/// be one whose client has just sent a request (a new connection whose
/// first bytes are on the wire, a keep-alive one reused this instant):
/// closing it with those bytes unread resets it, and the request fails
/// unanswered although it was sent to a server that was still serving.
pub const IDLE_GRACE: Duration = Duration::from_secs(1);

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        // No message is ever sent on `alive`: `closed` resolves once the
        // last sender, ours or a connection's, is dropped.
        let (alive, closed) = mpsc::channel(1);
        Self { begun: watch::channel(false).0, alive, closed }
    }

    /// A watch for a new connection (one accepted after `begin` sees the
    /// drain as begun at once).
    pub fn watch(&self) -> DrainWatch {
        DrainWatch { begun: self.begun.subscribe(), _alive: self.alive.clone(), grace: None }
    }

    /// Tells every connection that the drain has begun.
    pub fn begin(&self) {
        self.begun.send_replace(true);
    }

    /// Begins the drain if not yet begun, then waits until every connection
    /// has ended, or `deadline` has passed; says which (true: all ended).
    /// Connections still open at the deadline are the caller's to drop
    /// (ending the runtime ends them).
    pub async fn wait(self, deadline: Duration) -> bool {
        self.begin();
        let Self { begun, alive, mut closed } = self;
        drop(alive);
        let drained = tokio::select! {
            _ = closed.recv() => true,
            () = tokio::time::sleep(deadline) => false,
        };
        drop(begun);
        if drained {
            tracing::info!("drained");
        } else {
            tracing::warn!(drain = ?deadline, "drain timeout passed; closing the remaining connections");
        }
        drained
    }
}

impl DrainWatch {
    /// Resolves once the drain has begun (at once if it has).
    pub async fn begun(&mut self) {
        let _ = self.begun.wait_for(|&begun| begun).await;
    }

    /// Resolves once the connection should be asked to finish for the
    /// drain: at once if a request is in flight when the drain begins
    /// (HTTP/1 then closes after its response, HTTP/2 sends GOAWAY and
    /// finishes its open streams); with nothing in flight, once the next
    /// request has begun or [`IDLE_GRACE`] has passed. Cancel-safe: a new
    /// call goes on where a dropped one stopped.
    pub async fn close_due(&mut self, activity: &Activity) {
        self.begun().await;
        let (since, until) = *self.grace.get_or_insert_with(|| {
            let (started, finished) = activity.mark();
            let now = Instant::now();
            (started, if started > finished { now } else { now + IDLE_GRACE })
        });
        tokio::select! {
            () = activity.started_after(since) => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }

    /// Drives a hyper connection to its end, asking it to finish gracefully
    /// when [`close_due`](Self::close_due) says so.
    pub async fn serve<C: GracefulConnection>(mut self, conn: C, activity: &Activity) -> Result<(), C::Error> {
        let mut conn = pin!(conn);
        tokio::select! {
            result = conn.as_mut() => return result,
            () = self.close_due(activity) => conn.as_mut().graceful_shutdown(),
        }
        conn.await
    }
}

/// What [`serve_http`] answers requests with: any `Fn(Request) -> impl
/// Future<Output = Response>` that can be shared across connections.
pub trait Handler: Clone + Send + Sync + 'static {
    type Body: Body<Data: Send, Error: Into<Box<dyn StdError + Send + Sync>>> + Send + 'static;
    type Future: Future<Output = Response<Self::Body>> + Send + 'static;

    fn call(&self, req: Request<Incoming>) -> Self::Future;
}

impl<H, Fut, B> Handler for H
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Body = B;
    type Future = Fut;

    fn call(&self, req: Request<Incoming>) -> Fut {
        self(req)
    }
}

/// Serves HTTP/1.1 and HTTP/2 (told apart by the first bytes) with `handle`
/// and the settings of `http`, on what `upgrade` makes of each connection
/// `listener` accepts ([`plain`]: the TCP stream itself; a TLS handshake,
/// say; `None` closes it), in the connection's own task, until `stop`
/// resolves; then stops accepting and lets open requests finish for up to
/// `drain`.
pub async fn serve_http<H, U, UFut, IO>(
    listener: TcpListener,
    http: auto::Builder<TokioExecutor>,
    handle: H,
    stop: impl Future<Output = ()>,
    drain: Duration,
    upgrade: U,
) where
    H: Handler,
    U: Fn(TcpStream, SocketAddr) -> UFut,
    UFut: Future<Output = Option<IO>> + Send + 'static,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connections = Drain::new();
    accept_until(&listener, Duration::from_millis(20), stop, |stream, peer| {
        let _ = stream.set_nodelay(true);
        spawn_connection(&http, &handle, connections.watch(), upgrade(stream, peer));
    })
    .await;
    drop(listener);
    connections.wait(drain).await;
}

/// [`serve_http`] on a Unix socket (see [`bind_unix`](crate::bind_unix)).
pub async fn serve_http_unix<H: Handler>(
    listener: UnixListener,
    http: auto::Builder<TokioExecutor>,
    handle: H,
    stop: impl Future<Output = ()>,
    drain: Duration,
) {
    let connections = Drain::new();
    let mut stop = pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => spawn_connection(&http, &handle, connections.watch(), async move { Some(stream) }),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    connections.wait(drain).await;
}

/// Serves one connection, once `io` has made it (a handshake, say), in a
/// task of its own, under the drain's `watch`.
fn spawn_connection<H: Handler, IO>(
    http: &auto::Builder<TokioExecutor>,
    handle: &H,
    watch: DrainWatch,
    io: impl Future<Output = Option<IO>> + Send + 'static,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let handle = handle.clone();
    let activity = Arc::new(Activity::default());
    let svc = {
        let activity = activity.clone();
        service_fn(move |req| {
            let (response, request) = (handle.call(req), activity.start());
            async move {
                let response = response.await;
                drop(request);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let http = http.clone();
    tokio::spawn(async move {
        let Some(io) = io.await else { return };
        let conn = http.serve_connection(TokioIo::new(io), svc);
        if let Err(e) = watch.serve(conn, &activity).await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

/// The upgrade of [`serve_http`] for plain HTTP: the TCP stream as it is.
pub async fn plain(stream: TcpStream, _peer: SocketAddr) -> Option<TcpStream> {
    Some(stream)
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;

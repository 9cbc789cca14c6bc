//! Connections to the app: TCP on loopback, or a Unix socket (`app:
//! unix:/run/paymesh/app.sock`), behind one connector for hyper's pooled
//! client, so the proxy, the readiness probe and the shadow reads do not
//! care which.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use paymesh_process::Address;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Makes connections to the app; the request's URI only matters for TCP.
///
/// With a bound, at most as many are open at once as it has permits: a
/// connection holds its permit until it closes. The proxy's pool gets
/// `limits.max_connections`, so that client and app connections together
/// stay within the descriptor budget that limit is sized from
/// ((limit − 128) / 2 each). Without it, a pool keeping idle connections
/// while every client has a request in flight (and connects racing an idle
/// connection coming back) ran the sidecar out of descriptors at 9,936 busy
/// connections: 503s, `Too many open files`. A connect that finds no permit
/// within the connect timeout fails like a connect that timed out (503),
/// and a connection that comes back idle in the meantime serves the
/// request instead. The sidecar's own pool (readiness, shadow reads) has no
/// bound: its requests are few (`shadow.max_inflight` and one probe), and
/// a busy proxy must not make the readiness probe fail.
#[derive(Debug, Clone)]
pub struct AppConnector {
    dial: Dial,
    open: Option<Arc<Semaphore>>,
    timeout: Duration,
}

#[derive(Debug, Clone)]
enum Dial {
    Tcp(HttpConnector),
    Unix(Arc<Path>),
}

impl AppConnector {
    pub fn new(app: &Address, connect_timeout: Duration, open: Option<Arc<Semaphore>>) -> Self {
        let dial = match app {
            Address::Tcp(_) => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(connect_timeout));
                connector.set_nodelay(true);
                connector.enforce_http(true);
                Dial::Tcp(connector)
            }
            Address::Unix(path) => Dial::Unix(path.as_path().into()),
        };
        AppConnector { dial, open, timeout: connect_timeout }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<AppStream>> + Send>>;

impl tower::Service<Uri> for AppConnector {
    type Response = AppStream;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // HttpConnector is always ready; the permit is awaited in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let (dial, open, timeout) = (self.dial.clone(), self.open.clone(), self.timeout);
        Box::pin(async move {
            let permit = permit(open, timeout).await?;
            let io = match dial {
                Dial::Tcp(mut c) => Io::Tcp(c.call(uri).await.map_err(io::Error::other)?),
                Dial::Unix(path) => {
                    let stream = tokio::time::timeout(timeout, UnixStream::connect(&*path))
                        .await
                        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
                    Io::Unix(TokioIo::new(stream))
                }
            };
            Ok(AppStream { io, _permit: permit })
        })
    }
}

/// A permit of the bound (none without one), or a timed-out error once
/// `timeout` has passed without one.
async fn permit(open: Option<Arc<Semaphore>>, timeout: Duration) -> io::Result<Option<OwnedSemaphorePermit>> {
    let Some(open) = open else { return Ok(None) };
    match tokio::time::timeout(timeout, open.acquire_owned()).await {
        // The semaphore is never closed, so acquiring fails only in name.
        Ok(permit) => permit.map(Some).map_err(io::Error::other),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no app connection free within the connect timeout (limits.max_connections are open)",
        )),
    }
}

/// A connection to the app, holding its permit of the connection bound.
#[derive(Debug)]
pub struct AppStream {
    io: Io,
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug)]
enum Io {
    Tcp(TokioIo<TcpStream>),
    Unix(TokioIo<UnixStream>),
}

impl Connection for AppStream {
    fn connected(&self) -> Connected {
        match &self.io {
            Io::Tcp(s) => s.connected(),
            Io::Unix(_) => Connected::new(),
        }
    }
}

impl Read for AppStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl Write for AppStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
}

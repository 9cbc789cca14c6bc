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

/// Makes connections to the app; the request's URI only matters for TCP.
#[derive(Debug, Clone)]
pub enum AppConnector {
    Tcp(HttpConnector),
    Unix { path: Arc<Path>, timeout: Duration },
}

impl AppConnector {
    pub fn new(app: &Address, connect_timeout: Duration) -> Self {
        match app {
            Address::Tcp(_) => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(connect_timeout));
                connector.set_nodelay(true);
                connector.enforce_http(true);
                AppConnector::Tcp(connector)
            }
            Address::Unix(path) => AppConnector::Unix { path: path.as_path().into(), timeout: connect_timeout },
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<AppStream>> + Send>>;

impl tower::Service<Uri> for AppConnector {
    type Response = AppStream;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            AppConnector::Tcp(c) => c.poll_ready(cx).map_err(io::Error::other),
            AppConnector::Unix { .. } => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        match self {
            AppConnector::Tcp(c) => {
                let connecting = c.call(uri);
                Box::pin(async move { connecting.await.map(AppStream::Tcp).map_err(io::Error::other) })
            }
            AppConnector::Unix { path, timeout } => {
                let (path, timeout) = (path.clone(), *timeout);
                Box::pin(async move {
                    let stream = tokio::time::timeout(timeout, UnixStream::connect(&*path))
                        .await
                        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
                    Ok(AppStream::Unix(TokioIo::new(stream)))
                })
            }
        }
    }
}

/// A connection to the app.
#[derive(Debug)]
pub enum AppStream {
    Tcp(TokioIo<TcpStream>),
    Unix(TokioIo<UnixStream>),
}

impl Connection for AppStream {
    fn connected(&self) -> Connected {
        match self {
            AppStream::Tcp(s) => s.connected(),
            AppStream::Unix(_) => Connected::new(),
        }
    }
}

impl Read for AppStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            AppStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl Write for AppStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AppStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            AppStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            AppStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            AppStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            AppStream::Tcp(s) => s.is_write_vectored(),
            AppStream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AppStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            AppStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
}

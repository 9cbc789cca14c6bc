//! Parking idle HTTP/1 connections: an open keep-alive connection with
//! nothing to do holds its socket and a few hundred bytes of state, not
//! hyper's buffers.
//!
//! hyper gives each HTTP/1 connection an 8 KB read buffer and an 8 KB
//! header write buffer and keeps both for the connection's life, so 10,000
//! idle keep-alive clients cost over 200 MB. A plain-TCP HTTP/1 connection
//! is therefore served in cycles: the sidecar waits until a peek at the
//! socket shows bytes, holding no hyper connection, serves requests with
//! one until nothing has been in flight for [`PARK_AFTER`], then ends it
//! without closing the socket (`without_shutdown`) and waits again. Bytes
//! hyper had read but not yet used come back with the socket and are read
//! first by the next cycle ([`Rewind`]), so nothing a client sent is lost.
//!
//! To know which protocol to serve, the first bytes are peeked (never
//! consumed): an HTTP/2 connection preface goes to HTTP/2, which is not
//! parked; a first segment too short to tell (`P`, `PR`, …) goes to
//! hyper-util's own detection, which waits for more.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long an HTTP/1 connection has nothing in flight before it is parked:
/// after between one and two of these. Long enough that a client sending
/// request after request never pays for a new hyper connection, short
/// enough that an idle fleet of clients does not hold buffers for long.
pub const PARK_AFTER: Duration = Duration::from_millis(500);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The most bytes [`detect`] needs to decide.
pub const DETECT_LEN: usize = H2_PREFACE.len();

/// What a connection's first bytes say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    /// A prefix of the HTTP/2 preface, too short to tell.
    Unsure,
}

/// Decides from the first bytes a connection sent (not empty).
pub fn detect(first: &[u8]) -> Protocol {
    let n = first.len().min(DETECT_LEN);
    if first[..n] != H2_PREFACE[..n] {
        Protocol::Http1
    } else if n == DETECT_LEN {
        Protocol::Http2
    } else {
        Protocol::Unsure
    }
}

/// An IO that reads `prefix` before the stream's own bytes.
#[derive(Debug)]
pub struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(inner: T) -> Self {
        Self { prefix: Bytes::new(), inner }
    }

    /// Puts `bytes` back in front of whatever is left to read.
    pub fn rewind(&mut self, bytes: Bytes) {
        debug_assert!(self.prefix.is_empty(), "rewound twice without a read");
        self.prefix = bytes;
    }

    /// Whether bytes put back are waiting to be read.
    pub fn has_prefix(&self) -> bool {
        !self.prefix.is_empty()
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn the_preface_and_its_prefixes_are_told_from_http1() {
        assert_eq!(detect(H2_PREFACE), Protocol::Http2);
        assert_eq!(detect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04"), Protocol::Http2);
        for n in 1..DETECT_LEN {
            assert_eq!(detect(&H2_PREFACE[..n]), Protocol::Unsure, "{n} bytes");
        }
        for first in [&b"GET / HTTP/1.1\r\n"[..], b"POST", b"PUT /x", b"PRJ", b"\x16\x03\x01", b"\0"] {
            assert_eq!(detect(first), Protocol::Http1, "{first:?}");
        }
    }

    #[tokio::test]
    async fn rewound_bytes_are_read_first_then_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = Rewind::new(server);
        io.rewind(Bytes::from_static(b"GET / HT"));
        assert!(io.has_prefix());
        tokio::io::AsyncWriteExt::write_all(&mut client, b"TP/1.1\r\n").await.unwrap();
        drop(client);
        let mut small = [0u8; 5];
        assert_eq!(io.read(&mut small).await.unwrap(), 5);
        assert_eq!(&small, b"GET /");
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b" HTTP/1.1\r\n");
        assert!(!io.has_prefix());
    }
}

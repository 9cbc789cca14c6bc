//! `paymesh-app --probe`: the app's liveness and readiness probe.
//!
//! The app listens on loopback or on a Unix socket, neither of which the
//! kubelet's `httpGet` can reach, and the image has no curl: so the binary
//! itself asks `GET /healthz` over the `--listen` address and passes on a
//! 200. One blocking HTTP/1.1 request with `Connection: close`, all of it
//! (connect, write, status line) within one deadline; no runtime, no
//! logging set-up. It never binds, writes or removes anything.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use paymesh_process::Address;

/// The longest status line read; a real one is about 20 bytes.
const MAX_STATUS_LINE: usize = 1024;

/// `Ok(what answered)` when `GET /healthz` at `address` answers 200 within
/// `timeout`, else one line saying why not.
pub fn probe(address: &Address, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let line = ask(address, deadline).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("{address}: no socket file there (is the app running?)"),
        io::ErrorKind::ConnectionRefused => format!("{address}: connection refused (nothing listens there)"),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("{address}: no answer to GET /healthz within {}", humantime::format_duration(timeout))
        }
        _ => format!("{address}: {e}"),
    })?;
    match status(&line) {
        Some(200) => Ok(format!("{address}: {line}")),
        Some(_) => Err(format!("{address}: GET /healthz answered {line:?}")),
        None => Err(format!("{address}: not an HTTP status line: {line:?}")),
    }
}

/// A connected stream whose reads and writes give up at a deadline.
trait Stream: Read + Write {
    fn set_timeouts(&self, left: Duration) -> io::Result<()>;
}

impl Stream for TcpStream {
    fn set_timeouts(&self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left))?;
        self.set_write_timeout(Some(left))
    }
}

impl Stream for UnixStream {
    fn set_timeouts(&self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left))?;
        self.set_write_timeout(Some(left))
    }
}

/// Sends the request and returns the response's status line.
fn ask(address: &Address, deadline: Instant) -> io::Result<String> {
    let (mut stream, host): (Box<dyn Stream>, String) = match address {
        Address::Tcp(addr) => (Box::new(TcpStream::connect_timeout(addr, left(deadline)?)?), addr.to_string()),
        Address::Unix(path) => (Box::new(UnixStream::connect(path)?), "localhost".to_owned()),
    };
    stream.set_timeouts(left(deadline)?)?;
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nUser-Agent: paymesh-app-probe\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut read = Vec::new();
    let mut chunk = [0u8; 256];
    while !read.contains(&b'\n') && read.len() < MAX_STATUS_LINE {
        stream.set_timeouts(left(deadline)?)?;
        match stream.read(&mut chunk)? {
            0 => break,
            n => read.extend_from_slice(&chunk[..n]),
        }
    }
    let line = read.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line).trim_end().to_owned();
    if line.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed the connection without an answer"));
    }
    Ok(line)
}

/// The time left before `deadline`; an error once it has passed (a zero
/// timeout would mean "none" to the socket calls).
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(left)
}

/// The status code of an HTTP/1.x status line.
fn status(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("HTTP/1.")?;
    let code = rest.split(' ').nth(1)?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_code_of_http1_status_lines_only() {
        assert_eq!(status("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status("HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status("HTTP/1.1 200"), Some(200));
        for bad in ["", "HTTP/2 200", "SSH-2.0-OpenSSH", "HTTP/1.1 20 OK", "HTTP/1.1 abc", "HTTP/1.1"] {
            assert_eq!(status(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_passed_deadline_is_a_timeout() {
        assert_eq!(left(Instant::now()).unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(left(Instant::now() + Duration::from_secs(5)).unwrap() > Duration::from_secs(4));
    }
}

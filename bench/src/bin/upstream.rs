//! `paymesh-bench-upstream`: the fastest honest app a proxy can sit in front
//! of, for `make bench`.
//!
//! Every request gets `200` and the same pre-built body of `--body-bytes`
//! bytes; a request body (a POST) is read to the end first, as a real app
//! would. `GET /healthz` answers `200 ok` so the sidecar's readiness probe
//! sees a live app. One thread by default: the upstream shares a core with
//! the load generator, and a second thread would only contend for it. It
//! must never do per-request work beyond HTTP/1.1 itself, or it would hide
//! the cost of the proxy it is measuring.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixListener;

#[derive(Debug, Parser)]
#[command(version, about = "Static HTTP/1.1 upstream for paymesh benchmarks")]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "PAYMESH_BENCH_LISTEN", default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
    /// Also listen on this Unix socket (a stale file there is replaced), as
    /// an app does behind `app: unix:…`; `--listen` stays for readiness and
    /// direct runs.
    #[arg(long, env = "PAYMESH_BENCH_LISTEN_UNIX")]
    listen_unix: Option<PathBuf>,
    /// Size of the body sent with every answer.
    #[arg(long, env = "PAYMESH_BENCH_BODY_BYTES", default_value_t = 128)]
    body_bytes: usize,
    /// Runtime worker threads; 1 runs everything on the current thread.
    #[arg(long, env = "PAYMESH_BENCH_THREADS", default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cli.threads).enable_all().build()?
    };
    runtime.block_on(serve(cli))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    // As deep an accept queue as an app's: a proxy's pool opens many
    // connections at once, and a full queue would stall them for whole
    // seconds (SYN-ACK retransmits), which the benchmark would charge to
    // the proxy.
    let listener = paymesh_process::listen_with_backlog(cli.listen, paymesh_process::DEEP_BACKLOG)
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    // A JSON-ish body: printable, so access logs and curl stay readable.
    let body = Bytes::from(json_body(cli.body_bytes));
    eprintln!("paymesh-bench-upstream listening on {} ({} byte body)", listener.local_addr()?, body.len());
    if let Some(path) = &cli.listen_unix {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", path.display()));
            }
            _ => {}
        }
        let unix = UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
        eprintln!("paymesh-bench-upstream listening on unix:{}", path.display());
        let body = body.clone();
        tokio::spawn(async move {
            loop {
                match unix.accept().await {
                    Ok((stream, _)) => connection(stream, body.clone()),
                    Err(e) => accept_failed(e).await,
                }
            }
        });
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = sigterm.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connection(stream, body.clone());
                }
                Err(e) => accept_failed(e).await,
            },
        }
    }
}

async fn accept_failed(e: std::io::Error) {
    eprintln!("accept failed: {e}");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
}

fn connection<S>(stream: S, body: Bytes)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let svc = service_fn(move |req| answer(req, body.clone()));
        // Errors here are clients hanging up mid-request: normal under
        // load-generator shutdown, not worth a line each.
        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
    });
}

async fn answer(req: Request<Incoming>, body: Bytes) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/healthz" {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    }
    // Drain the request body; a broken one still gets the fixed answer.
    let _ = req.into_body().collect().await;
    let mut res = Response::new(Full::new(body));
    res.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    Ok(res)
}

/// `{"data":"xxxx…"}` padded to exactly `n` bytes (or just `x`s when `n`
/// is too small for the braces).
fn json_body(n: usize) -> Vec<u8> {
    const OPEN: &[u8] = b"{\"data\":\"";
    const CLOSE: &[u8] = b"\"}";
    if n < OPEN.len() + CLOSE.len() {
        return vec![b'x'; n];
    }
    let mut v = Vec::with_capacity(n);
    v.extend_from_slice(OPEN);
    v.resize(n - CLOSE.len(), b'x');
    v.extend_from_slice(CLOSE);
    v
}

#[cfg(test)]
mod tests {
    use super::json_body;

    #[test]
    fn bodies_have_the_asked_size() {
        for n in [0, 3, 11, 12, 128, 1024] {
            assert_eq!(json_body(n).len(), n);
        }
        assert_eq!(json_body(12), b"{\"data\":\"x\"}");
    }
}

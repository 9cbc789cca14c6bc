//! The sidecar in the test's own process, for its component tests
//! (`sidecar/tests`): an echoing upstream app, config files, a sidecar
//! started with `paymesh_sidecar::start`, and requests that panic on a
//! transport error. `use paymesh_system_tests::in_process::*` brings the
//! shared helpers they need too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use paymesh_sidecar::{Running, config};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

pub use crate::sidecar::{ADMIN_AUTH, ADMIN_TOKEN};
pub use crate::{Client, Reply, client, eventually, metric, write_atomically};

pub const CHECKOUT_KEY: &str = "sk_test_checkout";
pub const PAYOUTS_KEY: &str = "sk_test_payouts";

/// `yaml` (from [`config_yaml`]) with `admin.token_file` set to the test token.
pub fn with_admin_token(yaml: &str) -> String {
    let out =
        yaml.replace("admin: \"127.0.0.1:0\"", "admin: { listen: \"127.0.0.1:0\", token_file: \"{dir}/admin-token\" }");
    assert_ne!(out, yaml, "no plain admin address to replace");
    out
}

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A stand-in for the app: answers `/healthz`, and echoes every other
/// request's method, path, headers and body length as JSON. The header
/// `x-test-delay-ms` makes it wait first. Like the real app it returns
/// the `x-paymesh-route` it was given.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| echo(req, h.clone()));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Upstream { addr, hits, task }
}

async fn echo(req: Request<Incoming>, hits: Arc<AtomicUsize>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/healthz" {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    }
    hits.fetch_add(1, Ordering::SeqCst);
    if let Some(ms) = req.headers().get("x-test-delay-ms").and_then(|v| v.to_str().ok()?.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        headers.insert(k.as_str().into(), v.to_str().unwrap_or("").into());
    }
    let route = req.headers().get("x-paymesh-route").cloned();
    let method = req.method().to_string();
    let path = req.uri().to_string();
    let body_len = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len() as i64,
        Err(_) => -1,
    };
    let body = serde_json::json!({
        "method": method, "path": path, "headers": headers, "body_len": body_len,
    });
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = StatusCode::CREATED;
    if let Some(r) = route {
        res.headers_mut().insert("x-paymesh-route", r);
    }
    Ok(res)
}

/// A config with two clients (checkout, payouts) in front of `app`, with
/// `extra` YAML appended (top-level keys).
pub fn config_yaml(app: SocketAddr, extra: &str) -> String {
    format!(
        r#"listen: "127.0.0.1:0"
app: "{app}"
admin: "127.0.0.1:0"
workers: 2
clients:
  - id: checkout
    api_key_sha256: "{}"
    rate: {{ per_second: 1000, burst: 1000 }}
  - id: payouts
    api_key_sha256: "{}"
    rate: {{ per_second: 2, burst: 2 }}
access_log: {{ path: "{{dir}}/access.log" }}
{extra}"#,
        sha256_hex(CHECKOUT_KEY),
        sha256_hex(PAYOUTS_KEY),
    )
}

/// A running in-process sidecar and the directory holding its files.
#[derive(Debug)]
pub struct Sidecar {
    pub running: Option<Running>,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Sidecar {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn access_log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.wait().await;
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown();
        }
    }
}

/// Writes `yaml` (with `{dir}` replaced by the temp dir) and starts a sidecar.
pub async fn sidecar(yaml: &str) -> Sidecar {
    let dir = tempfile::tempdir().unwrap();
    let yaml = yaml.replace("{dir}", dir.path().to_str().unwrap());
    let config_path = dir.path().join("sidecar.yaml");
    std::fs::write(&config_path, yaml).unwrap();
    std::fs::write(dir.path().join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    start_with(dir, config_path).await
}

/// An [`upstream`] and a [`sidecar`] in front of it on [`config_yaml`] as
/// it is: where most component tests start. Keep the upstream alive.
pub async fn echo_sidecar() -> (Upstream, Sidecar) {
    let app = upstream().await;
    let sc = sidecar(&config_yaml(app.addr, "")).await;
    (app, sc)
}

pub async fn start_with(dir: tempfile::TempDir, config_path: PathBuf) -> Sidecar {
    let loaded = config::load_with_digest(&config_path).unwrap();
    let running = paymesh_sidecar::start(loaded, Some(config_path.clone())).await.unwrap();
    Sidecar { proxy: running.proxy_addr, admin: running.admin_addr, running: Some(running), dir, config_path }
}

/// One request; panics when it gets no answer.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    let body: Bytes = body.into();
    Client::new().send(method, url, headers, &body).await.unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"))
}

pub async fn get(url: &str) -> Reply {
    send(Method::GET, url, &[], Bytes::new()).await
}

/// A GET of `path` as the client whose key is `key`, with `headers` too.
pub async fn get_as(sc: &Sidecar, key: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let auth = format!("Bearer {key}");
    let headers: Vec<(&str, &str)> =
        [("authorization", auth.as_str())].into_iter().chain(headers.iter().copied()).collect();
    send(Method::GET, &sc.url(path), &headers, "").await
}

/// A POST /v1/charges from the checkout client.
pub async fn charge(sc: &Sidecar, key: &str, idem: &str) -> Reply {
    send(
        Method::POST,
        &sc.url("/v1/charges"),
        &[("authorization", &format!("Bearer {key}")), ("idempotency-key", idem), ("content-type", "application/json")],
        r#"{"amount":1000,"currency":"usd","source":"tok_visa"}"#,
    )
    .await
}

/// Waits until the sidecar's readiness probe has seen the app.
pub async fn ready(sc: &Sidecar) {
    let url = sc.admin_url("/readyz");
    eventually(Duration::from_secs(10), "sidecar ready", || {
        let url = url.clone();
        async move { get(&url).await.status == StatusCode::OK }
    })
    .await;
}

/// A cleartext HTTP/2 connection (prior knowledge) to the sidecar, driven
/// in the background, and a GET of `path` by the checkout client with
/// `headers` to send on it.
pub async fn h2_get(
    sc: &Sidecar,
    path: &str,
    headers: &[(&str, &str)],
) -> (hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>, Request<http_body_util::Empty<Bytes>>) {
    let tcp = tokio::net::TcpStream::connect(sc.proxy).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(format!("http://{}{path}", sc.proxy))
        .header("authorization", format!("Bearer {CHECKOUT_KEY}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    (sender, req)
}

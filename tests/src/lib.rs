//! The one test-support crate of the workspace, for the system tests
//! (`tests/tests`, `tests/examples`) and the sidecar's component tests
//! (`sidecar/tests`, through [`in_process`]): real processes of the
//! workspace's binaries on free loopback ports, an HTTP client, a reader of
//! Prometheus text, a real OTLP trace receiver ([`otlp`]), and `eventually`
//! instead of sleeps.
//!
//! The binaries are looked up in the cargo target directory next to the
//! test executable (or in `PAYMESH_BIN_DIR`); `make test` builds them
//! first. Every process is killed when its handle drops, so a failing test
//! leaves nothing running.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client as HyperClient, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

mod etcd;
pub mod fleet;
pub mod in_process;
pub mod migration;
pub mod otlp;
pub mod pod;
mod prometheus;
pub mod sidecar;
pub mod tls;
pub use etcd::Etcd;
pub use pod::Pod;
pub use prometheus::{Job, Prometheus, ServerTls};
pub use sidecar::SidecarProcess;

/// The directory holding the workspace's built binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PAYMESH_BIN_DIR") {
        return dir.into();
    }
    // target/<profile>/deps/<test> → target/<profile>
    let exe = std::env::current_exe().expect("current test executable");
    exe.parent().and_then(Path::parent).expect("target directory").to_path_buf()
}

/// Path of a workspace binary; panics with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` (make test does)", path.display());
    path
}

/// A loopback port that was free a moment ago. Another process may take it
/// before the server under test binds it: servers started on such ports go
/// through [`on_free_ports`].
///
/// Ports come from below the kernel's ephemeral range (which `bind(0)` and
/// outgoing connections use), each handed out once per test process: a port
/// a test means to restart a server on (after a SIGKILL) is never given to
/// another test's server in between, which would then answer in its place.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Where this process starts in the range: apart from other test runs.
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "every test port of this process is used");
        let port = (LOW + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Runs `start` (which picks its ports with [`free_port`]) until it does not
/// answer `None`, the answer of [`Process::ready`] when a port was taken
/// before the server bound it; panics after five tries.
pub async fn on_free_ports<T>(mut start: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..5 {
        if let Some(started) = start().await {
            return started;
        }
    }
    panic!("five tries in a row found a free port taken before the server bound it");
}

/// The value of an unlabelled or fully-labelled series in Prometheus text.
pub fn metric(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Replaces `path` the way config tools do: write a temp file, rename.
pub fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process, killed on drop; its stdout and stderr go to a log file.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts the workspace binary `name`.
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, &str)], log_dir: &Path) -> Process {
        Self::spawn_path(name, &bin(name), args, env, log_dir)
    }

    /// Starts the program at `path`, logging as `name`.
    pub fn spawn_path(name: &str, path: &Path, args: &[&str], env: &[(&str, &str)], log_dir: &Path) -> Process {
        let log = log_dir.join(format!("{name}-{}.log", free_port()));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(path);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process { name: name.to_owned(), child, log }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: Signal) {
        signal::kill(self.pid(), sig).unwrap_or_else(|e| panic!("cannot signal {}: {e}", self.name));
    }

    /// Waits up to `timeout` for the process to exit, without blocking a
    /// runtime thread (the test's client tasks keep running meanwhile).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls `url` until it answers 200 (`Some`). `None` when the process
    /// exited first because an address was already in use, a port from
    /// [`free_port`] taken meanwhile: see [`on_free_ports`]. Panics, with
    /// the log, on any other exit or after `timeout`.
    pub async fn ready(&mut self, url: &str, timeout: Duration) -> Option<()> {
        let client = Client::new();
        self.wait_until(&format!("{url} answered"), timeout, |_| client.ok(url)).await
    }

    /// Waits until the log holds `line` (`Some`), for a server that this
    /// crate's plain HTTP client cannot poll (a TLS listener); `None` and
    /// panics as [`Process::ready`].
    pub async fn ready_log(&mut self, line: &str, timeout: Duration) -> Option<()> {
        let logged = |p: &Process| std::future::ready(p.log().contains(line));
        self.wait_until(&format!("it logged {line:?}"), timeout, logged).await
    }

    /// Polls `done` until it holds (`Some`); `None` when the process exited
    /// first on an address already in use, a panic naming `what` with the
    /// log on any other exit or after `timeout`. The one start-up wait of
    /// [`Process::ready`] and [`Process::ready_log`].
    async fn wait_until<F>(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&Self) -> F) -> Option<()>
    where
        F: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if done(self).await {
                return Some(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log();
                assert!(
                    log.to_lowercase().contains("address already in use"),
                    "{} exited ({status}) before {what}:\n{log}",
                    self.name
                );
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out after {timeout:?} waiting until {what} ({}):\n{}", self.name, self.log());
    }

    /// SIGKILL: a crash, with no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.name, self.log());
        }
    }
}

/// An HTTP response, body read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `error.code` of a public error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_owned()
    }
}

/// A bare hyper client, for tests that look at the connection itself.
pub fn client() -> HyperClient<HttpConnector, Full<Bytes>> {
    HyperClient::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A small HTTP/1.1 client with keep-alive.
#[derive(Clone, Debug)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client { inner: client() }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Reply> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::copy_from_slice(body)))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.inner.request(req)).await??;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply { status, headers, body })
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, url, headers, b"").await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    pub async fn post(&self, url: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> Reply {
        self.send(Method::POST, url, headers, body.to_string().as_bytes())
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
    }

    /// Whether `url` answers 200 now.
    pub async fn ok(&self, url: &str) -> bool {
        matches!(self.send(Method::GET, url, &[], b"").await, Ok(r) if r.status == StatusCode::OK)
    }
}

/// The reference orchestration service on a free port.
#[derive(Debug)]
pub struct Orchestrator {
    pub process: Process,
    pub url: String,
    pub port: u16,
}

impl Orchestrator {
    pub async fn start(data_dir: &Path, log_dir: &Path, extra: &[&str]) -> Orchestrator {
        Self::start_with_env(data_dir, log_dir, extra, &[]).await
    }

    /// [`start`](Self::start) with environment variables (`OTEL_*`, …).
    pub async fn start_with_env(data_dir: &Path, log_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Orchestrator {
        on_free_ports(async || Self::try_start_on(free_port(), data_dir, log_dir, extra, env).await).await
    }

    /// On `port`, e.g. again on the port of one that was killed.
    pub async fn start_on(port: u16, data_dir: &Path, log_dir: &Path, extra: &[&str]) -> Orchestrator {
        let started = Self::try_start_on(port, data_dir, log_dir, extra, &[]).await;
        started.unwrap_or_else(|| panic!("port {port} is taken"))
    }

    async fn try_start_on(
        port: u16,
        data_dir: &Path,
        log_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Orchestrator> {
        let listen = format!("127.0.0.1:{port}");
        let data = data_dir.to_str().expect("utf-8 path");
        let mut args = vec!["--listen", &listen, "--data-dir", data];
        args.extend_from_slice(extra);
        let mut process = Process::spawn("paymesh-orchestrator", &args, env, log_dir);
        let url = format!("http://{listen}");
        process.ready(&format!("{url}/healthz"), Duration::from_secs(20)).await?;
        Some(Orchestrator { process, url, port })
    }
}

/// The TLS files of [`Orchestrator::start_tls`] (PEM paths).
#[derive(Clone, Copy, Debug)]
pub struct OrchestratorTls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    /// Require client certificates signed by this CA (mTLS).
    pub client_ca: Option<&'a Path>,
}

impl Orchestrator {
    /// Serving TLS (`--tls-cert`, `--tls-key`, `--tls-client-ca`) on a free
    /// port; `url` is `https://127.0.0.1:<port>`, so the certificate must
    /// name that address.
    pub async fn start_tls(data_dir: &Path, log_dir: &Path, tls: OrchestratorTls<'_>, extra: &[&str]) -> Orchestrator {
        on_free_ports(async || {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
            let (data, cert, key) = (path(data_dir), path(tls.cert), path(tls.key));
            let mut args = vec!["--listen", &listen, "--data-dir", &data, "--tls-cert", &cert, "--tls-key", &key];
            let client_ca = tls.client_ca.map(path);
            if let Some(ca) = &client_ca {
                args.extend(["--tls-client-ca", ca.as_str()]);
            }
            args.extend_from_slice(extra);
            let mut process = Process::spawn("paymesh-orchestrator", &args, &[], log_dir);
            process.ready_log("orchestrator serving", Duration::from_secs(20)).await?;
            Some(Orchestrator { process, url: format!("https://{listen}"), port })
        })
        .await
    }
}

/// The thin app on a free port, in front of `orchestrator`.
#[derive(Debug)]
pub struct AppProcess {
    pub process: Process,
    pub url: String,
}

impl AppProcess {
    pub async fn start(orchestrator: &str, log_dir: &Path, extra: &[&str]) -> AppProcess {
        Self::start_with_env(orchestrator, log_dir, extra, &[]).await
    }

    /// [`start`](Self::start) with environment variables (`OTEL_*`, …).
    pub async fn start_with_env(
        orchestrator: &str,
        log_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> AppProcess {
        on_free_ports(async || {
            let listen = format!("127.0.0.1:{}", free_port());
            let mut args = vec!["--listen", &listen, "--orchestrator", orchestrator];
            args.extend_from_slice(extra);
            let mut process = Process::spawn("paymesh-app", &args, env, log_dir);
            let url = format!("http://{listen}");
            process.ready(&format!("{url}/healthz"), Duration::from_secs(20)).await?;
            Some(AppProcess { process, url })
        })
        .await
    }

    /// A reference orchestrator on `dir/data` and the app in front of it,
    /// both logging to `dir`: the payments service without a sidecar.
    pub async fn with_orchestrator(dir: &Path) -> (Orchestrator, AppProcess) {
        let orchestrator = Orchestrator::start(&dir.join("data"), dir, &[]).await;
        let app = AppProcess::start(&orchestrator.url, dir, &[]).await;
        (orchestrator, app)
    }
}

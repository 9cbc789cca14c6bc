//! Support for the migration tests: a stack of etcd, the orchestrator, the
//! app and N sidecars watching etcd with two configured clients; charges as
//! either client; `paymeshctl` run to completion or in the background (to
//! signal it mid-ramp).

use crate::sidecar::{CLIENT, KEY};
use crate::{AppProcess, Client, Etcd, Orchestrator, SidecarProcess, bin, eventually};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A second configured client, for per-client migration.
pub const INTERNAL: &str = "internal";
pub const INTERNAL_KEY: &str = "test-key-internal";
/// SHA-256 of [`INTERNAL_KEY`].
pub const INTERNAL_KEY_SHA256: &str = "5b054f01c08e84ef6522e33b420372609d716c1be5ee5c356cce23b0327c5fcf";

/// The API key of a test client id.
pub fn key_of(client: &str) -> &'static str {
    if client == INTERNAL { INTERNAL_KEY } else { KEY }
}

/// YAML that, appended to the test config, adds [`INTERNAL`] to `clients`
/// and points the migration watch at `etcd`.
pub fn migration_yaml(etcd: &str, cache_file: &Path) -> String {
    format!(
        "  - id: {INTERNAL}\n    api_key_sha256: \"{INTERNAL_KEY_SHA256}\"\n    rate: {{ per_second: 100000, burst: 100000 }}\n\
         migration:\n  etcd_endpoints: [\"{etcd}\"]\n  prefix: /paymesh\n  cache_file: {}\n  defaults: {{ charge: 0, refund: 0, disbursement: 0 }}\n",
        cache_file.display()
    )
}

/// etcd, orchestrator, app and sidecars watching etcd.
#[derive(Debug)]
pub struct Stack {
    pub etcd: Etcd,
    pub orchestrator: Orchestrator,
    pub app: AppProcess,
    pub sidecars: Vec<SidecarProcess>,
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// `extra`: more YAML sections for every sidecar (overload, …).
    pub async fn start(sidecars: usize, extra: &str) -> Stack {
        Self::start_with(sidecars, extra, &[]).await
    }

    /// [`start`](Self::start) with arguments for the orchestrator.
    pub async fn start_with(sidecars: usize, extra: &str, orchestrator_args: &[&str]) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Etcd::start(dir.path()).await;
        let orchestrator = Orchestrator::start(&dir.path().join("data"), dir.path(), orchestrator_args).await;
        let app = AppProcess::start(&orchestrator.url, dir.path(), &["--timeout", "2s"]).await;
        let app_addr = app.url.trim_start_matches("http://").to_owned();
        let mut list = Vec::new();
        for n in 0..sidecars {
            let yaml = migration_yaml(&etcd.url, &dir.path().join(format!("migration-{n}.json"))) + extra;
            list.push(SidecarProcess::start(dir.path(), &app_addr, &yaml).await);
        }
        Stack { etcd, orchestrator, app, sidecars: list, dir }
    }

    pub fn sidecar(&self) -> &SidecarProcess {
        &self.sidecars[0]
    }

    /// Comma-separated admin URLs, for `--sidecars`.
    pub fn admins(&self) -> String {
        self.sidecars.iter().map(|s| s.admin.as_str()).collect::<Vec<_>>().join(",")
    }

    /// The feature's percent as the first sidecar serves it.
    pub async fn percent(&self, feature: &str) -> f64 {
        self.sidecar().state().await["migration"][feature]["percent"].as_f64().unwrap()
    }

    /// A client's override as the first sidecar serves it (`None`: none).
    pub async fn client_percent(&self, feature: &str, client: &str) -> Option<f64> {
        self.sidecar().state().await["migration"][feature]["clients"][client]["percent"].as_f64()
    }

    /// Waits until every sidecar serves `feature` at `percent`.
    pub async fn wait_percent(&self, feature: &str, percent: f64) {
        for s in &self.sidecars {
            eventually(Duration::from_secs(10), &format!("{feature} at {percent}%"), || async {
                s.state().await["migration"][feature]["percent"].as_f64() == Some(percent)
            })
            .await;
        }
    }

    pub async fn wait_client_percent(&self, feature: &str, client: &str, percent: Option<f64>) {
        eventually(Duration::from_secs(10), &format!("{feature}/{client} at {percent:?}"), || async {
            self.client_percent(feature, client).await == percent
        })
        .await;
    }

    /// The value etcd holds for `key`, if any.
    pub fn etcd_value(&self, key: &str) -> Option<String> {
        let out = self.etcd.etcdctl(&["get", key, "--print-value-only"]);
        let v = out.trim_end_matches('\n');
        (!v.is_empty()).then(|| v.to_owned())
    }
}

/// A charge as `client`; its status and `x-paymesh-route`.
pub async fn charge_as(client: &Client, sidecar: &str, who: &str, key: &str) -> (u16, Option<String>) {
    let reply = client
        .send(
            http::Method::POST,
            &format!("{sidecar}/v1/charges"),
            &[("authorization", &format!("Bearer {}", key_of(who))), ("idempotency-key", key)],
            json!({"amount": 100, "currency": "usd", "source": "tok_visa"}).to_string().as_bytes(),
        )
        .await
        .expect("the sidecar answers");
    (reply.status.as_u16(), reply.header("x-paymesh-route").map(str::to_owned))
}

/// Steady charges as `who` through `url` until aborted.
pub fn traffic(url: String, who: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = Client::new();
        let mut n = 0u64;
        loop {
            let _ = charge_as(&client, &url, who, &format!("traffic-{who}-{n}")).await;
            n += 1;
        }
    })
}

/// `paymeshctl --etcd URL ARGS…`, to completion.
pub fn ctl(etcd: &str, args: &[&str]) -> Output {
    Command::new(bin("paymeshctl")).arg("--etcd").arg(etcd).args(args).output().expect("paymeshctl runs")
}

/// A ramp's arguments: `feature` to `to` in `step`s of `interval`, judged
/// on a 1 % error rate and a generous p99, 10 requests an interval.
pub fn ramp_args(feature: &str, to: &str, step: &str, interval: &str, source: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "migration",
        "ramp",
        feature,
        "--to",
        to,
        "--step",
        step,
        "--interval",
        interval,
        "--max-error-rate",
        "1%",
        "--max-p99",
        "2s",
        "--min-requests",
        "10",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(source.iter().map(|s| (*s).to_owned()));
    args
}

/// `paymeshctl` running in the background, its output captured.
#[derive(Debug)]
pub struct Ctl {
    child: Child,
    started: Instant,
}

impl Ctl {
    pub fn spawn(etcd: &str, args: &[String]) -> Ctl {
        let child = Command::new(bin("paymeshctl"))
            .arg("--etcd")
            .arg(etcd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("paymeshctl runs");
        Ctl { child, started: Instant::now() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).expect("signal paymeshctl");
    }

    /// SIGKILL: a crashed ramp.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the exit (off the runtime); panics after `timeout`.
    pub async fn output(self, timeout: Duration) -> Output {
        let Ctl { child, started } = self;
        let pid = child.id();
        let wait = tokio::task::spawn_blocking(move || child.wait_with_output().expect("paymeshctl output"));
        match tokio::time::timeout(timeout, wait).await {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
                panic!("paymeshctl still running {:?} after its start", started.elapsed());
            }
        }
    }
}

/// The client the demo config carries, for symmetry with [`INTERNAL`].
pub const CHECKOUT: &str = CLIENT;

/// stdout and stderr of a run, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

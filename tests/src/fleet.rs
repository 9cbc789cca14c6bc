//! Fleet quotas under test: several real sidecars sharing one etcd prefix,
//! a static upstream behind them, and a paced load generator that counts
//! admitted and refused requests per sidecar in 100 ms slots.

use crate::sidecar::{CLIENT, KEY, KEY_SHA256};
use crate::{Client, Process, free_port, on_free_ports};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Test pace: reports every 250 ms, etcd's shortest lease, a short grace.
pub const FAST: &str = "fleet: { report_interval: 250ms, lease_ttl: 2s, grace: 2s, min_share: 0.1 }\n";
/// One counted slot of the load generator.
pub const SLOT: Duration = Duration::from_millis(100);

/// `paymesh-bench-upstream` on a free port: every request answers 200.
pub fn upstream(dir: &Path) -> (Process, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let p = Process::spawn("paymesh-bench-upstream", &["--listen", &addr], &[], dir);
    (p, addr)
}

/// A sidecar whose demo client has `rate` (a YAML flow mapping), in front
/// of `app`, a member of the fleet under `etcd`'s `/paymesh` as `pod`.
#[derive(Debug)]
pub struct Member {
    pub process: Process,
    pub url: String,
    pub admin: String,
    pub pod: String,
}

impl Member {
    pub async fn start(dir: &Path, etcd: &str, app: &str, pod: &str, rate: &str, fleet: &str) -> Member {
        on_free_ports(async || Self::try_start(dir, etcd, app, pod, rate, fleet).await).await
    }

    async fn try_start(dir: &Path, etcd: &str, app: &str, pod: &str, rate: &str, fleet: &str) -> Option<Member> {
        let (listen, admin) = (free_port(), free_port());
        let yaml = format!(
            "listen: \"127.0.0.1:{listen}\"\napp: \"{app}\"\nadmin: \"127.0.0.1:{admin}\"\n\
             clients:\n  - id: {CLIENT}\n    api_key_sha256: \"{KEY_SHA256}\"\n    rate: {rate}\n\
             migration:\n  etcd_endpoints: [\"{etcd}\"]\n  prefix: /paymesh\n  cache_file: {}\n\
             overload:\n  telemetry_file: {}\n  events_file: {}\n\
             access_log: {{ path: {} }}\n{fleet}",
            dir.join(format!("migration-{pod}.json")).display(),
            dir.join("no-telemetry.json").display(),
            dir.join(format!("events-{pod}.jsonl")).display(),
            dir.join(format!("access-{pod}.log")).display(),
        );
        let config = dir.join(format!("sidecar-{pod}.yaml"));
        std::fs::write(&config, yaml).expect("write config");
        let mut process = Process::spawn(
            "paymesh-sidecar",
            &["--config", config.to_str().expect("utf-8")],
            &[("POD_NAME", pod), ("RUST_LOG", "info")],
            dir,
        );
        let admin = format!("http://127.0.0.1:{admin}");
        process.ready(&format!("{admin}/healthz"), Duration::from_secs(20)).await?;
        Some(Member { process, url: format!("http://127.0.0.1:{listen}"), admin, pod: pod.to_owned() })
    }

    pub async fn state(&self) -> serde_json::Value {
        Client::new().get(&format!("{}/admin/state", self.admin), &[]).await.json()
    }

    /// `paymesh_quota_share{client="checkout"}`, if the sidecar answers.
    pub async fn share(&self) -> Option<f64> {
        let reply = Client::new().send(http::Method::GET, &format!("{}/metrics", self.admin), &[], b"").await.ok()?;
        let scrape = String::from_utf8_lossy(&reply.body).into_owned();
        crate::metric(&scrape, &format!("paymesh_quota_share{{client=\"{CLIENT}\"}}"))
    }

    /// The fleet section's mode (`live`, `grace`, `fallback`, …).
    pub async fn mode(&self) -> String {
        self.state().await["fleet"]["mode"].as_str().unwrap_or_default().to_owned()
    }
}

/// Admitted and refused requests per sidecar per [`SLOT`].
#[derive(Debug)]
pub struct Tally {
    pub started: Instant,
    admitted: Vec<Vec<AtomicU32>>,
    refused: Vec<Vec<AtomicU32>>,
    failed: AtomicU32,
}

impl Tally {
    fn slot(&self, at: Instant) -> usize {
        (at.duration_since(self.started).as_millis() / SLOT.as_millis()) as usize
    }

    /// Admitted requests per second at sidecar `i` (every sidecar when
    /// `None`) between `from` and `to` after the load started.
    pub fn admitted_rate(&self, i: Option<usize>, from: Duration, to: Duration) -> f64 {
        self.rate(&self.admitted, i, from, to)
    }

    pub fn refused_rate(&self, i: Option<usize>, from: Duration, to: Duration) -> f64 {
        self.rate(&self.refused, i, from, to)
    }

    fn rate(&self, v: &[Vec<AtomicU32>], i: Option<usize>, from: Duration, to: Duration) -> f64 {
        let (a, b) = ((from.as_millis() / SLOT.as_millis()) as usize, (to.as_millis() / SLOT.as_millis()) as usize);
        let sum: u64 = v
            .iter()
            .enumerate()
            .filter(|(j, _)| i.is_none_or(|i| i == *j))
            .flat_map(|(_, slots)| slots[a.min(slots.len())..b.min(slots.len())].iter())
            .map(|c| u64::from(c.load(Ordering::Relaxed)))
            .sum();
        sum as f64 / (to - from).as_secs_f64()
    }

    /// Requests that got neither 2xx nor 429 (or no answer).
    pub fn failed(&self) -> u32 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// A paced load: `rates[i]` requests per second to `urls[i]`, each request
/// its own task so a slow answer never slows the pace. Changed at run time
/// with [`Load::set_rate`]; stopped on drop.
#[derive(Debug)]
pub struct Load {
    pub tally: Arc<Tally>,
    rates: Arc<Vec<AtomicU32>>,
    stop: Arc<AtomicBool>,
}

impl Load {
    /// Starts the load for `length` at most.
    pub fn start(urls: &[String], rates: &[u32], length: Duration) -> Load {
        let slots = (length.as_millis() / SLOT.as_millis()) as usize + 1;
        let n = urls.len();
        let tally = Arc::new(Tally {
            started: Instant::now(),
            admitted: (0..n).map(|_| (0..slots).map(|_| AtomicU32::new(0)).collect()).collect(),
            refused: (0..n).map(|_| (0..slots).map(|_| AtomicU32::new(0)).collect()).collect(),
            failed: AtomicU32::new(0),
        });
        let rates = Arc::new((0..n).map(|i| AtomicU32::new(rates.get(i).copied().unwrap_or(0))).collect::<Vec<_>>());
        let stop = Arc::new(AtomicBool::new(false));
        for (i, url) in urls.iter().enumerate() {
            let (tally, rates, stop) = (tally.clone(), rates.clone(), stop.clone());
            let url = format!("{url}/v1/charges/ch_aaaaaaaaaaaaaaaaaaaaaaaa");
            tokio::spawn(async move {
                let client = Client::new();
                let auth = format!("Bearer {KEY}");
                let mut sent = 0f64;
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) && tally.started.elapsed() < length {
                    // Credit requests at the current rate since the last
                    // wake, and send the whole ones. A wake that comes late
                    // (a busy machine) drops what it missed beyond 20 ms
                    // rather than sending it as a burst the bucket would
                    // rightly refuse.
                    let now = Instant::now();
                    let rate = f64::from(rates[i].load(Ordering::Relaxed));
                    sent += rate * now.duration_since(last).as_secs_f64();
                    sent = sent.min(rate * 0.02 + 1.0);
                    last = now;
                    while sent >= 1.0 {
                        sent -= 1.0;
                        let (client, url, auth, tally) = (client.clone(), url.clone(), auth.clone(), tally.clone());
                        tokio::spawn(async move {
                            let at = Instant::now();
                            let slot = tally.slot(at);
                            let r = client.send(http::Method::GET, &url, &[("authorization", &auth)], b"").await;
                            let counter = match r {
                                Ok(r) if r.status.is_success() => tally.admitted[i].get(slot),
                                Ok(r) if r.status.as_u16() == 429 => tally.refused[i].get(slot),
                                _ => {
                                    tally.failed.fetch_add(1, Ordering::Relaxed);
                                    None
                                }
                            };
                            if let Some(c) = counter {
                                c.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            });
        }
        Load { tally, rates, stop }
    }

    pub fn set_rate(&self, i: usize, rate: u32) {
        self.rates[i].store(rate, Ordering::Relaxed);
    }

    /// Time since the load started.
    pub fn elapsed(&self) -> Duration {
        self.tally.started.elapsed()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The sum of the members' `paymesh_quota_share` (absent ones count 0).
pub async fn share_sum(members: &[&Member]) -> f64 {
    let mut sum = 0.0;
    for m in members {
        sum += m.share().await.unwrap_or(0.0);
    }
    sum
}

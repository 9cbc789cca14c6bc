//! A real Prometheus server for the tests: Debian's `prometheus` binary on
//! a free loopback port, scraping the given targets at a short interval,
//! its TSDB in a temporary directory.

use crate::{Client, Process, eventually, free_port, on_free_ports};
use std::path::Path;
use std::time::Duration;

#[derive(Debug)]
pub struct Prometheus {
    pub process: Process,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Prometheus {
    /// Scrapes `targets` (`host:port` of sidecar admin listeners, which
    /// serve `/metrics`) every `interval` as job `paymesh`; waits until
    /// every target is up.
    pub async fn start(dir: &Path, targets: &[String], interval: &str) -> Prometheus {
        let which = std::process::Command::new("sh").args(["-c", "command -v prometheus"]).output();
        let binary = match which {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            _ => panic!("the prometheus binary is missing: install Debian's prometheus (make deps does)"),
        };
        let list = targets.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: paymesh\n    static_configs:\n      - targets: [{list}]\n"
            ),
        )
        .expect("write prometheus.yml");
        let data = dir.join("prometheus-data");
        let (process, url) = on_free_ports(async || {
            let listen = format!("127.0.0.1:{}", free_port());
            let args = [
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", data.display()),
                format!("--web.listen-address={listen}"),
                "--log.level=warn".to_owned(),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut process = Process::spawn_path("prometheus", Path::new(&binary), &args, &[], dir);
            let url = format!("http://{listen}");
            process.ready(&format!("{url}/-/ready"), Duration::from_secs(30)).await?;
            Some((process, url))
        })
        .await;
        let p = Prometheus { process, url };
        let want = targets.len();
        eventually(Duration::from_secs(30), "Prometheus to scrape every target", || async {
            p.query("count(up == 1)").await == Some(want as f64)
        })
        .await;
        p
    }

    /// The single value of an instant query, if any.
    pub async fn query(&self, q: &str) -> Option<f64> {
        let encoded: String = q
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let reply = Client::new()
            .send(http::Method::GET, &format!("{}/api/v1/query?query={encoded}", self.url), &[], b"")
            .await
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&reply.body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

//! A real Prometheus server for the tests: Debian's `prometheus` binary on
//! a free loopback port, scraping the given targets at a short interval,
//! its TSDB in a temporary directory; optionally serving https only
//! (`--web.config.file` with `tls_server_config`), then checked with
//! `curl --cacert` as the harness' own client speaks plain HTTP.

use crate::{Client, Process, eventually, free_port, on_free_ports};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug)]
pub struct Prometheus {
    pub process: Process,
    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub url: String,
    /// The CA that signed the server's certificate, with TLS.
    ca: Option<PathBuf>,
}

/// One scrape job: its name, targets and the labels its series get.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub targets: Vec<String>,
    pub labels: Vec<(String, String)>,
}

/// The server's certificate and key, and the CA that signed them.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl ServerTls {
    /// A CA and a certificate for `127.0.0.1` and `localhost` it signed,
    /// made with `openssl` in `dir`.
    pub fn generate(dir: &Path) -> ServerTls {
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ext = dir.join("san.ext");
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
        run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA"]
            .into_iter()
            .chain(["-keyout", "ca.key", "-out", "ca.crt"])
            .collect::<Vec<_>>());
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
        ]
        .into_iter()
        .chain(["-extfile", ext.to_str().unwrap(), "-out", "server.crt"])
        .collect::<Vec<_>>());
        ServerTls { cert: dir.join("server.crt"), key: dir.join("server.key"), ca: dir.join("ca.crt") }
    }
}

impl Prometheus {
    /// Scrapes `targets` (`host:port` of sidecar admin listeners, which
    /// serve `/metrics`) every `interval` as job `paymesh`; waits until
    /// every target is up.
    pub async fn start(dir: &Path, targets: &[String], interval: &str) -> Prometheus {
        let job = Job { name: "paymesh".into(), targets: targets.to_vec(), labels: Vec::new() };
        Self::start_with(dir, &[job], interval, None).await
    }

    /// Scrapes each of `jobs` every `interval`, over https only with `tls`;
    /// waits until every target is up.
    pub async fn start_with(dir: &Path, jobs: &[Job], interval: &str, tls: Option<&ServerTls>) -> Prometheus {
        let which = std::process::Command::new("sh").args(["-c", "command -v prometheus"]).output();
        let binary = match which {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            _ => panic!("the prometheus binary is missing: install Debian's prometheus (make deps does)"),
        };
        let mut scrape = String::new();
        for job in jobs {
            let list = job.targets.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ");
            let labels = job.labels.iter().map(|(k, v)| format!("{k}: \"{v}\"")).collect::<Vec<_>>().join(", ");
            scrape.push_str(&format!(
                "  - job_name: {}\n    static_configs:\n      - targets: [{list}]\n        labels: {{{labels}}}\n",
                job.name
            ));
        }
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: 1s\n\
                 scrape_configs:\n{scrape}"
            ),
        )
        .expect("write prometheus.yml");
        let web = dir.join("prometheus-web.yml");
        if let Some(t) = tls {
            let yaml =
                format!("tls_server_config:\n  cert_file: {}\n  key_file: {}\n", t.cert.display(), t.key.display());
            std::fs::write(&web, yaml).expect("write the web config");
        }
        let data = dir.join("prometheus-data");
        let (process, url) = on_free_ports(async || {
            let listen = format!("127.0.0.1:{}", free_port());
            let mut args = vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", data.display()),
                format!("--web.listen-address={listen}"),
                "--log.level=warn".to_owned(),
            ];
            if tls.is_some() {
                args.push(format!("--web.config.file={}", web.display()));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut process = Process::spawn_path("prometheus", Path::new(&binary), &args, &[], dir);
            match tls {
                None => {
                    let url = format!("http://{listen}");
                    process.ready(&format!("{url}/-/ready"), Duration::from_secs(30)).await?;
                    Some((process, url))
                }
                Some(t) => {
                    let url = format!("https://{listen}");
                    for _ in 0..300 {
                        if curl(&t.ca, &format!("{url}/-/ready")).is_some() {
                            return Some((process, url));
                        }
                        if process.wait_exit(Duration::from_millis(100)).await.is_some() {
                            assert!(process.log().contains("address already in use"), "prometheus: {}", process.log());
                            return None;
                        }
                    }
                    panic!("Prometheus over TLS not ready: {}", process.log());
                }
            }
        })
        .await;
        let p = Prometheus { process, url, ca: tls.map(|t| t.ca.clone()) };
        let want: usize = jobs.iter().map(|j| j.targets.len()).sum();
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
        let url = format!("{}/api/v1/query?query={encoded}", self.url);
        let body = match &self.ca {
            Some(ca) => curl(ca, &url)?,
            None => Client::new().send(http::Method::GET, &url, &[], b"").await.ok()?.body.to_vec(),
        };
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

/// The body of a successful `GET url` over https trusting `ca`.
fn curl(ca: &Path, url: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .expect("curl runs");
    out.status.success().then_some(out.stdout)
}

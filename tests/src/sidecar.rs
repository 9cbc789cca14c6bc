//! The sidecar as a real process, with a config written for the test.

use crate::{Client, Process, eventually, free_port, on_free_ports};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The demo client every test config carries.
pub const CLIENT: &str = "checkout";
pub const KEY: &str = "test-key-checkout";
/// SHA-256 of [`KEY`].
pub const KEY_SHA256: &str = "d17c6600b1a69cb2492a965c20553d4f98f2f139351980714db5de2e2a296e16";
/// The admin token of every test sidecar (`admin.token_file`), in process
/// or not; state-changing admin requests send [`ADMIN_AUTH`].
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const ADMIN_AUTH: (&str, &str) = ("authorization", "Bearer test-admin-token-0123456789");

#[derive(Debug)]
pub struct SidecarProcess {
    pub process: Process,
    /// Public base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Admin base URL.
    pub admin: String,
    pub config: PathBuf,
    pub listen_port: u16,
    pub admin_port: u16,
}

impl SidecarProcess {
    /// Writes a config for `app` (host:port) with the demo client, plus
    /// `extra` YAML sections, and starts the sidecar; waits for `/healthz`.
    pub async fn start(dir: &Path, app: &str, extra: &str) -> SidecarProcess {
        on_free_ports(async || {
            let (listen_port, admin_port) = (free_port(), free_port());
            let yaml = with_token(dir, listen_port, admin_port, app, extra);
            Self::launch(dir, listen_port, admin_port, &yaml, &[], &[]).await
        })
        .await
    }

    pub async fn start_on(dir: &Path, listen_port: u16, admin_port: u16, app: &str, extra: &str) -> SidecarProcess {
        Self::start_with_env(dir, listen_port, admin_port, app, extra, &[]).await
    }

    /// Like [`start_on`](Self::start_on), with extra environment variables
    /// (`POD_NAME`, `RUST_LOG`, …).
    pub async fn start_with_env(
        dir: &Path,
        listen_port: u16,
        admin_port: u16,
        app: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> SidecarProcess {
        let yaml = with_token(dir, listen_port, admin_port, app, extra);
        let started = Self::launch(dir, listen_port, admin_port, &yaml, &[], env).await;
        started.unwrap_or_else(|| panic!("port {listen_port} or {admin_port} is taken"))
    }

    /// The sidecar with `yaml` as its whole config, its `listen` and `admin`
    /// addresses (`127.0.0.1:0` in `yaml`) on free ports, `{dir}` replaced
    /// by `dir`; `args` follow `--config`. Waits for `/healthz`.
    pub async fn start_yaml(dir: &Path, yaml: &str, args: &[&str]) -> SidecarProcess {
        on_free_ports(async || {
            let (listen_port, admin_port) = (free_port(), free_port());
            let yaml = yaml
                .replace("listen: \"127.0.0.1:0\"", &format!("listen: \"127.0.0.1:{listen_port}\""))
                .replace("admin: \"127.0.0.1:0\"", &format!("admin: \"127.0.0.1:{admin_port}\""))
                .replace("{dir}", dir.to_str().expect("utf-8 path"));
            Self::launch(dir, listen_port, admin_port, &yaml, args, &[]).await
        })
        .await
    }

    /// `None`: a port was taken (see [`Process::ready`]).
    async fn launch(
        dir: &Path,
        listen_port: u16,
        admin_port: u16,
        yaml: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Option<SidecarProcess> {
        let config = dir.join(format!("sidecar-{listen_port}.yaml"));
        std::fs::write(&config, yaml).expect("write config");
        let mut argv = vec!["--config", config.to_str().expect("utf-8")];
        argv.extend_from_slice(args);
        let mut process = Process::spawn("paymesh-sidecar", &argv, env, dir);
        let admin = format!("http://127.0.0.1:{admin_port}");
        process.ready(&format!("{admin}/healthz"), Duration::from_secs(20)).await?;
        Some(SidecarProcess {
            process,
            url: format!("http://127.0.0.1:{listen_port}"),
            admin,
            config,
            listen_port,
            admin_port,
        })
    }

    /// Waits until `/readyz` answers 200: the sidecar has seen its app.
    pub async fn wait_ready(&self, timeout: Duration) {
        let (client, url) = (Client::new(), format!("{}/readyz", self.admin));
        eventually(timeout, "sidecar ready", || client.ok(&url)).await;
    }

    /// `/admin/state` as JSON.
    pub async fn state(&self) -> serde_json::Value {
        Client::new().get(&format!("{}/admin/state", self.admin), &[]).await.json()
    }

    pub async fn metrics(&self) -> String {
        String::from_utf8_lossy(&Client::new().get(&format!("{}/metrics", self.admin), &[]).await.body).into_owned()
    }
}

/// [`config_yaml`] with `admin.token_file`, a file in `dir` holding [`ADMIN_TOKEN`].
fn with_token(dir: &Path, listen_port: u16, admin_port: u16, app: &str, extra: &str) -> String {
    let token = dir.join(format!("admin-token-{listen_port}"));
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).expect("write admin token");
    config_yaml(listen_port, admin_port, app, extra).replacen(
        &format!("admin: \"127.0.0.1:{admin_port}\""),
        &format!("admin: {{ listen: \"127.0.0.1:{admin_port}\", token_file: {token:?} }}"),
        1,
    )
}

/// A sidecar config: the demo client with a rate that never binds.
pub fn config_yaml(listen_port: u16, admin_port: u16, app: &str, extra: &str) -> String {
    format!(
        "listen: \"127.0.0.1:{listen_port}\"\napp: \"{app}\"\nadmin: \"127.0.0.1:{admin_port}\"\n\
         clients:\n  - id: {CLIENT}\n    api_key_sha256: \"{KEY_SHA256}\"\n    rate: {{ per_second: 100000, burst: 100000 }}\n{extra}"
    )
}

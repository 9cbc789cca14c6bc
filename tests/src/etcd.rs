//! A real etcd server for the tests: the system's `etcd` binary on free
//! loopback ports, its data in a temporary directory.

use crate::{Client, Process, eventually, free_port};
use std::path::Path;
use std::time::Duration;

#[derive(Debug)]
pub struct Etcd {
    pub process: Process,
    /// `http://127.0.0.1:PORT`, the client URL.
    pub url: String,
    pub client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts etcd with its data under `dir`; panics with a hint when the
    /// `etcd` binary is missing (`make deps` installs Debian's etcd-server).
    pub async fn start(dir: &Path) -> Etcd {
        // A port free a moment ago may be taken before etcd binds it (by
        // another test's ephemeral port): then take two new ones.
        for _ in 0..4 {
            if let Some(etcd) = Self::try_start_on(dir, free_port(), free_port()).await {
                return etcd;
            }
        }
        Self::start_on(dir, free_port(), free_port()).await
    }

    /// Restarts on the same ports and data, e.g. after [`Process::kill9`].
    pub async fn restart(&mut self, dir: &Path) {
        let fresh = Self::start_on(dir, self.client_port, self.peer_port).await;
        *self = fresh;
    }

    /// `None` when etcd exited because a port was already in use.
    async fn try_start_on(dir: &Path, client_port: u16, peer_port: u16) -> Option<Etcd> {
        let (mut process, url) = Self::spawn(dir, client_port, peer_port);
        let client = Client::new();
        let health = format!("{url}/health");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if client.ok(&health).await {
                return Some(Etcd { process, url, client_port, peer_port });
            }
            if process.wait_exit(Duration::ZERO).is_some() {
                assert!(process.log().contains("address already in use"), "etcd exited:\n{}", process.log());
                let _ = std::fs::remove_dir_all(dir.join("etcd-data"));
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out after 20s waiting for etcd to be healthy:\n{}", process.log());
    }

    fn spawn(dir: &Path, client_port: u16, peer_port: u16) -> (Process, String) {
        let which = std::process::Command::new("sh").args(["-c", "command -v etcd"]).output();
        let etcd = match which {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            _ => panic!("the etcd binary is missing: install Debian's etcd-server (make deps does)"),
        };
        let url = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let data = dir.join("etcd-data");
        let cluster = format!("test={peer}");
        let args = [
            "--name",
            "test",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &cluster,
        ];
        (Process::spawn_path("etcd", Path::new(&etcd), &args, &[], dir), url)
    }

    async fn start_on(dir: &Path, client_port: u16, peer_port: u16) -> Etcd {
        let (process, url) = Self::spawn(dir, client_port, peer_port);
        let client = Client::new();
        let health = format!("{url}/health");
        eventually(Duration::from_secs(20), "etcd to be healthy", || client.ok(&health)).await;
        Etcd { process, url, client_port, peer_port }
    }
}

impl Etcd {
    /// `etcdctl put KEY VALUE` against this server (v3 API).
    pub fn put(&self, key: &str, value: &str) {
        self.etcdctl(&["put", "--", key, value]);
    }

    pub fn delete(&self, key: &str) {
        self.etcdctl(&["del", key]);
    }

    /// Runs `etcdctl` with `args`; returns its stdout.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.url)
            .args(args)
            .output()
            .expect("etcdctl (Debian's etcd-client) must be installed");
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

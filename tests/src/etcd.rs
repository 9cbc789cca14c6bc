//! A real etcd server for the tests: the system's `etcd` binary on free
//! loopback ports, its data in a temporary directory.

use crate::{Process, free_port, on_free_ports};
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
        on_free_ports(async || {
            let started = Self::try_start_on(dir, free_port(), free_port()).await;
            if started.is_none() {
                // A fresh member on new ports: not the data of the one that failed.
                let _ = std::fs::remove_dir_all(dir.join("etcd-data"));
            }
            started
        })
        .await
    }

    /// Restarts on the same ports and data, e.g. after [`Process::kill9`].
    pub async fn restart(&mut self, dir: &Path) {
        let fresh = Self::try_start_on(dir, self.client_port, self.peer_port).await;
        *self = fresh.unwrap_or_else(|| panic!("etcd's ports {} and {} are taken", self.client_port, self.peer_port));
    }

    /// `None` when etcd exited because a port was already in use.
    async fn try_start_on(dir: &Path, client_port: u16, peer_port: u16) -> Option<Etcd> {
        let (mut process, url) = Self::spawn(dir, client_port, peer_port);
        process.ready(&format!("{url}/health"), Duration::from_secs(20)).await?;
        Some(Etcd { process, url, client_port, peer_port })
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

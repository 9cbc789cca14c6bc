//! A real etcd server for the tests: the system's `etcd` binary on free
//! loopback ports, its data in a temporary directory. Plain, or secured:
//! client TLS with certificates made by `openssl` for the test
//! ([`Etcd::start_tls`]), and users, roles and `auth enable`
//! ([`Etcd::enable_auth`]).

use crate::{Process, free_port, on_free_ports};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Debug)]
pub struct Etcd {
    pub process: Process,
    /// `http://127.0.0.1:PORT` (`https://` with TLS), the client URL.
    pub url: String,
    pub client_port: u16,
    peer_port: u16,
    /// With TLS: the certificates, etcd's and its clients'.
    pub certs: Option<Certs>,
    /// Once auth is on: `root:PASSWORD`, for etcdctl.
    root: Option<String>,
}

/// The PEM files of a TLS etcd, made in the test's directory.
#[derive(Debug, Clone)]
pub struct Certs {
    /// The CA that signed etcd's certificate and the client certificate;
    /// etcd trusts client certificates it signed (`--client-cert-auth`).
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate etcd accepts (CN `paymesh`).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing etcd uses: a client trusting only it
    /// refuses etcd's certificate.
    pub other_ca: PathBuf,
}

/// Root's password once [`Etcd::enable_auth`] has run.
pub const ROOT_PASSWORD: &str = "root-pw";

impl Etcd {
    /// Starts etcd with its data under `dir`; panics with a hint when the
    /// `etcd` binary is missing (`make deps` installs Debian's etcd-server).
    pub async fn start(dir: &Path) -> Etcd {
        Self::start_with(dir, None).await
    }

    /// etcd serving `https://127.0.0.1:PORT` only, with `--client-cert-auth`:
    /// every client must present a certificate signed by [`Certs::ca`].
    pub async fn start_tls(dir: &Path) -> Etcd {
        let certs = Certs::make(&dir.join("etcd-certs"));
        Self::start_with(dir, Some(certs)).await
    }

    async fn start_with(dir: &Path, certs: Option<Certs>) -> Etcd {
        on_free_ports(async || {
            let started = Self::try_start_on(dir, free_port(), free_port(), certs.clone()).await;
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
        let fresh = Self::try_start_on(dir, self.client_port, self.peer_port, self.certs.clone()).await;
        let fresh =
            fresh.unwrap_or_else(|| panic!("etcd's ports {} and {} are taken", self.client_port, self.peer_port));
        *self = Etcd { root: self.root.take(), ..fresh };
    }

    /// `None` when etcd exited because a port was already in use.
    async fn try_start_on(dir: &Path, client_port: u16, peer_port: u16, certs: Option<Certs>) -> Option<Etcd> {
        let (mut process, url, health) = Self::spawn(dir, client_port, peer_port, certs.as_ref());
        process.ready(&health, Duration::from_secs(20)).await?;
        Some(Etcd { process, url, client_port, peer_port, certs, root: None })
    }

    /// The process, its client URL and a plain-HTTP health URL.
    fn spawn(dir: &Path, client_port: u16, peer_port: u16, certs: Option<&Certs>) -> (Process, String, String) {
        let which = std::process::Command::new("sh").args(["-c", "command -v etcd"]).output();
        let etcd = match which {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            _ => panic!("the etcd binary is missing: install Debian's etcd-server (make deps does)"),
        };
        let scheme = if certs.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let data = dir.join("etcd-data");
        let cluster = format!("test={peer}");
        let mut args: Vec<String> = [
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
        ]
        .map(str::to_owned)
        .to_vec();
        let mut health = format!("{url}/health");
        if let Some(c) = certs {
            // The health check stays plain, on its own port (the test's
            // HTTP client has no TLS); the client port is TLS only.
            let metrics = format!("http://127.0.0.1:{}", free_port());
            health = format!("{metrics}/health");
            let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
            args.extend([
                "--cert-file".into(),
                path(&c.server_cert),
                "--key-file".into(),
                path(&c.server_key),
                "--client-cert-auth".into(),
                "--trusted-ca-file".into(),
                path(&c.ca),
                "--listen-metrics-urls".into(),
                metrics,
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (Process::spawn_path("etcd", Path::new(&etcd), &args, &[], dir), url, health)
    }

    /// Turns auth on: a `root` user ([`ROOT_PASSWORD`]), which etcdctl uses
    /// from then on. Add users and roles first or after, as root.
    pub fn enable_auth(&mut self) {
        self.etcdctl(&["role", "add", "root"]);
        self.etcdctl(&["user", "add", &format!("root:{ROOT_PASSWORD}")]);
        self.etcdctl(&["user", "grant-role", "root", "root"]);
        self.etcdctl(&["auth", "enable"]);
        self.root = Some(format!("root:{ROOT_PASSWORD}"));
    }

    /// A role with `grants`: (`read` | `write` | `readwrite`, key prefix).
    pub fn add_role(&self, role: &str, grants: &[(&str, &str)]) {
        self.etcdctl(&["role", "add", role]);
        for (permission, prefix) in grants {
            self.etcdctl(&["role", "grant-permission", role, "--prefix=true", permission, prefix]);
        }
    }

    /// A user with `password` and `roles`.
    pub fn add_user(&self, user: &str, password: &str, roles: &[&str]) {
        self.etcdctl(&["user", "add", &format!("{user}:{password}")]);
        for role in roles {
            self.etcdctl(&["user", "grant-role", user, role]);
        }
    }

    /// The least privilege sidecar/README.md documents, under `/paymesh`:
    /// role `paymesh` (the sidecar: read its migration keys, write its
    /// switch records) and role `operator` (paymeshctl: all of `/paymesh/`).
    pub fn add_paymesh_roles(&self) {
        self.add_role("paymesh", &[("read", "/paymesh/migration/"), ("readwrite", "/paymesh/switch-events/")]);
        self.add_role("operator", &[("readwrite", "/paymesh/")]);
    }
}

impl Certs {
    /// A CA, etcd's certificate for 127.0.0.1 and localhost, a client
    /// certificate, and a second, unrelated CA; EC P-256, made by `openssl`.
    pub fn make(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).expect("certificate directory");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl must be installed");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        for ca in ["ca", "other-ca"] {
            let (key, crt, subj) = (format!("{ca}.key"), format!("{ca}.crt"), format!("/CN=test {ca}"));
            let args: &[&[&str]] =
                &[&["req", "-x509"], &ec, &["-keyout", &key, "-out", &crt, "-days", "2", "-subj", &subj]];
            openssl(&args.concat());
        }
        let leaf = |name: &str, cn: &str, ext: &str| {
            std::fs::write(dir.join(format!("{name}.ext")), ext).expect("extensions file");
            let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
            let subj = format!("/CN={cn}");
            let args: &[&[&str]] = &[&["req"], &ec, &["-keyout", &key, "-out", &csr, "-subj", &subj]];
            openssl(&args.concat());
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-CAserial",
                "ca.srl",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ]);
        };
        leaf(
            "server",
            "etcd",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
        );
        leaf("client", "paymesh", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n");
        Certs {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.crt"),
        }
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
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3").arg("--endpoints").arg(&self.url);
        if let Some(c) = &self.certs {
            cmd.arg("--cacert").arg(&c.ca).arg("--cert").arg(&c.client_cert).arg("--key").arg(&c.client_key);
        }
        if let Some(root) = &self.root {
            cmd.arg("--user").arg(root);
        }
        let out = cmd.args(args).output().expect("etcdctl (Debian's etcd-client) must be installed");
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

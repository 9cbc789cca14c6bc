//! How `paymeshctl` reaches etcd: endpoints, TLS and credentials, used by
//! every command that touches etcd.
//!
//! The same contract as the sidecar's `migration.etcd_tls` and
//! `etcd_auth`: a CA for https:// endpoints (no system roots: etcd clusters
//! run their own CA), an optional client certificate and key (both or
//! neither), a user whose password is read from a file (never a flag
//! value, which `ps` would show), one trailing newline trimmed.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// etcd client URLs, comma-separated.
    #[arg(
        long = "etcd",
        env = "PAYMESH_ETCD",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ',',
        global = true
    )]
    pub endpoints: Vec<String>,
    /// PEM CA bundle that signs etcd's certificate; required for https://
    /// endpoints.
    #[arg(long, env = "PAYMESH_ETCD_CA", value_name = "FILE", global = true)]
    pub etcd_ca: Option<PathBuf>,
    /// PEM client certificate, for etcd with --client-cert-auth.
    #[arg(long, env = "PAYMESH_ETCD_CERT", value_name = "FILE", requires = "etcd_key", global = true)]
    pub etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(long, env = "PAYMESH_ETCD_KEY", value_name = "FILE", requires = "etcd_cert", global = true)]
    pub etcd_key: Option<PathBuf>,
    /// etcd user name (etcd with auth enabled).
    #[arg(long, env = "PAYMESH_ETCD_USER", value_name = "NAME", requires = "etcd_password_file", global = true)]
    pub etcd_user: Option<String>,
    /// File holding --etcd-user's password (one trailing newline is
    /// trimmed).
    #[arg(long, env = "PAYMESH_ETCD_PASSWORD_FILE", value_name = "FILE", requires = "etcd_user", global = true)]
    pub etcd_password_file: Option<PathBuf>,
}

/// How long opening a connection and each call may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl EtcdArgs {
    /// The connection's options, every file read and checked now, so a
    /// wrong path or a file that is not PEM is named before any etcd call.
    pub fn connect_options(&self) -> anyhow::Result<ConnectOptions> {
        let mut options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT).with_timeout(CALL_TIMEOUT);
        let https = self.endpoints.iter().any(|e| e.starts_with("https://"));
        let http = self.endpoints.iter().find(|e| !e.starts_with("https://"));
        match &self.etcd_ca {
            None if https => bail!("--etcd-ca is required for https:// etcd endpoints"),
            None if self.etcd_cert.is_some() => bail!("--etcd-cert needs --etcd-ca and https:// etcd endpoints"),
            None => {}
            Some(_) if http.is_some() => {
                bail!("--etcd-ca is set, but {} is not https://: TLS needs https:// endpoints", http.unwrap())
            }
            Some(ca) => {
                let pem = read("--etcd-ca", ca)?;
                certs("--etcd-ca", ca, &pem)?;
                let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(pem));
                if let (Some(cert), Some(key)) = (&self.etcd_cert, &self.etcd_key) {
                    let cert_pem = read("--etcd-cert", cert)?;
                    certs("--etcd-cert", cert, &cert_pem)?;
                    let key_pem = read("--etcd-key", key)?;
                    PrivateKeyDer::from_pem_slice(&key_pem)
                        .map_err(|e| anyhow::anyhow!("--etcd-key {}: no PEM private key ({e})", key.display()))?;
                    tls = tls.identity(Identity::from_pem(cert_pem, key_pem));
                }
                options = options.with_tls(tls);
            }
        }
        if let (Some(user), Some(file)) = (&self.etcd_user, &self.etcd_password_file) {
            options = options.with_user(user, password(file)?);
        }
        Ok(options)
    }
}

/// The password in `file`, less one trailing newline.
fn password(file: &Path) -> anyhow::Result<String> {
    let text = String::from_utf8(read("--etcd-password-file", file)?)
        .map_err(|_| anyhow::anyhow!("--etcd-password-file {}: not UTF-8", file.display()))?;
    let password = text.strip_suffix('\n').map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if password.is_empty() {
        bail!("--etcd-password-file {}: the file is empty", file.display());
    }
    Ok(password.to_owned())
}

fn read(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
}

fn certs(flag: &str, path: &Path, pem: &[u8]) -> anyhow::Result<()> {
    let n = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{flag} {}: not PEM ({e})", path.display()))?
        .len();
    if n == 0 {
        bail!("{flag} {}: no PEM certificate in it", path.display());
    }
    Ok(())
}

/// What to fix, when an etcd failure names its cause: etcd's own messages
/// and rustls's certificate errors are stable in the error's text.
pub fn hint(error: &anyhow::Error) -> Option<&'static str> {
    let text = format!("{error:#}").to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if any(&["permission denied"]) {
        Some(
            "etcd denied permission: the roles of --etcd-user must allow readwrite on <prefix>/ \
             (migration keys, their history, ramp locks); see sidecar/README.md",
        )
    } else if any(&["authentication", "auth token", "user name is empty"]) {
        Some("etcd refused the credentials: check --etcd-user and --etcd-password-file (and that etcd has auth on)")
    } else if any(&["certificate", "fatal alert", "unknownca", "handshake"]) {
        Some(
            "the TLS handshake with etcd failed on a certificate: --etcd-ca must sign etcd's certificate, and \
             etcd with --client-cert-auth needs --etcd-cert and --etcd-key signed by its trusted CA",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        etcd: EtcdArgs,
    }

    fn parse(args: &[&str]) -> Result<EtcdArgs, clap::Error> {
        Cli::try_parse_from([&["paymeshctl"], args].concat()).map(|c| c.etcd)
    }

    #[test]
    fn flags_are_checked_before_any_call() {
        let dir = std::env::temp_dir().join(format!("paymeshctl-etcd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let garbage = file("garbage", "not PEM\n");
        let empty = file("empty", "\n");
        let err = |args: &[&str]| parse(args).unwrap().connect_options().unwrap_err().to_string();

        assert!(err(&["--etcd", "https://a:2379"]).contains("--etcd-ca is required"));
        assert!(err(&["--etcd", "http://a:2379", "--etcd-ca", &garbage]).contains("not https://"));
        assert!(err(&["--etcd", "https://a:2379", "--etcd-ca", &garbage]).contains("no PEM certificate"));
        assert!(err(&["--etcd", "https://a:2379", "--etcd-ca", "/nonexistent"]).contains("--etcd-ca /nonexistent"));
        let e = err(&["--etcd-user", "u", "--etcd-password-file", &empty]);
        assert!(e.contains("--etcd-password-file") && e.contains("empty"), "{e}");
        // Half a pair is clap's to refuse.
        assert!(parse(&["--etcd-cert", "c"]).is_err());
        assert!(parse(&["--etcd-user", "u"]).is_err());
        assert!(parse(&["--etcd-password-file", "f"]).is_err());

        let pw = file("pw", "s3cret\n");
        assert_eq!(password(Path::new(&pw)).unwrap(), "s3cret");
        assert!(parse(&["--etcd-user", "u", "--etcd-password-file", &pw]).unwrap().connect_options().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn causes_are_named() {
        let e = |s: &str| anyhow::anyhow!("etcd get").context(s.to_owned());
        assert!(hint(&e("etcdserver: permission denied")).unwrap().contains("permission"));
        assert!(
            hint(&e("etcdserver: authentication failed, invalid user ID or password")).unwrap().contains("--etcd-user")
        );
        assert!(hint(&e("invalid peer certificate: UnknownIssuer")).unwrap().contains("--etcd-ca"));
        assert!(hint(&e("connection refused")).is_none());
    }
}

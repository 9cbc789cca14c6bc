//! `migration.etcd_tls` and `migration.etcd_auth`: how the sidecar reaches
//! a secured etcd. Raw form, typed form, their checks, and the one reader
//! of the files they name.
//!
//! The files are read twice over: here when a config is loaded (so
//! `--check-config` and a reload refuse a missing or broken file, naming
//! its key), and by `crate::etcd` each time it makes a connection, so a
//! rotated certificate or password is picked up at the next one without a
//! reload. Both go through [`read_tls`] and [`read_password`]: one set of
//! rules.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::Deserialize;

use super::ConfigError;

/// `etcd_tls: { ca, cert, key }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcdTls {
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

/// `etcd_auth: { username, password_file }` as written. The password
/// itself is never in the YAML.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcdAuth {
    pub username: String,
    pub password_file: String,
}

/// TLS to etcd: the CA that signs etcd's server certificate and, for etcd
/// with `--client-cert-auth`, this sidecar's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: PathBuf,
    /// `(cert, key)`: both or neither.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// etcd's user and the file holding its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    pub username: String,
    pub password_file: PathBuf,
}

/// What the TLS files hold, read and checked. Equal contents make the same
/// connection; changed contents make a new one.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPem {
    pub ca: Vec<u8>,
    /// `(cert, key)` PEM.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for TlsPem {
    // A private key has no business in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPem")
            .field("ca_bytes", &self.ca.len())
            .field("client_cert", &self.client_cert.as_ref().map(|_| "<cert and key>"))
            .finish()
    }
}

/// etcd's password, out of the logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Checks `etcd_tls` and `etcd_auth` against `endpoints`, reading every
/// file they name; `push` records a problem by key.
pub fn validate(
    endpoints: &[String],
    tls: Option<RawEtcdTls>,
    auth: Option<RawEtcdAuth>,
    push: &mut dyn FnMut(String, String),
) -> (Option<EtcdTls>, Option<EtcdAuth>) {
    let https = endpoints.iter().position(|e| e.starts_with("https://"));
    let http = endpoints.iter().position(|e| e.starts_with("http://"));
    let tls = match tls {
        None => {
            if let Some(i) = https {
                push("migration.etcd_tls.ca".into(), format!("required: migration.etcd_endpoints[{i}] is https://"));
            }
            None
        }
        Some(t) => {
            if let Some(i) = http {
                push(
                    "migration.etcd_tls".into(),
                    format!("set, but migration.etcd_endpoints[{i}] is http://: TLS needs https:// endpoints"),
                );
            }
            let ca = match t.ca {
                Some(ca) if !ca.is_empty() => Some(PathBuf::from(ca)),
                _ => {
                    push(
                        "migration.etcd_tls.ca".into(),
                        "required: the CA bundle that signs etcd's certificate".into(),
                    );
                    None
                }
            };
            let client_cert = match (t.cert.filter(|s| !s.is_empty()), t.key.filter(|s| !s.is_empty())) {
                (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
                (Some(_), None) => {
                    push(
                        "migration.etcd_tls.key".into(),
                        "required with migration.etcd_tls.cert (both or neither)".into(),
                    );
                    None
                }
                (None, Some(_)) => {
                    push(
                        "migration.etcd_tls.cert".into(),
                        "required with migration.etcd_tls.key (both or neither)".into(),
                    );
                    None
                }
                (None, None) => None,
            };
            ca.map(|ca| EtcdTls { ca, client_cert })
        }
    };
    if let Some(t) = &tls
        && let Err(e) = read_tls(t)
    {
        push(e.key, e.message);
    }
    let auth = auth.and_then(|a| {
        if a.username.is_empty() {
            push("migration.etcd_auth.username".into(), "must not be empty".into());
        }
        if a.password_file.is_empty() {
            push("migration.etcd_auth.password_file".into(), "must not be empty".into());
            return None;
        }
        let auth = EtcdAuth { username: a.username, password_file: PathBuf::from(a.password_file) };
        if let Err(e) = read_password(&auth) {
            push(e.key, e.message);
        }
        Some(auth)
    });
    (tls, auth)
}

/// Reads and checks the TLS files: the CA bundle holds certificates that
/// can be trust anchors, the client certificate parses and its key is a
/// supported one that matches it. Errors name the key.
pub fn read_tls(tls: &EtcdTls) -> Result<TlsPem, ConfigError> {
    let ca = read("migration.etcd_tls.ca", &tls.ca)?;
    for c in certs("migration.etcd_tls.ca", &tls.ca, &ca)? {
        webpki::anchor_from_trusted_cert(&c).map_err(|e| {
            ConfigError::new(
                "migration.etcd_tls.ca",
                format!("{}: not a usable CA certificate ({e})", tls.ca.display()),
            )
        })?;
    }
    let client_cert = match &tls.client_cert {
        None => None,
        Some((cert_path, key_path)) => {
            let cert = read("migration.etcd_tls.cert", cert_path)?;
            let chain = certs("migration.etcd_tls.cert", cert_path, &cert)?;
            let key = read("migration.etcd_tls.key", key_path)?;
            let der = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                ConfigError::new("migration.etcd_tls.key", format!("{}: no PEM private key ({e})", key_path.display()))
            })?;
            CertifiedKey::from_der(chain, der, &default_provider()).map_err(|e| {
                ConfigError::new(
                    "migration.etcd_tls.key",
                    format!("{}: not the key of migration.etcd_tls.cert, or unsupported ({e})", key_path.display()),
                )
            })?;
            Some((cert, key))
        }
    };
    Ok(TlsPem { ca, client_cert })
}

/// The password: the file's contents less one trailing newline (what
/// `echo` and most secret tools leave), which must leave something.
pub fn read_password(auth: &EtcdAuth) -> Result<Password, ConfigError> {
    const KEY: &str = "migration.etcd_auth.password_file";
    let path = &auth.password_file;
    let bytes = read(KEY, path)?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::new(KEY, format!("{}: not UTF-8", path.display())))?;
    let password = text.strip_suffix('\n').map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if password.is_empty() {
        return Err(ConfigError::new(KEY, format!("{}: the file is empty", path.display())));
    }
    Ok(Password(password.to_owned()))
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(key, format!("{}: {e}", path.display())))
}

fn certs(key: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(key, format!("{}: not PEM ({e})", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(key, format!("{}: no PEM certificate in it", path.display())));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigErrors, from_yaml};
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    const BASE: &str = r#"
listen: "127.0.0.1:8080"
app: "127.0.0.1:8081"
clients:
  - id: checkout
    api_key_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
"#;

    /// A CA and a client certificate signed by it, as files in a temp dir.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            let dir = tempfile::tempdir().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec!["paymesh".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
            let other = KeyPair::generate().unwrap();
            let files = Files { dir };
            files.write("ca.crt", &ca.pem());
            files.write("tls.crt", &cert.pem());
            files.write("tls.key", &key.serialize_pem());
            files.write("other.key", &other.serialize_pem());
            files.write("password", "s3cret\n");
            files.write("garbage", "not a certificate\n");
            files
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.dir.path().join(name), text).unwrap();
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }

        /// BASE plus a migration section; `{name}` stands for a file here.
        fn load(&self, migration: &str) -> Result<crate::config::Config, ConfigErrors> {
            let mut m = migration.to_owned();
            for name in ["ca.crt", "tls.crt", "tls.key", "other.key", "password", "garbage", "missing"] {
                m = m.replace(&format!("{{{name}}}"), &self.path(name));
            }
            from_yaml(format!("{BASE}migration:\n{m}").as_bytes())
        }
    }

    fn keys(e: &ConfigErrors) -> Vec<&str> {
        e.0.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn a_secured_etcd_config_is_read_whole() {
        let f = Files::new();
        let c = f
            .load(
                r#"  etcd_endpoints: ["https://127.0.0.1:2379", "https://localhost:2379"]
  etcd_tls: { ca: "{ca.crt}", cert: "{tls.crt}", key: "{tls.key}" }
  etcd_auth: { username: paymesh, password_file: "{password}" }
"#,
            )
            .unwrap();
        let tls = c.migration.etcd_tls.unwrap();
        assert_eq!(tls.client_cert, Some((f.path("tls.crt").into(), f.path("tls.key").into())));
        let pem = read_tls(&tls).unwrap();
        assert!(pem.client_cert.is_some());
        assert!(!format!("{pem:?}").contains("PRIVATE KEY"), "no key in the debug form");
        let auth = c.migration.etcd_auth.unwrap();
        assert_eq!(auth.username, "paymesh");
        assert_eq!(read_password(&auth).unwrap().expose(), "s3cret", "one trailing newline trimmed");
        assert_eq!(format!("{:?}", read_password(&auth).unwrap()), "<redacted>");

        // The client certificate is optional; the CA is not.
        let c = f.load("  etcd_endpoints: [\"https://127.0.0.1:2379\"]\n  etcd_tls: { ca: \"{ca.crt}\" }\n").unwrap();
        assert_eq!(c.migration.etcd_tls.unwrap().client_cert, None);
    }

    #[test]
    fn the_password_loses_one_newline_only_and_must_not_be_empty() {
        let f = Files::new();
        let auth = EtcdAuth { username: "u".into(), password_file: f.path("password").into() };
        for (text, want) in [("pw", "pw"), ("pw\n", "pw"), ("pw\r\n", "pw"), ("pw\n\n", "pw\n"), (" pw \n", " pw ")] {
            f.write("password", text);
            assert_eq!(read_password(&auth).unwrap().expose(), want, "{text:?}");
        }
        for empty in ["", "\n"] {
            f.write("password", empty);
            let e = read_password(&auth).unwrap_err();
            assert_eq!(e.key, "migration.etcd_auth.password_file");
            assert!(e.message.contains("empty"), "{e}");
        }
    }

    #[test]
    fn tls_must_match_the_endpoints() {
        let f = Files::new();
        let e = f.load("  etcd_endpoints: [\"https://127.0.0.1:2379\"]\n").unwrap_err();
        assert_eq!(keys(&e), ["migration.etcd_tls.ca"]);
        assert!(e.0[0].message.contains("etcd_endpoints[0] is https://"), "{e}");

        let e =
            f.load("  etcd_endpoints: [\"https://a:2379\"]\n  etcd_tls: { cert: \"{tls.crt}\", key: \"{tls.key}\" }\n");
        assert_eq!(keys(&e.unwrap_err()), ["migration.etcd_tls.ca"]);

        let e =
            f.load("  etcd_endpoints: [\"http://127.0.0.1:2379\"]\n  etcd_tls: { ca: \"{ca.crt}\" }\n").unwrap_err();
        assert_eq!(keys(&e), ["migration.etcd_tls"]);
        assert!(e.0[0].message.contains("https://"), "{e}");

        // Mixed endpoints are refused either way.
        let mixed = "  etcd_endpoints: [\"https://a:2379\", \"http://b:2379\"]\n";
        assert_eq!(keys(&f.load(mixed).unwrap_err()), ["migration.etcd_tls.ca"]);
        let e = f.load(&format!("{mixed}  etcd_tls: {{ ca: \"{{ca.crt}}\" }}\n")).unwrap_err();
        assert_eq!(keys(&e), ["migration.etcd_tls"]);
        assert!(e.0[0].message.contains("etcd_endpoints[1]"), "{e}");
    }

    #[test]
    fn cert_and_key_come_together() {
        let f = Files::new();
        let https = "  etcd_endpoints: [\"https://a:2379\"]\n";
        let e = f.load(&format!("{https}  etcd_tls: {{ ca: \"{{ca.crt}}\", cert: \"{{tls.crt}}\" }}\n")).unwrap_err();
        assert_eq!(keys(&e), ["migration.etcd_tls.key"]);
        assert!(e.0[0].message.contains("both or neither"), "{e}");
        let e = f.load(&format!("{https}  etcd_tls: {{ ca: \"{{ca.crt}}\", key: \"{{tls.key}}\" }}\n")).unwrap_err();
        assert_eq!(keys(&e), ["migration.etcd_tls.cert"]);
    }

    #[test]
    fn unreadable_or_broken_files_are_named_by_key() {
        let f = Files::new();
        let https = "  etcd_endpoints: [\"https://a:2379\"]\n";
        let cases = [
            ("ca: \"{missing}\"", "migration.etcd_tls.ca", "missing"),
            ("ca: \"{garbage}\"", "migration.etcd_tls.ca", "no PEM certificate"),
            ("ca: \"{tls.key}\"", "migration.etcd_tls.ca", "no PEM certificate"),
            ("ca: \"{ca.crt}\", cert: \"{garbage}\", key: \"{tls.key}\"", "migration.etcd_tls.cert", "no PEM"),
            (
                "ca: \"{ca.crt}\", cert: \"{tls.crt}\", key: \"{garbage}\"",
                "migration.etcd_tls.key",
                "no PEM private key",
            ),
            ("ca: \"{ca.crt}\", cert: \"{tls.crt}\", key: \"{other.key}\"", "migration.etcd_tls.key", "not the key"),
            ("ca: \"{ca.crt}\", cert: \"{tls.crt}\", key: \"{missing}\"", "migration.etcd_tls.key", "missing"),
        ];
        for (tls, key, words) in cases {
            let e = f.load(&format!("{https}  etcd_tls: {{ {tls} }}\n")).unwrap_err();
            assert_eq!(keys(&e), [key], "{tls}: {e}");
            assert!(e.0[0].message.contains(words), "{tls}: {e}");
        }
        let auth = |a: &str| f.load(&format!("  etcd_endpoints: [\"http://a:2379\"]\n  etcd_auth: {{ {a} }}\n"));
        let e = auth("username: paymesh, password_file: \"{missing}\"").unwrap_err();
        assert_eq!(keys(&e), ["migration.etcd_auth.password_file"]);
        let e = auth("username: \"\", password_file: \"{password}\"").unwrap_err();
        assert_eq!(keys(&e), ["migration.etcd_auth.username"]);
        // The password is never in the YAML.
        let e = auth("username: paymesh, password: hunter2").unwrap_err();
        assert_eq!(keys(&e), ["migration.etcd_auth"]);
    }
}

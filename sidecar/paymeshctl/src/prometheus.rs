//! The Prometheus server a ramp can be judged by: its URL (`http://` or
//! `https://`, verified with rustls on the ring provider against the
//! system's roots or `--prometheus-ca`), a bearer token read from a file,
//! extra headers (a tenant header such as `X-Scope-OrgID`), and the
//! `--selector` matchers added to every query.
//!
//! The token never appears in a log line, an error or `Debug` output: it is
//! read from a file (a flag value would show in `ps`) and sent as a
//! sensitive header.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use paymeshctl::promql::Matchers;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct PrometheusArgs {
    /// A Prometheus server to query instead (`http://` or `https://`).
    #[arg(long, env = "PAYMESH_RAMP_PROMETHEUS", value_name = "URL")]
    pub prometheus: Option<String>,
    /// PEM CA bundle that verifies an `https://` Prometheus (default: the
    /// system's roots).
    #[arg(long, env = "PAYMESH_PROMETHEUS_CA", requires = "prometheus", value_name = "FILE")]
    pub prometheus_ca: Option<PathBuf>,
    /// File holding a bearer token for Prometheus (a trailing newline is
    /// dropped).
    #[arg(long, env = "PAYMESH_PROMETHEUS_TOKEN_FILE", requires = "prometheus", value_name = "FILE")]
    pub prometheus_token_file: Option<PathBuf>,
    /// An extra request header, e.g. `X-Scope-OrgID=team-a`; repeatable
    /// (in the variable: one per line).
    #[arg(
        long,
        env = "PAYMESH_PROMETHEUS_HEADER",
        requires = "prometheus",
        value_name = "K=V",
        value_delimiter = '\n'
    )]
    pub prometheus_header: Vec<String>,
    /// Extra label matchers for every Prometheus query, e.g.
    /// `namespace="payments",cluster="eu-1"`.
    #[arg(long, env = "PAYMESH_RAMP_SELECTOR", requires = "prometheus", value_name = "MATCHERS")]
    pub selector: Option<String>,
}

/// A configured Prometheus server.
#[derive(Clone, Debug)]
pub struct Prometheus {
    /// The base URL, without a trailing slash.
    pub base: String,
    pub matchers: Matchers,
    headers: HeaderMap,
    has_token: bool,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Prometheus {
    pub fn new(url: &str, a: &PrometheusArgs) -> anyhow::Result<Prometheus> {
        let base = url.trim_end_matches('/').to_owned();
        let uri: http::Uri = base.parse().with_context(|| format!("--prometheus {url:?}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("--prometheus {url:?}: expected an http:// or https:// URL"),
        };
        if a.prometheus_ca.is_some() && !https {
            bail!("--prometheus-ca needs an https:// --prometheus URL, not {url:?}");
        }
        let matchers = match &a.selector {
            Some(s) => Matchers::parse(s).map_err(|e| anyhow::anyhow!("--selector {e}"))?,
            None => Matchers::default(),
        };
        let mut headers = parse_headers(&a.prometheus_header)?;
        if let Some(path) = &a.prometheus_token_file {
            headers.insert(http::header::AUTHORIZATION, bearer(path)?);
        }
        let roots = match (&a.prometheus_ca, https) {
            (Some(ca), _) => ca_bundle(ca)?,
            (None, true) => system_roots()?,
            (None, false) => RootCertStore::empty(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("rustls")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Prometheus { base, matchers, has_token: a.prometheus_token_file.is_some(), headers, client })
    }

    /// The single value of an instant query, `None` when empty.
    pub async fn query(&self, q: &str) -> anyhow::Result<Option<f64>> {
        paymeshctl::prom::scalar(&self.get(&format!("/api/v1/query?query={}", encode(q))).await?)
    }

    /// Before a ramp writes anything: a server that refuses the handshake
    /// or the token will not change its mind, so it is an error now, not
    /// an interval held after another; an unreachable one may come back.
    /// Also tells when no target matches the selector.
    pub async fn check(&self) -> anyhow::Result<()> {
        let q = format!("count({})", self.matchers.series("up", &[]));
        match self.query(&q).await {
            Ok(Some(_)) => {}
            Ok(None) => eprintln!(
                "note: Prometheus at {} has no target matching {q}: the ramp holds for lack of evidence",
                self.base
            ),
            Err(e) if e.downcast_ref::<Refused>().is_some() => return Err(e),
            Err(e) => eprintln!("note: Prometheus at {}: {e:#}; the ramp holds until it answers", self.base),
        }
        Ok(())
    }

    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let mut req = http::Request::get(&url).body(Empty::new()).with_context(|| format!("bad URL {url:?}"))?;
        req.headers_mut().extend(self.headers.clone());
        let fetch = async {
            let resp = self.client.request(req).await.map_err(|e| connect_error(&self.base, e))?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), fetch).await.context("timed out")??;
        let text = String::from_utf8_lossy(&body).into_owned();
        if let StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN = status {
            let why = if self.has_token {
                "Prometheus refused the token (--prometheus-token-file)".to_owned()
            } else {
                "Prometheus wants credentials: pass --prometheus-token-file".to_owned()
            };
            return Err(anyhow::Error::new(Refused(format!("{why}: {status} {}", text.trim()))));
        }
        if !status.is_success() && status != StatusCode::BAD_REQUEST && status != StatusCode::UNPROCESSABLE_ENTITY {
            bail!("{status}");
        }
        // 400 and 422 carry Prometheus' own error in JSON.
        Ok(text)
    }
}

/// An answer that will not change on a retry: a refused TLS handshake or a
/// refused token.
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// A request error, named: a TLS failure says which and what to check.
fn connect_error(base: &str, e: hyper_util::client::legacy::Error) -> anyhow::Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(tls) = tls_error(err) {
            return anyhow::Error::new(Refused(format!(
                "TLS handshake with {base} failed: {tls} (is --prometheus-ca the CA that signed its certificate?)"
            )));
        }
        source = err.source();
    }
    anyhow::Error::new(e).context(format!("GET {base}"))
}

/// The rustls error inside `err`, which the connector hands on inside
/// `io::Error`s, where `source()` does not reach it.
fn tls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let io = err.downcast_ref::<std::io::Error>()?;
    tls_error(io.get_ref()?)
}

/// `K=V` flags as headers; `Authorization` only from the token file.
fn parse_headers(flags: &[String]) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for flag in flags.iter().filter(|f| !f.trim().is_empty()) {
        let (k, v) = flag.split_once('=').with_context(|| format!("--prometheus-header {flag:?}: expected K=V"))?;
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .with_context(|| format!("--prometheus-header {flag:?}: {k:?} is not a header name"))?;
        if name == http::header::AUTHORIZATION {
            bail!("--prometheus-header: pass credentials with --prometheus-token-file, where ps does not show them");
        }
        let value = HeaderValue::from_str(v.trim())
            .with_context(|| format!("--prometheus-header {flag:?}: not a valid header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// `Bearer <token>` from the file, marked sensitive.
fn bearer(path: &Path) -> anyhow::Result<HeaderValue> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--prometheus-token-file {}", path.display()))?;
    let token = text.trim_end_matches(['\n', '\r']);
    if token.trim().is_empty() {
        bail!("--prometheus-token-file {}: the file is empty", path.display());
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| anyhow::anyhow!("--prometheus-token-file {}: not a valid token", path.display()))?;
    value.set_sensitive(true);
    Ok(value)
}

fn ca_bundle(path: &Path) -> anyhow::Result<RootCertStore> {
    let what = || format!("--prometheus-ca {}", path.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).with_context(what)? {
        roots.add(cert.with_context(what)?).with_context(what)?;
    }
    if roots.is_empty() {
        bail!("{}: no PEM certificate in it", what());
    }
    Ok(roots)
}

fn system_roots() -> anyhow::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        bail!("no system CA certificates found ({:?}): pass --prometheus-ca", found.errors);
    }
    Ok(roots)
}

pub fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(headers: &[&str], token: Option<PathBuf>, ca: Option<PathBuf>) -> PrometheusArgs {
        PrometheusArgs {
            prometheus: None,
            prometheus_ca: ca,
            prometheus_token_file: token,
            prometheus_header: headers.iter().map(|h| h.to_string()).collect(),
            selector: Some(r#"namespace="payments""#.into()),
        }
    }

    #[test]
    fn headers_and_the_token_are_sent_and_the_token_is_never_shown() {
        let dir = tempfile_dir("token");
        let path = dir.join("token");
        std::fs::write(&path, "s3cret-token\n").unwrap();
        let p =
            Prometheus::new("http://prom:9090/", &args(&["X-Scope-OrgID=team-a", "X-Extra = a,b"], Some(path), None))
                .unwrap();
        assert_eq!(p.base, "http://prom:9090");
        assert_eq!(p.headers["x-scope-orgid"], "team-a");
        assert_eq!(p.headers["x-extra"], "a,b");
        assert_eq!(p.headers[http::header::AUTHORIZATION], "Bearer s3cret-token");
        assert!(!format!("{p:?}").contains("s3cret"), "{p:?}");
        assert_eq!(p.matchers.series("up", &[]), r#"up{namespace="payments"}"#);

        std::fs::write(dir.join("empty"), "\n").unwrap();
        let e = Prometheus::new("http://p", &args(&[], Some(dir.join("empty")), None)).unwrap_err();
        assert!(format!("{e:#}").contains("empty"), "{e:#}");
        for (bad, why) in [
            ("X-Scope-OrgID", "expected K=V"),
            ("bad name=x", "not a header name"),
            ("Authorization=Bearer x", "--prometheus-token-file"),
        ] {
            let e = Prometheus::new("http://p", &args(&[bad], None, None)).unwrap_err();
            assert!(format!("{e:#}").contains(why), "{bad}: {e:#}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_ca_file_or_url_is_named() {
        let dir = tempfile_dir("ca");
        std::fs::write(dir.join("junk.pem"), "not a certificate\n").unwrap();
        let e = Prometheus::new("https://p", &args(&[], None, Some(dir.join("junk.pem")))).unwrap_err();
        assert!(format!("{e:#}").contains("junk.pem: no PEM certificate"), "{e:#}");
        let e = Prometheus::new("https://p", &args(&[], None, Some(dir.join("missing.pem")))).unwrap_err();
        assert!(format!("{e:#}").contains("--prometheus-ca") && format!("{e:#}").contains("missing.pem"), "{e:#}");
        let e = Prometheus::new("http://p", &args(&[], None, Some(dir.join("junk.pem")))).unwrap_err();
        assert!(format!("{e:#}").contains("needs an https://"), "{e:#}");
        let e = Prometheus::new("ftp://p", &args(&[], None, None)).unwrap_err();
        assert!(format!("{e:#}").contains("http:// or https://"), "{e:#}");
        let mut bad = args(&[], None, None);
        bad.selector = Some("namespace=payments".into());
        assert!(format!("{:#}", Prometheus::new("http://p", &bad).unwrap_err()).contains("--selector"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn queries_are_url_encoded() {
        assert_eq!(encode("sum(x{a=\"b\"})"), "sum%28x%7Ba%3D%22b%22%7D%29");
    }

    fn tempfile_dir(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("paymeshctl-prom-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

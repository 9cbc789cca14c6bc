//! A small JSON-over-HTTP client for the backends, on a pooled keep-alive
//! connection set, over plain HTTP or TLS (rustls, ring provider).
//!
//! It tells apart the two failures that matter for payments: the request
//! never left ([`Transport::Connect`], safe to report as unavailable) and the
//! request may have been acted on ([`Transport::Timeout`] and
//! [`Transport::Protocol`], where only a retry with the same idempotency key
//! can tell the outcome). A TLS session the server refused (our certificate
//! missing or not trusted) or that we refused (theirs not trusted) never
//! carried the request to the service: that is a `Connect` too.

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use std::error::Error as StdError;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Transport {
    #[error("connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("protocol: {0}")]
    Protocol(String),
}

impl Transport {
    /// Whether the backend may have received and acted on the request.
    pub fn may_have_reached(&self) -> bool {
        !matches!(self, Transport::Connect(_))
    }
}

/// The files of a client's TLS settings: the CA bundle that verifies the
/// server (none: the host's trust store) and an optional client
/// certificate with its key (mTLS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A TLS configuration that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// A loaded client TLS configuration, shared by every client built with it.
#[derive(Clone, Debug)]
pub struct ClientTls(Arc<rustls::ClientConfig>);

impl ClientTls {
    /// Loads the files once, at start-up: an unreadable or empty file is an
    /// error now rather than a failed payment later.
    pub fn load(files: &TlsFiles) -> Result<ClientTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match &files.ca {
            Some(ca) => {
                for c in paymesh_process::pem::certificates(ca).map_err(TlsError)? {
                    roots.add(c).map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for e in &found.errors {
                    tracing::warn!(error = %e, "could not read part of the system trust store");
                }
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(TlsError("no root certificate in the system trust store; give a CA bundle".into()));
                }
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_root_certificates(roots);
        let config = match (&files.cert, &files.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let certs = paymesh_process::pem::certificates(cert).map_err(TlsError)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError(format!("{}: {e}", key.display())))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| TlsError(format!("client certificate: {e}")))?
            }
            _ => return Err(TlsError("a client certificate needs both the certificate and its key".into())),
        };
        Ok(ClientTls(Arc::new(config)))
    }

    /// A configuration that trusts nothing: for clients of `http://` bases,
    /// which never use it.
    fn none() -> ClientTls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        ClientTls(Arc::new(config))
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// TCP connect and TLS handshake, bounded together by the connect timeout:
/// a handshake that hangs has not carried the request either, and the
/// client reports it as a connect error.
#[derive(Clone, Debug)]
struct Connector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

impl tower::Service<http::Uri> for Connector {
    type Response = MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (connecting, timeout) = (self.inner.call(uri), self.timeout);
        Box::pin(async move {
            tokio::time::timeout(timeout, connecting).await.map_err(|_| format!("no connection within {timeout:?}"))?
        })
    }
}

#[derive(Clone, Debug)]
pub struct JsonClient {
    client: Client<Connector, Full<Bytes>>,
    base: String,
    timeout: Duration,
}

impl JsonClient {
    /// A client of an `http://` base (`http://host:port`, no trailing
    /// slash); `timeout` bounds one whole exchange, body included.
    pub fn new(base: &str, connect_timeout: Duration, timeout: Duration) -> Self {
        Self::with_tls(base, &ClientTls::none(), connect_timeout, timeout)
    }

    /// A client of an `http://` or `https://` base; `tls` applies to the
    /// latter.
    pub fn with_tls(base: &str, tls: &ClientTls, connect_timeout: Duration, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        // The TLS layer takes https URLs; plain ones pass through it.
        http.enforce_http(false);
        // HTTP/1.1 over TLS as over plain TCP (no h2 by ALPN): hyper's
        // HTTP/1 client hands back the error that ended the connection, so a
        // server's refusal of our certificate (a TLS 1.3 alert that arrives
        // after our request left) reads as the refusal it is; its HTTP/2
        // client reports only "connection closed", which could be anything.
        let https = HttpsConnectorBuilder::new()
            .with_tls_config((*tls.0).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(Connector { inner: https, timeout: connect_timeout });
        Self { client, base: base.trim_end_matches('/').to_owned(), timeout }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Bytes), Transport> {
        self.send(Method::GET, path, Bytes::new()).await
    }

    pub async fn post<T: serde::Serialize + ?Sized>(&self, path: &str, body: &T) -> Result<(u16, Bytes), Transport> {
        let body = serde_json::to_vec(body).map_err(|e| Transport::Protocol(e.to_string()))?;
        self.send(Method::POST, path, Bytes::from(body)).await
    }

    async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<(u16, Bytes), Transport> {
        // One client span per backend call (each legacy component step,
        // each workflow start and poll), its traceparent sent along.
        let span = paymesh_otel::ClientSpan::start(span_name(&method, path));
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(tp) = span.traceparent() {
            req = req.header(paymesh_otel::TRACEPARENT, tp);
        }
        let req = req.body(Full::new(body)).map_err(|e| Transport::Protocol(e.to_string()))?;
        let result = self.exchange(req).await;
        let server = paymesh_otel::KeyValue::new("server.address", self.base.clone());
        span.finish(result.as_ref().ok().map(|(status, _)| *status), vec![server]);
        result
    }

    async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), Transport> {
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let detail = chain(&e);
                if e.is_connect() || refused_session(&e) {
                    Transport::Connect(detail)
                } else {
                    Transport::Protocol(detail)
                }
            })?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map_err(|e| Transport::Protocol(chain(&e)))?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| Transport::Timeout)?
    }
}

/// A bounded span name for a backend call: the method and the path with
/// its query cut and every id segment (one with an `_`, or a long one)
/// replaced by `{id}`: `GET /components/ledger/charges/{id}`.
fn span_name(method: &Method, path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let mut name = String::with_capacity(path.len() + 8);
    name.push_str(method.as_str());
    name.push(' ');
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            name.push('/');
        }
        if segment.contains('_') || segment.len() > 24 {
            name.push_str("{id}");
        } else {
            name.push_str(segment);
        }
    }
    name
}

/// An error and its causes, so that the log names the real problem ("invalid
/// peer certificate: UnknownIssuer"), not hyper's "client error (Connect)".
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// Whether the server ended the TLS session with a certificate alert. In
/// TLS 1.3 the client sends its request right after its own half of the
/// handshake, so a server that refuses our certificate answers it with the
/// alert; but a server hands no byte to the service before it has accepted
/// the client's certificate, so the request cannot have been acted on.
fn refused_session(e: &(dyn StdError + 'static)) -> bool {
    use rustls::AlertDescription as A;
    let mut current = Some(e);
    while let Some(err) = current {
        // io::Error hides its inner error from `source`: look inside.
        let inner =
            err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|i| i as &(dyn StdError + 'static));
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(rustls::Error::AlertReceived(alert)) = candidate.downcast_ref::<rustls::Error>() {
                return matches!(
                    alert,
                    A::CertificateRequired
                        | A::BadCertificate
                        | A::UnsupportedCertificate
                        | A::CertificateRevoked
                        | A::CertificateExpired
                        | A::CertificateUnknown
                        | A::UnknownCA
                        | A::AccessDenied
                        | A::HandshakeFailure
                );
            }
        }
        current = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names_never_carry_an_id_or_a_query() {
        assert_eq!(
            span_name(&Method::GET, "/components/ledger/charges/ch_0123?client=a"),
            "GET /components/ledger/charges/{id}"
        );
        assert_eq!(span_name(&Method::POST, "/workflows/v1/executions"), "POST /workflows/v1/executions");
        assert_eq!(
            span_name(&Method::GET, "/workflows/v1/executions/0123456789abcdef0123456789"),
            "GET /workflows/v1/executions/{id}"
        );
    }

    /// A listener that accepts and then says nothing: the TLS handshake
    /// never completes.
    async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        (format!("https://{addr}"), task)
    }

    #[tokio::test]
    async fn a_handshake_that_hangs_is_a_connect_failure_within_the_connect_timeout() {
        let (base, server) = silent_server().await;
        let client =
            JsonClient::with_tls(&base, &ClientTls::none(), Duration::from_millis(200), Duration::from_secs(5));
        let started = std::time::Instant::now();
        let err = client.get("/healthz").await.unwrap_err();
        assert!(matches!(err, Transport::Connect(_)), "{err}");
        assert!(!err.may_have_reached());
        assert!(started.elapsed() < Duration::from_secs(2), "bounded by the connect timeout: {:?}", started.elapsed());
        server.abort();
    }

    #[test]
    fn tls_files_are_checked_when_loaded() {
        let missing = TlsFiles { ca: Some("/nonexistent/ca.pem".into()), ..TlsFiles::default() };
        assert!(ClientTls::load(&missing).unwrap_err().to_string().contains("/nonexistent/ca.pem"));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = ClientTls::load(&TlsFiles { ca: Some(empty), ..TlsFiles::default() }).unwrap_err();
        assert!(e.to_string().contains("no certificate found"), "{e}");
        let half = TlsFiles { cert: Some("/c.pem".into()), ..TlsFiles::default() };
        let e = ClientTls::load(&half).unwrap_err().to_string();
        assert!(e.contains("both the certificate and its key") || e.contains("trust store"), "{e}");
    }
}

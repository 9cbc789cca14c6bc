//! TLS for the service's listener, so that the app's https:// path (and
//! mTLS) can be run and tested against it: rustls with the ring provider,
//! HTTP/2 or HTTP/1.1 by ALPN. With a client CA every client must present a
//! certificate that CA signed; a client without one is refused in the
//! handshake, before any request is read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use paymesh_process::{Drain, accept_until};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A client that has not finished its handshake by then is dropped: it
/// holds no request yet.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener's TLS files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Builds the acceptor; errors name the flag and the file.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = load_certs(&files.cert).map_err(|e| anyhow::anyhow!("--tls-cert: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| anyhow::anyhow!("--tls-key: {}: {e}", files.key.display()))?;
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca).map_err(|e| anyhow::anyhow!("--tls-client-ca: {e}"))? {
                roots.add(c).map_err(|e| anyhow::anyhow!("--tls-client-ca: {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| anyhow::anyhow!("--tls-client-ca: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// `paymesh_process::serve_http` over TLS: the same accept loop and drain,
/// with a handshake before each connection is served.
pub async fn serve_https<H, Fut>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    http: auto::Builder<TokioExecutor>,
    handle: H,
    stop: impl Future<Output = ()>,
    drain: Duration,
) where
    H: Fn(hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = crate::http::Resp> + Send + 'static,
{
    let connections = Drain::new();
    accept_until(&listener, Duration::from_millis(20), stop, |stream, peer| {
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let svc = service_fn(move |req| {
            let response = handle(req);
            async move { Ok::<_, std::convert::Infallible>(response.await) }
        });
        let (acceptor, http, watch) = (acceptor.clone(), http.clone(), connections.watch());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::info!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::info!(%peer, "TLS handshake timed out"),
            };
            let conn = http.serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = watch.serve(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    })
    .await;
    drop(listener);
    connections.wait(drain).await;
}

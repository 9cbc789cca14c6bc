//! TLS for the service's listener, so that the app's https:// path (and
//! mTLS) can be run and tested against it: rustls with the ring provider,
//! HTTP/2 or HTTP/1.1 by ALPN. With a client CA every client must present a
//! certificate that CA signed; a client without one is refused in the
//! handshake, before any request is read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::pin::Pin;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

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
    let certs = paymesh_process::pem::certificates(&files.cert).map_err(|e| anyhow::anyhow!("--tls-cert: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| anyhow::anyhow!("--tls-key: {}: {e}", files.key.display()))?;
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in paymesh_process::pem::certificates(ca).map_err(|e| anyhow::anyhow!("--tls-client-ca: {e}"))? {
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

/// A connection's TLS handshake: the stream to serve, or `None`.
type Handshake = Pin<Box<dyn Future<Output = Option<TlsStream<TcpStream>>> + Send>>;

/// The upgrade of `paymesh_process::serve_http` for TLS: a handshake,
/// bounded by `HANDSHAKE_TIMEOUT`, before a connection is served.
pub fn handshake(acceptor: TlsAcceptor) -> impl Fn(TcpStream, SocketAddr) -> Handshake {
    move |stream, peer| {
        let acceptor = acceptor.clone();
        Box::pin(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    None
                }
            }
        })
    }
}

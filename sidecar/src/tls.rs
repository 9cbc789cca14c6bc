//! TLS for the public listener, and mapping client certificates to clients.
//!
//! rustls with the ring provider, installed explicitly. With `tls.client_ca`
//! every client must present a certificate signed by that CA (mTLS). A
//! verified certificate names a client when one of its DNS subject
//! alternative names equals an entry of that client's `cert_names`
//! (the subject CN is not consulted, as in current TLS practice).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigErrors, Tls};
use crate::state::Clients;

/// Builds the acceptor from the files named in `tls`; errors name the key.
pub fn acceptor(tls: &Tls) -> Result<TlsAcceptor, ConfigErrors> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = paymesh_process::pem::certificates(&tls.cert).map_err(|e| ConfigErrors::one("tls.cert", e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| ConfigErrors::one("tls.key", format!("{}: {e}", tls.key.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigErrors::one("tls", e.to_string()))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in paymesh_process::pem::certificates(ca).map_err(|e| ConfigErrors::one("tls.client_ca", e))? {
                roots.add(c).map_err(|e| ConfigErrors::one("tls.client_ca", e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ConfigErrors::one("tls.client_ca", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| ConfigErrors::one("tls.key", e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The id of the client that a verified peer certificate names, if any.
pub fn cert_client(clients: &Clients, peer: &CertificateDer<'_>) -> Option<Arc<str>> {
    let ee = webpki::EndEntityCert::try_from(peer).ok()?;
    clients
        .iter()
        .find(|c| {
            c.cert_names.iter().any(|n| {
                ServerName::try_from(n.as_str()).is_ok_and(|name| ee.verify_is_valid_for_subject_name(&name).is_ok())
            })
        })
        .map(|c| c.id.clone())
}

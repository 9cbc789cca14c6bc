//! TLS and mTLS on the public listener, with certificates made by rcgen at
//! test time.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use paymesh_system_tests::in_process::*;
use paymesh_system_tests::tls::TestCa;
use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p.to_str().unwrap().to_owned()
}

/// The config's `tls:` line for a `localhost` server certificate of `ca`,
/// written into `dir`; with `mtls`, client certificates of `ca` are asked
/// for too.
fn tls_section(dir: &Path, ca: &TestCa, mtls: bool) -> String {
    let (cert, key) = ca.leaf(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let (cert, key) = (write(dir, "tls.crt", &cert), write(dir, "tls.key", &key));
    let client_ca = if mtls { format!(", client_ca: {}", write(dir, "ca.crt", &ca.pem())) } else { String::new() };
    format!("tls: {{ cert: {cert}, key: {key}{client_ca} }}\n")
}

/// One request over a fresh TLS connection; h2 when `h2`, else HTTP/1.1.
async fn tls_request(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&(String, String)>,
    h2: bool,
    auth: Option<&str>,
) -> Result<(StatusCode, serde_json::Value), BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
            PrivateKeyDer::from_pem_slice(key.as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![if h2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost")?, tcp).await?;
    let mut req = Request::get(format!("https://localhost:{}/v1/charges/ch_1", addr.port()));
    if let Some(key) = auth {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let req = req.body(Empty::<Bytes>::new())?;
    let res = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    };
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body)?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_http1_and_h2() {
    let app = upstream().await;
    let ca = TestCa::new("paymesh test CA");
    let dir = tempfile::tempdir().unwrap();
    let sc = sidecar(&config_yaml(app.addr, &tls_section(dir.path(), &ca, false))).await;
    let ca_pem = ca.pem();
    for h2 in [false, true] {
        let (status, echo) = tls_request(sc.proxy, &ca_pem, None, h2, Some(CHECKOUT_KEY)).await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "h2={h2}");
        assert_eq!(echo["headers"]["x-paymesh-client"], "checkout");
        assert_eq!(echo["path"], "/v1/charges/ch_1");
        let (status, _) = tls_request(sc.proxy, &ca_pem, None, h2, None).await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "h2={h2}");
    }
    // Plain HTTP on the TLS port gets nowhere.
    let plain = client()
        .request(Request::get(sc.url("/v1/charges/ch_1")).body(http_body_util::Full::new(Bytes::new())).unwrap())
        .await;
    assert!(plain.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_maps_certificates_to_clients() {
    let app = upstream().await;
    let ca = TestCa::new("paymesh test CA");
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_yaml(app.addr, &tls_section(dir.path(), &ca, true))
        .replace("  - id: checkout\n", "  - id: checkout\n    cert_names: [checkout.clients.paymesh.test]\n");
    let sc = sidecar(&yaml).await;
    let ca_pem = ca.pem();
    let checkout = ca.leaf(&["checkout.clients.paymesh.test"], ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = ca.leaf(&["stranger.example.test"], ExtendedKeyUsagePurpose::ClientAuth);

    // The certificate alone authenticates its client.
    let (status, echo) = tls_request(sc.proxy, &ca_pem, Some(&checkout), false, None).await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(echo["headers"]["x-paymesh-client"], "checkout");
    // A certificate that names no client needs a key.
    let (status, _) = tls_request(sc.proxy, &ca_pem, Some(&stranger), true, None).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, echo) = tls_request(sc.proxy, &ca_pem, Some(&stranger), true, Some(PAYOUTS_KEY)).await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(echo["headers"]["x-paymesh-client"], "payouts");
    // A key of another client than the certificate's is refused.
    let (status, _) = tls_request(sc.proxy, &ca_pem, Some(&checkout), false, Some(PAYOUTS_KEY)).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // No certificate, or one from another CA: no exchange at all.
    assert!(tls_request(sc.proxy, &ca_pem, None, false, Some(CHECKOUT_KEY)).await.is_err());
    let other_ca = TestCa::new("someone else");
    let forged = other_ca.leaf(&["checkout.clients.paymesh.test"], ExtendedKeyUsagePurpose::ClientAuth);
    assert!(tls_request(sc.proxy, &ca_pem, Some(&forged), false, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_picked_up() {
    let app = upstream().await;
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = old_ca.leaf(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let (cert_path, key_path) = (write(dir.path(), "tls.crt", &cert), write(dir.path(), "tls.key", &key));
    let sc = sidecar(&config_yaml(app.addr, &format!("tls: {{ cert: {cert_path}, key: {key_path} }}\n"))).await;
    let (old_pem, new_pem) = (old_ca.pem(), new_ca.pem());
    assert!(tls_request(sc.proxy, &old_pem, None, false, Some(CHECKOUT_KEY)).await.is_ok());

    // cert-manager style: new files in place, the config file untouched.
    let (cert, key) = new_ca.leaf(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let staged = dir.path().join("staged");
    std::fs::create_dir(&staged).unwrap();
    std::fs::rename(write(&staged, "tls.key", &key), &key_path).unwrap();
    std::fs::rename(write(&staged, "tls.crt", &cert), &cert_path).unwrap();
    eventually(std::time::Duration::from_secs(10), "new certificate served", || async {
        tls_request(sc.proxy, &new_pem, None, false, Some(CHECKOUT_KEY)).await.is_ok()
    })
    .await;
    assert!(tls_request(sc.proxy, &old_pem, None, false, Some(CHECKOUT_KEY)).await.is_err());
}

//! Certificates made at test time (rcgen): one test CA that signs the
//! leaves the TLS tests serve and present, for the sidecar's listener and
//! for the app's orchestrator client alike.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A self-signed certificate authority that lives as long as the test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

// By hand: rcgen's issuer has no `Debug`, and a key is nothing to print.
impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A CA whose common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        TestCa { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    /// A leaf this CA signs for `sans` (the first is its common name too),
    /// good for `usage`: (certificate PEM, key PEM).
    pub fn leaf(&self, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, sans[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The CA's own certificate, PEM: what a peer trusts.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }
}

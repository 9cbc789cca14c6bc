//! The orchestration services the app calls, one per feature.
//!
//! `--orchestrator` is the default service, and the legacy path's component
//! service; `--orchestrator-charge` and `--orchestrator-disbursement` move a
//! feature's orchestration path to a service of its own. Refunds follow the
//! charge: a refund must reach the service that holds its charge, so the
//! refund service *is* the charge service, and an `--orchestrator-refund`
//! that names another is refused at start-up rather than sending refunds
//! where their charges are unknown.
//!
//! Every `https://` service is reached with rustls: the shared CA bundle
//! (or the host's trust store) and client certificate, or a feature's own
//! CA. Clients of the same URL and CA share one connection pool.

use paymesh_adapters::{ClientTls, JsonClient, TlsFiles};
use std::path::PathBuf;
use std::time::Duration;

/// One feature's service, as configured (`None` URL: the default one).
#[derive(Clone, Debug, Default)]
pub struct Override {
    pub url: Option<String>,
    /// CA bundle for this service only (instead of the shared one).
    pub ca: Option<PathBuf>,
    /// Client certificate and key for this service only (instead of the
    /// shared ones): both or neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Bound on one call to this service (instead of `--timeout`).
    pub timeout: Option<Duration>,
}

/// Where each feature's orchestration path goes, and with which TLS.
#[derive(Clone, Debug)]
pub struct Backends {
    pub orchestrator: String,
    pub charge: Override,
    pub refund: Option<String>,
    pub disbursement: Override,
    /// For every `https://` service: CA bundle, client certificate and key.
    pub tls: TlsFiles,
}

impl Backends {
    /// One service for everything, over plain HTTP or the host's roots.
    pub fn single(url: &str) -> Backends {
        Backends {
            orchestrator: url.to_owned(),
            charge: Override::default(),
            refund: None,
            disbursement: Override::default(),
            tls: TlsFiles::default(),
        }
    }

    /// Every problem of the settings, each naming its flag; empty when they
    /// can be used.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let urls = [
            ("--orchestrator", Some(&self.orchestrator)),
            ("--orchestrator-charge", self.charge.url.as_ref()),
            ("--orchestrator-refund", self.refund.as_ref()),
            ("--orchestrator-disbursement", self.disbursement.url.as_ref()),
        ];
        for (flag, url) in urls {
            if let Some(url) = url
                && let Err(e) = check_url(url)
            {
                problems.push(format!("{flag}: {e}"));
            }
        }
        if let Some(refund) = &self.refund
            && normal(refund) != normal(self.charge_url())
        {
            problems.push(format!(
                "--orchestrator-refund ({refund}) must be the charge service ({}, from {}): a refund must reach \
                 the service that holds its charge; leave it unset and refunds follow the charges",
                self.charge_url(),
                if self.charge.url.is_some() { "--orchestrator-charge" } else { "--orchestrator" },
            ));
        }
        for (flag, o) in [("--orchestrator-charge", &self.charge), ("--orchestrator-disbursement", &self.disbursement)]
        {
            if o.ca.is_some() && o.url.is_none() {
                problems.push(format!("{flag}-ca is set without {flag}"));
            }
            if o.timeout.is_some() && o.url.is_none() {
                problems.push(format!("{flag}-timeout is set without {flag}"));
            }
            if (o.cert.is_some() || o.key.is_some()) && o.url.is_none() {
                problems.push(format!("{flag}-cert/{flag}-key are set without {flag}"));
            }
            if o.cert.is_some() != o.key.is_some() {
                problems.push(format!("{flag}-cert and {flag}-key go together"));
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            problems.push("--orchestrator-cert and --orchestrator-key go together".into());
        }
        problems
    }

    fn charge_url(&self) -> &str {
        self.charge.url.as_deref().unwrap_or(&self.orchestrator)
    }

    /// A feature's service: its own URL, CA, client certificate and call
    /// timeout, or the default service's.
    fn feature<'a>(&'a self, o: &'a Override) -> Service<'a> {
        let Some(url) = &o.url else {
            return Service { url: &self.orchestrator, tls: self.tls.clone(), timeout: None };
        };
        let (cert, key) = match (&o.cert, &o.key) {
            (Some(cert), Some(key)) => (Some(cert.clone()), Some(key.clone())),
            _ => (self.tls.cert.clone(), self.tls.key.clone()),
        };
        let tls = TlsFiles { ca: o.ca.clone().or_else(|| self.tls.ca.clone()), cert, key };
        Service { url, tls, timeout: o.timeout }
    }

    /// The clients: legacy (components), charge, refund, disbursement.
    pub fn clients(&self, connect_timeout: Duration, timeout: Duration) -> Result<Clients, String> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let any_https = [Some(&self.orchestrator), self.charge.url.as_ref(), self.disbursement.url.as_ref()]
            .into_iter()
            .flatten()
            .any(|u| u.starts_with("https://"));
        if !any_https && (self.tls.ca.is_some() || self.tls.cert.is_some()) {
            tracing::warn!("--orchestrator-ca/--orchestrator-cert given, but no orchestration URL is https://");
        }
        let mut pool = Pool { built: Vec::new(), connect_timeout, timeout };
        let default = Service { url: &self.orchestrator, tls: self.tls.clone(), timeout: None };
        let charge = pool.client(self.feature(&self.charge), "--orchestrator-charge")?;
        Ok(Clients {
            legacy: pool.client(default, "--orchestrator")?,
            refund: charge.clone(),
            charge,
            disbursement: pool.client(self.feature(&self.disbursement), "--orchestrator-disbursement")?,
        })
    }
}

/// One client per feature, and the legacy path's.
#[derive(Clone, Debug)]
pub struct Clients {
    pub legacy: JsonClient,
    pub charge: JsonClient,
    pub refund: JsonClient,
    pub disbursement: JsonClient,
}

/// One service's settings: URL, TLS files, and call timeout (`None`:
/// `--timeout`).
struct Service<'a> {
    url: &'a str,
    tls: TlsFiles,
    timeout: Option<Duration>,
}

/// What makes two services one: URL, CA, client certificate and timeout.
type PoolKey = (String, [Option<PathBuf>; 3], Duration);

/// Clients built so far, by URL, CA and timeout: one pool per service.
struct Pool {
    built: Vec<(PoolKey, JsonClient)>,
    connect_timeout: Duration,
    timeout: Duration,
}

impl Pool {
    fn client(&mut self, service: Service<'_>, flag: &str) -> Result<JsonClient, String> {
        let Service { url, tls: files, timeout } = service;
        let timeout = timeout.unwrap_or(self.timeout);
        let key = (normal(url).to_owned(), [files.ca.clone(), files.cert.clone(), files.key.clone()], timeout);
        if let Some((_, client)) = self.built.iter().find(|(k, _)| *k == key) {
            return Ok(client.clone());
        }
        let client = if url.starts_with("https://") {
            let tls = ClientTls::load(&files).map_err(|e| format!("TLS for {flag} ({url}): {e}"))?;
            JsonClient::with_tls(url, &tls, self.connect_timeout, timeout)
        } else {
            JsonClient::new(url, self.connect_timeout, timeout)
        };
        self.built.push((key, client.clone()));
        Ok(client)
    }
}

fn normal(url: &str) -> &str {
    url.trim_end_matches('/')
}

fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("must be an http:// or https:// URL, got {url:?}"));
    }
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    if uri.authority().is_none() || !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("must be a base URL (scheme, host and port only), got {url:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(charge: Option<&str>, refund: Option<&str>) -> Backends {
        let mut b = Backends::single("http://a:1");
        b.charge.url = charge.map(str::to_owned);
        b.refund = refund.map(str::to_owned);
        b
    }

    #[test]
    fn refunds_must_go_to_the_charge_service() {
        assert!(with(None, None).problems().is_empty());
        assert!(with(None, Some("http://a:1/")).problems().is_empty());
        assert!(with(Some("http://b:2"), Some("http://b:2")).problems().is_empty());
        let p = with(Some("http://b:2"), Some("http://a:1")).problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("--orchestrator-refund") && p[0].contains("--orchestrator-charge"), "{p:?}");
        let p = with(None, Some("http://c:3")).problems();
        assert!(p[0].contains("--orchestrator-refund") && p[0].contains("from --orchestrator)"), "{p:?}");
    }

    #[test]
    fn refunds_follow_the_charge_service_by_default() {
        let b = with(Some("http://b:2"), None);
        let c = b.clients(Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        assert_eq!(c.refund.base(), "http://b:2");
        assert_eq!(c.charge.base(), "http://b:2");
        assert_eq!(c.disbursement.base(), "http://a:1");
        assert_eq!(c.legacy.base(), "http://a:1");
    }

    #[test]
    fn every_bad_setting_is_named() {
        let mut b = Backends::single("ftp://a");
        b.disbursement.url = Some("https://d:4/path".into());
        b.charge.ca = Some("/ca.pem".into());
        b.tls.cert = Some("/c.pem".into());
        let p = b.problems();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].starts_with("--orchestrator: "));
        assert!(p[1].starts_with("--orchestrator-disbursement: "));
        assert!(p[2].contains("--orchestrator-charge-ca"));
        assert!(p[3].contains("--orchestrator-cert"));
    }

    #[test]
    fn a_feature_service_may_have_its_own_call_timeout() {
        let mut b = with(Some("http://b:2"), None);
        b.charge.timeout = Some(Duration::from_secs(3));
        let c = b.clients(Duration::from_secs(1), Duration::from_secs(10)).unwrap();
        assert_eq!(c.charge.timeout(), Duration::from_secs(3));
        assert_eq!(c.refund.timeout(), Duration::from_secs(3), "refunds go where charges go, as charges do");
        assert_eq!(c.disbursement.timeout(), Duration::from_secs(10));
        assert_eq!(c.legacy.timeout(), Duration::from_secs(10));
        let mut b = Backends::single("http://a:1");
        b.disbursement.timeout = Some(Duration::from_secs(3));
        let p = b.problems();
        assert!(p.len() == 1 && p[0].contains("--orchestrator-disbursement-timeout"), "{p:?}");
    }

    #[test]
    fn a_feature_service_may_have_its_own_client_certificate() {
        let mut b = with(Some("https://b:2"), None);
        b.charge.cert = Some("/nonexistent/charge.crt".into());
        assert!(b.problems().iter().any(|p| p.contains("--orchestrator-charge-cert and --orchestrator-charge-key")));
        b.charge.key = Some("/nonexistent/charge.key".into());
        assert!(b.problems().is_empty(), "{:?}", b.problems());
        // The charge service's own files are the ones loaded (and refused).
        let e = b.clients(Duration::from_secs(1), Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("--orchestrator-charge") && e.contains("/nonexistent/charge.crt"), "{e}");
        let mut b = Backends::single("http://a:1");
        b.disbursement.cert = Some("/c".into());
        b.disbursement.key = Some("/k".into());
        assert!(b.problems().iter().any(|p| p.contains("set without --orchestrator-disbursement")));
    }

    #[test]
    fn an_unreadable_ca_is_an_error_naming_the_flag() {
        let mut b = Backends::single("https://a:1");
        b.tls.ca = Some("/nonexistent/ca.pem".into());
        let e = b.clients(Duration::from_secs(1), Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("--orchestrator") && e.contains("/nonexistent/ca.pem"), "{e}");
    }
}

//! The app and the orchestration services over real sockets: TLS and mTLS
//! to the reference orchestrator (certificates made by rcgen at test time),
//! the clean 503 of a TLS session that cannot be had, and one orchestration
//! service per feature, with refunds following their charges.

use paymesh_system_tests::{AppProcess, Client, Orchestrator, OrchestratorTls, Reply, bin};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    /// Writes `<name>.pem` and `<name>.key` for a leaf naming `sans`.
    fn leaf(&self, dir: &Path, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (write(dir, &format!("{name}.pem"), &cert.pem()), write(dir, &format!("{name}.key"), &key.serialize_pem()))
    }

    fn write_cert(&self, dir: &Path, name: &str) -> PathBuf {
        write(dir, name, &self.issuer.pem())
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The files of one test's PKI: a CA, the orchestrator's certificate for
/// 127.0.0.1, and a client certificate for the app.
struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

fn pki(dir: &Path) -> Pki {
    let ca = Ca::new("paymesh test CA");
    Pki {
        ca: ca.write_cert(dir, "ca.pem"),
        server: ca.leaf(dir, "orchestrator", &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth),
        client: ca.leaf(dir, "app", &["app.paymesh.test"], ExtendedKeyUsagePurpose::ClientAuth),
    }
}

fn headers<'a>(route: &'a str, key: &'a str) -> [(&'a str, &'a str); 2] {
    [("x-paymesh-route", route), ("idempotency-key", key)]
}

/// A charge through `route`, then its read-back: 201 then 200, same id.
async fn charge_and_read(client: &Client, app: &AppProcess, route: &str, key: &str) -> String {
    let body = json!({"amount": 1250, "currency": "usd", "source": "tok_visa"});
    let created = client.post(&format!("{}/v1/charges", app.url), &headers(route, key), &body).await;
    assert_eq!(created.status, 201, "{route} charge: {}", created.json());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let read = client.get(&format!("{}/v1/charges/{id}", app.url), &[("x-paymesh-route", route)]).await;
    assert_eq!(read.status, 200, "{route} read: {}", read.json());
    assert_eq!(read.json()["id"], id.as_str());
    id
}

fn assert_unavailable(reply: &Reply) {
    assert_eq!(reply.status, 503, "{}", reply.json());
    assert_eq!(reply.error_code(), "service_unavailable");
    assert_eq!(reply.json()["error"]["type"], "api_error", "{}", reply.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_reaches_a_tls_orchestrator_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let tls = OrchestratorTls { cert: &pki.server.0, key: &pki.server.1, client_ca: None };
    let orchestrator = Orchestrator::start_tls(&dir.path().join("data"), dir.path(), tls, &[]).await;
    assert!(orchestrator.url.starts_with("https://"));
    let app = AppProcess::start(&orchestrator.url, dir.path(), &["--orchestrator-ca", s(&pki.ca)]).await;
    let client = Client::new();
    charge_and_read(&client, &app, "orchestration", "tls-1").await;
    // The legacy path's component calls go over the same TLS service.
    charge_and_read(&client, &app, "legacy", "tls-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_presents_its_certificate_to_an_mtls_orchestrator() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let tls = OrchestratorTls { cert: &pki.server.0, key: &pki.server.1, client_ca: Some(&pki.ca) };
    let orchestrator = Orchestrator::start_tls(&dir.path().join("data"), dir.path(), tls, &[]).await;
    let app = AppProcess::start(
        &orchestrator.url,
        dir.path(),
        &[
            "--orchestrator-ca",
            s(&pki.ca),
            "--orchestrator-cert",
            s(&pki.client.0),
            "--orchestrator-key",
            s(&pki.client.1),
        ],
    )
    .await;
    let client = Client::new();
    let id = charge_and_read(&client, &app, "orchestration", "mtls-1").await;
    let refund = json!({"charge": id, "amount": 250});
    let refunded = client.post(&format!("{}/v1/refunds", app.url), &headers("orchestration", "mtls-r"), &refund).await;
    assert_eq!(refunded.status, 201, "{}", refunded.json());

    // Without a client certificate the server refuses the session: nothing
    // reached the service, so a clean 503 the client may retry, and the log
    // says why.
    let anonymous = AppProcess::start(&orchestrator.url, dir.path(), &["--orchestrator-ca", s(&pki.ca)]).await;
    for route in ["orchestration", "legacy"] {
        let body = json!({"amount": 100, "currency": "usd", "source": "tok_visa"});
        let reply = client.post(&format!("{}/v1/charges", anonymous.url), &headers(route, "mtls-2"), &body).await;
        assert_unavailable(&reply);
    }
    let log = anonymous.process.log();
    assert!(log.contains("CertificateRequired"), "the log names the missing certificate:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_certificate_is_a_clean_503() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let tls = OrchestratorTls { cert: &pki.server.0, key: &pki.server.1, client_ca: None };
    let orchestrator = Orchestrator::start_tls(&dir.path().join("data"), dir.path(), tls, &[]).await;
    // Another CA than the one that signed the orchestrator's certificate,
    // and the host's trust store: neither trusts it.
    let other = Ca::new("someone else").write_cert(dir.path(), "other-ca.pem");
    let client = Client::new();
    for extra in [&["--orchestrator-ca", s(&other)][..], &[]] {
        let app = AppProcess::start(&orchestrator.url, dir.path(), extra).await;
        for route in ["orchestration", "legacy"] {
            let body = json!({"amount": 100, "currency": "usd", "source": "tok_visa"});
            let reply = client.post(&format!("{}/v1/charges", app.url), &headers(route, "untrusted"), &body).await;
            assert_unavailable(&reply);
        }
        let read = client
            .get(
                &format!("{}/v1/charges/ch_000000000000000000000000", app.url),
                &[("x-paymesh-route", "orchestration")],
            )
            .await;
        assert_unavailable(&read);
        let log = app.process.log();
        assert!(log.contains("invalid peer certificate: UnknownIssuer"), "the log names the problem:\n{log}");
    }
}

/// Reads `path` from `orchestrator` as an operator: the status.
async fn status_at(client: &Client, orchestrator: &Orchestrator, path: &str) -> u16 {
    client.get(&format!("{}{path}?any_client=1", orchestrator.url), &[]).await.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_feature_reaches_its_own_orchestration_service() {
    let dir = tempfile::tempdir().unwrap();
    let charges = Orchestrator::start(&dir.path().join("charges"), dir.path(), &[]).await;
    let payouts = Orchestrator::start(&dir.path().join("payouts"), dir.path(), &[]).await;
    let app = AppProcess::start(&charges.url, dir.path(), &["--orchestrator-disbursement", &payouts.url]).await;
    let client = Client::new();

    let charge = charge_and_read(&client, &app, "orchestration", "pf-1").await;
    assert_eq!(status_at(&client, &charges, &format!("/workflows/v1/charges/{charge}")).await, 200);
    assert_eq!(status_at(&client, &payouts, &format!("/workflows/v1/charges/{charge}")).await, 404);

    let body = json!({"amount": 700, "currency": "usd", "destination": "acct_1"});
    let paid = client.post(&format!("{}/v1/disbursements", app.url), &headers("orchestration", "pf-2"), &body).await;
    assert_eq!(paid.status, 201, "{}", paid.json());
    let payout = paid.json()["id"].as_str().unwrap().to_owned();
    let read =
        client.get(&format!("{}/v1/disbursements/{payout}", app.url), &[("x-paymesh-route", "orchestration")]).await;
    assert_eq!(read.status, 200, "{}", read.json());
    assert_eq!(status_at(&client, &payouts, &format!("/workflows/v1/payouts/{payout}")).await, 200);
    assert_eq!(status_at(&client, &charges, &format!("/workflows/v1/payouts/{payout}")).await, 404);

    // The refund reaches the charge's service, where the charge is.
    let refund = json!({"charge": charge, "amount": 250});
    let refunded = client.post(&format!("{}/v1/refunds", app.url), &headers("orchestration", "pf-3"), &refund).await;
    assert_eq!(refunded.status, 201, "{}", refunded.json());
    let refund = refunded.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(status_at(&client, &charges, &format!("/workflows/v1/refunds/{refund}")).await, 200);
    assert_eq!(status_at(&client, &payouts, &format!("/workflows/v1/refunds/{refund}")).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_follow_a_charge_service_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let default = Orchestrator::start(&dir.path().join("default"), dir.path(), &[]).await;
    let charges = Orchestrator::start(&dir.path().join("charges"), dir.path(), &[]).await;
    let app = AppProcess::start(&default.url, dir.path(), &["--orchestrator-charge", &charges.url]).await;
    let client = Client::new();
    let charge = charge_and_read(&client, &app, "orchestration", "rf-1").await;
    let refund = json!({"charge": charge, "amount": 300});
    let refunded = client.post(&format!("{}/v1/refunds", app.url), &headers("orchestration", "rf-2"), &refund).await;
    assert_eq!(refunded.status, 201, "{}", refunded.json());
    let refund = refunded.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(status_at(&client, &charges, &format!("/workflows/v1/refunds/{refund}")).await, 200);
    assert_eq!(status_at(&client, &default, &format!("/workflows/v1/refunds/{refund}")).await, 404);
    assert_eq!(status_at(&client, &default, &format!("/workflows/v1/charges/{charge}")).await, 404);
}

#[test]
fn a_refund_service_other_than_the_charge_service_is_refused_at_start() {
    let cases =
        [(vec!["--orchestrator-charge", "http://127.0.0.1:1"], "--orchestrator-charge"), (vec![], "--orchestrator)")];
    for (extra, names) in cases {
        let out = std::process::Command::new(bin("paymesh-app"))
            .args(["--listen", "127.0.0.1:0", "--orchestrator", "http://127.0.0.1:2"])
            .args(&extra)
            .args(["--orchestrator-refund", "http://127.0.0.1:3"])
            .env_remove("PAYMESH_APP_ORCHESTRATOR_CHARGE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with a refund service of its own: {stderr}");
        assert!(stderr.contains("--orchestrator-refund") && stderr.contains(names), "{extra:?}: {stderr}");
    }
}

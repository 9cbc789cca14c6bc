//! The app and the orchestration services over real sockets: TLS and mTLS
//! to the reference orchestrator (certificates made by rcgen at test time),
//! the clean 503 of a TLS session that cannot be had, and one orchestration
//! service per feature, with refunds following their charges.

use paymesh_system_tests::tls::TestCa;
use paymesh_system_tests::{AppProcess, Client, Orchestrator, OrchestratorTls, Reply, bin};
use rcgen::ExtendedKeyUsagePurpose;
use serde_json::json;
use std::path::{Path, PathBuf};

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
    let ca = TestCa::new("paymesh test CA");
    // Writes `<name>.pem` and `<name>.key` for a leaf naming `sans`.
    let leaf = |name: &str, sans: &[&str], usage| {
        let (cert, key) = ca.leaf(sans, usage);
        (write(dir, &format!("{name}.pem"), &cert), write(dir, &format!("{name}.key"), &key))
    };
    Pki {
        ca: write(dir, "ca.pem", &ca.pem()),
        server: leaf("orchestrator", &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth),
        client: leaf("app", &["app.paymesh.test"], ExtendedKeyUsagePurpose::ClientAuth),
    }
}

/// The orchestrator serving TLS with `pki`'s server certificate; with
/// `mtls`, it asks for a client certificate of `pki`'s CA.
async fn tls_orchestrator(dir: &Path, pki: &Pki, mtls: bool) -> Orchestrator {
    let client_ca = mtls.then_some(pki.ca.as_path());
    let tls = OrchestratorTls { cert: &pki.server.0, key: &pki.server.1, client_ca };
    Orchestrator::start_tls(&dir.join("data"), dir, tls, &[]).await
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

/// Refunds `amount` of `charge` through the orchestration path: 201, the
/// refund's id.
async fn refund(client: &Client, app: &AppProcess, charge: &str, amount: u64, key: &str) -> String {
    let body = json!({"charge": charge, "amount": amount});
    let refunded = client.post(&format!("{}/v1/refunds", app.url), &headers("orchestration", key), &body).await;
    assert_eq!(refunded.status, 201, "{}", refunded.json());
    refunded.json()["id"].as_str().unwrap().to_owned()
}

/// A charge with `key` is a clean 503 on both paths.
async fn assert_charges_unavailable(client: &Client, app: &AppProcess, key: &str) {
    for route in ["orchestration", "legacy"] {
        let body = json!({"amount": 100, "currency": "usd", "source": "tok_visa"});
        let reply = client.post(&format!("{}/v1/charges", app.url), &headers(route, key), &body).await;
        assert_unavailable(&reply);
    }
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
    let orchestrator = tls_orchestrator(dir.path(), &pki, false).await;
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
    let orchestrator = tls_orchestrator(dir.path(), &pki, true).await;
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
    refund(&client, &app, &id, 250, "mtls-r").await;

    // Without a client certificate the server refuses the session: nothing
    // reached the service, so a clean 503 the client may retry, and the log
    // says why.
    let anonymous = AppProcess::start(&orchestrator.url, dir.path(), &["--orchestrator-ca", s(&pki.ca)]).await;
    assert_charges_unavailable(&client, &anonymous, "mtls-2").await;
    let log = anonymous.process.log();
    assert!(log.contains("CertificateRequired"), "the log names the missing certificate:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_certificate_is_a_clean_503() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let orchestrator = tls_orchestrator(dir.path(), &pki, false).await;
    // Another CA than the one that signed the orchestrator's certificate,
    // and the host's trust store: neither trusts it.
    let other = write(dir.path(), "other-ca.pem", &TestCa::new("someone else").pem());
    let client = Client::new();
    for extra in [&["--orchestrator-ca", s(&other)][..], &[]] {
        let app = AppProcess::start(&orchestrator.url, dir.path(), extra).await;
        assert_charges_unavailable(&client, &app, "untrusted").await;
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

/// An app whose orchestration service is one orchestrator but for
/// `feature`, which a second one serves (`--orchestrator-<feature>`):
/// (their directory, the default service, the feature's, the app).
async fn split_services(feature: &str) -> (tempfile::TempDir, Orchestrator, Orchestrator, AppProcess) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let default = Orchestrator::start(&dir.join("default"), dir, &[]).await;
    let own = Orchestrator::start(&dir.join(feature), dir, &[]).await;
    let app = AppProcess::start(&default.url, dir, &[&format!("--orchestrator-{feature}"), &own.url]).await;
    (tmp, default, own, app)
}

/// The workflow at `path` is on `home` (200) and not on `other` (404).
async fn assert_served_by(client: &Client, path: &str, home: &Orchestrator, other: &Orchestrator) {
    assert_eq!(status_at(client, home, path).await, 200, "{path} on its own service");
    assert_eq!(status_at(client, other, path).await, 404, "{path} on the other service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_feature_reaches_its_own_orchestration_service() {
    let (_dir, charges, payouts, app) = split_services("disbursement").await;
    let client = Client::new();

    let charge = charge_and_read(&client, &app, "orchestration", "pf-1").await;
    assert_served_by(&client, &format!("/workflows/v1/charges/{charge}"), &charges, &payouts).await;

    let body = json!({"amount": 700, "currency": "usd", "destination": "acct_1"});
    let paid = client.post(&format!("{}/v1/disbursements", app.url), &headers("orchestration", "pf-2"), &body).await;
    assert_eq!(paid.status, 201, "{}", paid.json());
    let payout = paid.json()["id"].as_str().unwrap().to_owned();
    let read =
        client.get(&format!("{}/v1/disbursements/{payout}", app.url), &[("x-paymesh-route", "orchestration")]).await;
    assert_eq!(read.status, 200, "{}", read.json());
    assert_served_by(&client, &format!("/workflows/v1/payouts/{payout}"), &payouts, &charges).await;

    // The refund reaches the charge's service, where the charge is.
    let refund = refund(&client, &app, &charge, 250, "pf-3").await;
    assert_served_by(&client, &format!("/workflows/v1/refunds/{refund}"), &charges, &payouts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_follow_a_charge_service_of_its_own() {
    let (_dir, default, charges, app) = split_services("charge").await;
    let client = Client::new();
    let charge = charge_and_read(&client, &app, "orchestration", "rf-1").await;
    let refund = refund(&client, &app, &charge, 300, "rf-2").await;
    assert_served_by(&client, &format!("/workflows/v1/refunds/{refund}"), &charges, &default).await;
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

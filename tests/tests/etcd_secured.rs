//! The sidecar and paymeshctl against a secured etcd, as production runs
//! it: client TLS with `--client-cert-auth` (certificates made in the
//! test), users and roles with `auth enable`, the least privilege
//! sidecar/README.md documents. Each failure an operator must fix (a wrong
//! password, an untrusted certificate, a missing permission) is named in
//! `paymesh_etcd_errors_total{kind}`, in `/admin/state` and in one log
//! line, and changes nothing about serving.

use paymesh_system_tests::migration::{CHECKOUT, charge_as, ramp_args, text, traffic};
use paymesh_system_tests::{AppProcess, Client, Etcd, Orchestrator, SidecarProcess, bin, eventually, metric};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const PAYMESH_PASSWORD: &str = "paymesh-pw";
const OPERATOR_PASSWORD: &str = "operator-pw";

/// How the sidecar reaches etcd, as its `migration` section says.
#[derive(Default)]
struct Access {
    /// `etcd_tls.ca`; `None`: plain http.
    ca: Option<PathBuf>,
    /// `etcd_tls.cert` and `.key`.
    client_cert: Option<(PathBuf, PathBuf)>,
    /// `etcd_auth`: user name and password (written to a file).
    user: Option<(&'static str, &'static str)>,
}

/// etcd, orchestrator, app and one sidecar.
struct Stack {
    etcd: Etcd,
    sidecar: SidecarProcess,
    _orchestrator: Orchestrator,
    _app: AppProcess,
    dir: tempfile::TempDir,
}

/// etcd over TLS (`tls`) and/or with auth on (`auth`): root, the
/// documented roles, user `paymesh` (role `paymesh`), user `operator`
/// (role `operator`) and user `switch-only` (readwrite on the switch
/// records only: no read of the migration keys).
async fn secured_etcd(dir: &Path, tls: bool, auth: bool) -> Etcd {
    let mut etcd = if tls { Etcd::start_tls(dir).await } else { Etcd::start(dir).await };
    if auth {
        etcd.add_paymesh_roles();
        etcd.add_role("switch-only", &[("readwrite", "/paymesh/switch-events/")]);
        etcd.add_user("paymesh", PAYMESH_PASSWORD, &["paymesh"]);
        etcd.add_user("operator", OPERATOR_PASSWORD, &["operator"]);
        etcd.add_user("switch-only", PAYMESH_PASSWORD, &["switch-only"]);
        etcd.enable_auth();
    }
    etcd
}

impl Stack {
    /// The stack on a [`secured_etcd`] (`tls`, `auth`) that the sidecar
    /// reaches with `access`.
    async fn start(tls: bool, auth: bool, access: impl FnOnce(&Etcd) -> Access) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let etcd = secured_etcd(dir.path(), tls, auth).await;
        let orchestrator = Orchestrator::start(&dir.path().join("data"), dir.path(), &[]).await;
        let app = AppProcess::start(&orchestrator.url, dir.path(), &["--timeout", "2s"]).await;
        let app_addr = app.url.trim_start_matches("http://").to_owned();
        let yaml = migration_yaml(&etcd.url, dir.path(), &access(&etcd));
        let sidecar = SidecarProcess::start(dir.path(), &app_addr, &yaml).await;
        Stack { etcd, sidecar, _orchestrator: orchestrator, _app: app, dir }
    }

    async fn percent(&self, feature: &str) -> (Option<f64>, String) {
        let state = self.sidecar.state().await;
        let m = &state["migration"][feature];
        (m["percent"].as_f64(), m["source"].as_str().unwrap_or("").to_owned())
    }

    async fn wait_percent(&self, feature: &str, percent: f64) {
        eventually(Duration::from_secs(15), &format!("{feature} at {percent}% from etcd"), || async {
            self.percent(feature).await == (Some(percent), "etcd".to_owned())
        })
        .await;
    }

    /// Waits until etcd trouble of `kind` is counted and shown, then checks
    /// that the sidecar logged `cause` and serves on: charges succeed,
    /// `/readyz` answers 200, the percents are the defaults.
    async fn expect_trouble(&self, kind: &str, cause: &str) {
        let series = format!("paymesh_etcd_errors_total{{kind=\"{kind}\"}}");
        eventually(Duration::from_secs(15), &format!("{series} above 0"), || async {
            metric(&self.sidecar.metrics().await, &series).unwrap_or(0.0) > 0.0
        })
        .await;
        let state = self.sidecar.state().await;
        assert_eq!(state["etcd"]["last_error"]["kind"], kind, "{state}");
        if kind != "permission" {
            // A user missing one permission may still make the calls its
            // roles allow: the connection works, a key is refused.
            assert_eq!(state["etcd"]["connected"], false, "{state}");
            assert_eq!(metric(&self.sidecar.metrics().await, "paymesh_etcd_connected"), Some(0.0));
        }
        let log = self.sidecar.process.log();
        assert!(log.contains(cause), "no log line naming {cause:?}:\n{log}");

        self.sidecar.wait_ready(Duration::from_secs(10)).await;
        let client = Client::new();
        for n in 0..20 {
            let (status, _) = charge_as(&client, &self.sidecar.url, CHECKOUT, &format!("{kind}-{n}")).await;
            assert_eq!(status, 201, "charge {n} while etcd is refused");
        }
        assert!(client.ok(&format!("{}/readyz", self.sidecar.admin)).await, "/readyz while etcd is refused");
        assert_eq!(self.percent("charge").await, (Some(0.0), "defaults".to_owned()));
    }

    /// A file in the test's directory.
    fn file(&self, name: &str, contents: &str) -> PathBuf {
        write(self.dir.path(), name, contents)
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn migration_yaml(etcd: &str, dir: &Path, access: &Access) -> String {
    let mut yaml = format!("migration:\n  etcd_endpoints: [\"{etcd}\"]\n");
    if let Some(ca) = &access.ca {
        yaml += &format!("  etcd_tls:\n    ca: {ca:?}\n");
        if let Some((cert, key)) = &access.client_cert {
            yaml += &format!("    cert: {cert:?}\n    key: {key:?}\n");
        }
    }
    if let Some((user, password)) = access.user {
        // As a Secret mounts it: with a trailing newline.
        let file = write(dir, "etcd-password", &format!("{password}\n"));
        yaml += &format!("  etcd_auth: {{ username: {user}, password_file: {file:?} }}\n");
    }
    // The switch records of this test only, not the machine's default file.
    yaml + &format!(
        "  prefix: /paymesh\n  cache_file: {:?}\n  defaults: {{ charge: 0, refund: 0, disbursement: 0 }}\n\
         overload:\n  events_file: {:?}\n",
        dir.join("migration.json"),
        dir.join("switch-events.jsonl")
    )
}

/// With a client certificate etcd accepts.
/// Plain http with etcd auth as `name`.
fn user(name: &'static str, password: &'static str) -> Access {
    Access { user: Some((name, password)), ..Access::default() }
}

fn mtls(etcd: &Etcd) -> Access {
    let c = etcd.certs.as_ref().expect("a TLS etcd");
    Access { ca: Some(c.ca.clone()), client_cert: Some((c.client_cert.clone(), c.client_key.clone())), user: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_percent_arrives_over_tls_with_a_client_certificate() {
    let s = Stack::start(true, false, mtls).await;
    s.etcd.put("/paymesh/migration/charge", "30");
    s.wait_percent("charge", 30.0).await;
    let state = s.sidecar.state().await;
    assert_eq!(state["etcd"]["connected"], true, "{state}");
    assert_eq!(state["etcd"]["tls"], true, "{state}");
    assert_eq!(metric(&s.sidecar.metrics().await, "paymesh_etcd_connected"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_percent_arrives_as_an_etcd_user_with_the_least_privilege() {
    let s = Stack::start(false, true, |_| user("paymesh", PAYMESH_PASSWORD)).await;
    s.etcd.put("/paymesh/migration/refund", "12.5");
    s.wait_percent("refund", 12.5).await;
    s.etcd.put("/paymesh/migration/refund", "40");
    s.wait_percent("refund", 40.0).await;
    let state = s.sidecar.state().await;
    assert_eq!(state["etcd"]["user"], "paymesh", "{state}");
    assert_eq!(state["etcd"]["connected"], true, "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_is_an_auth_error_and_serving_goes_on() {
    let s = Stack::start(false, true, |_| user("paymesh", "not-the-password")).await;
    s.expect_trouble("auth", "etcd refused the credentials").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_untrusted_server_certificate_is_a_connect_error_and_serving_goes_on() {
    let s = Stack::start(true, false, |etcd| {
        let c = etcd.certs.as_ref().unwrap();
        // The right client certificate, the wrong CA for etcd's.
        Access { ca: Some(c.other_ca.clone()), ..mtls(etcd) }
    })
    .await;
    s.expect_trouble("connect", "etcd TLS handshake failed on a certificate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_permission_is_a_permission_error_and_serving_goes_on() {
    let s = Stack::start(false, true, |_| user("switch-only", PAYMESH_PASSWORD)).await;
    s.expect_trouble("permission", "etcd denied permission").await;
}

fn cat<'a>(parts: &[&[&'a str]]) -> Vec<&'a str> {
    parts.concat()
}

/// `paymeshctl ARGS…` with `env`, to completion.
fn ctl(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(bin("paymeshctl"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PAYMESH_") {
            cmd.env_remove(&name);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_os_str()))).args(args).output().expect("paymeshctl runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paymeshctl_sets_percents_through_tls_and_auth() {
    let s = Stack::start(true, true, |etcd| Access { user: Some(("paymesh", PAYMESH_PASSWORD)), ..mtls(etcd) }).await;
    let c = s.etcd.certs.clone().unwrap();
    let password = s.file("operator-password", &format!("{OPERATOR_PASSWORD}\n"));
    let [ca, cert, key, pw] = [&c.ca, &c.client_cert, &c.client_key, &password].map(|p| p.to_str().unwrap());
    let secured = ["--etcd-ca", ca, "--etcd-cert", cert, "--etcd-key", key, "--etcd-user", "operator"];
    let flags = cat(&[&["--etcd", &s.etcd.url], &secured, &["--etcd-password-file", pw]]);

    // With flags.
    let out = ctl(&cat(&[&flags, &["migration", "set", "charge", "40"]]), &[]);
    assert!(out.status.success(), "{}", text(&out));
    s.wait_percent("charge", 40.0).await;

    // With the PAYMESH_ETCD_* variables instead.
    let url = PathBuf::from(&s.etcd.url);
    let env = [
        ("PAYMESH_ETCD", url.as_path()),
        ("PAYMESH_ETCD_CA", c.ca.as_path()),
        ("PAYMESH_ETCD_CERT", c.client_cert.as_path()),
        ("PAYMESH_ETCD_KEY", c.client_key.as_path()),
        ("PAYMESH_ETCD_USER", Path::new("operator")),
        ("PAYMESH_ETCD_PASSWORD_FILE", password.as_path()),
    ];
    let out = ctl(&["migration", "set", "charge", "55"], &env);
    assert!(out.status.success(), "{}", text(&out));
    s.wait_percent("charge", 55.0).await;
    let out = ctl(&["migration", "get"], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("55"), "{}", text(&out));
    let out = ctl(&["migration", "history", "charge"], &env);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("55"), "{}", text(&out));

    // Each mistake fails clearly, naming what to fix.
    let wrong = s.file("wrong-password", "nope\n");
    let wrong = cat(&[&["--etcd", &s.etcd.url], &secured, &["--etcd-password-file", wrong.to_str().unwrap()]]);
    let out = ctl(&cat(&[&wrong, &["migration", "get"]]), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("etcd refused the credentials"), "{}", text(&out));

    let sidecar_user = s.file("paymesh-password", PAYMESH_PASSWORD);
    let mut as_sidecar = flags.clone();
    let n = as_sidecar.len();
    as_sidecar[n - 3] = "paymesh"; // --etcd-user paymesh: read-only on the migration keys
    as_sidecar[n - 1] = sidecar_user.to_str().unwrap();
    let out = ctl(&cat(&[&as_sidecar, &["migration", "set", "charge", "60"]]), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("etcd denied permission"), "{}", text(&out));

    let other_ca = c.other_ca.to_str().unwrap();
    let untrusted =
        cat(&[&["--etcd", &s.etcd.url, "--etcd-ca", other_ca], &secured[2..], &["--etcd-password-file", pw]]);
    let out = ctl(&cat(&[&untrusted, &["migration", "get"]]), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS handshake with etcd failed on a certificate"),
        "{}",
        text(&out)
    );

    let out = ctl(&["--etcd", s.etcd.url.as_str(), "migration", "get"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--etcd-ca is required"), "{}", text(&out));
    assert_eq!(s.percent("charge").await, (Some(55.0), "etcd".to_owned()), "no failed write landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paymeshctl_ramps_through_tls_and_auth() {
    let s = Stack::start(true, true, |etcd| Access { user: Some(("paymesh", PAYMESH_PASSWORD)), ..mtls(etcd) }).await;
    let c = s.etcd.certs.clone().unwrap();
    let password = s.file("operator-password", OPERATOR_PASSWORD);
    let env: Vec<(&'static str, PathBuf)> = vec![
        ("PAYMESH_ETCD", PathBuf::from(&s.etcd.url)),
        ("PAYMESH_ETCD_CA", c.ca.clone()),
        ("PAYMESH_ETCD_CERT", c.client_cert.clone()),
        ("PAYMESH_ETCD_KEY", c.client_key.clone()),
        ("PAYMESH_ETCD_USER", PathBuf::from("operator")),
        ("PAYMESH_ETCD_PASSWORD_FILE", password),
    ];
    // The ramp takes its lock (a lease), writes steps and history, and
    // releases the lock, all as `operator`.
    let args = ramp_args("charge", "40", "20", "1s", &["--sidecars", &s.sidecar.admin]);
    let traffic = traffic(s.sidecar.url.clone(), CHECKOUT);
    let out = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        ctl(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env)
    })
    .await
    .unwrap();
    traffic.abort();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("done: charge is at 40%"), "{}", text(&out));
    s.wait_percent("charge", 40.0).await;
    assert_eq!(s.etcd.etcdctl(&["get", "--prefix", "/paymesh/locks/", "--keys-only"]).trim(), "", "lock released");
}

#[test]
fn check_config_refuses_https_without_a_ca_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = paymesh_system_tests::sidecar::config_yaml(1, 2, "127.0.0.1:3", "")
        + "migration:\n  etcd_endpoints: [\"https://127.0.0.1:2379\"]\n";
    let config = write(dir.path(), "sidecar.yaml", &yaml);
    let out = Command::new(bin("paymesh-sidecar")).arg("--check-config").arg(&config).output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("migration.etcd_tls.ca"), "{}", text(&out));
}

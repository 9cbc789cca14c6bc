//! `paymeshctl migration ramp --prometheus` against Prometheus as
//! production runs it: a real Prometheus serving https only (its own
//! `--web.config.file`, a certificate made here with openssl), a checking
//! reverse proxy in front of it that wants a bearer token and a tenant
//! header (Prometheus itself only knows basic auth), and one Prometheus
//! scraping two environments, of which `--selector` picks one.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use paymesh_system_tests::migration::{CHECKOUT, Stack, migration_yaml, ramp_args, text, traffic};
use paymesh_system_tests::{AppProcess, Job, Prometheus, ServerTls, SidecarProcess, bin, free_port};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const TOKEN: &str = "s3cret-token";
const TENANT: (&str, &str) = ("x-scope-orgid", "team-a");

fn job(name: &str, targets: Vec<String>, cluster: &str) -> Job {
    Job { name: name.into(), targets, labels: vec![("cluster".into(), cluster.into())] }
}

fn admin_target(s: &SidecarProcess) -> String {
    format!("127.0.0.1:{}", s.admin_port)
}

/// `paymeshctl --etcd ETCD ARGS…` with `env`, to completion, off the runtime.
async fn run(etcd: &str, args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("paymeshctl"));
    cmd.arg("--etcd").arg(etcd).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run = tokio::task::spawn_blocking(move || cmd.output().expect("paymeshctl runs"));
    tokio::time::timeout(Duration::from_secs(90), run).await.expect("paymeshctl ends").unwrap()
}

fn with(mut args: Vec<String>, more: Vec<&str>) -> Vec<String> {
    args.extend(more.iter().map(|s| (*s).to_owned()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ramp_reads_an_https_prometheus_with_its_ca_and_refuses_it_without() {
    let s = Stack::start(1, "").await;
    let tls = ServerTls::generate(s.dir.path());
    let p = Prometheus::start_with(
        s.dir.path(),
        &[job("paymesh", vec![admin_target(s.sidecar())], "eu-1")],
        "200ms",
        Some(&tls),
    )
    .await;
    assert!(p.url.starts_with("https://"), "{}", p.url);

    // Without the CA the system roots do not know the server: refused
    // before anything is written.
    let out = run(&s.etcd.url, &ramp_args("charge", "60", "30", "2s", &["--prometheus", &p.url]), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("TLS handshake with {} failed", p.url)), "{stderr}");
    assert!(stderr.contains("certificate") && stderr.contains("--prometheus-ca"), "{stderr}");
    assert_eq!(s.etcd_value("/paymesh/migration/charge"), None, "a refused Prometheus wrote nothing");

    let load = traffic(s.sidecar().url.clone(), CHECKOUT);
    let ca = tls.ca.to_str().unwrap();
    let args = ramp_args("charge", "60", "30", "2s", &["--prometheus", &p.url, "--prometheus-ca", ca]);
    let out = run(&s.etcd.url, &args, &[]).await;
    load.abort();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("healthy").count(), 2, "{stdout}");
    assert!(stdout.contains("done: charge is at 60%"), "{stdout}");
    s.wait_percent("charge", 60.0).await;
}

/// What the proxy saw: requests it forwarded, requests it refused.
#[derive(Debug, Default)]
struct Seen {
    forwarded: AtomicUsize,
    refused: AtomicUsize,
}

/// A reverse proxy on a real socket in front of `upstream` that forwards
/// only requests bearing [`TOKEN`], the [`TENANT`] header and
/// `x-request-source: paymeshctl`; 401 otherwise, as a gateway would.
async fn checking_proxy(upstream: String) -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        let client = paymesh_system_tests::client();
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (client, upstream, seen) = (client.clone(), upstream.clone(), counts.clone());
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let (client, upstream, seen) = (client.clone(), upstream.clone(), seen.clone());
                async move {
                    let h = req.headers();
                    let ok = h.get("authorization").is_some_and(|v| v == format!("Bearer {TOKEN}").as_str())
                        && h.get(TENANT.0).is_some_and(|v| v == TENANT.1)
                        && h.get("x-request-source").is_some_and(|v| v == "paymeshctl");
                    if !ok {
                        seen.refused.fetch_add(1, Ordering::SeqCst);
                        let no = hyper::Response::builder().status(401).body(Full::new(Bytes::from("invalid token")));
                        return Ok::<_, std::convert::Infallible>(no.unwrap());
                    }
                    seen.forwarded.fetch_add(1, Ordering::SeqCst);
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let forward = http::Request::get(format!("{upstream}{path}")).body(Full::default()).unwrap();
                    let (parts, body) = client.request(forward).await.expect("Prometheus answers").into_parts();
                    let body = body.collect().await.expect("Prometheus' body").to_bytes();
                    Ok(hyper::Response::from_parts(parts, Full::new(body)))
                }
            });
            tokio::spawn(async move {
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_token_and_the_tenant_header_reach_the_server_and_a_refused_token_is_named() {
    let s = Stack::start(1, "").await;
    let p = Prometheus::start(s.dir.path(), &[admin_target(s.sidecar())], "200ms").await;
    let (proxy, seen) = checking_proxy(p.url.clone()).await;
    let token = s.dir.path().join("prometheus-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let token = token.to_str().unwrap();

    let load = traffic(s.sidecar().url.clone(), CHECKOUT);
    // The headers from the variable, one per line; the token from its file.
    let args = ramp_args("charge", "60", "30", "2s", &["--prometheus", &proxy, "--prometheus-token-file", token]);
    let headers = format!("{}={}\nX-Request-Source=paymeshctl", TENANT.0, TENANT.1);
    let out = run(&s.etcd.url, &args, &[("PAYMESH_PROMETHEUS_HEADER", &headers)]).await;
    load.abort();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("done: charge is at 60%"), "{}", text(&out));
    assert!(seen.forwarded.load(Ordering::SeqCst) >= 9, "{seen:?}");
    assert_eq!(seen.refused.load(Ordering::SeqCst), 0, "{seen:?}");

    // A stale token: refused at the start, named, not echoed, nothing written.
    let stale = s.dir.path().join("stale-token");
    std::fs::write(&stale, "stale-one\n").unwrap();
    let args = with(
        ramp_args("charge", "100", "20", "2s", &["--prometheus", &proxy]),
        ["--prometheus-token-file", stale.to_str().unwrap(), "--prometheus-header", "X-Scope-OrgID=team-a"]
            .into_iter()
            .chain(["--prometheus-header", "X-Request-Source=paymeshctl"])
            .collect::<Vec<_>>(),
    );
    let out = run(&s.etcd.url, &args, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Prometheus refused the token") && stderr.contains("401"), "{stderr}");
    assert!(!text(&out).contains("stale-one"), "the token is never printed: {}", text(&out));
    assert!(seen.refused.load(Ordering::SeqCst) >= 1, "{seen:?}");
    assert_eq!(s.etcd_value("/paymesh/migration/charge").as_deref(), Some("60"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_selector_narrows_the_ramp_to_its_environment() {
    // eu-1: the stack's sidecar, healthy. eu-2: a sidecar on the same etcd
    // whose app has no orchestration service to reach, failing every
    // request the ramp moves to it.
    let s = Stack::start(1, "").await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let app = AppProcess::start(&dead, s.dir.path(), &["--timeout", "2s"]).await;
    let yaml = migration_yaml(&s.etcd.url, &s.dir.path().join("migration-eu-2.json"));
    let failing = SidecarProcess::start(s.dir.path(), app.url.trim_start_matches("http://"), &yaml).await;
    let jobs = [
        job("paymesh-eu-1", vec![admin_target(s.sidecar())], "eu-1"),
        job("paymesh-eu-2", vec![admin_target(&failing)], "eu-2"),
    ];
    let p = Prometheus::start_with(s.dir.path(), &jobs, "200ms", None).await;
    let loads = [traffic(s.sidecar().url.clone(), CHECKOUT), traffic(failing.url.clone(), CHECKOUT)];

    let args = ramp_args("charge", "40", "20", "2s", &["--prometheus", &p.url, "--selector", r#"cluster="eu-1""#]);
    let out = run(&s.etcd.url, &args, &[]).await;
    assert!(out.status.success(), "eu-2's failures are not eu-1's: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("done: charge is at 40%"), "{}", text(&out));

    // The same ramp reading every environment sees eu-2's failures.
    let out = run(&s.etcd.url, &ramp_args("charge", "80", "20", "2s", &["--prometheus", &p.url]), &[]).await;
    loads.iter().for_each(|l| l.abort());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ROLLED BACK") && stderr.contains("set back to 40%"), "{stderr}");

    // A malformed selector is refused before anything is written.
    let out = run(
        &s.etcd.url,
        &ramp_args("charge", "80", "20", "2s", &["--prometheus", &p.url, "--selector", "cluster=eu-1"]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--selector"), "{}", text(&out));
    s.wait_percent("charge", 40.0).await;
}

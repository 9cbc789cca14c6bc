//! Per-client migration against a real etcd and a real sidecar: an
//! override routes that client's charges while another client follows the
//! feature's percent, stickiness holds within each client across raises,
//! deleting the override falls back, an unknown client's override is
//! ignored and counted, and a per-client ramp reaches its target judged on
//! that client's traffic.

use paymesh_system_tests::Client;
use paymesh_system_tests::metric;
use paymesh_system_tests::migration::{CHECKOUT, INTERNAL, Stack, charge_as, ctl, ramp_args, text, traffic};
use serde_json::Value;

/// `n` charges as `who` with keys `prefix-0…`, 16 at a time; their routes.
async fn charges(s: &Stack, who: &'static str, prefix: &str, n: usize) -> Vec<String> {
    let client = Client::new();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (client, url, prefix) = (client.clone(), s.sidecar().url.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (w..n).step_by(16) {
                let (status, route) = charge_as(&client, &url, who, &format!("{prefix}-{i}")).await;
                assert_eq!(status, 201, "{who} {prefix}-{i}");
                out.push((i, route.expect("route echoed")));
            }
            out
        }));
    }
    let mut all = vec![String::new(); n];
    for t in tasks {
        for (i, r) in t.await.unwrap() {
            all[i] = r;
        }
    }
    all
}

fn share(routes: &[String]) -> f64 {
    routes.iter().filter(|r| *r == "orchestration").count() as f64 / routes.len() as f64
}

fn assert_only_forward(before: &[String], after: &[String], who: &str) {
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        assert!(!(b == "orchestration" && a == "legacy"), "{who} key {i} moved back to legacy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_override_routes_that_client_while_others_follow_the_feature() {
    let s = Stack::start(1, "").await;
    let set = |args: &[&str]| {
        let out = ctl(&s.etcd.url, args);
        assert!(out.status.success(), "{}", text(&out));
    };
    // Sets the feature's percent and internal's override, waits until the
    // sidecar serves both, then charges keys `k-0…` as each client: the
    // routes (internal's, checkout's).
    let move_to = async |feature: u32, internal: u32| {
        set(&["migration", "set", "charge", &feature.to_string()]);
        set(&["migration", "set", "charge", &internal.to_string(), "--client", INTERNAL]);
        s.wait_percent("charge", f64::from(feature)).await;
        s.wait_client_percent("charge", INTERNAL, Some(f64::from(internal))).await;
        (charges(&s, INTERNAL, "k", 2000).await, charges(&s, CHECKOUT, "k", 2000).await)
    };
    let (internal, checkout) = move_to(10, 50).await;
    assert!((0.47..=0.53).contains(&share(&internal)), "internal at 50%: {}", share(&internal));
    assert!((0.07..=0.13).contains(&share(&checkout)), "checkout at the feature's 10%: {}", share(&checkout));

    // Raise both; the same keys only ever move legacy → orchestration.
    let (internal_2, checkout_2) = move_to(40, 80).await;
    assert_only_forward(&internal, &internal_2, INTERNAL);
    assert_only_forward(&checkout, &checkout_2, CHECKOUT);
    assert!((0.77..=0.83).contains(&share(&internal_2)), "internal at 80%: {}", share(&internal_2));
    assert!((0.37..=0.43).contains(&share(&checkout_2)), "checkout at 40%: {}", share(&checkout_2));

    // Shown by `get`, /admin/state, /metrics and in the cache file.
    let get = String::from_utf8_lossy(&ctl(&s.etcd.url, &["migration", "get"]).stdout).into_owned();
    assert!(get.lines().any(|l| l.contains("client internal") && l.contains("80")), "{get}");
    let state = s.sidecar().state().await;
    assert_eq!(state["migration"]["charge"]["clients"]["internal"]["source"], "etcd", "{state}");
    let scrape = s.sidecar().metrics().await;
    assert_eq!(metric(&scrape, r#"paymesh_migration_percent{feature="charge"}"#), Some(40.0));
    assert_eq!(metric(&scrape, r#"paymesh_migration_percent{client="internal",feature="charge"}"#), Some(80.0));
    assert!(
        metric(
            &scrape,
            r#"paymesh_client_requests_total{client="internal",code="2xx",feature="charge",route="orchestration"}"#
        )
        .is_some_and(|n| n > 2000.0),
        "per-client counts"
    );
    let cache: Value = serde_json::from_slice(&std::fs::read(s.dir.path().join("migration-0.json")).unwrap()).unwrap();
    assert_eq!(cache["clients"]["charge"]["internal"], 80.0, "{cache}");

    // Pinned to legacy while the others move.
    set(&["migration", "set", "charge", "0", "--client", INTERNAL]);
    s.wait_client_percent("charge", INTERNAL, Some(0.0)).await;
    assert_eq!(share(&charges(&s, INTERNAL, "pin", 300).await), 0.0);

    // A bad value is refused (the override stays); deleting falls back.
    s.etcd.put("/paymesh/migration/charge/clients/internal", "120");
    s.etcd.put("/paymesh/migration/charge/clients/nobody", "100");
    s.etcd.put("/paymesh/migration/refund", "5");
    s.wait_percent("refund", 5.0).await;
    assert_eq!(s.client_percent("charge", INTERNAL).await, Some(0.0));
    let scrape = s.sidecar().metrics().await;
    assert_eq!(metric(&scrape, "paymesh_migration_unknown_client_overrides_total"), Some(1.0));
    assert!(!scrape.contains("nobody"), "ids not in the config never become labels");
    let state = s.sidecar().state().await;
    assert_eq!(state["migration"]["charge"]["ignored_client_overrides"][0], "nobody", "{state}");

    set(&["migration", "set", "charge", "--client", INTERNAL, "--delete"]);
    s.wait_client_percent("charge", INTERNAL, None).await;
    let back = charges(&s, INTERNAL, "k", 2000).await;
    assert!((0.37..=0.43).contains(&share(&back)), "internal follows the feature again: {}", share(&back));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_client_ramp_reaches_its_target_judged_on_that_clients_traffic() {
    let s = Stack::start(1, "").await;
    s.etcd.put("/paymesh/migration/charge", "10");
    s.wait_percent("charge", 10.0).await;
    let load = traffic(s.sidecar().url.clone(), INTERNAL);
    let mut args = ramp_args("charge", "60", "20", "1s", &["--sidecars", &s.admins()]);
    args.extend(["--client".to_owned(), INTERNAL.to_owned()]);
    let out = ctl(&s.etcd.url, &args.iter().map(String::as_str).collect::<Vec<_>>());
    load.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    // From the feature's 10%, the client's effective percent.
    assert!(stdout.contains("ramp charge (client internal): 10% → 60% in 3 step(s)"), "{stdout}");
    assert!(stdout.contains("done: charge (client internal) is at 60%"), "{stdout}");
    assert_eq!(s.etcd_value("/paymesh/migration/charge/clients/internal").as_deref(), Some("60"));
    assert_eq!(s.etcd_value("/paymesh/migration/charge").as_deref(), Some("10"), "the feature is untouched");
    s.wait_client_percent("charge", INTERNAL, Some(60.0)).await;

    // Judged on the client's traffic only: without it there is no evidence.
    let other = traffic(s.sidecar().url.clone(), CHECKOUT);
    let mut args = ramp_args("charge", "80", "20", "1s", &["--sidecars", &s.admins(), "--max-holds", "2"]);
    args.extend(["--client".to_owned(), INTERNAL.to_owned()]);
    let out = ctl(&s.etcd.url, &args.iter().map(String::as_str).collect::<Vec<_>>());
    other.abort();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("too little traffic"), "{}", text(&out));
    assert_eq!(s.etcd_value("/paymesh/migration/charge/clients/internal").as_deref(), Some("60"));
    let h =
        String::from_utf8_lossy(&ctl(&s.etcd.url, &["migration", "history", "charge", "--client", INTERNAL]).stdout)
            .into_owned();
    assert!(h.lines().skip(1).all(|l| l.contains(" internal ")), "{h}");
    assert!(h.contains("gave_up") && h.contains("reached"), "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listed_client_series_show_the_listed_clients_and_a_ramped_one() {
    let s = Stack::start(1, &format!("metrics: {{ client_series: [{CHECKOUT}] }}\n")).await;
    s.etcd.put("/paymesh/migration/charge", "10");
    s.wait_percent("charge", 10.0).await;
    charges(&s, INTERNAL, "before", 40).await;
    charges(&s, CHECKOUT, "before", 40).await;
    let series = |who: &str| format!("paymesh_client_requests_total{{client=\"{who}\",");
    let scrape = s.sidecar().metrics().await;
    assert!(scrape.contains(&series(CHECKOUT)), "the listed client is shown:\n{scrape}");
    assert!(!scrape.contains(&series(INTERNAL)), "a client neither listed nor overridden is not:\n{scrape}");
    let state = s.sidecar().state().await;
    assert_eq!(state["config"]["metrics"]["client_series"], serde_json::json!([CHECKOUT]), "{state}");

    // A ramp of the unlisted client: its first override shows its series,
    // and the ramp is judged on them.
    let load = traffic(s.sidecar().url.clone(), INTERNAL);
    let mut args = ramp_args("charge", "50", "20", "1s", &["--sidecars", &s.admins()]);
    args.extend(["--client".to_owned(), INTERNAL.to_owned()]);
    let out = ctl(&s.etcd.url, &args.iter().map(String::as_str).collect::<Vec<_>>());
    load.abort();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("done: charge (client internal) is at 50%"),
        "{}",
        text(&out)
    );
    let scrape = s.sidecar().metrics().await;
    let counted = ["legacy", "orchestration"]
        .iter()
        .filter_map(|route| {
            metric(
                &scrape,
                &format!(r#"paymesh_client_requests_total{{client="{INTERNAL}",code="2xx",feature="charge",route="{route}"}}"#),
            )
        })
        .sum::<f64>();
    // Counted while it was not shown: the 40 before the ramp are in.
    assert!(counted > 40.0, "internal's series after its ramp: {counted}\n{scrape}");
}

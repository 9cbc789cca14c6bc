//! Shadow reads through real processes: the sidecar reads a sampled GET
//! again through the other path and compares. With the reference
//! orchestrator both paths agree on every resource kind; with its
//! test-only skew one path answers a wrong amount, and the sidecar counts
//! the mismatch, records the JSON path with both values, and a ramp guarded
//! by `--max-mismatch-rate` rolls back.

use paymesh_system_tests::migration::{CHECKOUT, Stack, ctl, ramp_args, text};
use paymesh_system_tests::sidecar::KEY;
use paymesh_system_tests::{Client, eventually, metric};
use serde_json::{Value, json};
use std::time::Duration;

const AUTH: (&str, &str) = ("authorization", "Bearer test-key-checkout");

/// The shadow section of every sidecar here, its access log in the
/// stack's directory.
fn extra(dir: &std::path::Path, sample: &str) -> String {
    format!(
        "shadow: {{ sample_percent: {sample}, max_inflight: 64 }}\naccess_log: {{ path: {}/access.log }}\n",
        dir.display()
    )
}

async fn create(client: &Client, url: &str, what: &str, body: Value, key: &str) -> Value {
    let reply = client.post(&format!("{url}/v1/{what}"), &[AUTH, ("idempotency-key", key)], &body).await;
    assert_eq!(reply.status, 201, "{what}: {}", String::from_utf8_lossy(&reply.body));
    reply.json()
}

/// `n` charges, a partial refund of each, and `n` disbursements; their ids.
async fn resources(client: &Client, url: &str, n: usize) -> Vec<(&'static str, String)> {
    let mut ids = Vec::new();
    for i in 0..n {
        let charge = json!({"amount": 1000 + i, "currency": "usd", "source": "tok_visa"});
        let c = create(client, url, "charges", charge, &format!("c-{i}")).await;
        let id = c["id"].as_str().unwrap().to_owned();
        let r = create(client, url, "refunds", json!({"charge": id, "amount": 100}), &format!("r-{i}")).await;
        ids.push(("refunds", r["id"].as_str().unwrap().to_owned()));
        ids.push(("charges", id));
        let payout = json!({"amount": 500 + i, "currency": "jpy", "destination": "acct_1"});
        let d = create(client, url, "disbursements", payout, &format!("d-{i}")).await;
        ids.push(("disbursements", d["id"].as_str().unwrap().to_owned()));
    }
    ids
}

fn compares(scrape: &str, feature: &str, outcome: &str) -> f64 {
    metric(scrape, &format!("paymesh_shadow_compares_total{{feature=\"{feature}\",outcome=\"{outcome}\"}}"))
        .unwrap_or(-1.0)
}

/// The lines of the access log that [`extra`] put in `dir`.
fn access_log(dir: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("every access-log line is JSON")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_paths_agree_on_every_resource_kind() {
    let dir = tempfile::tempdir().unwrap();
    let s = Stack::start(1, &extra(dir.path(), "100")).await;
    // Charges made on the orchestration path, refunds on legacy,
    // disbursements on both: the reads cross paths every way.
    for (feature, percent) in [("charge", "100"), ("disbursement", "50")] {
        assert!(ctl(&s.etcd.url, &["migration", "set", feature, percent]).status.success());
    }
    s.wait_percent("charge", 100.0).await;
    s.wait_percent("disbursement", 50.0).await;
    let (client, url) = (Client::new(), s.sidecar().url.clone());
    let ids = resources(&client, &url, 8).await;
    for (what, id) in &ids {
        let reply = client.get(&format!("{url}/v1/{what}/{id}"), &[AUTH]).await;
        assert_eq!(reply.status, 200, "{what}/{id}");
        assert_eq!(reply.json()["id"], id.as_str(), "the client gets its own answer, untouched");
        assert!(reply.header("x-paymesh-shadow").is_none());
    }
    eventually(Duration::from_secs(10), "8 matches per feature", || async {
        let m = s.sidecar().metrics().await;
        ["charge", "refund", "disbursement"].iter().all(|f| compares(&m, f, "match") == 8.0)
    })
    .await;
    let m = s.sidecar().metrics().await;
    for f in ["charge", "refund", "disbursement"] {
        for outcome in ["mismatch", "shadow_error", "skipped"] {
            assert_eq!(compares(&m, f, outcome), 0.0, "{f} {outcome}\n{m}");
        }
    }
    let state = s.sidecar().state().await;
    assert_eq!(state["shadow"]["features"]["refund"]["match"], 8, "{}", state["shadow"]);
    assert_eq!(state["shadow"]["features"]["charge"]["sample_percent"], 100.0);
    // Shadow reads are not client traffic: one access-log line per client
    // request (24 POSTs, 24 GETs), no record of a mismatch.
    eventually(Duration::from_secs(5), "access log written", || async { access_log(dir.path()).len() >= 48 }).await;
    let lines = access_log(dir.path());
    assert_eq!(lines.len(), 48, "{lines:?}");
    assert!(lines.iter().all(|l| l["kind"].is_null()), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_path_that_answers_wrong_is_caught_recorded_and_rolls_a_ramp_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Stack::start_with(
        1,
        &extra(dir.path(), "{ refund: 100, charge: 100 }"),
        &["--test-only-skew-amount", "refund"],
    )
    .await;
    let (client, url) = (Client::new(), s.sidecar().url.clone());
    let ids = resources(&client, &url, 4).await;
    for (what, id) in ids.iter().filter(|(w, _)| *w != "disbursements") {
        let reply = client.get(&format!("{url}/v1/{what}/{id}"), &[AUTH]).await;
        assert_eq!(reply.status, 200, "the client never sees the shadow's disagreement");
        if *what == "refunds" {
            assert_eq!(reply.json()["amount"], 100, "legacy serves the client the stored amount");
        }
    }
    eventually(Duration::from_secs(10), "4 refund mismatches, 4 charge matches", || async {
        let m = s.sidecar().metrics().await;
        compares(&m, "refund", "mismatch") == 4.0 && compares(&m, "charge", "match") == 4.0
    })
    .await;
    let records = || access_log(dir.path()).into_iter().filter(|l| l["kind"] == "shadow_mismatch").collect::<Vec<_>>();
    eventually(Duration::from_secs(5), "4 mismatch records", || async { records().len() >= 4 }).await;
    let records = records();
    assert_eq!(records.len(), 4, "{records:?}");
    let refund_ids: Vec<&str> = ids.iter().filter(|(w, _)| *w == "refunds").map(|(_, id)| id.as_str()).collect();
    for r in &records {
        assert!(refund_ids.contains(&r["resource"].as_str().unwrap()), "{r}");
        assert_eq!((r["feature"].as_str(), r["client"].as_str()), (Some("refund"), Some(CHECKOUT)), "{r}");
        assert_eq!((r["primary_route"].as_str(), r["shadow_route"].as_str()), (Some("legacy"), Some("orchestration")));
        assert_eq!(r["differences"], json!([{"path": "$.amount", "primary": 100, "shadow": 101}]), "{r}");
        let text = r.to_string();
        assert!(!text.contains(KEY) && !text.contains("tok_visa"), "no key, no card source: {text}");
    }

    // A ramp of refunds guarded on mismatches rolls back at its first step.
    let reads = {
        let (client, url) = (client.clone(), url.clone());
        let refunds: Vec<String> = refund_ids.iter().map(|s| (*s).to_owned()).collect();
        tokio::spawn(async move {
            for i in 0.. {
                let id = &refunds[i % refunds.len()];
                let _ = client.get(&format!("{url}/v1/refunds/{id}"), &[AUTH]).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut args = ramp_args("refund", "50", "25", "2s", &["--sidecars", &s.admins()]);
    args.extend(["--max-mismatch-rate", "1%", "--min-compares", "5"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ctl(&s.etcd.url, &args);
    reads.abort();
    assert_eq!(out.status.code(), Some(2), "rolled back: {}", text(&out));
    assert!(text(&out).contains("--max-mismatch-rate"), "{}", text(&out));
    assert_eq!(s.etcd_value("/paymesh/migration/refund").as_deref(), Some("0"), "{}", text(&out));
}

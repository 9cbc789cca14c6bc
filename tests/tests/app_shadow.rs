//! The app's and the reference orchestrator's side of shadow reads
//! (DESIGN.md, "Shadow reads"), with real processes: a request carrying
//! `x-paymesh-shadow` may only read, and is refused before it can move
//! money; a shadow `GET` is served exactly like a read; and the
//! orchestrator's `--test-only-skew-amount` makes one path answer wrong, so
//! that a shadow compare has something to catch.

use paymesh_system_tests::{AppProcess, Client, Orchestrator};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_request_only_reads_and_a_skewed_path_answers_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let orchestrator =
        Orchestrator::start(&dir.path().join("data"), dir.path(), &["--test-only-skew-amount", "charge"]).await;
    assert!(orchestrator.process.log().contains("--test-only-skew-amount is set"), "{}", orchestrator.process.log());
    let app = AppProcess::start(&orchestrator.url, dir.path(), &[]).await;
    let c = Client::new();
    let url = |p: &str| format!("{}{p}", app.url);
    let json_type = ("content-type", "application/json");
    let client = ("x-paymesh-client", "acme");
    let shadow = ("x-paymesh-shadow", "1");
    let key = ("idempotency-key", "shadow-1");

    // A shadow may not write, through either path.
    let charge = json!({"amount": 1000, "currency": "usd", "source": "tok_visa"});
    for route in ["legacy", "orchestration"] {
        let r =
            c.post(&url("/v1/charges"), &[json_type, client, shadow, key, ("x-paymesh-route", route)], &charge).await;
        assert_eq!(r.status, 400, "{route}: {:?}", r.body);
        let e = &r.json()["error"];
        assert_eq!(e["code"], "shadow_read_only", "{route}: {e}");
        assert_eq!(e["type"], "invalid_request_error", "{route}: {e}");
        assert_eq!(e["message"], "A shadow request may only read.", "{route}: {e}");
    }
    // ... nor anything else, refused before its (bad) route is looked at.
    let r = c.send(http::Method::DELETE, &url("/v1/charges/ch_x"), &[shadow, ("x-paymesh-route", "nope")], b"").await;
    assert_eq!(r.unwrap().error_code(), "shadow_read_only");

    // Nothing was created: the key is unused, so another body under it is a
    // new payment (201), not a conflicting replay (422).
    let other = json!({"amount": 1200, "currency": "usd", "source": "tok_visa"});
    let created = c.post(&url("/v1/charges"), &[json_type, client, key], &other).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();

    // A shadow read is served like a read; the skewed path answers one
    // minor unit high, the other exactly, and nothing else differs.
    let read = async |route: &str, headers: &[(&str, &str)]| {
        let mut h = vec![client, ("x-paymesh-route", route)];
        h.extend_from_slice(headers);
        let r = c.get(&url(&format!("/v1/charges/{id}")), &h).await;
        assert_eq!(r.status, 200, "{route}: {:?}", r.body);
        r.json()
    };
    let legacy = read("legacy", &[shadow]).await;
    assert_eq!(legacy, read("legacy", &[]).await, "a shadow read is a read");
    assert_eq!((legacy["amount"].as_u64(), legacy["amount_refunded"].as_u64()), (Some(1200), Some(0)), "{legacy}");
    let orchestration = read("orchestration", &[shadow]).await;
    assert_eq!(orchestration["amount"], 1201, "{orchestration}");
    let mut same = orchestration.clone();
    same["amount"] = json!(1200);
    assert_eq!(same, legacy, "only the amount differs between the paths");
}

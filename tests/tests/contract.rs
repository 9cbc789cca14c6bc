//! The contract test: one script of requests gives the same public
//! responses (status and body, ids and timestamps aside) through the legacy
//! path and through the orchestration path.

use paymesh_system_tests::{AppProcess, Client, Reply};
use serde_json::{Value, json};
use std::collections::HashMap;

/// One step's request.
struct Step {
    name: &'static str,
    method: &'static str,
    /// `{charge}` / `{refund}` / `{disbursement}` are replaced with the ids
    /// this run created.
    path: &'static str,
    key: Option<&'static str>,
    body: Value,
    raw: Option<Vec<u8>>,
}

fn post(name: &'static str, path: &'static str, key: &'static str, body: Value) -> Step {
    Step { name, method: "POST", path, key: Some(key), body, raw: None }
}

/// A `POST /v1/charges`.
fn charge(name: &'static str, key: &'static str, body: Value) -> Step {
    post(name, "/v1/charges", key, body)
}

/// A `POST /v1/refunds`.
fn refund(name: &'static str, key: &'static str, body: Value) -> Step {
    post(name, "/v1/refunds", key, body)
}

fn get(name: &'static str, path: &'static str) -> Step {
    Step { name, method: "GET", path, key: None, body: Value::Null, raw: None }
}

fn script() -> Vec<Step> {
    let order = json!({"amount": 1000, "currency": "usd", "source": "tok_visa", "description": "order 1"});
    vec![
        charge("charge", "charge-1", order.clone()),
        get("read charge", "/v1/charges/{charge}"),
        refund("partial refund", "refund-1", json!({"charge": "{charge}", "amount": 300})),
        refund("over-refund", "refund-2", json!({"charge": "{charge}", "amount": 701})),
        refund("refund the rest", "refund-3", json!({"charge": "{charge}"})),
        refund("refund a refunded charge", "refund-4", json!({"charge": "{charge}", "amount": 1})),
        get("read refunded charge", "/v1/charges/{charge}"),
        get("read refund", "/v1/refunds/{refund}"),
        post(
            "disbursement",
            "/v1/disbursements",
            "disb-1",
            json!({"amount": 5000, "currency": "eur", "destination": "acct_42"}),
        ),
        get("read disbursement", "/v1/disbursements/{disbursement}"),
        charge("replay", "charge-1", order),
        charge("conflicting replay", "charge-1", json!({"amount": 999, "currency": "usd", "source": "tok_visa"})),
        charge("zero-decimal currency", "charge-jpy", json!({"amount": 5000, "currency": "jpy", "source": "tok_visa"})),
        charge(
            "three-decimal currency",
            "charge-kwd",
            json!({"amount": 1234, "currency": "kwd", "source": "tok_visa"}),
        ),
        charge("risk decline", "charge-risky", json!({"amount": 100, "currency": "usd", "source": "tok_risky"})),
        charge(
            "risk decline replayed",
            "charge-risky",
            json!({"amount": 100, "currency": "usd", "source": "tok_risky"}),
        ),
        charge("card decline", "charge-declined", json!({"amount": 100, "currency": "usd", "source": "tok_declined"})),
        // Well-formed ids that were never issued: 404 on both paths.
        get("unknown charge", "/v1/charges/ch_doesnotexist000000000000"),
        get("unknown refund", "/v1/refunds/re_doesnotexist000000000000"),
        get("unknown disbursement", "/v1/disbursements/po_doesnotexist000000000000"),
        refund(
            "refund of an unknown charge",
            "refund-5",
            json!({"charge": "ch_doesnotexist000000000000", "amount": 5}),
        ),
        // Malformed ids never reach a backend: 400 naming the param on both
        // paths (they once made the orchestration path answer 502).
        get("malformed id", "/v1/charges/ch%2F..%2Fx"),
        get("id too short", "/v1/charges/ch_doesnotexist"),
        get("id of another kind", "/v1/charges/re_doesnotexist000000000000"),
        get("id with a space", "/v1/refunds/re_%20x"),
        get("non-canonical path", "//v1/charges/ch_doesnotexist000000000000"),
        refund("refund of a malformed charge id", "refund-6", json!({"charge": "ch_ x"})),
        refund("refund of an overlong charge id", "refund-7", json!({"charge": "ch_doesnotexist0000000000000"})),
        charge("missing amount", "bad-1", json!({"currency": "usd", "source": "tok_visa"})),
        charge("negative amount", "bad-2", json!({"amount": -1, "currency": "usd", "source": "tok_visa"})),
        charge("fractional amount", "bad-3", json!({"amount": 10.5, "currency": "usd", "source": "tok_visa"})),
        charge("too large amount", "bad-4", json!({"amount": 100_000_000, "currency": "usd", "source": "tok_visa"})),
        charge("uppercase currency", "bad-5", json!({"amount": 100, "currency": "USD", "source": "tok_visa"})),
        charge("unknown currency", "bad-6", json!({"amount": 100, "currency": "abc", "source": "tok_visa"})),
        charge(
            "unknown field",
            "bad-7",
            json!({"amount": 100, "currency": "usd", "source": "tok_visa", "customer": "x"}),
        ),
        refund("bad charge id", "bad-8", json!({"charge": "order_1"})),
        post(
            "bad destination",
            "/v1/disbursements",
            "bad-9",
            json!({"amount": 1, "currency": "usd", "destination": "iban"}),
        ),
        Step { raw: Some(b"{\"amount\": 100,".to_vec()), ..charge("malformed JSON", "bad-10", Value::Null) },
        Step { raw: Some(vec![b' '; 65 * 1024]), ..charge("body too large", "bad-11", Value::Null) },
        Step {
            key: None,
            ..charge("missing idempotency key", "", json!({"amount": 100, "currency": "usd", "source": "tok_visa"}))
        },
        get("unknown path", "/v2/charges"),
        Step { method: "DELETE", ..get("wrong method", "/v1/charges/{charge}") },
        Step { method: "GET", ..get("list is not offered", "/v1/charges") },
    ]
}

/// Ids and timestamps aside: ids become `<id N>` in order of appearance.
fn normalize(v: &Value, ids: &mut HashMap<String, String>) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if k == "created" { json!("<time>") } else { normalize(v, ids) };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| normalize(v, ids)).collect()),
        Value::String(s) if ["ch_", "re_", "po_"].iter().any(|p| s.starts_with(p)) && !s.contains("doesnotexist") => {
            let n = ids.len() + 1;
            json!(ids.entry(s.clone()).or_insert_with(|| format!("<id {n}>")).clone())
        }
        other => other.clone(),
    }
}

async fn run(client: &Client, app: &str, route: &str) -> Vec<(String, u16, Value)> {
    let mut created: HashMap<&str, String> = HashMap::new();
    let mut ids = HashMap::new();
    let mut out = Vec::new();
    for step in script() {
        let fill = |s: &str| {
            let mut s = s.to_owned();
            for (k, v) in &created {
                s = s.replace(&format!("{{{k}}}"), v);
            }
            s
        };
        let path = fill(step.path);
        let key = step.key.map(|k| format!("{route}-{k}"));
        let mut headers = vec![("x-paymesh-route", route), ("content-type", "application/json")];
        if let Some(k) = &key {
            headers.push(("idempotency-key", k));
        }
        let body = step.raw.clone().unwrap_or_else(|| {
            if step.body.is_null() { Vec::new() } else { fill(&step.body.to_string()).into_bytes() }
        });
        let method = step.method.parse().expect("method");
        let reply: Reply = client.send(method, &format!("{app}{path}"), &headers, &body).await.expect(step.name);
        assert_eq!(reply.header("x-paymesh-route"), Some(route), "{}: route echoed", step.name);
        let json = reply.json();
        if reply.status == 201 {
            let object = json["object"].as_str().expect("object").to_owned();
            let id = json["id"].as_str().expect("id").to_owned();
            created
                .entry(match object.as_str() {
                    "charge" => "charge",
                    "refund" => "refund",
                    _ => "disbursement",
                })
                .or_insert(id);
        }
        out.push((step.name.to_owned(), reply.status.as_u16(), normalize(&json, &mut ids)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_answer_the_script_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (_orchestrator, app) = AppProcess::with_orchestrator(dir.path()).await;
    let client = Client::new();

    let legacy = run(&client, &app.url, "legacy").await;
    let orchestration = run(&client, &app.url, "orchestration").await;
    for (l, o) in legacy.iter().zip(&orchestration) {
        assert_eq!(l, o, "step {:?} differs between the paths", l.0);
    }

    // Spot checks that the shared answers are the right ones, not just equal.
    let by_name: HashMap<&str, &(String, u16, Value)> = legacy.iter().map(|s| (s.0.as_str(), s)).collect();
    let expect = |name: &str, status: u16, code: Option<&str>| {
        let (_, s, body) = by_name[name];
        assert_eq!(*s, status, "{name}: {body}");
        if let Some(code) = code {
            assert_eq!(body["error"]["code"], code, "{name}");
        }
    };
    expect("charge", 201, None);
    expect("partial refund", 201, None);
    expect("over-refund", 400, Some("amount_too_large"));
    expect("refund the rest", 201, None);
    expect("refund a refunded charge", 400, Some("charge_already_refunded"));
    expect("replay", 201, None);
    expect("conflicting replay", 422, Some("idempotency_key_reused"));
    expect("risk decline", 422, Some("risk_declined"));
    expect("risk decline replayed", 422, Some("risk_declined"));
    expect("card decline", 422, Some("card_declined"));
    expect("unknown charge", 404, Some("resource_missing"));
    for name in ["malformed id", "id too short", "id of another kind", "id with a space"] {
        expect(name, 400, Some("parameter_invalid"));
        assert_eq!(by_name[name].2["error"]["param"], "id", "{name}");
    }
    for name in ["refund of a malformed charge id", "refund of an overlong charge id"] {
        expect(name, 400, Some("parameter_invalid"));
        assert_eq!(by_name[name].2["error"]["param"], "charge", "{name}");
    }
    expect("non-canonical path", 404, Some("route_not_found"));
    expect("refund of an unknown charge", 404, Some("resource_missing"));
    expect("missing amount", 400, Some("parameter_missing"));
    expect("negative amount", 400, Some("invalid_amount"));
    expect("uppercase currency", 400, Some("invalid_currency"));
    expect("unknown field", 400, Some("parameter_unknown"));
    expect("malformed JSON", 400, Some("invalid_json"));
    expect("body too large", 413, Some("request_too_large"));
    expect("missing idempotency key", 400, Some("idempotency_key_missing"));
    expect("unknown path", 404, Some("route_not_found"));
    expect("wrong method", 405, Some("method_not_allowed"));
    assert_eq!(by_name["charge"].2, by_name["replay"].2, "a replay returns the first response");
    assert_eq!(by_name["refund the rest"].2["amount"], 700);
    let refunded = &by_name["read refunded charge"].2;
    assert_eq!((refunded["amount_refunded"].clone(), refunded["refunded"].clone()), (json!(1000), json!(true)));
    assert_eq!(by_name["zero-decimal currency"].2["amount"], 5000);
    assert_eq!(by_name["three-decimal currency"].2["amount"], 1234);
    assert_eq!(by_name["conflicting replay"].2["error"]["type"], "idempotency_error");
    assert_eq!(by_name["refund of an unknown charge"].2["error"]["param"], "charge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_made_on_one_path_reads_the_same_on_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (_orchestrator, app) = AppProcess::with_orchestrator(dir.path()).await;
    let client = Client::new();
    let body = json!({"amount": 2500, "currency": "gbp", "source": "tok_visa"});
    let made = client
        .post(&format!("{}/v1/charges", app.url), &[("x-paymesh-route", "legacy"), ("idempotency-key", "x-1")], &body)
        .await;
    assert_eq!(made.status, 201);
    let id = made.json()["id"].as_str().unwrap().to_owned();
    let legacy = client.get(&format!("{}/v1/charges/{id}", app.url), &[("x-paymesh-route", "legacy")]).await;
    let orch = client.get(&format!("{}/v1/charges/{id}", app.url), &[("x-paymesh-route", "orchestration")]).await;
    assert_eq!(legacy.json(), orch.json());
    // Raising the migration percent moves a key from legacy to
    // orchestration: its retry must replay, not charge again.
    let retried = client
        .post(
            &format!("{}/v1/charges", app.url),
            &[("x-paymesh-route", "orchestration"), ("idempotency-key", "x-1")],
            &body,
        )
        .await;
    assert_eq!((retried.status.as_u16(), retried.json()), (201, made.json()));
}

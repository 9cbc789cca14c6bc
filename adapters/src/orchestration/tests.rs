//! Unit tests of the adapter's mapping, and of its polling against a scripted
//! HTTP server on a real socket.

use super::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;

fn usd(value: &str) -> Money {
    Money { value: value.into(), currency: "USD".into() }
}

fn wf_charge(state: &str) -> WfCharge {
    WfCharge {
        charge_ref: "ch_1".into(),
        state: state.into(),
        amount: usd("10.50"),
        refunded_amount: usd("0.00"),
        payment_method: "tok_visa".into(),
        memo: Some("m".into()),
        created_at: "2026-11-24T10:00:00.123Z".into(),
    }
}

#[test]
fn charges_map_units_currency_state_and_time() {
    let c = charge(wf_charge("CAPTURED")).unwrap();
    assert_eq!((c.amount, c.amount_refunded, c.currency.as_str()), (1050, 0, "usd"));
    assert_eq!((c.source.as_str(), c.description.as_deref()), ("tok_visa", Some("m")));
    assert!(!c.refunded);
    assert_eq!(c.created, 1_795_514_400);
    // The state and the refunded amount must agree (see `charge`).
    let refunded = |state: &str, value: &str| WfCharge { refunded_amount: usd(value), ..wf_charge(state) };
    assert!(charge(refunded("REFUNDED", "10.50")).unwrap().refunded);
    assert!(!charge(refunded("PARTIALLY_REFUNDED", "1.00")).unwrap().refunded);
    assert_eq!(charge(refunded("REFUNDED", "0.00")).unwrap_err().status, 502);
    assert_eq!(charge(wf_charge("EXPLODED")).unwrap_err().status, 502);
}

#[test]
fn zero_decimal_currencies_map_exactly() {
    let mut c = wf_charge("CAPTURED");
    c.amount = Money { value: "1000".into(), currency: "JPY".into() };
    c.refunded_amount = Money { value: "0".into(), currency: "JPY".into() };
    let c = charge(c).unwrap();
    assert_eq!((c.amount, c.currency.as_str()), (1000, "jpy"));
    assert_eq!(money(1000, "jpy").unwrap(), json!({"value": "1000", "currency": "JPY"}));
    assert_eq!(money(1050, "usd").unwrap(), json!({"value": "10.50", "currency": "USD"}));
}

#[test]
fn unrepresentable_money_is_a_bad_gateway_not_a_rounding() {
    let mut c = wf_charge("CAPTURED");
    c.amount = usd("10.505");
    assert_eq!(charge(c).unwrap_err().status, 502);
    let mut c = wf_charge("CAPTURED");
    c.created_at = "yesterday".into();
    assert_eq!(charge(c).unwrap_err().status, 502);
}

#[test]
fn refunds_and_payouts_map() {
    let r = refund(WfRefund {
        refund_ref: "re_1".into(),
        charge_ref: "ch_1".into(),
        amount: usd("5.00"),
        state: "COMPLETED".into(),
        created_at: "2026-11-24T10:00:00Z".into(),
    })
    .unwrap();
    assert_eq!((r.amount, r.charge.as_str(), r.status), (500, "ch_1", "succeeded"));
    let d = payout(WfPayout {
        payout_ref: "po_1".into(),
        amount: usd("50.00"),
        beneficiary: "acct_1".into(),
        state: "SETTLED".into(),
        created_at: "2026-11-24T10:00:00Z".into(),
    })
    .unwrap();
    assert_eq!((d.amount, d.destination.as_str(), d.status, d.object), (5000, "acct_1", "paid", "disbursement"));
}

#[test]
fn failure_reasons_map_to_the_shared_vocabulary() {
    assert_eq!(Failure::from_workflow_reason("REFUND_EXCEEDS_CAPTURED"), Some(Failure::AmountExceedsRefundable));
    assert_eq!(Failure::from_workflow_reason("PAYMENT_METHOD_DECLINED"), Some(Failure::CardDeclined));
    assert_eq!(Failure::from_workflow_reason("CHARGE_NOT_FOUND"), Some(Failure::ChargeNotFound));
    assert_eq!(Failure::from_workflow_reason("FULLY_CHARGED"), None);
}

/// Serves HTTP/1 on a port of its own, answering every request, on every
/// connection, with `handle`: the base URL.
async fn serve<H, F>(handle: H) -> String
where
    H: Fn(http::Request<hyper::body::Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let answer = handle(req);
                    async move { Ok::<_, std::convert::Infallible>(answer.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    format!("http://{addr}")
}

/// Serves `answer(n, method)` for the n-th request.
async fn scripted<F>(answer: F) -> String
where
    F: Fn(usize, &http::Method) -> (u16, Value, Duration) + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    let count = Arc::new(AtomicUsize::new(0));
    serve(move |req| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let (status, body, delay) = answer(n, req.method());
        async move {
            tokio::time::sleep(delay).await;
            http::Response::builder().status(status).body(Full::new(Bytes::from(body.to_string()))).unwrap()
        }
    })
    .await
}

fn adapter(base: &str, deadline: Duration) -> OrchestrationAdapter {
    OrchestrationAdapter::new(JsonClient::new(base, Duration::from_millis(200), Duration::from_millis(300)), deadline)
}

fn req() -> NewCharge {
    NewCharge { amount: 1050, currency: "usd".into(), source: "tok_visa".into(), description: None }
}

const CALL: Call<'static> = Call { client: "c", idempotency_key: "k", fingerprint: "f" };

fn output() -> Value {
    json!({
        "charge_ref": "ch_1", "state": "CAPTURED",
        "amount": {"value": "10.50", "currency": "USD"},
        "refunded_amount": {"value": "0.00", "currency": "USD"},
        "payment_method": "tok_visa", "memo": null, "created_at": "2026-11-24T10:00:00Z",
    })
}

#[tokio::test]
async fn running_executions_are_polled_to_completion() {
    let base = scripted(|n, _| {
        let running = json!({"execution_id": "wfx_1", "status": "RUNNING", "output": null, "failure": null});
        match n {
            0 => (202, running, Duration::ZERO),
            1 | 2 => (200, running, Duration::ZERO),
            _ => (
                200,
                json!({"execution_id": "wfx_1", "status": "SUCCEEDED", "output": output(), "failure": null}),
                Duration::ZERO,
            ),
        }
    })
    .await;
    let c = adapter(&base, Duration::from_secs(5)).create_charge(&CALL, &req()).await.unwrap();
    assert_eq!((c.id.as_str(), c.amount), ("ch_1", 1050));
}

#[tokio::test]
async fn polling_gives_up_at_the_deadline_with_a_502() {
    let base = scripted(|_, _| {
        (202, json!({"execution_id": "wfx_1", "status": "RUNNING", "output": null, "failure": null}), Duration::ZERO)
    })
    .await;
    let err = adapter(&base, Duration::from_millis(100)).create_charge(&CALL, &req()).await.unwrap_err();
    assert_eq!((err.status, err.code), (502, "upstream_error"));
}

#[tokio::test]
async fn a_duplicate_of_a_running_execution_is_a_409() {
    let base = scripted(|_, _| {
        (200, json!({"execution_id": "wfx_1", "status": "RUNNING", "deduplicated": true, "output": null, "failure": null}), Duration::ZERO)
    })
    .await;
    let err = adapter(&base, Duration::from_secs(1)).create_charge(&CALL, &req()).await.unwrap_err();
    assert_eq!((err.status, err.code), (409, "idempotency_in_progress"));
}

#[tokio::test]
async fn a_token_conflict_is_a_422_idempotency_error() {
    let base = scripted(|_, _| (409, json!({"reason": "TOKEN_CONFLICT"}), Duration::ZERO)).await;
    let err = adapter(&base, Duration::from_secs(1)).create_charge(&CALL, &req()).await.unwrap_err();
    assert_eq!((err.status, err.kind), (422, crate::ErrorType::IdempotencyError));
}

#[tokio::test]
async fn failed_executions_become_public_errors() {
    let base = scripted(|_, _| {
        (200, json!({"execution_id": "wfx_1", "status": "FAILED", "output": null, "failure": {"reason": "PAYMENT_METHOD_DECLINED", "detail": "issuer said no"}}), Duration::ZERO)
    })
    .await;
    let err = adapter(&base, Duration::from_secs(1)).create_charge(&CALL, &req()).await.unwrap_err();
    assert_eq!(err, ApiError::from(Failure::CardDeclined));
    assert!(!err.message.contains("issuer"), "backend detail must not leak");
}

#[tokio::test]
async fn a_refused_connection_is_a_503_and_a_slow_service_a_502() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = adapter(&closed, Duration::from_secs(1)).create_charge(&CALL, &req()).await.unwrap_err();
    assert_eq!(err.status, 503);

    let slow = scripted(|_, _| (200, output(), Duration::from_secs(2))).await;
    let err = adapter(&slow, Duration::from_secs(1)).get_charge(Reader::Client("c"), "ch_1").await.unwrap_err();
    assert_eq!(err.status, 502);
}

#[tokio::test]
async fn garbage_is_a_502_and_404_names_the_param() {
    let base = scripted(|n, _| match n {
        0 => (200, json!({"unexpected": true}), Duration::ZERO),
        _ => (404, json!({"reason": "NOT_FOUND"}), Duration::ZERO),
    })
    .await;
    let a = adapter(&base, Duration::from_secs(1));
    assert_eq!(a.get_charge(Reader::Client("c"), "ch_1").await.unwrap_err().status, 502);
    let err = a.get_refund(Reader::Client("c"), "re_1").await.unwrap_err();
    assert_eq!((err.status, err.param.as_deref()), (404, Some("id")));
}

/// Answers `answer(n)` and records each request's path and query.
async fn recording<F>(answer: F) -> (String, Arc<std::sync::Mutex<Vec<String>>>)
where
    F: Fn(usize) -> (u16, Value) + Send + Sync + 'static,
{
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let base = scripted(move |n, _| {
        let (status, body) = answer(n);
        (status, body, Duration::ZERO)
    })
    .await;
    // The scripted server does not see URIs: a recording front on its own
    // port forwards to it.
    let backend = JsonClient::new(&base, Duration::from_millis(200), Duration::from_secs(1));
    let front = serve(move |req: http::Request<hyper::body::Incoming>| {
        let (backend, log) = (backend.clone(), log.clone());
        async move {
            let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            log.lock().unwrap().push(format!("{} {target}", req.method()));
            let (status, body) = if req.method() == http::Method::GET {
                backend.get(&target).await.unwrap()
            } else {
                let body = http_body_util::BodyExt::collect(req.into_body()).await.unwrap().to_bytes();
                let v: Value = serde_json::from_slice(&body).unwrap();
                backend.post(&target, &v).await.unwrap()
            };
            http::Response::builder().status(status).body(Full::new(body)).unwrap()
        }
    })
    .await;
    (front, seen)
}

#[tokio::test]
async fn reads_and_polls_name_the_client_percent_encoded() {
    let (base, seen) = recording(|n| match n {
        0 => (200, output()),
        1 => (202, json!({"execution_id": "wfx_1", "status": "RUNNING", "output": null, "failure": null})),
        _ => (200, json!({"execution_id": "wfx_1", "status": "SUCCEEDED", "output": output(), "failure": null})),
    })
    .await;
    let a = adapter(&base, Duration::from_secs(5));
    a.get_charge(Reader::Client("a b&c"), "ch_1").await.unwrap();
    let call = Call { client: "a b&c", idempotency_key: "k", fingerprint: "f" };
    a.create_charge(&call, &req()).await.unwrap();
    let _ = a.get_refund(Reader::Operator, "re_1").await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], "GET /workflows/v1/charges/ch_1?client_ref=a%20b%26c");
    assert_eq!(seen[1], "POST /workflows/v1/executions");
    assert_eq!(seen[2], "GET /workflows/v1/executions/wfx_1?client_ref=a%20b%26c");
    assert_eq!(seen.last().unwrap(), "GET /workflows/v1/refunds/re_1?any_client=1");
}

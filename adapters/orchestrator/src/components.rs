//! The component endpoints the legacy path calls, one small step each:
//! idempotency, risk, authorization, capture, transfers and the ledger.
//!
//! Vocabulary: minor units, lowercase currencies, `{"error":"<code>"}` on
//! refusal. Every money-moving step is idempotent on (client, key).

use crate::http::{Resp, decode, json};
use crate::model::{Charge, Failure, Operation, Outcome, Payout, Refund};
use crate::store::{Begin, Store, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BeginReq {
    client: String,
    key: String,
    fingerprint: String,
    operation: Operation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyReq {
    client: String,
    key: String,
    #[serde(default)]
    outcome: Option<OutcomeReq>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeReq {
    resource: Option<String>,
    failure: Option<Failure>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RiskReq {
    amount: u64,
    #[allow(dead_code)]
    currency: String,
    source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthReq {
    client: String,
    key: String,
    amount: u64,
    currency: String,
    source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureReq {
    authorization: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerChargeReq {
    client: String,
    key: String,
    authorization: String,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundReq {
    client: String,
    key: String,
    charge: String,
    amount: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferReq {
    client: String,
    key: String,
    amount: u64,
    currency: String,
    destination: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerPayoutReq {
    client: String,
    key: String,
    transfer: String,
}

/// Routes `POST /components/<path>`.
pub async fn post(store: &Store, path: &[&str], body: &[u8]) -> Resp {
    match handle_post(store, path, body).await {
        Ok(r) | Err(r) => r,
    }
}

async fn handle_post(store: &Store, path: &[&str], body: &[u8]) -> Result<Resp, Resp> {
    Ok(match path {
        ["idempotency", "begin"] => {
            let r: BeginReq = decode(body)?;
            match store.begin(&r.client, &r.key, &r.fingerprint, r.operation).await.map_err(error)? {
                Begin::Started { execution } => json(201, &json!({ "state": "started", "execution": execution })),
                Begin::InProgress { .. } => json(409, &json!({ "error": "in_progress" })),
                Begin::Mismatch => json(422, &json!({ "error": "fingerprint_mismatch" })),
                Begin::Completed { outcome, .. } => {
                    json(200, &json!({ "state": "completed", "record": record(&outcome) }))
                }
            }
        }
        ["idempotency", "complete"] => {
            let r: KeyReq = decode(body)?;
            match r.outcome {
                Some(OutcomeReq { resource: Some(id), failure: None }) => {
                    store.complete_with(&r.client, &r.key, &id).await.map_err(error)?;
                }
                Some(OutcomeReq { resource: None, failure: Some(f) }) => {
                    store.complete(&r.client, &r.key, Outcome::Failure(f)).await.map_err(error)?;
                }
                _ => return Err(invalid("outcome needs exactly one of resource, failure")),
            }
            json(200, &json!({}))
        }
        ["idempotency", "release"] => {
            let r: KeyReq = decode(body)?;
            store.release(&r.client, &r.key).await.map_err(error)?;
            json(200, &json!({}))
        }
        ["risk", "assessments"] => {
            let r: RiskReq = decode(body)?;
            let decision = if store.assess_risk(r.amount, &r.source) { "approve" } else { "decline" };
            json(200, &json!({ "decision": decision }))
        }
        ["authorizations"] => {
            let r: AuthReq = decode(body)?;
            let a = store.authorize(&r.client, &r.key, r.amount, &r.currency, &r.source).await.map_err(error)?;
            json(201, &json!({ "authorization": a.id, "status": a.status }))
        }
        ["captures"] => {
            let r: CaptureReq = decode(body)?;
            store.capture(&r.authorization).await.map_err(error)?;
            json(200, &json!({ "status": "captured" }))
        }
        ["ledger", "charges"] => {
            let r: LedgerChargeReq = decode(body)?;
            let c = store.record_charge(&r.client, &r.key, &r.authorization, r.description).await.map_err(error)?;
            json(201, &charge(&c))
        }
        ["ledger", "refunds"] => {
            let r: RefundReq = decode(body)?;
            let refund = store.refund(&r.client, &r.key, &r.charge, r.amount).await.map_err(error)?;
            json(201, &self::refund(&refund))
        }
        ["transfers"] => {
            let r: TransferReq = decode(body)?;
            let t = store.transfer(&r.client, &r.key, r.amount, &r.currency, &r.destination).await.map_err(error)?;
            json(201, &json!({ "transfer": t.id, "status": "sent" }))
        }
        ["ledger", "disbursements"] => {
            let r: LedgerPayoutReq = decode(body)?;
            let p = store.record_payout(&r.client, &r.key, &r.transfer).await.map_err(error)?;
            json(201, &payout(&p))
        }
        _ => json(404, &json!({ "error": "no_such_endpoint" })),
    })
}

/// Routes `GET /components/<path>`.
pub fn get(store: &Store, path: &[&str]) -> Resp {
    let found = match path {
        ["ledger", "charges", id] => store.charge(id).map(|c| charge(&c)),
        ["ledger", "refunds", id] => store.refund_by_id(id).map(|r| refund(&r)),
        ["ledger", "disbursements", id] => store.payout(id).map(|p| payout(&p)),
        _ => return json(404, &json!({ "error": "no_such_endpoint" })),
    };
    match found {
        Some(v) => json(200, &v),
        None => json(404, &json!({ "error": "not_found" })),
    }
}

fn record(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Charge(c) => json!({ "kind": "charge", "charge": charge(c) }),
        Outcome::Refund(r) => json!({ "kind": "refund", "refund": refund(r) }),
        Outcome::Payout(p) => json!({ "kind": "disbursement", "disbursement": payout(p) }),
        Outcome::Failure(f) => json!({ "kind": "failure", "failure": f.code() }),
        Outcome::Pending => Value::Null,
    }
}

fn charge(c: &Charge) -> Value {
    json!({
        "charge_id": c.id, "amount": c.amount, "currency": c.currency, "source": c.source,
        "description": c.description, "amount_refunded": c.amount_refunded, "created_ms": c.created_ms,
    })
}

fn refund(r: &Refund) -> Value {
    json!({
        "refund_id": r.id, "charge_id": r.charge, "amount": r.amount,
        "currency": r.currency, "created_ms": r.created_ms,
    })
}

fn payout(p: &Payout) -> Value {
    json!({
        "disbursement_id": p.id, "amount": p.amount, "currency": p.currency,
        "destination": p.destination, "created_ms": p.created_ms,
    })
}

fn invalid(detail: &str) -> Resp {
    json(400, &json!({ "error": "invalid_request", "detail": detail }))
}

fn error(e: StoreError) -> Resp {
    match e {
        StoreError::Refused(Failure::ChargeNotFound) => json(404, &json!({ "error": "charge_not_found" })),
        StoreError::Refused(f) => json(422, &json!({ "error": f.code() })),
        StoreError::NotFound => json(404, &json!({ "error": "not_found" })),
        StoreError::Log(detail) => {
            tracing::error!(%detail, "store write failed");
            json(503, &json!({ "error": "storage_unavailable" }))
        }
    }
}

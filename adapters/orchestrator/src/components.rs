//! The component endpoints the legacy path calls, one small step each:
//! idempotency, risk, authorization, capture, transfers and the ledger.
//!
//! Vocabulary: minor units, lowercase currencies, `{"error":"<code>"}` on
//! refusal. Every money-moving step carries the claim `begin` handed out
//! (client, key, fingerprint, attempt) and is idempotent on it; a step of a
//! superseded attempt is refused (409 `attempt_superseded`), one whose body
//! does not match the claim or its earlier effect is 422
//! `fingerprint_mismatch`. Reads name the owning client.

use crate::http::{Resp, decode, json, reader};
use crate::model::{Charge, Failure, Operation, Outcome, Payout, Refund};
use crate::store::{Begin, Claim, Store, StoreError};
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

/// The attempt a step belongs to, as `begin` handed it out: flattened into
/// every money-moving step's body and checked in the step's transaction.
#[derive(Deserialize)]
struct ClaimReq {
    client: String,
    key: String,
    fingerprint: String,
    attempt: u64,
}

impl From<ClaimReq> for Claim {
    fn from(c: ClaimReq) -> Claim {
        Claim { client: c.client, key: c.key, fingerprint: c.fingerprint, attempt: c.attempt }
    }
}

#[derive(Deserialize)]
struct KeyReq {
    #[serde(flatten)]
    claim: ClaimReq,
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
struct AuthReq {
    #[serde(flatten)]
    claim: ClaimReq,
    amount: u64,
    currency: String,
    source: String,
}

#[derive(Deserialize)]
struct CaptureReq {
    #[serde(flatten)]
    claim: ClaimReq,
    authorization: String,
}

#[derive(Deserialize)]
struct LedgerChargeReq {
    #[serde(flatten)]
    claim: ClaimReq,
    authorization: String,
    description: Option<String>,
}

#[derive(Deserialize)]
struct RefundReq {
    #[serde(flatten)]
    claim: ClaimReq,
    charge: String,
    amount: Option<u64>,
}

#[derive(Deserialize)]
struct TransferReq {
    #[serde(flatten)]
    claim: ClaimReq,
    amount: u64,
    currency: String,
    destination: String,
}

#[derive(Deserialize)]
struct LedgerPayoutReq {
    #[serde(flatten)]
    claim: ClaimReq,
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
                Begin::Started { execution, attempt } => {
                    json(201, &json!({ "state": "started", "execution": execution, "attempt": attempt }))
                }
                Begin::InProgress { .. } => json(409, &json!({ "error": "in_progress" })),
                Begin::Mismatch => json(422, &json!({ "error": "fingerprint_mismatch" })),
                Begin::Completed { outcome, .. } => {
                    json(200, &json!({ "state": "completed", "record": record(&outcome) }))
                }
            }
        }
        ["idempotency", "complete"] => {
            let r: KeyReq = decode(body)?;
            let claim = r.claim.into();
            match r.outcome {
                Some(OutcomeReq { resource: Some(id), failure: None }) => {
                    store.complete_with(&claim, &id).await.map_err(error)?;
                }
                Some(OutcomeReq { resource: None, failure: Some(f) }) => {
                    store.complete(&claim, Outcome::Failure(f)).await.map_err(error)?;
                }
                _ => return Err(invalid("outcome needs exactly one of resource, failure")),
            }
            json(200, &json!({}))
        }
        ["idempotency", "release"] => {
            let r: KeyReq = decode(body)?;
            store.release(&r.claim.into()).await.map_err(error)?;
            json(200, &json!({}))
        }
        ["risk", "assessments"] => {
            let r: RiskReq = decode(body)?;
            let decision = if store.assess_risk(r.amount, &r.source) { "approve" } else { "decline" };
            json(200, &json!({ "decision": decision }))
        }
        ["authorizations"] => {
            let r: AuthReq = decode(body)?;
            let a = store.authorize(&r.claim.into(), r.amount, &r.currency, &r.source).await.map_err(error)?;
            json(201, &json!({ "authorization": a.id, "status": a.status }))
        }
        ["captures"] => {
            let r: CaptureReq = decode(body)?;
            store.capture(&r.claim.into(), &r.authorization).await.map_err(error)?;
            json(200, &json!({ "status": "captured" }))
        }
        ["ledger", "charges"] => {
            let r: LedgerChargeReq = decode(body)?;
            let c = store.record_charge(&r.claim.into(), &r.authorization, r.description).await.map_err(error)?;
            json(201, &charge(&c))
        }
        ["ledger", "refunds"] => {
            let r: RefundReq = decode(body)?;
            let refund = store.refund(&r.claim.into(), &r.charge, r.amount).await.map_err(error)?;
            json(201, &self::refund(&refund))
        }
        ["transfers"] => {
            let r: TransferReq = decode(body)?;
            let t = store.transfer(&r.claim.into(), r.amount, &r.currency, &r.destination).await.map_err(error)?;
            json(201, &json!({ "transfer": t.id, "status": "sent" }))
        }
        ["ledger", "disbursements"] => {
            let r: LedgerPayoutReq = decode(body)?;
            let p = store.record_payout(&r.claim.into(), &r.transfer).await.map_err(error)?;
            json(201, &payout(&p))
        }
        _ => json(404, &json!({ "error": "no_such_endpoint" })),
    })
}

/// Routes `GET /components/<path>?client=<id>` (or `?any_client=1`, an
/// operator's lookup). Another client's resource answers like an unknown id.
pub async fn get(store: &Store, path: &[&str], query: Option<&str>) -> Resp {
    let Some(reader) = reader(query, "client") else {
        return invalid("a read needs ?client=<id> (or ?any_client=1 for an operator)");
    };
    let found = match path {
        ["ledger", "charges", id] => store.charge(id, &reader).await.map(|c| c.map(|c| charge(&c))),
        ["ledger", "refunds", id] => store.refund_by_id(id, &reader).await.map(|r| r.map(|r| refund(&r))),
        ["ledger", "disbursements", id] => store.payout(id, &reader).await.map(|p| p.map(|p| payout(&p))),
        _ => return json(404, &json!({ "error": "no_such_endpoint" })),
    };
    match found {
        Ok(Some(v)) => json(200, &v),
        Ok(None) => json(404, &json!({ "error": "not_found" })),
        Err(e) => error(e),
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
        StoreError::Mismatch => json(422, &json!({ "error": "fingerprint_mismatch" })),
        StoreError::Superseded => json(409, &json!({ "error": "attempt_superseded" })),
        e @ (StoreError::Disk(_) | StoreError::Unavailable(_)) => {
            tracing::error!(error = %e, "store unavailable");
            json(503, &json!({ "error": "storage_unavailable" }))
        }
    }
}

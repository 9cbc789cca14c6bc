//! The workflow interface: what the orchestration service offers its
//! callers, in its own dialect.
//!
//! Money is `{"value":"10.50","currency":"USD"}` in major units; workflows
//! are `CHARGE`, `REFUND` and `PAYOUT`; an execution is answered at once
//! when it finishes within the sync window, else as `RUNNING`, and the
//! caller polls `GET /workflows/v1/executions/{id}`. Starting an execution
//! twice with one idempotency token returns the first (`deduplicated`).

use crate::http::{Resp, decode, json};
use crate::model::{Charge, Failure, Operation, Outcome, Payout, Refund};
use crate::store::{Begin, Store, StoreError};
use paymesh_adapters::currency;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How the service runs workflows.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Simulated latency of each component step (0 in production use).
    pub step_delay: Duration,
    /// How long a start request waits for the execution before answering
    /// `RUNNING`.
    pub sync_window: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartReq {
    workflow: String,
    client_ref: String,
    idempotency_token: String,
    request_fingerprint: String,
    input: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Money {
    value: String,
    currency: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChargeInput {
    amount: Money,
    payment_method: String,
    memo: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundInput {
    charge_ref: String,
    amount: Option<Money>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayoutInput {
    amount: Money,
    beneficiary: String,
}

/// A validated workflow request, in minor units.
enum Work {
    Charge { amount: u64, currency: String, source: String, memo: Option<String> },
    Refund { charge: String, amount: Option<Money> },
    Payout { amount: u64, currency: String, destination: String },
}

impl Work {
    fn parse(workflow: &str, input: Value) -> Result<(Operation, Work), String> {
        let invalid = |e: serde_json::Error| format!("input: {e}");
        Ok(match workflow {
            "CHARGE" => {
                let i: ChargeInput = serde_json::from_value(input).map_err(invalid)?;
                let (amount, currency) = minor(&i.amount)?;
                (Operation::Charge, Work::Charge { amount, currency, source: i.payment_method, memo: i.memo })
            }
            "REFUND" => {
                let i: RefundInput = serde_json::from_value(input).map_err(invalid)?;
                (Operation::Refund, Work::Refund { charge: i.charge_ref, amount: i.amount })
            }
            "PAYOUT" => {
                let i: PayoutInput = serde_json::from_value(input).map_err(invalid)?;
                let (amount, currency) = minor(&i.amount)?;
                (Operation::Disbursement, Work::Payout { amount, currency, destination: i.beneficiary })
            }
            other => return Err(format!("unknown workflow {other:?}")),
        })
    }
}

fn minor(m: &Money) -> Result<(u64, String), String> {
    let currency = m.currency.to_ascii_lowercase();
    currency::to_minor(&m.value, &currency)
        .filter(|v| *v > 0)
        .map(|v| (v, currency))
        .ok_or_else(|| format!("amount {:?} {:?} is not a positive amount in that currency", m.value, m.currency))
}

pub async fn start(store: &Arc<Store>, pace: Pace, body: &[u8]) -> Resp {
    let req: StartReq = match decode(body) {
        Ok(r) => r,
        Err(_) => return invalid("body is not a valid execution request"),
    };
    let (operation, work) = match Work::parse(&req.workflow, req.input) {
        Ok(w) => w,
        Err(detail) => return invalid(&detail),
    };
    let (client, token) = (req.client_ref, req.idempotency_token);
    let execution = match store.begin(&client, &token, &req.request_fingerprint, operation).await {
        Ok(Begin::Started { execution }) => execution,
        Ok(Begin::Mismatch) => return json(409, &json!({ "reason": "TOKEN_CONFLICT" })),
        Ok(Begin::InProgress { execution }) => return view(&execution, operation, &Outcome::Pending, true),
        Ok(Begin::Completed { execution, outcome }) => return view(&execution, operation, &outcome, true),
        Err(e) => return unavailable(e),
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let runner = store.clone();
    tokio::spawn(async move {
        let outcome = run(&runner, pace, &client, &token, work).await;
        let _ = done_tx.send(outcome);
    });
    match tokio::time::timeout(pace.sync_window, done_rx).await {
        Ok(Ok(Some(outcome))) => view(&execution, operation, &outcome, false),
        Ok(Ok(None)) | Ok(Err(_)) => json(503, &json!({ "reason": "STORAGE_UNAVAILABLE" })),
        Err(_) => {
            let mut resp = view(&execution, operation, &Outcome::Pending, false);
            *resp.status_mut() = http::StatusCode::ACCEPTED;
            resp
        }
    }
}

/// Runs a workflow's steps and records its outcome. `None` when the store
/// failed: the token is released so that a retry can finish the work.
async fn run(store: &Store, pace: Pace, client: &str, token: &str, work: Work) -> Option<Outcome> {
    let result = Steps { store, pace, client, token }.run(work).await;
    let outcome = match result {
        Ok(o) => o,
        Err(StoreError::Refused(f)) => Outcome::Failure(f),
        Err(e) => {
            tracing::error!(error = %e, "workflow failed; releasing its token");
            if let Err(e) = store.release(client, token).await {
                tracing::error!(error = %e, "could not release token");
            }
            return None;
        }
    };
    match store.complete(client, token, outcome.clone()).await {
        Ok(()) => Some(outcome),
        Err(e) => {
            tracing::error!(error = %e, "could not record the workflow outcome");
            None
        }
    }
}

/// One execution's component steps, each idempotent on (client, token).
struct Steps<'a> {
    store: &'a Store,
    pace: Pace,
    client: &'a str,
    token: &'a str,
}

impl Steps<'_> {
    async fn run(&self, work: Work) -> Result<Outcome, StoreError> {
        let (store, client, token) = (self.store, self.client, self.token);
        match work {
            Work::Charge { amount, currency, source, memo } => {
                self.step().await;
                if !store.assess_risk(amount, &source) {
                    return Err(Failure::RiskDeclined.into());
                }
                self.step().await;
                let auth = store.authorize(client, token, amount, &currency, &source).await?;
                self.step().await;
                store.capture(&auth.id).await?;
                self.step().await;
                Ok(Outcome::Charge(store.record_charge(client, token, &auth.id, memo).await?))
            }
            Work::Refund { charge, amount } => {
                self.step().await;
                let c = store.charge(&charge).ok_or(Failure::ChargeNotFound)?;
                let amount = match amount {
                    None => None,
                    Some(m) => match minor(&m) {
                        Ok((v, cur)) if cur == c.currency => Some(v),
                        // Money we cannot read in the charge's currency cannot
                        // be refunded from it; it is more than is refundable.
                        _ => return Err(Failure::AmountExceedsRefundable.into()),
                    },
                };
                Ok(Outcome::Refund(store.refund(client, token, &charge, amount).await?))
            }
            Work::Payout { amount, currency, destination } => {
                self.step().await;
                let t = store.transfer(client, token, amount, &currency, &destination).await?;
                self.step().await;
                Ok(Outcome::Payout(store.record_payout(client, token, &t.id).await?))
            }
        }
    }

    /// Simulated component latency (`--step-delay`).
    async fn step(&self) {
        if !self.pace.step_delay.is_zero() {
            tokio::time::sleep(self.pace.step_delay).await;
        }
    }
}

pub fn get(store: &Store, path: &[&str]) -> Resp {
    let found = match path {
        ["executions", id] => store.execution(id).map(|i| view(&i.execution, i.operation, &i.outcome, false)),
        ["charges", id] => store.charge(id).map(|c| json(200, &wf_charge(&c))),
        ["refunds", id] => store.refund_by_id(id).map(|r| json(200, &wf_refund(&r))),
        ["payouts", id] => store.payout(id).map(|p| json(200, &wf_payout(&p))),
        _ => None,
    };
    found.unwrap_or_else(|| json(404, &json!({ "reason": "NOT_FOUND" })))
}

fn view(execution: &str, operation: Operation, outcome: &Outcome, deduplicated: bool) -> Resp {
    let workflow = match operation {
        Operation::Charge => "CHARGE",
        Operation::Refund => "REFUND",
        Operation::Disbursement => "PAYOUT",
    };
    let (status, output, failure) = match outcome {
        Outcome::Pending => ("RUNNING", Value::Null, Value::Null),
        Outcome::Charge(c) => ("SUCCEEDED", wf_charge(c), Value::Null),
        Outcome::Refund(r) => ("SUCCEEDED", wf_refund(r), Value::Null),
        Outcome::Payout(p) => ("SUCCEEDED", wf_payout(p), Value::Null),
        Outcome::Failure(f) => ("FAILED", Value::Null, json!({ "reason": reason(*f), "detail": f.code() })),
    };
    json(
        200,
        &json!({
            "execution_id": execution, "workflow": workflow, "status": status,
            "deduplicated": deduplicated, "output": output, "failure": failure,
        }),
    )
}

fn reason(f: Failure) -> &'static str {
    match f {
        Failure::ChargeNotFound => "CHARGE_NOT_FOUND",
        Failure::AmountExceedsRefundable => "REFUND_EXCEEDS_CAPTURED",
        Failure::ChargeAlreadyRefunded => "CHARGE_FULLY_REFUNDED",
        Failure::RiskDeclined => "RISK_REJECTED",
        Failure::CardDeclined => "PAYMENT_METHOD_DECLINED",
    }
}

fn money(minor: u64, currency: &str) -> Value {
    json!({
        "value": currency::to_major(minor, currency).unwrap_or_else(|| minor.to_string()),
        "currency": currency.to_ascii_uppercase(),
    })
}

fn created_at(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn wf_charge(c: &Charge) -> Value {
    let state = match c.amount_refunded {
        0 => "CAPTURED",
        r if r >= c.amount => "REFUNDED",
        _ => "PARTIALLY_REFUNDED",
    };
    json!({
        "charge_ref": c.id, "state": state,
        "amount": money(c.amount, &c.currency), "refunded_amount": money(c.amount_refunded, &c.currency),
        "payment_method": c.source, "memo": c.description, "created_at": created_at(c.created_ms),
    })
}

fn wf_refund(r: &Refund) -> Value {
    json!({
        "refund_ref": r.id, "charge_ref": r.charge, "amount": money(r.amount, &r.currency),
        "state": "COMPLETED", "created_at": created_at(r.created_ms),
    })
}

fn wf_payout(p: &Payout) -> Value {
    json!({
        "payout_ref": p.id, "amount": money(p.amount, &p.currency), "beneficiary": p.destination,
        "state": "SETTLED", "created_at": created_at(p.created_ms),
    })
}

fn invalid(detail: &str) -> Resp {
    json(400, &json!({ "reason": "INVALID_INPUT", "detail": detail }))
}

fn unavailable(e: StoreError) -> Resp {
    tracing::error!(error = %e, "store unavailable");
    json(503, &json!({ "reason": "STORAGE_UNAVAILABLE" }))
}

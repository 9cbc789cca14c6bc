//! The workflow interface: what the orchestration service offers its
//! callers, in its own dialect.
//!
//! Money is `{"value":"10.50","currency":"USD"}` in major units; workflows
//! are `CHARGE`, `REFUND` and `PAYOUT`; an execution is answered at once
//! when it finishes within the sync window, else as `RUNNING`, and the
//! caller polls `GET /workflows/v1/executions/{id}`. Starting an execution
//! twice with one idempotency token returns the first (`deduplicated`).
//! Reads name the owning client (`?client_ref=`); an execution running
//! when the service stopped is resumed when it starts again.

use crate::http::{Resp, decode, json, reader};
use crate::model::{Charge, Failure, Operation, Outcome, Payout, Refund};
use crate::store::{Begin, Claim, Reader, Store, StoreError};
use paymesh_vocab::currency;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The resource kind whose orchestration-path read `--test-only-skew-amount`
/// makes answer wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Skew {
    Charge,
    Refund,
    Payout,
}

impl Skew {
    pub fn as_str(self) -> &'static str {
        match self {
            Skew::Charge => "charge",
            Skew::Refund => "refund",
            Skew::Payout => "payout",
        }
    }
}

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
    // Kept with the claim, so that an execution running when the service
    // stopped can be resumed from it at start.
    let input = req.input.to_string();
    let (operation, work) = match Work::parse(&req.workflow, req.input) {
        Ok(w) => w,
        Err(detail) => return invalid(&detail),
    };
    let (client, key, fingerprint) = (req.client_ref, req.idempotency_token, req.request_fingerprint);
    let began = store.begin_execution(&client, &key, &fingerprint, operation, &req.workflow, &input).await;
    let (execution, attempt) = match began {
        Ok(Begin::Started { execution, attempt }) => (execution, attempt),
        Ok(Begin::Mismatch) => return json(409, &json!({ "reason": "TOKEN_CONFLICT" })),
        Ok(Begin::InProgress { execution }) => return view(&execution, operation, &Outcome::Pending, true),
        Ok(Begin::Completed { execution, outcome }) => return view(&execution, operation, &outcome, true),
        Err(e) => return unavailable(e),
    };
    let claim = Claim { client, key, fingerprint, attempt };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let runner = store.clone();
    tokio::spawn(async move {
        let outcome = run(&runner, pace, &claim, work).await;
        let _ = done_tx.send(outcome);
    });
    let running = || {
        let mut resp = view(&execution, operation, &Outcome::Pending, false);
        *resp.status_mut() = http::StatusCode::ACCEPTED;
        resp
    };
    match tokio::time::timeout(pace.sync_window, done_rx).await {
        Ok(Ok(Ran::Done(outcome))) => view(&execution, operation, &outcome, false),
        // Another runner owns the execution now: the caller polls it.
        Ok(Ok(Ran::Superseded)) | Err(_) => running(),
        Ok(Ok(Ran::Failed)) | Ok(Err(_)) => json(503, &json!({ "reason": "STORAGE_UNAVAILABLE" })),
    }
}

/// Resumes the executions that were running when the service stopped: each
/// is taken over under a new attempt and run again from its kept input (its
/// steps find what the old run already did).
pub async fn resume(store: &Arc<Store>, pace: Pace) -> Result<usize, StoreError> {
    let pending = store.pending_executions().await?;
    let mut resumed = 0;
    for p in pending {
        let input = serde_json::from_str(&p.input).map_err(|e| StoreError::Unavailable(e.to_string()));
        let work = input.and_then(|i| Work::parse(&p.workflow, i).map_err(StoreError::Unavailable));
        let (_, work) = match work {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(execution = %p.execution, error = %e, "cannot resume an execution");
                continue;
            }
        };
        let Some(attempt) = store.take_over(&p.client, &p.key).await? else { continue };
        let claim = Claim { client: p.client, key: p.key, fingerprint: p.fingerprint, attempt };
        let runner = store.clone();
        tracing::info!(execution = %p.execution, attempt, "resuming a workflow execution");
        tokio::spawn(async move { run(&runner, pace, &claim, work).await });
        resumed += 1;
    }
    Ok(resumed)
}

/// How a runner ended.
enum Ran {
    Done(Outcome),
    /// A newer attempt took the execution over; it records the outcome.
    Superseded,
    /// The store failed; the key was released so that a retry can finish.
    Failed,
}

/// Runs a workflow's steps and records its outcome.
async fn run(store: &Store, pace: Pace, claim: &Claim, work: Work) -> Ran {
    let result = Steps { store, pace, claim }.run(work).await;
    let outcome = match result {
        Ok(o) => o,
        Err(StoreError::Refused(f)) => Outcome::Failure(f),
        Err(StoreError::Superseded) => return Ran::Superseded,
        Err(e) => {
            tracing::error!(error = %e, "workflow failed; releasing its token");
            if let Err(e) = store.release(claim).await {
                tracing::error!(error = %e, "could not release token");
            }
            return Ran::Failed;
        }
    };
    match store.complete(claim, outcome.clone()).await {
        Ok(()) => Ran::Done(outcome),
        Err(StoreError::Superseded) => Ran::Superseded,
        Err(e) => {
            tracing::error!(error = %e, "could not record the workflow outcome");
            if let Err(e) = store.release(claim).await {
                tracing::error!(error = %e, "could not release token");
            }
            Ran::Failed
        }
    }
}

/// One execution's component steps, each idempotent on its claim.
struct Steps<'a> {
    store: &'a Store,
    pace: Pace,
    claim: &'a Claim,
}

impl Steps<'_> {
    async fn run(&self, work: Work) -> Result<Outcome, StoreError> {
        let (store, claim) = (self.store, self.claim);
        match work {
            Work::Charge { amount, currency, source, memo } => {
                self.step().await;
                if !store.assess_risk(amount, &source) {
                    return Err(Failure::RiskDeclined.into());
                }
                self.step().await;
                let auth = store.authorize(claim, amount, &currency, &source).await?;
                self.step().await;
                store.capture(claim, &auth.id).await?;
                self.step().await;
                Ok(Outcome::Charge(store.record_charge(claim, &auth.id, memo).await?))
            }
            Work::Refund { charge, amount } => {
                self.step().await;
                let owner = Reader::Client(claim.client.clone());
                let c = store.charge(&charge, &owner).await?.ok_or(Failure::ChargeNotFound)?;
                let amount = match amount {
                    None => None,
                    Some(m) => match minor(&m) {
                        Ok((v, cur)) if cur == c.currency => Some(v),
                        // Money we cannot read in the charge's currency cannot
                        // be refunded from it; it is more than is refundable.
                        _ => return Err(Failure::AmountExceedsRefundable.into()),
                    },
                };
                Ok(Outcome::Refund(store.refund(claim, &charge, amount).await?))
            }
            Work::Payout { amount, currency, destination } => {
                self.step().await;
                let t = store.transfer(claim, amount, &currency, &destination).await?;
                self.step().await;
                Ok(Outcome::Payout(store.record_payout(claim, &t.id).await?))
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

/// `GET /workflows/v1/<kind>/<id>?client_ref=<id>` (or `?any_client=1`).
/// Another client's resource or execution answers like an unknown id.
/// With `skew`, a read of that kind of resource reports its amount one
/// minor unit high (`--test-only-skew-amount`; executions stay exact).
pub async fn get(store: &Store, skew: Option<Skew>, path: &[&str], query: Option<&str>) -> Resp {
    let Some(reader) = reader(query, "client_ref") else {
        return invalid("a read needs ?client_ref=<id> (or ?any_client=1 for an operator)");
    };
    let found =
        match path {
            ["executions", id] => {
                store.execution(id, &reader).await.map(|e| e.map(|(op, outcome)| view(id, op, &outcome, false)))
            }
            ["charges", id] => store.charge(id, &reader).await.map(|c| {
                c.map(|c| json(200, &skewed(wf_charge(&c), skew == Some(Skew::Charge), c.amount, &c.currency)))
            }),
            ["refunds", id] => store.refund_by_id(id, &reader).await.map(|r| {
                r.map(|r| json(200, &skewed(wf_refund(&r), skew == Some(Skew::Refund), r.amount, &r.currency)))
            }),
            ["payouts", id] => store.payout(id, &reader).await.map(|p| {
                p.map(|p| json(200, &skewed(wf_payout(&p), skew == Some(Skew::Payout), p.amount, &p.currency)))
            }),
            _ => Ok(None),
        };
    match found {
        Ok(Some(resp)) => resp,
        Ok(None) => json(404, &json!({ "reason": "NOT_FOUND" })),
        Err(e) => unavailable(e),
    }
}

/// A rendered resource whose `amount` is one minor unit over `amount` when
/// `on`, and everything else (a charge's state and refunded amount
/// included) as stored.
fn skewed(mut resource: Value, on: bool, amount: u64, currency: &str) -> Value {
    if on {
        resource["amount"] = money(amount.saturating_add(1), currency);
    }
    resource
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
        Outcome::Failure(f) => ("FAILED", Value::Null, json!({ "reason": f.workflow_reason(), "detail": f.code() })),
    };
    json(
        200,
        &json!({
            "execution_id": execution, "workflow": workflow, "status": status,
            "deduplicated": deduplicated, "output": output, "failure": failure,
        }),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    const PACE: Pace = Pace { step_delay: Duration::ZERO, sync_window: Duration::from_secs(10) };

    async fn body(resp: Resp) -> (u16, Value) {
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Runs a workflow to its end and returns its execution id and output.
    async fn execute(store: &Arc<Store>, workflow: &str, token: &str, input: Value) -> (String, Value) {
        let req = json!({
            "workflow": workflow, "client_ref": "c", "idempotency_token": token,
            "request_fingerprint": token, "input": input,
        });
        let (status, v) = body(start(store, PACE, req.to_string().as_bytes()).await).await;
        assert_eq!((status, v["status"].as_str()), (200, Some("SUCCEEDED")), "{v}");
        (v["execution_id"].as_str().unwrap().to_owned(), v["output"].clone())
    }

    async fn read(store: &Store, skew: Option<Skew>, path: &[&str]) -> Value {
        let (status, v) = body(get(store, skew, path, Some("client_ref=c")).await).await;
        assert_eq!(status, 200, "{path:?}: {v}");
        v
    }

    #[tokio::test]
    async fn a_skewed_kind_reads_one_minor_unit_high_and_nothing_else_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let usd = |v: &str| json!({ "value": v, "currency": "USD" });
        let (execution, charge) = execute(
            &store,
            "CHARGE",
            "ch",
            json!({ "amount": usd("10.50"), "payment_method": "tok_visa", "memo": null }),
        )
        .await;
        let id = charge["charge_ref"].as_str().unwrap().to_owned();
        let (_, refund) = execute(&store, "REFUND", "rf", json!({ "charge_ref": id, "amount": null })).await;
        let refund_id = refund["refund_ref"].as_str().unwrap().to_owned();
        let (_, payout) =
            execute(&store, "PAYOUT", "po", json!({ "amount": usd("3.00"), "beneficiary": "acct_1" })).await;
        let payout_id = payout["payout_ref"].as_str().unwrap().to_owned();

        // The charge: one cent more, its state and refunded amount as stored.
        let exact = read(&store, None, &["charges", &id]).await;
        assert_eq!((exact["amount"].clone(), exact["state"].as_str()), (usd("10.50"), Some("REFUNDED")));
        let skewed = read(&store, Some(Skew::Charge), &["charges", &id]).await;
        assert_eq!(skewed["amount"], usd("10.51"));
        let mut same = skewed.clone();
        same["amount"] = exact["amount"].clone();
        assert_eq!(same, exact, "only the amount differs");
        assert_eq!(skewed["refunded_amount"], usd("10.50"));

        // Each kind skews only its own reads.
        assert_eq!(read(&store, Some(Skew::Refund), &["refunds", &refund_id]).await["amount"], usd("10.51"));
        assert_eq!(read(&store, Some(Skew::Refund), &["charges", &id]).await, exact);
        assert_eq!(read(&store, Some(Skew::Payout), &["payouts", &payout_id]).await["amount"], usd("3.01"));
        assert_eq!(read(&store, Some(Skew::Charge), &["payouts", &payout_id]).await["amount"], usd("3.00"));

        // Executions stay exact, and so do the component (legacy) reads.
        let view = read(&store, Some(Skew::Charge), &["executions", &execution]).await;
        assert_eq!(view["output"]["amount"], usd("10.50"), "{view}");
        let comp = crate::components::get(&store, &["ledger", "charges", &id], Some("client=c")).await;
        let (status, comp) = body(comp).await;
        assert_eq!((status, comp["amount"].as_u64()), (200, Some(1050)), "{comp}");
    }

    #[tokio::test]
    async fn a_zero_decimal_currency_skews_by_one_unit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let jpy = |v: &str| json!({ "value": v, "currency": "JPY" });
        let (_, payout) =
            execute(&store, "PAYOUT", "po", json!({ "amount": jpy("500"), "beneficiary": "acct_1" })).await;
        let id = payout["payout_ref"].as_str().unwrap();
        assert_eq!(read(&store, Some(Skew::Payout), &["payouts", id]).await["amount"], jpy("501"));
        assert_eq!(read(&store, None, &["payouts", id]).await["amount"], jpy("500"));
    }
}

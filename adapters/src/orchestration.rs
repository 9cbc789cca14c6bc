//! The orchestration path: an adapter from our payment interface to the
//! orchestration service's workflow interface.
//!
//! The service speaks another dialect, and this file is the one place that
//! translates it:
//!
//! | ours                        | theirs                                          |
//! | --------------------------- | ----------------------------------------------- |
//! | charge / refund / disbursement | workflows `CHARGE` / `REFUND` / `PAYOUT`     |
//! | `1050`, `"usd"`             | `{"value":"10.50","currency":"USD"}`            |
//! | `source`, `destination`     | `payment_method`, `beneficiary`                 |
//! | `created` (unix seconds)    | `created_at` (RFC 3339)                         |
//! | synchronous answer          | an execution that may be `RUNNING`: poll it     |
//! | public error codes          | failure `reason`s in SCREAMING_CASE             |
//! | the reading client          | `?client_ref=<id>` (or `?any_client=1`) on reads |
//!
//! A request that may have reached the service is never retried on the
//! legacy path: the caller gets a 502 and retries with the same key, which
//! the service deduplicates.

use crate::currency;
use crate::http::{JsonClient, Transport};
use crate::{
    ApiError, Call, Charge, Disbursement, Failure, NewCharge, NewDisbursement, NewRefund, PaymentOrchestration, Reader,
    Refund,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WHAT: &str = "orchestration service";
const POLL_FIRST: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(200);

/// The adapter. `deadline` bounds a whole operation including polling.
///
/// Each feature has its client, so that each may be served by its own
/// orchestration service. A refund always goes where its charge is (the
/// charge read before it, and the refund itself): `refund` must reach the
/// service that holds the charges, which the app enforces at start-up.
#[derive(Clone, Debug)]
pub struct OrchestrationAdapter {
    charge: JsonClient,
    refund: JsonClient,
    disbursement: JsonClient,
    deadline: Duration,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct Money {
    value: String,
    currency: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WfCharge {
    charge_ref: String,
    state: String,
    amount: Money,
    refunded_amount: Money,
    payment_method: String,
    memo: Option<String>,
    created_at: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WfRefund {
    refund_ref: String,
    charge_ref: String,
    amount: Money,
    state: String,
    created_at: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WfPayout {
    payout_ref: String,
    amount: Money,
    beneficiary: String,
    state: String,
    created_at: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Execution {
    execution_id: String,
    status: String,
    #[serde(default)]
    deduplicated: bool,
    output: Option<Value>,
    failure: Option<WfFailure>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WfFailure {
    reason: String,
}

impl OrchestrationAdapter {
    /// One service for every feature.
    pub fn new(http: JsonClient, deadline: Duration) -> Self {
        Self::per_feature(http.clone(), http.clone(), http, deadline)
    }

    /// A service per feature; `refund` must hold the charges `charge`
    /// creates (the same service).
    pub fn per_feature(charge: JsonClient, refund: JsonClient, disbursement: JsonClient, deadline: Duration) -> Self {
        Self { charge, refund, disbursement, deadline }
    }

    /// Starts (or finds) the execution for this key on `http` and waits for
    /// its end, polling the same service.
    async fn execute(
        &self,
        http: &JsonClient,
        call: &Call<'_>,
        workflow: &str,
        input: Value,
    ) -> Result<Value, ApiError> {
        let started = Instant::now();
        let body = json!({
            "workflow": workflow,
            "client_ref": call.client,
            "idempotency_token": call.idempotency_key,
            "request_fingerprint": call.fingerprint,
            "input": input,
        });
        let (status, bytes) = http.post("/workflows/v1/executions", &body).await.map_err(|e| transport(&e))?;
        let mut exec = match status {
            200..=202 => decode::<Execution>(&bytes)?,
            409 => return Err(ApiError::idempotency_mismatch()),
            _ => return Err(unexpected(status, &bytes)),
        };
        // Someone else's request with this key is still running: DESIGN's
        // 409, not a second wait on a payment this request did not start.
        if exec.deduplicated && exec.status == "RUNNING" {
            return Err(ApiError::idempotency_in_progress());
        }
        let mut pause = POLL_FIRST;
        while exec.status == "RUNNING" {
            if started.elapsed() + pause > self.deadline {
                tracing::warn!(execution = %exec.execution_id, "execution still running at the deadline");
                return Err(ApiError::bad_gateway(WHAT));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
            let path = format!(
                "/workflows/v1/executions/{}?{}",
                exec.execution_id,
                Reader::Client(call.client).query("client_ref")
            );
            exec = match http.get(&path).await {
                Ok((200, bytes)) => decode(&bytes)?,
                Ok((status, bytes)) => return Err(unexpected(status, &bytes)),
                // A poll is a read: a transient failure is worth another try.
                Err(e) => {
                    tracing::debug!(error = %e, "poll failed; retrying");
                    continue;
                }
            };
        }
        match (exec.status.as_str(), exec.output, exec.failure) {
            ("SUCCEEDED", Some(output), _) => Ok(output),
            ("FAILED", _, Some(failure)) => {
                Err(Failure::from_workflow_reason(&failure.reason).map(ApiError::from).unwrap_or_else(|| {
                    tracing::warn!(reason = %failure.reason, "unknown failure reason");
                    ApiError::bad_gateway(WHAT)
                }))
            }
            (status, ..) => {
                tracing::warn!(status, "execution ended in an unknown state");
                Err(ApiError::bad_gateway(WHAT))
            }
        }
    }

    async fn read<T: DeserializeOwned>(
        http: &JsonClient,
        path: &str,
        param: &str,
        missing: &str,
    ) -> Result<T, ApiError> {
        match http.get(path).await.map_err(|e| transport(&e))? {
            (200, bytes) => decode(&bytes),
            (404, _) => Err(ApiError::not_found(param, missing)),
            (status, bytes) => Err(unexpected(status, &bytes)),
        }
    }
}

impl PaymentOrchestration for OrchestrationAdapter {
    async fn create_charge(&self, call: &Call<'_>, req: &NewCharge) -> Result<Charge, ApiError> {
        let input = json!({
            "amount": money(req.amount, &req.currency)?,
            "payment_method": req.source,
            "memo": req.description,
        });
        let output = self.execute(&self.charge, call, "CHARGE", input).await?;
        charge(from_value(output)?)
    }

    async fn get_charge(&self, reader: Reader<'_>, id: &str) -> Result<Charge, ApiError> {
        let path = format!("/workflows/v1/charges/{id}?{}", reader.query("client_ref"));
        charge(Self::read(&self.charge, &path, "id", "No such charge.").await?)
    }

    async fn create_refund(&self, call: &Call<'_>, req: &NewRefund) -> Result<Refund, ApiError> {
        // Their refund takes money in major units, which needs the charge's
        // currency: a read first, safe to repeat.
        let amount = match req.amount {
            None => Value::Null,
            Some(amount) => {
                // As the refunding client: another client's charge is unknown.
                let path =
                    format!("/workflows/v1/charges/{}?{}", req.charge, Reader::Client(call.client).query("client_ref"));
                let charge: WfCharge = Self::read(&self.refund, &path, "charge", "No such charge.").await?;
                money(amount, &charge.amount.currency.to_ascii_lowercase())?
            }
        };
        let input = json!({ "charge_ref": req.charge, "amount": amount });
        let output = self.execute(&self.refund, call, "REFUND", input).await?;
        refund(from_value(output)?)
    }

    async fn get_refund(&self, reader: Reader<'_>, id: &str) -> Result<Refund, ApiError> {
        let path = format!("/workflows/v1/refunds/{id}?{}", reader.query("client_ref"));
        refund(Self::read(&self.refund, &path, "id", "No such refund.").await?)
    }

    async fn create_disbursement(&self, call: &Call<'_>, req: &NewDisbursement) -> Result<Disbursement, ApiError> {
        let input = json!({
            "amount": money(req.amount, &req.currency)?,
            "beneficiary": req.destination,
        });
        let output = self.execute(&self.disbursement, call, "PAYOUT", input).await?;
        payout(from_value(output)?)
    }

    async fn get_disbursement(&self, reader: Reader<'_>, id: &str) -> Result<Disbursement, ApiError> {
        let path = format!("/workflows/v1/payouts/{id}?{}", reader.query("client_ref"));
        payout(Self::read(&self.disbursement, &path, "id", "No such disbursement.").await?)
    }
}

fn money(minor: u64, currency: &str) -> Result<Value, ApiError> {
    let value = currency::to_major(minor, currency)
        .ok_or_else(|| ApiError::invalid("invalid_currency", Some("currency"), "Unknown currency."))?;
    Ok(json!({ "value": value, "currency": currency.to_ascii_uppercase() }))
}

/// Their money back to ours: exact, or a 502 (we never round a payment).
fn minor(m: &Money) -> Result<(u64, String), ApiError> {
    let currency = m.currency.to_ascii_lowercase();
    match currency::to_minor(&m.value, &currency) {
        Some(amount) => Ok((amount, currency)),
        None => {
            tracing::warn!(value = %m.value, currency = %m.currency, "unrepresentable money from the service");
            Err(ApiError::bad_gateway(WHAT))
        }
    }
}

/// RFC 3339 to unix seconds.
fn seconds(at: &str) -> Result<u64, ApiError> {
    humantime::parse_rfc3339(at)
        .ok()
        .and_then(|t: SystemTime| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| {
            tracing::warn!(at, "bad timestamp from the service");
            ApiError::bad_gateway(WHAT)
        })
}

pub(crate) fn charge(c: WfCharge) -> Result<Charge, ApiError> {
    let (amount, currency) = minor(&c.amount)?;
    let (amount_refunded, refund_currency) = minor(&c.refunded_amount)?;
    // The state and the amounts must tell one story: a charge shown as
    // refunded with nothing refunded (or in another currency) is a bad
    // answer, not a resource to pass on.
    let consistent = match c.state.as_str() {
        "CAPTURED" => amount_refunded == 0,
        "PARTIALLY_REFUNDED" => amount_refunded > 0 && amount_refunded < amount,
        "REFUNDED" => amount_refunded == amount,
        other => {
            tracing::warn!(state = other, "unknown charge state");
            return Err(ApiError::bad_gateway(WHAT));
        }
    };
    if !consistent || refund_currency != currency {
        tracing::warn!(state = %c.state, amount, amount_refunded, %refund_currency, "inconsistent charge from the service");
        return Err(ApiError::bad_gateway(WHAT));
    }
    let refunded = amount_refunded == amount;
    Ok(Charge {
        id: c.charge_ref,
        object: Charge::OBJECT,
        amount,
        amount_refunded,
        currency,
        source: c.payment_method,
        description: c.memo,
        refunded,
        status: Charge::SUCCEEDED,
        created: seconds(&c.created_at)?,
    })
}

pub(crate) fn refund(r: WfRefund) -> Result<Refund, ApiError> {
    if r.state != "COMPLETED" {
        tracing::warn!(state = %r.state, "unknown refund state");
        return Err(ApiError::bad_gateway(WHAT));
    }
    let (amount, currency) = minor(&r.amount)?;
    Ok(Refund {
        id: r.refund_ref,
        object: Refund::OBJECT,
        charge: r.charge_ref,
        amount,
        currency,
        status: Refund::SUCCEEDED,
        created: seconds(&r.created_at)?,
    })
}

pub(crate) fn payout(p: WfPayout) -> Result<Disbursement, ApiError> {
    if p.state != "SETTLED" {
        tracing::warn!(state = %p.state, "unknown payout state");
        return Err(ApiError::bad_gateway(WHAT));
    }
    let (amount, currency) = minor(&p.amount)?;
    Ok(Disbursement {
        id: p.payout_ref,
        object: Disbursement::OBJECT,
        amount,
        currency,
        destination: p.beneficiary,
        status: Disbursement::PAID,
        created: seconds(&p.created_at)?,
    })
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        tracing::warn!(error = %e, "undecodable answer from the orchestration service");
        ApiError::bad_gateway(WHAT)
    })
}

fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| {
        tracing::warn!(error = %e, "undecodable execution output");
        ApiError::bad_gateway(WHAT)
    })
}

fn unexpected(status: u16, body: &[u8]) -> ApiError {
    tracing::warn!(status, body = %String::from_utf8_lossy(body), "unexpected answer from the orchestration service");
    if status == 503 { ApiError::unavailable(WHAT) } else { ApiError::bad_gateway(WHAT) }
}

fn transport(e: &Transport) -> ApiError {
    tracing::warn!(error = %e, "orchestration service call failed");
    if e.may_have_reached() { ApiError::bad_gateway(WHAT) } else { ApiError::unavailable(WHAT) }
}

/// What a service answer is read as, for [`read_answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerKind {
    Execution,
    Charge,
    Refund,
    Payout,
}

/// A resource read from a service answer, in the public vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// An execution's status (its output is read as the workflow's resource
    /// by the caller).
    Execution {
        status: String,
        output: Option<Value>,
        failure: Option<Failure>,
    },
    Charge(Charge),
    Refund(Refund),
    Disbursement(Disbursement),
}

/// Reads the bytes of one service answer exactly as the adapter does: the
/// entry point for the fuzz targets (a remote service's reply is untrusted
/// input too). Every refusal is the adapter's 502.
pub fn read_answer(kind: AnswerKind, bytes: &[u8]) -> Result<Answer, ApiError> {
    Ok(match kind {
        AnswerKind::Execution => {
            let e: Execution = decode(bytes)?;
            let failure = e.failure.as_ref().and_then(|f| Failure::from_workflow_reason(&f.reason));
            Answer::Execution { status: e.status, output: e.output, failure }
        }
        AnswerKind::Charge => Answer::Charge(charge(decode(bytes)?)?),
        AnswerKind::Refund => Answer::Refund(refund(decode(bytes)?)?),
        AnswerKind::Payout => Answer::Disbursement(payout(decode(bytes)?)?),
    })
}

#[cfg(test)]
mod tests;

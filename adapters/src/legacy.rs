//! The legacy path: the app orchestrates the payment components itself, as
//! the monolith did.
//!
//! A charge is idempotency begin → risk assessment → authorization → capture
//! → ledger entry → idempotency complete. Every money-moving component call
//! carries the claim that `begin` handed out (client, key, fingerprint and
//! the attempt number) and is idempotent on it, so a retry after a crash
//! anywhere in the sequence finishes the same payment instead of starting a
//! second one. The attempt number fences: once a retry has taken a stalled
//! attempt's key over, the stalled attempt's steps are refused, so the two
//! can never both move money.

use crate::http::{JsonClient, Transport};
use crate::{
    ApiError, Call, Charge, Disbursement, Failure, NewCharge, NewDisbursement, NewRefund, PaymentOrchestration, Reader,
    Refund,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

const WHAT: &str = "payment components service";

/// In-app orchestration over the component endpoints (`/components/...`).
#[derive(Clone, Debug)]
pub struct LegacyOrchestration {
    http: JsonClient,
}

#[derive(Debug, Deserialize)]
struct LedgerCharge {
    charge_id: String,
    amount: u64,
    currency: String,
    source: String,
    description: Option<String>,
    amount_refunded: u64,
    created_ms: u64,
}

#[derive(Debug, Deserialize)]
struct LedgerRefund {
    refund_id: String,
    charge_id: String,
    amount: u64,
    currency: String,
    created_ms: u64,
}

#[derive(Debug, Deserialize)]
struct LedgerDisbursement {
    disbursement_id: String,
    amount: u64,
    currency: String,
    destination: String,
    created_ms: u64,
}

/// What `idempotency/begin` found.
#[derive(Debug, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Begin {
    Started { attempt: u64 },
    Completed { record: Record },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Charge { charge: LedgerCharge },
    Refund { refund: LedgerRefund },
    Disbursement { disbursement: LedgerDisbursement },
    Failure { failure: String },
}

/// A component's error body: `{"error":"<code>"}`.
#[derive(Debug, Deserialize)]
struct ComponentError {
    error: String,
}

/// How one component step ended, short of success.
enum Step {
    /// A business refusal: recorded against the key so a retry replays it.
    Refused(Failure),
    /// Anything else: the key is released so the client can retry.
    Error(ApiError),
}

impl From<ApiError> for Step {
    fn from(e: ApiError) -> Self {
        Step::Error(e)
    }
}

impl LegacyOrchestration {
    pub fn new(http: JsonClient) -> Self {
        Self { http }
    }

    async fn call<T: DeserializeOwned>(&self, path: &str, body: Option<serde_json::Value>) -> Result<T, Step> {
        let (status, bytes) = match body {
            Some(body) => self.http.post(path, &body).await,
            None => self.http.get(path).await,
        }
        .map_err(|e| Step::Error(transport_error(path, &e)))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| {
                tracing::warn!(path, error = %e, "undecodable component response");
                Step::Error(ApiError::bad_gateway(WHAT))
            });
        }
        let code = serde_json::from_slice::<ComponentError>(&bytes).map(|e| e.error).unwrap_or_default();
        Err(match (status, code.as_str()) {
            // A retry took this attempt's key over: the retry finishes it.
            (409, "in_progress" | "attempt_superseded") => Step::Error(ApiError::idempotency_in_progress()),
            (422, "fingerprint_mismatch") => Step::Error(ApiError::idempotency_mismatch()),
            (_, code) => match failure_from_code(code) {
                Some(f) => Step::Refused(f),
                None => {
                    tracing::warn!(path, status, code, "unexpected component answer");
                    Step::Error(if status == 503 { ApiError::unavailable(WHAT) } else { ApiError::bad_gateway(WHAT) })
                }
            },
        })
    }

    /// Runs `work` under the idempotency key: replays a completed outcome,
    /// records a new one, releases the key on anything that is not an answer.
    async fn idempotent<T>(
        &self,
        call: &Call<'_>,
        operation: &str,
        from_record: impl FnOnce(Record) -> Option<T>,
        resource_id: impl Fn(&T) -> &str,
        work: impl AsyncFnOnce(&Claim<'_>) -> Result<T, Step>,
    ) -> Result<T, ApiError> {
        let begin = json!({
            "client": call.client, "key": call.idempotency_key,
            "fingerprint": call.fingerprint, "operation": operation,
        });
        let claim = match self.call::<Begin>("/components/idempotency/begin", Some(begin)).await {
            Ok(Begin::Started { attempt }) => Claim { call, attempt },
            Ok(Begin::Completed { record: Record::Failure { failure } }) => {
                return Err(failure_from_code(&failure).map(ApiError::from).unwrap_or_else(ApiError::internal));
            }
            Ok(Begin::Completed { record }) => {
                return from_record(record).ok_or_else(|| {
                    tracing::warn!(operation, "idempotency record of another operation");
                    ApiError::idempotency_mismatch()
                });
            }
            Err(Step::Refused(f)) => return Err(f.into()),
            Err(Step::Error(e)) => return Err(e),
        };
        let key = claim.with(json!({}));
        let (result, outcome) = match work(&claim).await {
            Ok(v) => {
                let outcome = json!({ "resource": resource_id(&v) });
                (Ok(v), outcome)
            }
            Err(Step::Refused(f)) => (Err(ApiError::from(f)), json!({ "failure": f.code() })),
            Err(Step::Error(e)) => {
                // Nothing definite happened that a retry could not finish:
                // every step is idempotent on the key. Free it for the retry.
                if let Err(Step::Error(release)) =
                    self.call::<serde_json::Value>("/components/idempotency/release", Some(key)).await
                {
                    tracing::warn!(error = %release, "could not release idempotency key");
                }
                return Err(e);
            }
        };
        let mut complete = key;
        complete["outcome"] = outcome;
        if let Err(Step::Error(e)) =
            self.call::<serde_json::Value>("/components/idempotency/complete", Some(complete)).await
        {
            // The outcome is already durable in the ledger; an unrecorded
            // completion only means a retry re-runs the idempotent steps.
            tracing::warn!(error = %e, "could not record idempotency outcome");
        }
        result
    }
}

/// The attempt a step runs under; every money-moving step's body carries it.
struct Claim<'a> {
    call: &'a Call<'a>,
    attempt: u64,
}

impl Claim<'_> {
    /// `body` with the claim's fields added.
    fn with(&self, mut body: serde_json::Value) -> serde_json::Value {
        let c = self.call;
        body["client"] = json!(c.client);
        body["key"] = json!(c.idempotency_key);
        body["fingerprint"] = json!(c.fingerprint);
        body["attempt"] = json!(self.attempt);
        body
    }
}

impl PaymentOrchestration for LegacyOrchestration {
    async fn create_charge(&self, call: &Call<'_>, req: &NewCharge) -> Result<Charge, ApiError> {
        let work = async |claim: &Claim<'_>| {
            let risk: serde_json::Value = self
                .call(
                    "/components/risk/assessments",
                    Some(json!({
                        "amount": req.amount, "currency": req.currency, "source": req.source,
                    })),
                )
                .await?;
            if risk["decision"] != "approve" {
                return Err(Step::Refused(Failure::RiskDeclined));
            }
            let auth: serde_json::Value = self
                .call(
                    "/components/authorizations",
                    Some(claim.with(json!({
                        "amount": req.amount, "currency": req.currency, "source": req.source,
                    }))),
                )
                .await?;
            match auth["status"].as_str() {
                // Captured: an earlier attempt of this payment got that far
                // before it died; the capture below replays as done.
                Some("authorized" | "captured") => {}
                Some("declined") => return Err(Step::Refused(Failure::CardDeclined)),
                _ => return Err(Step::Error(ApiError::bad_gateway("payment authorization"))),
            }
            let authorization = auth["authorization"].clone();
            let _: serde_json::Value =
                self.call("/components/captures", Some(claim.with(json!({ "authorization": authorization })))).await?;
            let ledger: LedgerCharge = self
                .call(
                    "/components/ledger/charges",
                    Some(claim.with(json!({ "authorization": authorization, "description": req.description }))),
                )
                .await?;
            Ok(charge(ledger))
        };
        let from_record = |r| match r {
            Record::Charge { charge: c } => Some(charge(c)),
            _ => None,
        };
        self.idempotent(call, "charge", from_record, |c: &Charge| &c.id, work).await
    }

    async fn get_charge(&self, reader: Reader<'_>, id: &str) -> Result<Charge, ApiError> {
        self.get(&format!("/components/ledger/charges/{id}?{}", reader.query("client")), "No such charge.")
            .await
            .map(charge)
    }

    async fn create_refund(&self, call: &Call<'_>, req: &NewRefund) -> Result<Refund, ApiError> {
        let work = async |claim: &Claim<'_>| {
            let ledger: LedgerRefund = self
                .call(
                    "/components/ledger/refunds",
                    Some(claim.with(json!({ "charge": req.charge, "amount": req.amount }))),
                )
                .await?;
            Ok(refund(ledger))
        };
        let from_record = |r| match r {
            Record::Refund { refund: r } => Some(refund(r)),
            _ => None,
        };
        self.idempotent(call, "refund", from_record, |r: &Refund| &r.id, work).await
    }

    async fn get_refund(&self, reader: Reader<'_>, id: &str) -> Result<Refund, ApiError> {
        self.get(&format!("/components/ledger/refunds/{id}?{}", reader.query("client")), "No such refund.")
            .await
            .map(refund)
    }

    async fn create_disbursement(&self, call: &Call<'_>, req: &NewDisbursement) -> Result<Disbursement, ApiError> {
        let work = async |claim: &Claim<'_>| {
            let transfer: serde_json::Value = self
                .call(
                    "/components/transfers",
                    Some(claim.with(json!({
                        "amount": req.amount, "currency": req.currency, "destination": req.destination,
                    }))),
                )
                .await?;
            let ledger: LedgerDisbursement = self
                .call("/components/ledger/disbursements", Some(claim.with(json!({ "transfer": transfer["transfer"] }))))
                .await?;
            Ok(disbursement(ledger))
        };
        let from_record = |r| match r {
            Record::Disbursement { disbursement: d } => Some(disbursement(d)),
            _ => None,
        };
        self.idempotent(call, "disbursement", from_record, |d: &Disbursement| &d.id, work).await
    }

    async fn get_disbursement(&self, reader: Reader<'_>, id: &str) -> Result<Disbursement, ApiError> {
        let path = format!("/components/ledger/disbursements/{id}?{}", reader.query("client"));
        self.get(&path, "No such disbursement.").await.map(disbursement)
    }
}

impl LegacyOrchestration {
    async fn get<T: DeserializeOwned>(&self, path: &str, missing: &str) -> Result<T, ApiError> {
        match self.call(path, None).await {
            Ok(v) => Ok(v),
            Err(Step::Error(e)) => Err(e),
            Err(Step::Refused(_)) => Err(ApiError::not_found("id", missing)),
        }
    }
}

fn charge(c: LedgerCharge) -> Charge {
    Charge {
        refunded: c.amount_refunded >= c.amount,
        id: c.charge_id,
        object: Charge::OBJECT,
        amount: c.amount,
        amount_refunded: c.amount_refunded,
        currency: c.currency,
        source: c.source,
        description: c.description,
        status: Charge::SUCCEEDED,
        created: c.created_ms / 1000,
    }
}

fn refund(r: LedgerRefund) -> Refund {
    Refund {
        id: r.refund_id,
        object: Refund::OBJECT,
        charge: r.charge_id,
        amount: r.amount,
        currency: r.currency,
        status: Refund::SUCCEEDED,
        created: r.created_ms / 1000,
    }
}

fn disbursement(d: LedgerDisbursement) -> Disbursement {
    Disbursement {
        id: d.disbursement_id,
        object: Disbursement::OBJECT,
        amount: d.amount,
        currency: d.currency,
        destination: d.destination,
        status: Disbursement::PAID,
        created: d.created_ms / 1000,
    }
}

/// The component vocabulary for business refusals; `not_found` is how a
/// component answers a lookup of a charge that is not there.
fn failure_from_code(code: &str) -> Option<Failure> {
    match code {
        "not_found" => Some(Failure::ChargeNotFound),
        code => Failure::from_code(code),
    }
}

fn transport_error(path: &str, e: &Transport) -> ApiError {
    tracing::warn!(path, error = %e, "component call failed");
    if e.may_have_reached() { ApiError::bad_gateway(WHAT) } else { ApiError::unavailable(WHAT) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_codes_round_trip() {
        for f in [
            Failure::ChargeNotFound,
            Failure::AmountExceedsRefundable,
            Failure::ChargeAlreadyRefunded,
            Failure::RiskDeclined,
            Failure::CardDeclined,
        ] {
            assert_eq!(failure_from_code(f.code()), Some(f));
        }
        assert_eq!(failure_from_code("something_else"), None);
    }

    #[test]
    fn ledger_records_become_public_resources() {
        let c = charge(LedgerCharge {
            charge_id: "ch_1".into(),
            amount: 1000,
            currency: "usd".into(),
            source: "tok_visa".into(),
            description: None,
            amount_refunded: 1000,
            created_ms: 1_764_000_000_999,
        });
        assert!(c.refunded);
        assert_eq!(c.created, 1_764_000_000);
        assert_eq!(c.status, "succeeded");
    }

    #[test]
    fn transport_errors_say_whether_a_retry_is_needed() {
        assert_eq!(transport_error("/x", &Transport::Connect("refused".into())).status, 503);
        assert_eq!(transport_error("/x", &Transport::Timeout).status, 502);
    }
}

//! The payment orchestration interface the app calls, and its two
//! implementations.
//!
//! [`PaymentOrchestration`] is the *target* interface: public resources in
//! minor units, public error vocabulary. Two implementations serve it:
//!
//! - [`legacy::LegacyOrchestration`] sequences the payment components itself
//!   (risk → authorize → capture → ledger), as the old monolith did;
//! - [`orchestration::OrchestrationAdapter`] adapts the remote orchestration
//!   service, whose workflow interface speaks another dialect (major units,
//!   uppercase currencies, `payout`, asynchronous executions).
//!
//! Both must answer every request with the same public response: the contract
//! test in `tests/` holds them to it. Neither ever retries a request on the
//! other path: a payment that may have reached one backend stays there.

// The table lives in the shared vocabulary: the orchestrator converts amounts too.
pub use paymesh_vocab::currency;
mod error;
mod http;
pub mod legacy;
mod model;
pub mod orchestration;

pub use error::{ApiError, ErrorType, Failure};
pub use http::{ClientTls, JsonClient, TlsError, TlsFiles, Transport};
pub use model::{Call, Charge, Disbursement, NewCharge, NewDisbursement, NewRefund, Reader, Refund};

use std::future::Future;

/// The payment operations the app needs, in the public vocabulary.
///
/// Creating calls carry a [`Call`] with the client id and idempotency key;
/// implementations must make a retried call with the same key and body
/// replay the first outcome rather than move money twice. Reads carry the
/// [`Reader`]: a resource of another client is `resource_missing`, exactly
/// like an unknown id.
pub trait PaymentOrchestration: Send + Sync {
    fn create_charge(&self, call: &Call<'_>, req: &NewCharge) -> impl Future<Output = Result<Charge, ApiError>> + Send;

    fn get_charge(&self, reader: Reader<'_>, id: &str) -> impl Future<Output = Result<Charge, ApiError>> + Send;

    fn create_refund(&self, call: &Call<'_>, req: &NewRefund) -> impl Future<Output = Result<Refund, ApiError>> + Send;

    fn get_refund(&self, reader: Reader<'_>, id: &str) -> impl Future<Output = Result<Refund, ApiError>> + Send;

    fn create_disbursement(
        &self,
        call: &Call<'_>,
        req: &NewDisbursement,
    ) -> impl Future<Output = Result<Disbursement, ApiError>> + Send;

    fn get_disbursement(
        &self,
        reader: Reader<'_>,
        id: &str,
    ) -> impl Future<Output = Result<Disbursement, ApiError>> + Send;
}

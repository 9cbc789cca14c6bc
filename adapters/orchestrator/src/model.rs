//! Records of the store, in the service's own terms: minor units and
//! lowercase currencies internally; each API renders them in its dialect.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Authorization {
    pub id: String,
    pub client: String,
    pub key: String,
    pub amount: u64,
    pub currency: String,
    pub source: String,
    pub status: AuthStatus,
    pub created_ms: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthStatus {
    Authorized,
    Declined,
    Captured,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Charge {
    pub id: String,
    pub client: String,
    pub key: String,
    pub authorization: String,
    pub amount: u64,
    pub currency: String,
    pub source: String,
    pub description: Option<String>,
    pub amount_refunded: u64,
    pub created_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub client: String,
    pub key: String,
    pub charge: String,
    pub amount: u64,
    pub currency: String,
    pub created_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Transfer {
    pub id: String,
    pub client: String,
    pub key: String,
    pub amount: u64,
    pub currency: String,
    pub destination: String,
    pub created_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Payout {
    pub id: String,
    pub client: String,
    pub key: String,
    pub transfer: String,
    pub amount: u64,
    pub currency: String,
    pub destination: String,
    pub created_ms: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Charge,
    Refund,
    Disbursement,
}

/// The first response, kept as it was so a replay returns it unchanged.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pending,
    Charge(Charge),
    Refund(Refund),
    Payout(Payout),
    Failure(Failure),
}

/// Business refusals, in the component vocabulary (`snake_case`, also how
/// outcomes are stored); the workflow API renders them as SCREAMING_CASE
/// reasons. Shared with the adapters, which read both back.
pub use paymesh_vocab::Failure;

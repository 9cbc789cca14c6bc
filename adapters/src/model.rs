//! Public resources and requests, in minor units and lowercase currencies:
//! the one shape a client sees whichever path served it.

use serde::Serialize;

/// Who is asking and under which idempotency key.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// Authenticated client id (`x-paymesh-client`).
    pub client: &'a str,
    /// The request's `Idempotency-Key`.
    pub idempotency_key: &'a str,
    /// Hash of the operation and its canonical body: same key with another
    /// fingerprint is a conflicting replay.
    pub fingerprint: &'a str,
}

/// Who reads a resource. Every resource belongs to the client that created
/// it; another client's reads answer like an unknown id. An operator's
/// lookup of any client's resource is explicit, never a default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader<'a> {
    Client(&'a str),
    Operator,
}

impl Reader<'_> {
    /// The read's query string for the orchestrator, `param` naming the
    /// client (`client` on the components, `client_ref` on the workflows);
    /// the id is percent-encoded.
    pub fn query(&self, param: &str) -> String {
        match self {
            Reader::Client(c) => {
                format!("{param}={}", percent_encoding::utf8_percent_encode(c, percent_encoding::NON_ALPHANUMERIC))
            }
            Reader::Operator => "any_client=1".to_owned(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCharge {
    pub amount: u64,
    pub currency: String,
    pub source: String,
    pub description: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRefund {
    pub charge: String,
    /// `None` refunds whatever is left on the charge.
    pub amount: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDisbursement {
    pub amount: u64,
    pub currency: String,
    pub destination: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Charge {
    pub id: String,
    pub object: &'static str,
    pub amount: u64,
    pub amount_refunded: u64,
    pub currency: String,
    pub source: String,
    pub description: Option<String>,
    pub refunded: bool,
    pub status: &'static str,
    /// Unix seconds.
    pub created: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refund {
    pub id: String,
    pub object: &'static str,
    pub charge: String,
    pub amount: u64,
    pub currency: String,
    pub status: &'static str,
    pub created: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Disbursement {
    pub id: String,
    pub object: &'static str,
    pub amount: u64,
    pub currency: String,
    pub destination: String,
    pub status: &'static str,
    pub created: u64,
}

impl Charge {
    pub const OBJECT: &'static str = "charge";
    pub const SUCCEEDED: &'static str = "succeeded";
}

impl Refund {
    pub const OBJECT: &'static str = "refund";
    pub const SUCCEEDED: &'static str = "succeeded";
}

impl Disbursement {
    pub const OBJECT: &'static str = "disbursement";
    pub const PAID: &'static str = "paid";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_is_one_percent_encoded_query_param() {
        assert_eq!(Reader::Client("a b&c=d/é").query("client"), "client=a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(Reader::Client("plain").query("client_ref"), "client_ref=plain");
        assert_eq!(Reader::Operator.query("client"), "any_client=1");
    }
}

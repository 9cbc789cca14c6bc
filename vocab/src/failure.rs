//! Business refusals of a payment, in the three vocabularies they travel
//! in: the component API's codes (`snake_case`, also how the orchestrator
//! stores them), the workflow API's reasons (`SCREAMING_CASE`), and the
//! public error a client reads (`From<Failure> for ApiError`, in
//! [`crate::error`]). Both sides of each API map with these tables, so a
//! code cannot be renamed on one side only.

use serde::{Deserialize, Serialize};

/// A refusal both orchestration paths can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    ChargeNotFound,
    AmountExceedsRefundable,
    ChargeAlreadyRefunded,
    RiskDeclined,
    CardDeclined,
}

impl Failure {
    pub const ALL: [Failure; 5] = [
        Failure::ChargeNotFound,
        Failure::AmountExceedsRefundable,
        Failure::ChargeAlreadyRefunded,
        Failure::RiskDeclined,
        Failure::CardDeclined,
    ];

    /// The component API's code (the serde name too).
    pub fn code(self) -> &'static str {
        match self {
            Failure::ChargeNotFound => "charge_not_found",
            Failure::AmountExceedsRefundable => "amount_exceeds_refundable",
            Failure::ChargeAlreadyRefunded => "charge_already_refunded",
            Failure::RiskDeclined => "risk_declined",
            Failure::CardDeclined => "card_declined",
        }
    }

    /// The refusal of an exact component code; `None` for anything else.
    pub fn from_code(code: &str) -> Option<Failure> {
        Failure::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The workflow API's `failure.reason`.
    pub fn workflow_reason(self) -> &'static str {
        match self {
            Failure::ChargeNotFound => "CHARGE_NOT_FOUND",
            Failure::AmountExceedsRefundable => "REFUND_EXCEEDS_CAPTURED",
            Failure::ChargeAlreadyRefunded => "CHARGE_FULLY_REFUNDED",
            Failure::RiskDeclined => "RISK_REJECTED",
            Failure::CardDeclined => "PAYMENT_METHOD_DECLINED",
        }
    }

    /// The refusal of an exact workflow reason; `None` for anything else.
    pub fn from_workflow_reason(reason: &str) -> Option<Failure> {
        Failure::ALL.into_iter().find(|f| f.workflow_reason() == reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vocabulary_round_trips() {
        for f in Failure::ALL {
            assert_eq!(Failure::from_code(f.code()), Some(f));
            assert_eq!(Failure::from_workflow_reason(f.workflow_reason()), Some(f));
            // The stored form (serde) is the component code.
            assert_eq!(serde_json::to_string(&f).unwrap(), format!("\"{}\"", f.code()));
            assert_eq!(serde_json::from_str::<Failure>(&format!("\"{}\"", f.code())).unwrap(), f);
        }
        assert_eq!(Failure::from_workflow_reason("REFUND_EXCEEDS_CAPTURED"), Some(Failure::AmountExceedsRefundable));
        assert_eq!(Failure::from_code("card_declined"), Some(Failure::CardDeclined));
    }

    #[test]
    fn near_misses_are_not_refusals() {
        for bad in ["", "CARD_DECLINED", "card_declined ", "charge-not-found", "not_found", "risk_d\u{e9}clined"] {
            assert_eq!(Failure::from_code(bad), None, "{bad:?}");
        }
        for bad in ["", "card_declined", "RISK_REJECTED\n", "CHARGE_NOT_FOUNDX", &"A".repeat(1 << 16)] {
            assert_eq!(Failure::from_workflow_reason(bad), None, "{bad:?}");
        }
    }
}

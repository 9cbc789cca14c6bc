//! The public error shape, built in exactly one place.
//!
//! Every error a client reads, whoever answers (the sidecar refusing a
//! request, the app, either orchestration path), is
//! `{"error":{"type":…,"code":…,"message":…,"param":…}}` from
//! [`ApiError::to_body`]. Backend details go to the log, never in here.

use std::fmt;

use serde::Serialize;

use crate::Failure;

/// `error.type` of the public shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    IdempotencyError,
    RateLimitError,
    ApiError,
}

/// An error as a client sees it: status, type, code, message, param.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: ErrorType,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

/// Written when encoding fails, which serde_json never does for this shape.
const FALLBACK_BODY: &[u8] =
    br#"{"error":{"type":"api_error","code":"internal_error","message":"An internal error occurred.","param":null}}"#;

impl ApiError {
    pub fn new(
        status: u16,
        kind: ErrorType,
        code: &'static str,
        param: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self { status, kind, code, message: message.into(), param: param.map(str::to_owned) }
    }

    pub fn invalid(code: &'static str, param: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(400, ErrorType::InvalidRequestError, code, param, message)
    }

    pub fn not_found(param: &str, message: impl Into<String>) -> Self {
        Self::new(404, ErrorType::InvalidRequestError, "resource_missing", Some(param), message)
    }

    pub fn route_not_found() -> Self {
        Self::new(404, ErrorType::InvalidRequestError, "route_not_found", None, "Unrecognized request URL.")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            ErrorType::InvalidRequestError,
            "method_not_allowed",
            None,
            "This method is not allowed on this URL.",
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            ErrorType::InvalidRequestError,
            "request_too_large",
            None,
            format!("The request body exceeds {limit} bytes."),
        )
    }

    pub fn idempotency_in_progress() -> Self {
        Self::new(
            409,
            ErrorType::IdempotencyError,
            "idempotency_in_progress",
            None,
            "A request with this Idempotency-Key is still being processed; retry later.",
        )
    }

    pub fn idempotency_mismatch() -> Self {
        Self::new(
            422,
            ErrorType::IdempotencyError,
            "idempotency_key_reused",
            None,
            "This Idempotency-Key was used with a different request.",
        )
    }

    /// The backend could not be reached: nothing happened, a retry is safe.
    pub fn unavailable(what: &str) -> Self {
        Self::new(
            503,
            ErrorType::ApiError,
            "service_unavailable",
            None,
            format!("The {what} is unavailable; retry with the same Idempotency-Key."),
        )
    }

    /// The backend may have acted but its answer is unusable or late: the
    /// client must retry with the same key to learn the outcome.
    pub fn bad_gateway(what: &str) -> Self {
        Self::new(
            502,
            ErrorType::ApiError,
            "upstream_error",
            None,
            format!("The {what} did not answer in time or answered badly; retry with the same Idempotency-Key."),
        )
    }

    pub fn internal() -> Self {
        Self::new(500, ErrorType::ApiError, "internal_error", None, "An internal error occurred.")
    }

    /// The public JSON body: the one encoder of the shape.
    pub fn to_body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            #[serde(rename = "type")]
            kind: ErrorType,
            code: &'a str,
            message: &'a str,
            param: Option<&'a str>,
        }
        let body = Body {
            error: Inner { kind: self.kind, code: self.code, message: &self.message, param: self.param.as_deref() },
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| FALLBACK_BODY.to_vec())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::ChargeNotFound => ApiError::not_found("charge", "No such charge."),
            Failure::AmountExceedsRefundable => ApiError::invalid(
                "amount_too_large",
                Some("amount"),
                "The refund amount exceeds what is left to refund on the charge.",
            ),
            Failure::ChargeAlreadyRefunded => ApiError::invalid(
                "charge_already_refunded",
                Some("charge"),
                "The charge has already been refunded in full.",
            ),
            Failure::RiskDeclined => ApiError::new(
                422,
                ErrorType::InvalidRequestError,
                "risk_declined",
                Some("source"),
                "The payment was declined by risk checks.",
            ),
            Failure::CardDeclined => ApiError::new(
                422,
                ErrorType::InvalidRequestError,
                "card_declined",
                Some("source"),
                "The card was declined.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_public_shape() {
        let body: serde_json::Value =
            serde_json::from_slice(&ApiError::from(Failure::AmountExceedsRefundable).to_body()).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "amount_too_large");
        assert_eq!(body["error"]["param"], "amount");
        let body: serde_json::Value = serde_json::from_slice(&ApiError::unavailable("x").to_body()).unwrap();
        assert_eq!(body["error"]["type"], "api_error");
        assert!(body["error"]["param"].is_null());
    }

    #[test]
    fn bodies_are_compact_in_field_order() {
        // Clients and tests compare bodies byte for byte.
        assert_eq!(
            String::from_utf8(ApiError::route_not_found().to_body()).unwrap(),
            r#"{"error":{"type":"invalid_request_error","code":"route_not_found","message":"Unrecognized request URL.","param":null}}"#
        );
        assert_eq!(
            String::from_utf8(ApiError::from(Failure::ChargeNotFound).to_body()).unwrap(),
            r#"{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such charge.","param":"charge"}}"#
        );
        assert_eq!(ApiError::internal().to_body(), FALLBACK_BODY, "the fallback is the internal error itself");
    }

    #[test]
    fn hostile_text_is_escaped_into_valid_json() {
        let nasty = "\"}\n\u{0}\u{1F4B8}</script>\\".repeat(1000);
        let e = ApiError::invalid("x", Some(&nasty), nasty.clone());
        let body: serde_json::Value = serde_json::from_slice(&e.to_body()).unwrap();
        assert_eq!(body["error"]["message"], nasty.as_str());
        assert_eq!(body["error"]["param"], nasty.as_str());
        assert_eq!(e.to_string().len(), "400 x: ".len() + nasty.len());
    }

    #[test]
    fn every_failure_is_a_4xx_naming_its_field() {
        for f in Failure::ALL {
            let e = ApiError::from(f);
            assert!((400..500).contains(&e.status) && e.param.is_some(), "{f:?}: {e}");
        }
    }
}

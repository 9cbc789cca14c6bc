//! Every answer the sidecar gives by itself, mapped to status and body once.
//!
//! Bodies follow the public error shape of DESIGN.md and are static bytes,
//! built at compile time, so rejecting a request allocates nothing for the
//! body. Internal detail never goes into a body: it goes to the log with the
//! request id.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::ProxyBody;

/// Why the sidecar answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("no API key")]
    MissingKey,
    #[error("unknown API key")]
    InvalidKey,
    #[error("client rate limit exceeded")]
    RateLimited,
    #[error("too many requests in flight")]
    Overloaded,
    #[error("request body larger than limits.max_body_bytes")]
    BodyTooLarge,
    #[error("more request header fields than the app accepts")]
    TooManyHeaders,
    #[error("app unreachable")]
    AppUnavailable,
    #[error("app failed to answer")]
    BadGateway,
    #[error("app did not answer within limits.request_timeout")]
    Timeout,
    #[error("admin request without the admin token")]
    AdminTokenMissing,
    #[error("admin request with a wrong admin token")]
    AdminTokenInvalid,
    #[error("admin request, but no admin.token_file is configured")]
    AdminTokenNotConfigured,
}

macro_rules! error_body {
    ($type:literal, $code:literal, $message:literal) => {
        concat!(
            r#"{"error":{"type":""#,
            $type,
            r#"","code":""#,
            $code,
            r#"","message":""#,
            $message,
            r#"","param":null}}"#
        )
    };
}

impl Reject {
    pub fn status(self) -> StatusCode {
        match self {
            Reject::MissingKey
            | Reject::InvalidKey
            | Reject::AdminTokenMissing
            | Reject::AdminTokenInvalid
            | Reject::AdminTokenNotConfigured => StatusCode::UNAUTHORIZED,
            Reject::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Reject::Overloaded | Reject::AppUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reject::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Reject::BadGateway => StatusCode::BAD_GATEWAY,
            Reject::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn body(self) -> &'static str {
        match self {
            Reject::MissingKey => error_body!(
                "authentication_error",
                "missing_api_key",
                "No API key provided: send Authorization: Bearer <key>."
            ),
            Reject::InvalidKey => error_body!("authentication_error", "invalid_api_key", "Invalid API key provided."),
            Reject::RateLimited => {
                error_body!("rate_limit_error", "rate_limited", "Too many requests; retry after the Retry-After delay.")
            }
            Reject::Overloaded => {
                error_body!("api_error", "overloaded", "The service is handling too many requests; retry shortly.")
            }
            Reject::BodyTooLarge => {
                error_body!("invalid_request_error", "request_too_large", "The request body is too large.")
            }
            Reject::TooManyHeaders => error_body!(
                "invalid_request_error",
                "too_many_headers",
                "The request has too many header fields (at most 100)."
            ),
            Reject::AppUnavailable => error_body!(
                "api_error",
                "service_unavailable",
                "The service is temporarily unavailable; retry shortly."
            ),
            Reject::BadGateway => {
                error_body!("api_error", "bad_gateway", "The service failed to answer; retry shortly.")
            }
            Reject::Timeout => error_body!("api_error", "timeout", "The service did not answer in time."),
            Reject::AdminTokenMissing => error_body!(
                "authentication_error",
                "missing_admin_token",
                "State-changing admin requests need Authorization: Bearer <admin token>."
            ),
            Reject::AdminTokenInvalid => {
                error_body!("authentication_error", "invalid_admin_token", "Invalid admin token provided.")
            }
            Reject::AdminTokenNotConfigured => error_body!(
                "authentication_error",
                "admin_token_not_configured",
                "State-changing admin requests are refused until admin.token_file is configured."
            ),
        }
    }

    /// The response for this rejection; `ctx` rides along so the outer
    /// layers (metrics, access log) can still label it.
    pub fn response(self) -> Response<ProxyBody> {
        let mut res = Response::new(ProxyBody::full(Bytes::from_static(self.body().as_bytes())));
        *res.status_mut() = self.status();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self == Reject::BodyTooLarge {
            // The body was refused unread: the connection cannot carry
            // another request, and saying so stops clients from reusing it.
            res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_public_errors() {
        for r in [
            Reject::MissingKey,
            Reject::InvalidKey,
            Reject::RateLimited,
            Reject::Overloaded,
            Reject::BodyTooLarge,
            Reject::TooManyHeaders,
            Reject::AppUnavailable,
            Reject::BadGateway,
            Reject::Timeout,
            Reject::AdminTokenMissing,
            Reject::AdminTokenInvalid,
            Reject::AdminTokenNotConfigured,
        ] {
            let v: serde_json::Value = serde_json::from_str(r.body()).unwrap();
            let e = &v["error"];
            let ty = e["type"].as_str().unwrap();
            let expected = match r.status().as_u16() {
                401 => "authentication_error",
                429 => "rate_limit_error",
                413 | 431 | 400 => "invalid_request_error",
                _ => "api_error",
            };
            assert_eq!(ty, expected, "{r:?}");
            assert!(e["code"].is_string() && e["message"].is_string());
            assert!(e["param"].is_null());
        }
        let limit = paymesh_vocab::limits::CLIENT_MAX_HEADERS.to_string();
        assert!(Reject::TooManyHeaders.body().contains(&format!("at most {limit})")), "the message names the limit");
    }
}

//! Every answer the sidecar gives by itself, mapped to status and body once.
//!
//! Bodies follow the public error shape of DESIGN.md, encoded by the same
//! `paymesh_vocab::ApiError` the app's errors use, once per process, so
//! rejecting a request allocates nothing for the body. Internal detail
//! never goes into a body: it goes to the log with the request id.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use paymesh_vocab::{ApiError, ErrorType, limits};

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

impl Reject {
    /// Every rejection, in declaration order (`self as usize` indexes it).
    pub const ALL: [Reject; 12] = [
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
    ];

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

    /// The rejection as a public error: what a client reads.
    pub fn api_error(self) -> ApiError {
        use ErrorType::{ApiError as Api, AuthenticationError as Auth, InvalidRequestError as Invalid, RateLimitError};
        let (kind, code, message): (ErrorType, &'static str, String) = match self {
            Reject::MissingKey => {
                (Auth, "missing_api_key", "No API key provided: send Authorization: Bearer <key>.".into())
            }
            Reject::InvalidKey => (Auth, "invalid_api_key", "Invalid API key provided.".into()),
            Reject::RateLimited => {
                (RateLimitError, "rate_limited", "Too many requests; retry after the Retry-After delay.".into())
            }
            Reject::Overloaded => {
                (Api, "overloaded", "The service is handling too many requests; retry shortly.".into())
            }
            Reject::BodyTooLarge => (Invalid, "request_too_large", "The request body is too large.".into()),
            Reject::TooManyHeaders => (
                Invalid,
                "too_many_headers",
                format!("The request has too many header fields (at most {}).", limits::CLIENT_MAX_HEADERS),
            ),
            Reject::AppUnavailable => {
                (Api, "service_unavailable", "The service is temporarily unavailable; retry shortly.".into())
            }
            Reject::BadGateway => (Api, "bad_gateway", "The service failed to answer; retry shortly.".into()),
            Reject::Timeout => (Api, "timeout", "The service did not answer in time.".into()),
            Reject::AdminTokenMissing => (
                Auth,
                "missing_admin_token",
                "State-changing admin requests need Authorization: Bearer <admin token>.".into(),
            ),
            Reject::AdminTokenInvalid => (Auth, "invalid_admin_token", "Invalid admin token provided.".into()),
            Reject::AdminTokenNotConfigured => (
                Auth,
                "admin_token_not_configured",
                "State-changing admin requests are refused until admin.token_file is configured.".into(),
            ),
        };
        ApiError::new(self.status().as_u16(), kind, code, None, message)
    }

    /// The public body, encoded once per process by the shared encoder: a
    /// rejection allocates nothing for its body.
    pub fn body(self) -> &'static str {
        static BODIES: LazyLock<[String; Reject::ALL.len()]> = LazyLock::new(|| {
            Reject::ALL.map(|r| String::from_utf8(r.api_error().to_body()).expect("serde_json writes UTF-8"))
        });
        &BODIES[self as usize]
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
        for r in Reject::ALL {
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

    #[test]
    fn all_is_in_declaration_order() {
        for (i, r) in Reject::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i, "{r:?}");
        }
    }

    #[test]
    fn bodies_are_byte_for_byte_what_clients_got_before() {
        // The bodies as the sidecar once spelled them out by hand: moving
        // to the shared encoder must not change a byte.
        fn body(ty: &str, code: &str, message: &str) -> String {
            format!(r#"{{"error":{{"type":"{ty}","code":"{code}","message":"{message}","param":null}}}}"#)
        }
        let before = [
            body("authentication_error", "missing_api_key", "No API key provided: send Authorization: Bearer <key>."),
            body("authentication_error", "invalid_api_key", "Invalid API key provided."),
            body("rate_limit_error", "rate_limited", "Too many requests; retry after the Retry-After delay."),
            body("api_error", "overloaded", "The service is handling too many requests; retry shortly."),
            body("invalid_request_error", "request_too_large", "The request body is too large."),
            body("invalid_request_error", "too_many_headers", "The request has too many header fields (at most 100)."),
            body("api_error", "service_unavailable", "The service is temporarily unavailable; retry shortly."),
            body("api_error", "bad_gateway", "The service failed to answer; retry shortly."),
            body("api_error", "timeout", "The service did not answer in time."),
            body(
                "authentication_error",
                "missing_admin_token",
                "State-changing admin requests need Authorization: Bearer <admin token>.",
            ),
            body("authentication_error", "invalid_admin_token", "Invalid admin token provided."),
            body(
                "authentication_error",
                "admin_token_not_configured",
                "State-changing admin requests are refused until admin.token_file is configured.",
            ),
        ];
        for (r, want) in Reject::ALL.into_iter().zip(before) {
            assert_eq!(r.body(), want, "{r:?}");
        }
    }
}

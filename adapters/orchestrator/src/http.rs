//! The few HTTP helpers both APIs share: JSON in, JSON out, bounded bodies.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

pub type Resp = Response<Full<Bytes>>;

pub const MAX_BODY: usize = 64 * 1024;

pub fn json<T: Serialize>(status: u16, body: &T) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Reads a body of at most [`MAX_BODY`] bytes.
pub async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, Resp> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(json(400, &json!({ "error": "invalid_request", "detail": format!("body: {e}") }))),
    }
}

/// Decodes a request body, or answers 400 naming what was wrong.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Resp> {
    serde_json::from_slice(body).map_err(|e| json(400, &json!({ "error": "invalid_request", "detail": e.to_string() })))
}

//! The few HTTP helpers both APIs share: JSON in, JSON out, bounded bodies.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::store::Reader;

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

/// Who a read is for, from its query string: `<param>=<client id>`
/// (percent-encoded) or `any_client=1` (an operator's explicit lookup).
/// `None` unless exactly one of them is given.
pub fn reader(query: Option<&str>, param: &str) -> Option<Reader> {
    let mut client = None;
    let mut any = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(v).decode_utf8().ok()?;
        if k == param && !v.is_empty() && client.is_none() {
            client = Some(v.into_owned());
        } else if k == "any_client" && v == "1" {
            any = true;
        } else {
            return None;
        }
    }
    match (client, any) {
        (Some(c), false) => Some(Reader::Client(c)),
        (None, true) => Some(Reader::Operator),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_names_exactly_one_reader() {
        assert_eq!(reader(Some("client=a%20b%26c"), "client"), Some(Reader::Client("a b&c".into())));
        assert_eq!(reader(Some("any_client=1"), "client"), Some(Reader::Operator));
        assert_eq!(reader(None, "client"), None);
        assert_eq!(reader(Some("client="), "client"), None);
        assert_eq!(reader(Some("client=a&any_client=1"), "client"), None);
        assert_eq!(reader(Some("client=a&client=b"), "client"), None);
        assert_eq!(reader(Some("any_client=0"), "client"), None);
        assert_eq!(reader(Some("client_ref=a"), "client"), None);
        assert_eq!(reader(Some("client_ref=a"), "client_ref"), Some(Reader::Client("a".into())));
    }
}

//! `POST /admin/components/{name}`: an operator pins a sheddable component.
//!
//! Body `{"enabled": true}` or `{"enabled": false}` pins the component on or
//! off whatever the switch board thinks; `{"enabled": null}` gives control
//! back to the board, which applies its own plan at once. Loopback peers
//! only, with the admin token. Every call is recorded as a switch event with reason `manual`.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{authorize, json};
use crate::components::Component;
use crate::state::Shared;

pub const PREFIX: &str = "/admin/components/";
const MAX_BODY: usize = 1024;

pub async fn handle(
    req: Request<Incoming>,
    shared: &Shared,
    peer: std::net::SocketAddr,
    name: &str,
) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return problem(StatusCode::METHOD_NOT_ALLOWED, "use POST with {\"enabled\": true|false|null}");
    }
    if let Some(refused) = authorize(&req, shared, peer) {
        return refused;
    }
    let Some(component) = Component::from_name(name) else {
        let known: Vec<_> = Component::ALL.iter().map(|c| c.as_str()).collect();
        return problem(StatusCode::NOT_FOUND, &format!("unknown component {name:?}; known: {}", known.join(", ")));
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("cannot read the body: {e}")),
    };
    let enabled = match parse(&body) {
        Ok(e) => e,
        Err(message) => return problem(StatusCode::BAD_REQUEST, &message),
    };
    let (on, control) = shared.overload.set_manual(shared, component, enabled).await;
    json(
        StatusCode::OK,
        json!({ "component": component.as_str(), "enabled": on, "control": control.as_str() }).to_string(),
    )
}

/// `{"enabled": true|false|null}`, nothing else.
fn parse(body: &[u8]) -> Result<Option<bool>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("the body must be an object: {\"enabled\": true|false|null}".into());
    };
    if let Some(other) = object.keys().find(|k| *k != "enabled") {
        return Err(format!("unknown field {other:?}; expected only \"enabled\""));
    }
    match object.get("enabled") {
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Null) => Ok(None),
        Some(other) => Err(format!("\"enabled\" must be true, false or null, not {other}")),
        None => Err("missing field \"enabled\" (true, false, or null to hand back to the switch board)".into()),
    }
}

fn problem(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, json!({ "error": message }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_enabled_and_nothing_else() {
        assert_eq!(parse(br#"{"enabled": true}"#), Ok(Some(true)));
        assert_eq!(parse(br#"{"enabled": false}"#), Ok(Some(false)));
        assert_eq!(parse(br#"{"enabled": null}"#), Ok(None));
        assert!(parse(b"{}").unwrap_err().contains("missing field"));
        assert!(parse(br#"{"enabled": "no"}"#).unwrap_err().contains("true, false or null"));
        assert!(parse(br#"{"enabled": true, "x": 1}"#).unwrap_err().contains("unknown field"));
        assert!(parse(b"[true]").is_err());
        assert!(parse(b"nope").is_err());
    }
}

//! `paymesh-app`: the thin payments app.
//!
//! It keeps only core routing: parse and validate the public request, pick
//! the orchestration path the sidecar chose (`x-paymesh-route`), call it
//! through the [`PaymentOrchestration`] interface, and render the answer.
//! It holds no state (the orchestration backend does), has no etcd client
//! (the sidecar decides routes), and trusts `x-paymesh-*` headers because
//! it listens on loopback, where only the sidecar can reach it.

pub mod validate;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use paymesh_adapters::legacy::LegacyOrchestration;
use paymesh_adapters::orchestration::OrchestrationAdapter;
use paymesh_adapters::{ApiError, Call, JsonClient, PaymentOrchestration, Reader};
use serde::Serialize;
use std::time::Duration;

/// Bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 64 * 1024;

const ROUTE: &str = "x-paymesh-route";
const CLIENT: &str = "x-paymesh-client";
const REQUEST_ID: &str = "x-request-id";
/// The client id used when the app is called without a sidecar in front.
const ANONYMOUS: &str = "anonymous";

/// Which orchestration path serves a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Legacy,
    Orchestration,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Legacy => "legacy",
            Route::Orchestration => "orchestration",
        }
    }

    /// Absent means legacy: the behaviour before any migration.
    fn from_header(value: Option<&HeaderValue>) -> Result<Route, ApiError> {
        match value.map(HeaderValue::as_bytes) {
            None | Some(b"legacy") => Ok(Route::Legacy),
            Some(b"orchestration") => Ok(Route::Orchestration),
            Some(_) => {
                Err(ApiError::invalid("invalid_route", None, "x-paymesh-route must be legacy or orchestration."))
            }
        }
    }
}

/// Settings for [`App::new`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL of the orchestration service, e.g. `http://127.0.0.1:8090`.
    pub orchestrator: String,
    pub connect_timeout: Duration,
    /// Bound on one backend call, and on a whole orchestration execution.
    pub timeout: Duration,
    /// Clients whose reads may look up any client's resource (platform
    /// operators). Everyone else reads only what they created.
    pub operator_clients: Vec<String>,
}

/// The app: both orchestration paths, ready to serve.
#[derive(Clone, Debug)]
pub struct App {
    legacy: LegacyOrchestration,
    orchestration: OrchestrationAdapter,
    operators: std::sync::Arc<[String]>,
}

/// One public operation, validated.
enum Op<'a> {
    CreateCharge(validate::Body, &'a str),
    GetCharge(&'a str),
    CreateRefund(validate::Body, &'a str),
    GetRefund(&'a str),
    CreateDisbursement(validate::Body, &'a str),
    GetDisbursement(&'a str),
}

impl App {
    pub fn new(settings: &Settings) -> App {
        let http = JsonClient::new(&settings.orchestrator, settings.connect_timeout, settings.timeout);
        App {
            legacy: LegacyOrchestration::new(http.clone()),
            orchestration: OrchestrationAdapter::new(http, settings.timeout),
            operators: settings.operator_clients.clone().into(),
        }
    }

    /// Serves one request. Never fails: every error is a public response.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let request_id = parts.headers.get(REQUEST_ID).cloned();
        let route = Route::from_header(parts.headers.get(ROUTE));
        let result = match &route {
            Ok(route) => self.dispatch(*route, &parts, body).await,
            Err(e) => Err(e.clone()),
        };
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => error_response(&e),
        };
        let headers = resp.headers_mut();
        if let Ok(route) = route {
            headers.insert(ROUTE, HeaderValue::from_static(route.as_str()));
        }
        if let Some(id) = request_id {
            headers.insert(REQUEST_ID, id);
        }
        resp
    }

    async fn dispatch(
        &self,
        route: Route,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let path = parts.uri.path();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (resource, id) = match segments.as_slice() {
            ["healthz"] if parts.method == Method::GET => {
                return Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})));
            }
            ["healthz"] => return Err(ApiError::method_not_allowed()),
            ["v1", resource] => (*resource, None),
            ["v1", resource, id] => (*resource, Some(*id)),
            _ => return Err(ApiError::route_not_found()),
        };
        let (operation, fields) = match resource {
            "charges" => ("charge", validate::CHARGE_FIELDS),
            "refunds" => ("refund", validate::REFUND_FIELDS),
            "disbursements" => ("disbursement", validate::DISBURSEMENT_FIELDS),
            _ => return Err(ApiError::route_not_found()),
        };
        let op = match (&parts.method, id) {
            (&Method::POST, None) => {
                let key = validate::idempotency_key(parts.headers.get("idempotency-key"))?;
                let bytes = read_body(parts, body).await?;
                let body = validate::parse(operation, &bytes, fields)?;
                match resource {
                    "charges" => Op::CreateCharge(body, key),
                    "refunds" => Op::CreateRefund(body, key),
                    _ => Op::CreateDisbursement(body, key),
                }
            }
            (&Method::GET, Some(id)) => {
                if !validate::resource_id(id) {
                    return Err(ApiError::not_found("id", "No such resource."));
                }
                match resource {
                    "charges" => Op::GetCharge(id),
                    "refunds" => Op::GetRefund(id),
                    _ => Op::GetDisbursement(id),
                }
            }
            _ => return Err(ApiError::method_not_allowed()),
        };
        let client = client_id(parts);
        match route {
            Route::Legacy => serve(&self.legacy, client, self.operators.iter().any(|o| o == client), op).await,
            Route::Orchestration => {
                serve(&self.orchestration, client, self.operators.iter().any(|o| o == client), op).await
            }
        }
    }
}

/// The one place a path is called: the same code for both, so that the
/// only difference between the paths is the implementation behind them.
/// Reads are the client's own, or any client's for a configured operator.
async fn serve<O: PaymentOrchestration>(
    path: &O,
    client: &str,
    operator: bool,
    op: Op<'_>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let reader = if operator { Reader::Operator } else { Reader::Client(client) };
    fn call<'a>(client: &'a str, body: &'a validate::Body, key: &'a str) -> Call<'a> {
        Call { client, idempotency_key: key, fingerprint: &body.fingerprint }
    }
    Ok(match op {
        Op::CreateCharge(body, key) => {
            let req = validate::charge(&body)?;
            json(StatusCode::CREATED, &path.create_charge(&call(client, &body, key), &req).await?)
        }
        Op::CreateRefund(body, key) => {
            let req = validate::refund(&body)?;
            json(StatusCode::CREATED, &path.create_refund(&call(client, &body, key), &req).await?)
        }
        Op::CreateDisbursement(body, key) => {
            let req = validate::disbursement(&body)?;
            json(StatusCode::CREATED, &path.create_disbursement(&call(client, &body, key), &req).await?)
        }
        Op::GetCharge(id) => json(StatusCode::OK, &path.get_charge(reader, id).await?),
        Op::GetRefund(id) => json(StatusCode::OK, &path.get_refund(reader, id).await?),
        Op::GetDisbursement(id) => json(StatusCode::OK, &path.get_disbursement(reader, id).await?),
    })
}

fn client_id(parts: &http::request::Parts) -> &str {
    parts.headers.get(CLIENT).and_then(|v| v.to_str().ok()).filter(|c| !c.is_empty()).unwrap_or(ANONYMOUS)
}

async fn read_body(parts: &http::request::Parts, body: Incoming) -> Result<Bytes, ApiError> {
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ApiError::too_large(MAX_BODY));
    }
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(MAX_BODY)),
        Err(e) => Err(ApiError::invalid("invalid_body", None, format!("The request body could not be read: {e}."))),
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, body),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a response");
            error_response(&ApiError::internal())
        }
    }
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    if e.status >= 500 {
        tracing::warn!(status = e.status, code = e.code, "request failed");
    }
    let mut resp = with_body(StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), e.to_body());
    match e.status {
        405 => {
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        }
        // The body was refused unread: the connection cannot carry another
        // request, and saying so stops clients from reusing it.
        413 => {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    resp
}

fn with_body(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

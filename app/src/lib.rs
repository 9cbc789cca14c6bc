//! `paymesh-app`: the thin payments app.
//!
//! It keeps only core routing: parse and validate the public request, pick
//! the orchestration path the sidecar chose (`x-paymesh-route`), call it
//! through the [`PaymentOrchestration`] interface, and render the answer.
//! It holds no state (the orchestration backend does), has no etcd client
//! (the sidecar decides routes), and trusts `x-paymesh-*` headers because
//! it listens on loopback, where only the sidecar can reach it.
//!
//! `x-paymesh-shadow` marks a shadow read: the sidecar fetching, after the
//! client's answer, the same resource through the other path to compare
//! them (DESIGN.md, "Shadow reads"). It is served exactly like any read;
//! but a shadow must never move money, so a request with the header and
//! any method but `GET` is refused (400 `shadow_read_only`) before anything
//! else is looked at — defence in depth behind the sidecar, which only
//! shadows reads.

pub mod backends;
pub mod validate;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use paymesh_adapters::legacy::LegacyOrchestration;
use paymesh_adapters::orchestration::OrchestrationAdapter;
use paymesh_adapters::{ApiError, Call, PaymentOrchestration, Reader};
use paymesh_otel::{KeyValue, ServerSpan};
/// Which orchestration path serves a request: one type with the sidecar.
pub use paymesh_vocab::Route;
use paymesh_vocab::{ApiPath, Feature, headers};
use serde::Serialize;
use std::time::Duration;

/// Bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 64 * 1024;

const ROUTE: &str = headers::ROUTE;
const CLIENT: &str = headers::CLIENT;
const REQUEST_ID: &str = headers::REQUEST_ID;
const SHADOW: &str = headers::SHADOW;
/// The client id used when the app is called without a sidecar in front.
const ANONYMOUS: &str = "anonymous";

/// A bounded span name: `GET /v1/charges/{id}`, `POST /v1/refunds`, or
/// the method alone for anything else (never a raw path).
fn span_name(parts: &http::request::Parts) -> String {
    let method = match parts.method.as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "PATCH" | "OPTIONS") => m,
        _ => "_OTHER",
    };
    match ApiPath::parse(parts.uri.path()) {
        Some(ApiPath { feature, id }) => {
            let collection = feature.collection().unwrap_or("other");
            format!("{method} /v1/{collection}{}", if id.is_some() { "/{id}" } else { "" })
        }
        None => method.to_owned(),
    }
}

/// The sidecar's choice of path, read from `x-paymesh-route`; absent means
/// legacy, the behaviour before any migration.
fn route_from_header(value: Option<&HeaderValue>) -> Result<Route, ApiError> {
    match value {
        None => Ok(Route::Legacy),
        Some(v) => Route::from_header(v.as_bytes()).ok_or_else(|| {
            ApiError::invalid("invalid_route", None, "x-paymesh-route must be legacy or orchestration.")
        }),
    }
}

/// A shadow request (`x-paymesh-shadow`) may only be a `GET`: checked
/// first, so that a shadow never reaches anything that could move money.
fn shadow_reads_only(parts: &http::request::Parts) -> Result<(), ApiError> {
    if parts.headers.contains_key(SHADOW) && parts.method != Method::GET {
        return Err(ApiError::invalid("shadow_read_only", None, "A shadow request may only read."));
    }
    Ok(())
}

/// Settings for [`App::new`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// The orchestration services, e.g. one at `http://127.0.0.1:8090`.
    pub backends: backends::Backends,
    pub connect_timeout: Duration,
    /// Bound on one backend call, and on a whole orchestration execution.
    pub timeout: Duration,
    /// Clients whose reads may look up any client's resource (platform
    /// operators). Everyone else reads only what they created.
    pub operator_clients: Vec<String>,
    /// Span export (`OTEL_EXPORTER_OTLP_ENDPOINT`); off by default.
    pub tracer: paymesh_otel::Tracer,
}

/// The app: both orchestration paths, ready to serve.
#[derive(Clone, Debug)]
pub struct App {
    legacy: LegacyOrchestration,
    orchestration: OrchestrationAdapter,
    operators: std::sync::Arc<[String]>,
    tracer: paymesh_otel::Tracer,
}

/// One public operation, validated. Owned, so that a money-moving one can
/// run in a task of its own.
enum Op {
    CreateCharge(validate::Body, String),
    GetCharge(String),
    CreateRefund(validate::Body, String),
    GetRefund(String),
    CreateDisbursement(validate::Body, String),
    GetDisbursement(String),
}

impl Op {
    /// Whether the operation may move money.
    fn creates(&self) -> bool {
        matches!(self, Op::CreateCharge(..) | Op::CreateRefund(..) | Op::CreateDisbursement(..))
    }
}

impl App {
    /// Fails when the backends are misconfigured (every problem named,
    /// with its flag) or a TLS file cannot be used.
    pub fn new(settings: &Settings) -> Result<App, String> {
        let clients = settings.backends.clients(settings.connect_timeout, settings.timeout)?;
        Ok(App {
            legacy: LegacyOrchestration::new(clients.legacy),
            orchestration: OrchestrationAdapter::per_feature(
                clients.charge,
                clients.refund,
                clients.disbursement,
                settings.timeout,
            ),
            operators: settings.operator_clients.clone().into(),
            tracer: settings.tracer.clone(),
        })
    }

    /// Serves one request. Never fails: every error is a public response.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let request_id = parts.headers.get(REQUEST_ID).cloned();
        let route = route_from_header(parts.headers.get(ROUTE));
        let span = ServerSpan::start(&self.tracer, &parts.headers, span_name(&parts));
        // Every log event of the request carries the trace's ids.
        let log_span = match span.ids() {
            Some((trace_id, span_id)) => tracing::info_span!("request", trace_id, span_id),
            None => tracing::Span::none(),
        };
        let work = async {
            match (shadow_reads_only(&parts), &route) {
                (Err(e), _) => Err(e),
                (Ok(()), Err(e)) => Err(e.clone()),
                (Ok(()), Ok(route)) => self.dispatch(*route, &parts, body).await,
            }
        };
        let result = span.in_span(tracing::Instrument::instrument(work, log_span)).await;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => error_response(&e),
        };
        let mut attributes = vec![KeyValue::new("paymesh.client", client_id(&parts).to_owned())];
        if let Ok(route) = route {
            attributes.push(KeyValue::new("paymesh.route", route.as_str()));
        }
        if parts.headers.contains_key(SHADOW) {
            attributes.push(KeyValue::new("paymesh.shadow", true));
        }
        span.finish(resp.status().as_u16(), attributes);
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
        if path == "/healthz" {
            if parts.method == Method::GET {
                return Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})));
            }
            return Err(ApiError::method_not_allowed());
        }
        // The sidecar chose the route from this same parse: a path it did
        // not read as a feature is not one here either.
        let ApiPath { feature, id } = ApiPath::parse(path).ok_or_else(ApiError::route_not_found)?;
        let (operation, fields) = match feature {
            Feature::Charge => ("charge", validate::CHARGE_FIELDS),
            Feature::Refund => ("refund", validate::REFUND_FIELDS),
            Feature::Disbursement => ("disbursement", validate::DISBURSEMENT_FIELDS),
            Feature::Other => return Err(ApiError::route_not_found()),
        };
        let op = match (&parts.method, id) {
            (&Method::POST, None) => {
                let key = validate::idempotency_key(parts.headers.get("idempotency-key"))?.to_owned();
                let bytes = read_body(parts, body).await?;
                let body = validate::parse(operation, &bytes, fields)?;
                match feature {
                    Feature::Charge => Op::CreateCharge(body, key),
                    Feature::Refund => Op::CreateRefund(body, key),
                    _ => Op::CreateDisbursement(body, key),
                }
            }
            (&Method::GET, Some(id)) => {
                let id = validate::path_id(feature, id)?.to_owned();
                match feature {
                    Feature::Charge => Op::GetCharge(id),
                    Feature::Refund => Op::GetRefund(id),
                    _ => Op::GetDisbursement(id),
                }
            }
            _ => return Err(ApiError::method_not_allowed()),
        };
        let client = client_id(parts).to_owned();
        if !op.creates() {
            return self.serve(route, &client, op).await;
        }
        // A payment that has started is finished even if its caller goes
        // away (a sidecar timeout, a client hang-up): hyper drops this
        // handler then, and a step sequence cut after `authorize` would
        // leave an uncaptured authorization and a key stuck in progress.
        // The task runs to its end; a retry with the same key replays it.
        let (app, span) = (self.clone(), paymesh_otel::current_span());
        let task = tokio::spawn(span.in_span(async move { app.serve(route, &client, op).await }));
        task.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "payment task failed");
            Err(ApiError::internal())
        })
    }

    async fn serve(&self, route: Route, client: &str, op: Op) -> Result<Response<Full<Bytes>>, ApiError> {
        match route {
            Route::Orchestration => {
                serve(&self.orchestration, client, self.operators.iter().any(|o| o == client), op).await
            }
            // `None` is a sidecar label that no header parses to; were it
            // here, legacy is the path that served before any migration.
            Route::Legacy | Route::None => {
                serve(&self.legacy, client, self.operators.iter().any(|o| o == client), op).await
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
    op: Op,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let reader = if operator { Reader::Operator } else { Reader::Client(client) };
    fn call<'a>(client: &'a str, body: &'a validate::Body, key: &'a str) -> Call<'a> {
        Call { client, idempotency_key: key, fingerprint: &body.fingerprint }
    }
    Ok(match op {
        Op::CreateCharge(body, key) => {
            let req = validate::charge(&body)?;
            json(StatusCode::CREATED, &path.create_charge(&call(client, &body, &key), &req).await?)
        }
        Op::CreateRefund(body, key) => {
            let req = validate::refund(&body)?;
            json(StatusCode::CREATED, &path.create_refund(&call(client, &body, &key), &req).await?)
        }
        Op::CreateDisbursement(body, key) => {
            let req = validate::disbursement(&body)?;
            json(StatusCode::CREATED, &path.create_disbursement(&call(client, &body, &key), &req).await?)
        }
        Op::GetCharge(id) => json(StatusCode::OK, &path.get_charge(reader, &id).await?),
        Op::GetRefund(id) => json(StatusCode::OK, &path.get_refund(reader, &id).await?),
        Op::GetDisbursement(id) => json(StatusCode::OK, &path.get_disbursement(reader, &id).await?),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, shadow: bool) -> http::request::Parts {
        let mut req = Request::builder().method(method).uri("/v1/charges");
        if shadow {
            req = req.header(SHADOW, "1");
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_shadow_request_may_only_read() {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::HEAD] {
            let e = shadow_reads_only(&parts(method.clone(), true)).unwrap_err();
            assert_eq!(
                (e.status, e.code, e.message.as_str()),
                (400, "shadow_read_only", "A shadow request may only read.")
            );
            let body: serde_json::Value = serde_json::from_slice(&e.to_body()).unwrap();
            assert_eq!(body["error"]["type"], "invalid_request_error", "{method}");
            assert!(shadow_reads_only(&parts(method, false)).is_ok());
        }
        assert!(shadow_reads_only(&parts(Method::GET, true)).is_ok());
    }
}

//! Each step against a stand-in app, on the state `test_util` builds: no
//! sockets, no background tasks.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};
use tower::{Service, ServiceExt};

use tower::Layer;

use crate::body::ProxyBody;
use crate::ctx::{Answer, Call, Ctx};
use crate::layers::auth::Auth;
use crate::layers::body_limit::BodyLimit;
use crate::layers::exchange::{AppRequest, Exchange};
use crate::layers::header_limit::HeaderLimit;
use crate::layers::load_shed::LoadShed;
use crate::layers::throttle::Throttle;
use crate::layers::{Filter, StepLayer};
use crate::migration::{Feature, Source};
use crate::stack::{Handles, around};
use crate::test_util;

const KEY: &str = "sk_test_layers_1";

fn yaml(extra: &str) -> String {
    let digest: String = Sha256::digest(KEY).iter().map(|b| format!("{b:02x}")).collect();
    format!(
        r#"listen: "127.0.0.1:0"
app: "127.0.0.1:9"
admin: "127.0.0.1:0"
clients:
  - id: shop
    api_key_sha256: "{digest}"
    rate: {{ per_second: 1, burst: 2 }}
migration:
  etcd_endpoints: []
{extra}"#
    )
}

/// What the stand-in app saw of each request it was handed.
#[derive(Debug, Default)]
struct Seen {
    requests: Vec<http::HeaderMap>,
}

/// The app: answers 200 at once, or never when `hang`.
#[derive(Debug, Clone)]
struct App {
    seen: Arc<Mutex<Seen>>,
    hang: bool,
}

impl<B: Send + 'static> Service<AppRequest<B>> for App {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, AppRequest { req, .. }: AppRequest<B>) -> Self::Future {
        self.seen.lock().unwrap().requests.push(req.headers().clone());
        let hang = self.hang;
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Ok(Response::new(ProxyBody::full(Bytes::from_static(b"{}"))))
        })
    }
}

struct Rig {
    handles: Handles,
    seen: Arc<Mutex<Seen>>,
    log: tempfile::NamedTempFile,
    hang: bool,
}

impl Rig {
    fn new(extra: &str) -> Rig {
        let log = tempfile::NamedTempFile::new().unwrap();
        let handles = test_util::handles(test_util::config(&yaml(extra)), Some(log.path()));
        Rig { handles, seen: Arc::default(), log, hang: false }
    }

    fn hanging(mut self) -> Rig {
        self.hang = true;
        self
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Response<crate::stack::ResponseBody> {
        let app = App { seen: self.seen.clone(), hang: self.hang };
        let svc = around(&self.handles, app);
        svc.oneshot(test_util::accepted(req)).await.unwrap()
    }

    fn app_calls(&self) -> usize {
        self.seen.lock().unwrap().requests.len()
    }

    /// The access log's lines, once the writer has caught up.
    fn log_lines(&self) -> Vec<serde_json::Value> {
        assert!(self.handles.access_log.sync(Duration::from_secs(5)), "access log synced");
        std::fs::read_to_string(self.log.path())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON access-log line"))
            .collect()
    }

    fn requests_total(&self, feature: &str, route: &str, class: &str) -> u64 {
        let text = self.handles.metrics.render(&self.handles.migration, &self.handles.components);
        let want = format!(r#"paymesh_requests_total{{code="{class}",feature="{feature}",route="{route}"}}"#);
        text.lines().find_map(|l| l.strip_prefix(&want)).map_or(0, |v| v.trim().parse().unwrap())
    }
}

fn charge(key: Option<&str>) -> Request<Full<Bytes>> {
    let mut b =
        Request::post("/v1/charges").header("idempotency-key", "k-1").header("x-paymesh-route", "orchestration");
    if let Some(key) = key {
        b = b.header("authorization", format!("Bearer {key}"));
    }
    b.body(Full::new(Bytes::from_static(b"{}"))).unwrap()
}

#[tokio::test]
async fn an_unauthenticated_request_never_reaches_the_throttle_or_the_app() {
    let rig = Rig::new("");
    for key in [None, Some("sk_wrong")] {
        let res = rig.send(charge(key)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(rig.app_calls(), 0);
    // The bucket (burst 2) is untouched by the refusals: two pass now.
    for _ in 0..2 {
        assert_eq!(rig.send(charge(Some(KEY))).await.status(), StatusCode::OK);
    }
    let res = rig.send(charge(Some(KEY))).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(rig.app_calls(), 2);
}

#[tokio::test]
async fn the_app_sees_the_sidecar_headers_only() {
    let rig = Rig::new("");
    let res = rig.send(charge(Some(KEY))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let request_id = res.headers()["x-request-id"].clone();
    let seen = rig.seen.lock().unwrap();
    let headers = &seen.requests[0];
    assert_eq!(headers["x-paymesh-client"], "shop");
    // The client's own x-paymesh-route is gone; the sidecar's choice (the
    // defaults: charge at 0 %) is what the app sees.
    assert_eq!(headers.get_all("x-paymesh-route").iter().collect::<Vec<_>>(), ["legacy"]);
    assert!(!headers.contains_key("authorization"), "the key stops at the sidecar");
    assert_eq!(headers["x-request-id"], request_id);
}

#[tokio::test]
async fn the_route_follows_the_migration_table() {
    let rig = Rig::new("");
    rig.handles.migration.set(Feature::Charge, 10_000, Source::Etcd);
    assert_eq!(rig.send(charge(Some(KEY))).await.status(), StatusCode::OK);
    assert_eq!(rig.seen.lock().unwrap().requests[0]["x-paymesh-route"], "orchestration");
    assert_eq!(rig.requests_total("charge", "orchestration", "2xx"), 1);
}

#[tokio::test]
async fn over_max_inflight_is_503_before_authentication() {
    let rig = Rig::new("limits: { max_inflight: 1 }\n");
    // One request already in flight (the gauge the metrics step raises).
    rig.handles.metrics.inflight.inc();
    let res = rig.send(charge(Some("sk_wrong"))).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    rig.handles.metrics.inflight.dec();
    assert_eq!(rig.send(charge(Some(KEY))).await.status(), StatusCode::OK);
    assert_eq!(rig.handles.metrics.inflight.get(), 0, "the gauge comes back to zero");
}

#[tokio::test]
async fn too_many_headers_and_a_declared_body_over_the_limit_are_refused_unsent() {
    let rig = Rig::new("limits: { max_body_bytes: 10 }\n");
    let mut req = charge(Some(KEY));
    for i in 0..=paymesh_vocab::limits::CLIENT_MAX_HEADERS {
        req.headers_mut().append("x-pad", http::HeaderValue::from(i));
    }
    assert_eq!(rig.send(req).await.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let mut req = charge(Some(KEY));
    req.headers_mut().insert("content-length", http::HeaderValue::from(11));
    assert_eq!(rig.send(req).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(rig.app_calls(), 0);
}

#[tokio::test]
async fn an_app_past_the_deadline_is_504_with_the_requests_labels() {
    let rig = Rig::new("limits: { request_timeout: 50ms }\n").hanging();
    let res = rig.send(charge(Some(KEY))).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("timeout"), "{body:?}");
    let line = rig.log_lines().pop().expect("a line for the 504");
    assert_eq!((line["status"].as_u64(), line["client"].as_str()), (Some(504), Some("shop")));
    assert_eq!(line["route"], "legacy");
    assert_eq!(rig.requests_total("charge", "legacy", "5xx"), 1);
}

#[tokio::test]
async fn a_request_cancelled_before_its_answer_is_logged_and_counted_as_499() {
    let rig = Rig::new("").hanging();
    let cancelled = tokio::time::timeout(Duration::from_millis(50), rig.send(charge(Some(KEY)))).await;
    assert!(cancelled.is_err(), "the app never answers; the client gives up");
    let line = rig.log_lines().pop().expect("a line for the cancelled request");
    assert_eq!(line["status"], 499);
    assert_eq!((line["client"].as_str(), line["feature"].as_str()), (Some("shop"), Some("charge")));
    assert_eq!(line["route"], "legacy", "what the request had reached");
    assert_eq!(rig.requests_total("charge", "legacy", "4xx"), 1);
    assert_eq!(rig.handles.metrics.inflight.get(), 0);
}

// Each filter alone, on a call made from the rig's snapshot.

fn call(rig: &Rig, req: Request<Full<Bytes>>) -> Call<Full<Bytes>> {
    let n = req.headers().len();
    Call { ctx: Ctx::new(test_util::conn(), rig.handles.live.load_full(), n), req }
}

fn status<T>(checked: Result<T, Answer<ProxyBody>>) -> Option<StatusCode> {
    checked.err().map(|a| a.res.status())
}

#[test]
fn auth_alone_proves_the_client_or_answers_401() {
    let rig = Rig::new("");
    let ok = Auth.check(call(&rig, charge(Some(KEY)))).expect("a configured key");
    assert_eq!(&*ok.client().id, "shop");
    let call_ = ok.into_call();
    assert_eq!(call_.ctx.client.as_ref().map(|c| &*c.id), Some("shop"));
    assert_eq!(call_.req.headers()["x-paymesh-client"], "shop");
    assert!(!call_.req.headers().contains_key("authorization"));
    assert_eq!(status(Auth.check(call(&rig, charge(None)))), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(status(Auth.check(call(&rig, charge(Some("Basic x"))))), Some(StatusCode::UNAUTHORIZED));
}

#[test]
fn throttle_alone_charges_each_authenticated_call() {
    let rig = Rig::new("");
    let throttle = Throttle::new(rig.handles.components.clone());
    let authed = || Auth.check(call(&rig, charge(Some(KEY)))).unwrap();
    assert!(throttle.check(authed()).is_ok());
    assert!(throttle.check(authed()).is_ok());
    let refused = throttle.check(authed()).expect_err("burst 2 spent");
    assert_eq!(refused.res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.res.headers()["ratelimit-limit"], "2");
    assert_eq!(refused.ctx.client.as_ref().map(|c| &*c.id), Some("shop"), "the answer names the client");
}

#[test]
fn header_and_body_limits_and_load_shedding_alone() {
    let rig = Rig::new("limits: { max_body_bytes: 10, max_inflight: 1 }\n");
    let mut req = charge(Some(KEY));
    req.headers_mut().insert("content-length", http::HeaderValue::from(10));
    assert!(BodyLimit.check(call(&rig, req)).is_ok(), "at the limit");
    let mut req = charge(Some(KEY));
    req.headers_mut().insert("content-length", http::HeaderValue::from(11));
    assert_eq!(status(BodyLimit.check(call(&rig, req))), Some(StatusCode::PAYLOAD_TOO_LARGE));

    let mut c = call(&rig, charge(Some(KEY)));
    c.ctx.client_headers = paymesh_vocab::limits::CLIENT_MAX_HEADERS;
    assert!(HeaderLimit.check(c).is_ok());
    let mut c = call(&rig, charge(Some(KEY)));
    c.ctx.client_headers = paymesh_vocab::limits::CLIENT_MAX_HEADERS + 1;
    assert_eq!(status(HeaderLimit.check(c)), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));

    let gauge = prometheus::IntGauge::new("inflight", "test").unwrap();
    let shed = LoadShed::new(gauge.clone());
    gauge.set(1); // this request alone
    assert!(shed.check(call(&rig, charge(Some(KEY)))).is_ok());
    gauge.set(2);
    assert_eq!(status(shed.check(call(&rig, charge(Some(KEY))))), Some(StatusCode::SERVICE_UNAVAILABLE));
}

#[tokio::test]
async fn the_exchange_alone_restores_the_context_on_the_apps_answer_and_its_own_504() {
    let rig = Rig::new("limits: { request_timeout: 50ms }\n");
    for (hang, want) in [(false, StatusCode::OK), (true, StatusCode::GATEWAY_TIMEOUT)] {
        let app = App { seen: rig.seen.clone(), hang };
        let mut exchange = StepLayer(Exchange).layer(app);
        let mut c = call(&rig, charge(Some(KEY)));
        c.ctx.feature = Feature::Refund;
        let answer = ServiceExt::<Call<Full<Bytes>>>::ready(&mut exchange).await.unwrap().call(c).await.unwrap();
        assert_eq!(answer.res.status(), want);
        assert_eq!(answer.ctx.feature, Feature::Refund, "the call's own context");
    }
}

//! Shadow reads: proof that both paths agree before a feature's traffic
//! moves (DESIGN.md, `shadow`).
//!
//! For a sampled share of a feature's successful `GET /v1/<feature>/<id>`,
//! once the client's response has gone out, the sidecar reads the same
//! resource again through the other path and compares the two JSON
//! representations (`compare.rs`). Reads move no money, so this is safe;
//! POSTs are never shadowed, and the app refuses anything but a GET that
//! carries `x-paymesh-shadow`.
//!
//! It never hurts the real request: the body is only looked at as it
//! streams by (`Teed`), the shadow read runs in a task of its own after the
//! response, on a connection pool of its own, under its own timeout and
//! concurrency cap (a sample beyond the cap is skipped, never queued), and
//! it is not client traffic: no request metric, no access-log line, no
//! throttle token. `shadow_compare` is a sheddable component, first in the
//! default shedding order.

pub mod compare;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde_json::{Value, json};

use crate::components::{Component, Components};
use crate::ctx::Call;
use crate::migration::{Feature, Route};
use crate::observe::AccessLogWriter;
use crate::state::{ClientEntry, Snapshot};
use paymesh_vocab::{ApiPath, headers};

paymesh_vocab::labels! {
    /// How one sampled read ended.
    pub enum Outcome {
        /// Both paths gave the same resource.
        Match = "match",
        /// They did not; a record says where.
        Mismatch = "mismatch",
        /// The other path did not answer (timeout, 5xx, unreachable).
        ShadowError = "shadow_error",
        /// Sampled but not compared: the cap was full, the response was
        /// cut short, too large or not JSON, or the component was shed.
        Skipped = "skipped",
    }
}

/// A representation larger than this is skipped, not compared.
pub const MAX_BODY: usize = 64 * 1024;
/// At most this many mismatch records per second reach the log.
const RECORDS_PER_SECOND: u64 = 10;

/// The shadow reads of one sidecar: counters, the cap, the pool.
#[derive(Debug)]
pub struct Shadow {
    components: Arc<Components>,
    access_log: Arc<AccessLogWriter>,
    inflight: AtomicU32,
    /// `paymesh_shadow_compares_total{feature,outcome}`, by
    /// `Feature::index()` then `Outcome::index()`.
    compares: [[IntCounter; Outcome::ALL.len()]; 3],
    sampler: AtomicU64,
    records: RecordBudget,
}

/// What a sampled request needs for its shadow read.
#[derive(Debug)]
pub struct Job {
    snap: Arc<Snapshot>,
    feature: Feature,
    /// The path that served the client.
    primary: Route,
    path: PathAndQuery,
    client: Arc<ClientEntry>,
    request_id: HeaderValue,
    traceparent: Option<HeaderValue>,
}

impl Shadow {
    pub fn new(registry: &Registry, components: Arc<Components>, access_log: Arc<AccessLogWriter>) -> Arc<Self> {
        let vec = IntCounterVec::new(
            Opts::new("paymesh_shadow_compares_total", "Shadow reads by feature and outcome"),
            &["feature", "outcome"],
        )
        .expect("valid metric");
        registry.register(Box::new(vec.clone())).expect("registered once");
        let compares =
            Feature::MIGRATING.map(|f| Outcome::ALL.map(|o| vec.with_label_values(&[f.as_str(), o.as_str()])));
        Arc::new(Self {
            components,
            access_log,
            inflight: AtomicU32::new(0),
            compares,
            sampler: AtomicU64::new(0),
            records: RecordBudget::default(),
        })
    }

    /// A job when `call` is a read of one resource that the sample takes.
    pub fn sample<B>(&self, call: &Call<B>) -> Option<Job> {
        let ctx = &call.ctx;
        let bp = ctx.snap.config.shadow.sample_bp(ctx.feature);
        if bp == 0 || call.req.method() != Method::GET || !self.components.enabled(Component::ShadowCompare) {
            return None;
        }
        let client = ctx.client.clone()?;
        if !matches!(ctx.route, Route::Legacy | Route::Orchestration) {
            return None;
        }
        ApiPath::parse(call.req.uri().path())?.id?;
        if self.roll() >= bp {
            return None;
        }
        Some(Job {
            snap: ctx.snap.clone(),
            feature: ctx.feature,
            primary: ctx.route,
            path: call.req.uri().path_and_query()?.clone(),
            client,
            request_id: ctx.request_id.clone(),
            traceparent: call.req.headers().get("traceparent").cloned(),
        })
    }

    /// A uniform draw in [0, 10000): a Weyl sequence through SplitMix64's
    /// finaliser. Not for secrets; enough for a sample.
    fn roll(&self) -> u32 {
        let mut z = self.sampler.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % 10_000) as u32
    }

    fn count(&self, feature: Feature, outcome: Outcome) {
        if let Some(row) = self.compares.get(feature.index()) {
            row[outcome.index()].inc();
        }
    }

    /// Starts the shadow read of a job whose client response went out
    /// whole, with the body the client got.
    fn launch(self: &Arc<Self>, job: Job, primary: Bytes) {
        if !self.components.enabled(Component::ShadowCompare) {
            return self.count(job.feature, Outcome::Skipped);
        }
        // Dropped outside a runtime (at shutdown, say): nothing to run on.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.count(job.feature, Outcome::Skipped);
        };
        let cap = job.snap.config.shadow.max_inflight;
        if self.inflight.fetch_add(1, Ordering::AcqRel) >= cap {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return self.count(job.feature, Outcome::Skipped);
        }
        let shadow = self.clone();
        runtime.spawn(async move {
            let outcome = shadow.compare(&job, &primary).await;
            shadow.count(job.feature, outcome);
            shadow.inflight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    async fn compare(&self, job: &Job, primary: &[u8]) -> Outcome {
        let Ok(primary) = serde_json::from_slice::<Value>(primary) else {
            return Outcome::Skipped;
        };
        let other = match job.primary {
            Route::Legacy => Route::Orchestration,
            _ => Route::Legacy,
        };
        let read = tokio::time::timeout(job.snap.config.shadow.timeout, self.fetch(job, other)).await;
        let (status, body) = match read {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::debug!(request_id = ?job.request_id, error = %e, "shadow read failed");
                return Outcome::ShadowError;
            }
            Err(_) => {
                tracing::debug!(request_id = ?job.request_id, "shadow read timed out (shadow.timeout)");
                return Outcome::ShadowError;
            }
        };
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Outcome::ShadowError;
        }
        let (differences, more) = match serde_json::from_slice::<Value>(&body) {
            Ok(shadow) if status == StatusCode::OK => {
                compare::differences(&primary, &shadow, &job.snap.config.shadow.ignore_fields)
            }
            // Another answer to the same read: the paths disagree on the
            // resource itself (a 404 where the client got it, say).
            parsed => {
                let code = parsed.ok().and_then(|v| v.pointer("/error/code").cloned()).unwrap_or(Value::Null);
                let shadow = json!({ "status": status.as_u16(), "code": code });
                (vec![compare::Difference { path: "(status)".into(), primary: json!(200), shadow }], false)
            }
        };
        if differences.is_empty() {
            return Outcome::Match;
        }
        if self.records.take() {
            self.record(job, other, &differences, more);
        }
        Outcome::Mismatch
    }

    async fn fetch(
        &self,
        job: &Job,
        route: Route,
    ) -> Result<(StatusCode, Bytes), Box<dyn std::error::Error + Send + Sync>> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(job.snap.app_authority.clone())
            .path_and_query(job.path.clone())
            .build()?;
        let mut req = Request::get(uri)
            .header(headers::CLIENT, job.client.header.clone())
            .header(headers::ROUTE, route.as_str())
            .header(headers::SHADOW, "1")
            .header(headers::REQUEST_ID, job.request_id.clone());
        if let Some(tp) = &job.traceparent {
            req = req.header("traceparent", tp.clone());
        }
        // The snapshot's side pool: a shadow never waits for, or holds, a
        // connection a client request could use.
        let res = job.snap.side.request(req.body(Empty::new())?).await?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_BODY).collect().await?.to_bytes();
        Ok((status, body))
    }

    /// One mismatch record on the access-log stream: a JSON line with
    /// `"kind":"shadow_mismatch"`, never an API key or a body.
    fn record(&self, job: &Job, other: Route, differences: &[compare::Difference], more: bool) {
        let id = ApiPath::parse(job.path.path()).and_then(|p| p.id).unwrap_or("");
        let line = json!({
            "time": humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            "kind": "shadow_mismatch",
            "request_id": job.request_id.to_str().unwrap_or(""),
            "client": &*job.client.id,
            "feature": job.feature.as_str(),
            "resource": id,
            "primary_route": job.primary.as_str(),
            "shadow_route": other.as_str(),
            "differences": differences,
            "more_differences": more,
        });
        match serde_json::to_vec(&line) {
            Ok(bytes) => self.access_log.send_raw(bytes),
            Err(e) => tracing::warn!(error = %e, "cannot format a shadow mismatch record"),
        }
    }

    /// For `/admin/state`: per feature, the sampled share and the count of
    /// each outcome since start.
    pub fn state(&self, snap: &Snapshot) -> Value {
        let shadow = &snap.config.shadow;
        let features: serde_json::Map<String, Value> = Feature::MIGRATING
            .iter()
            .map(|&f| {
                let mut counts: serde_json::Map<String, Value> = Outcome::ALL
                    .iter()
                    .map(|&o| (o.as_str().to_owned(), json!(self.compares[f.index()][o.index()].get())))
                    .collect();
                counts.insert("sample_percent".into(), json!(f64::from(shadow.sample_bp(f)) / 100.0));
                (f.as_str().to_owned(), Value::Object(counts))
            })
            .collect();
        json!({
            "enabled": self.components.enabled(Component::ShadowCompare),
            "inflight": self.inflight.load(Ordering::Relaxed),
            "max_inflight": shadow.max_inflight,
            "features": features,
        })
    }

    /// Wraps a successful response's body so that the shadow read of `job`
    /// starts once the client has it whole.
    pub fn tee(self: &Arc<Self>, body: Incoming, job: Job) -> Teed {
        Teed { inner: body, seen: Vec::new(), size: 0, ended: false, pending: Some((self.clone(), job)) }
    }
}

/// Mismatch records allowed in the current second.
#[derive(Debug, Default)]
struct RecordBudget {
    /// (the second, counted from the first record; records in it).
    window: std::sync::Mutex<(u64, u64)>,
}

impl RecordBudget {
    fn take(&self) -> bool {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let second = START.get_or_init(Instant::now).elapsed().as_secs();
        let Ok(mut w) = self.window.lock() else { return false };
        if w.0 != second {
            *w = (second, 0);
        }
        w.1 += 1;
        w.1 <= RECORDS_PER_SECOND
    }
}

/// A response body on its way to the client, seen in passing: the frames
/// go through untouched; when the body is dropped having ended (hyper has
/// written its last frame), the shadow read starts with what went by.
#[derive(Debug)]
pub struct Teed {
    inner: Incoming,
    seen: Vec<Bytes>,
    size: usize,
    ended: bool,
    pending: Option<(Arc<Shadow>, Job)>,
}

impl Body for Teed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    this.size += data.len();
                    if this.size <= MAX_BODY {
                        this.seen.push(data.clone());
                    }
                }
            }
            // The client does not get this body whole: nothing to compare.
            Some(Err(_)) => {
                if let Some((shadow, job)) = this.pending.take() {
                    shadow.count(job.feature, Outcome::Skipped);
                }
            }
            None => this.ended = true,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Teed {
    fn drop(&mut self) {
        let Some((shadow, job)) = self.pending.take() else { return };
        let whole = self.ended || self.inner.is_end_stream();
        if !whole || self.size > MAX_BODY {
            return shadow.count(job.feature, Outcome::Skipped);
        }
        let body = match self.seen.len() {
            1 => self.seen.pop().unwrap_or_default(),
            _ => self.seen.concat().into(),
        };
        shadow.launch(job, body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_draw_is_uniform_enough() {
        let shadow = Shadow::new(
            &Registry::new(),
            Arc::new(Components::default()),
            Arc::new(
                AccessLogWriter::start(
                    Some(std::path::Path::new("/dev/null")),
                    crate::observe::Rotate { max_bytes: u64::MAX, keep: 1 },
                    16,
                    IntCounter::new("dropped", "dropped").unwrap(),
                )
                .unwrap(),
            ),
        );
        let draws: Vec<u32> = (0..100_000).map(|_| shadow.roll()).collect();
        assert!(draws.iter().all(|&d| d < 10_000));
        // 5 % of draws under 500, give or take a tenth of it.
        let under = draws.iter().filter(|&&d| d < 500).count();
        assert!((4_500..5_500).contains(&under), "{under} of 100000 under 500");
    }

    #[test]
    fn mismatch_records_are_rate_limited_per_second() {
        let budget = RecordBudget::default();
        let taken = (0..100).filter(|_| budget.take()).count() as u64;
        // All 100 in the same second, or split over a second boundary.
        assert!((RECORDS_PER_SECOND..=2 * RECORDS_PER_SECOND).contains(&taken), "{taken}");
    }
}

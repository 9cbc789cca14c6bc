//! Criterion micro-benchmarks of the sidecar's per-request work, through
//! paymesh-sidecar's public library API.
//!
//! One benchmark per step a request passes through (auth, throttle, bucket
//! choice, metric recording, access-log hand-off and formatting), and the
//! whole tower stack of `stack.rs` minus the proxy's socket I/O (`stack/*`):
//! the figure to hold against the 2 µs per-request budget. The stack's
//! state comes from `paymesh_sidecar::test_util`, the same handles
//! `paymesh_sidecar::start` gives the stack, without sockets or background
//! tasks; the app is a stand-in that answers at once. These are programs
//! that print numbers, never assertions.
//!
//! ```text
//! cargo bench -p paymesh-bench --bench per_request
//! ```

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::Full;
use paymesh_sidecar::body::ProxyBody;
use paymesh_sidecar::config;
use paymesh_sidecar::ctx::{Accepted, Call, ConnInfo, Ctx};
use paymesh_sidecar::layers::Filter;
use paymesh_sidecar::layers::auth::Auth;
use paymesh_sidecar::layers::exchange::AppRequest;
use paymesh_sidecar::layers::route::request_bucket;
use paymesh_sidecar::layers::throttle::{TokenBucket, now_ns};
use paymesh_sidecar::migration::{Feature, Route};
use paymesh_sidecar::observe::{AccessLogWriter, LogRecord, Rotate};
use paymesh_sidecar::stack::Handles;
use paymesh_sidecar::test_util;
use tower::{Service, service_fn};

mod support;

const API_KEY: &str = "sk_bench_3f9a1c7e5b2d4068";
const CLIENT: &str = "bench";

struct Sidecar {
    handles: Handles,
    // The request deadline's timer lives here (never driven: the
    // benchmarks poll the stack by hand).
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// The stack's state as the binary builds it (every feature on, the access
/// log to /dev/null), without its sockets and tasks.
fn sidecar() -> Sidecar {
    let dir = tempfile::tempdir().expect("temp dir");
    let digest = support::digest(API_KEY);
    let config = support::config(&format!(
        r#"clients:
  - id: {CLIENT}
    api_key_sha256: "{digest}"
    rate: {{ per_second: 10000000, burst: 10000000 }}
migration:
  etcd_endpoints: []
  cache_file: {dir}/migration.json
  defaults: {{ charge: 50, refund: 0, disbursement: 0 }}
overload:
  telemetry_file: {dir}/no-telemetry.json
  events_file: {dir}/switch-events.jsonl
access_log:
  path: /dev/null
  # Room for 10 ms of lines at the benchmark's pace: a full queue would
  # drop lines, which is cheaper than writing them and would flatter it.
  buffer_lines: 65536
"#,
        dir = dir.path().display()
    ));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let handles = test_util::handles(config, None);
    Sidecar { handles, runtime, _dir: dir }
}

fn conn() -> Arc<ConnInfo> {
    Arc::new(ConnInfo { peer: SocketAddr::from(([127, 0, 0, 1], 40000)), cert_client: None })
}

/// A request as the server hands it to the stack: headers a client sends,
/// and the connection it came on.
fn request(method: Method, path: &str, body: Bytes, conn: &Arc<ConnInfo>) -> Accepted<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", "127.0.0.1:8080")
        .header("user-agent", "bench/1")
        .header("accept", "*/*")
        .header("authorization", format!("Bearer {API_KEY}"));
    if method == Method::POST {
        b = b
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .header("idempotency-key", "bench-idem-0001");
    }
    Accepted { conn: conn.clone(), req: b.body(Full::new(body)).expect("request") }
}

/// Polls a future that never waits (every service here answers at once).
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a benchmarked service waited"),
    }
}

/// Reads a response body to its end, as hyper does when it writes it out.
fn drain<B: Body + Unpin>(mut body: B) -> u64 {
    let mut cx = Context::from_waker(Waker::noop());
    let mut n = 0;
    while let Poll::Ready(Some(Ok(frame))) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        if let Some(d) = frame.data_ref() {
            n += bytes::Buf::remaining(d) as u64;
        }
    }
    n
}

/// The app, answered instantly: what stands in for the proxy's socket I/O.
/// It reads the request body through the stack's wrappers, as the proxy
/// does when it streams the body on.
fn app_answer<B: Body + Unpin>(
    AppRequest { req, .. }: AppRequest<B>,
) -> std::future::Ready<Result<Response<ProxyBody>, Infallible>> {
    static BODY: Bytes = Bytes::from_static(&[b'x'; 128]);
    black_box(drain(req.into_body()));
    let mut res = Response::new(ProxyBody::full(BODY.clone()));
    res.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    std::future::ready(Ok(res))
}

fn steps(c: &mut Criterion) {
    let sc = sidecar();
    let _rt = sc.runtime.enter();
    let h = sc.handles.clone();
    let conn = conn();
    let mut g = c.benchmark_group("step");

    g.bench_function("auth_bearer_sha256", |b| {
        b.iter_batched(
            || {
                let Accepted { conn, req } = request(Method::GET, "/v1/charges/ch_1", Bytes::new(), &conn);
                let n = req.headers().len();
                Call { ctx: Ctx::new(conn, h.live.load_full(), n), req }
            },
            |call| black_box(Auth.check(call).is_ok()),
            BatchSize::SmallInput,
        )
    });

    // A bucket refilled faster than the loop can drain it, so every call
    // takes the allow path, as under a rate that never binds.
    let bucket = TokenBucket::new(config::Rate { per_second: 1e9, burst: 1_000_000 });
    g.bench_function("throttle_try_acquire", |b| b.iter(|| black_box(bucket.try_acquire(now_ns()))));
    let client = h.live.load().clients.by_id(CLIENT).expect("bench client").clone();

    let post = request(Method::POST, "/v1/charges", Bytes::new(), &conn).req;
    g.bench_function("route_bucket_choice_post", |b| {
        b.iter(|| h.migration.route(Feature::Charge, request_bucket(black_box(&post), CLIENT.as_bytes())))
    });
    let get = request(Method::GET, "/v1/charges/ch_3f9a1c7e5b2d", Bytes::new(), &conn).req;
    g.bench_function("route_bucket_choice_get", |b| {
        b.iter(|| h.migration.route(Feature::Charge, request_bucket(black_box(&get), CLIENT.as_bytes())))
    });

    g.bench_function("metrics_record", |b| {
        b.iter(|| h.metrics.record(Feature::Charge, Route::Legacy, black_box(201), Some(black_box(0.00042))))
    });

    let record = || LogRecord {
        time: SystemTime::now(),
        request_id: HeaderValue::from_static("0123456789abcdef0123456789abcdef"),
        client: Some(client.clone()),
        method: Method::POST,
        feature: Feature::Charge,
        route: Route::Orchestration,
        status: 201,
        trace: Some(paymesh_otel::TraceContext { trace_id: 1, span_id: 2, sampled: true }),
        duration_us: 420,
        bytes_in: 1024,
        bytes_out: 128,
    };
    // The access log through a writer of its own, whose queue each batch
    // fits in: a hand-off to a full queue would be a drop, not the work.
    const BATCH: u64 = 16_384;
    let dropped = h.metrics.access_log_dropped.clone();
    let dropped_before = dropped.get();
    let before = thread_ids();
    // /dev/null never grows: no rotation.
    const NO_ROTATE: Rotate = Rotate { max_bytes: u64::MAX, keep: 1 };
    let writer = AccessLogWriter::start(Some(Path::new("/dev/null")), NO_ROTATE, BATCH as usize, dropped.clone())
        .expect("writer");
    let tid = writer_thread(&before);

    // The request side: the hand-off to the writer thread (timed), then an
    // untimed wait until the writer has emptied the queue.
    g.bench_function("access_log_send", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                let start = Instant::now();
                for _ in 0..n {
                    writer.send(record());
                }
                spent += start.elapsed();
                assert!(writer.sync(Duration::from_secs(10)), "writer stalled");
                left -= n;
            }
            spent
        })
    });

    // The writer side: JSON formatting and a buffered write of one line,
    // off the request path. Timed as the writer thread's own CPU time
    // (/proc schedstat) per line, so its idle pauses do not count.
    match tid {
        Some(tid) if thread_cpu_ns(tid).is_some() => {
            g.bench_function("access_log_format_write", |b| {
                b.iter_custom(|iters| {
                    let start = thread_cpu_ns(tid).unwrap_or(0);
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(BATCH);
                        for _ in 0..n {
                            writer.send(record());
                        }
                        assert!(writer.sync(Duration::from_secs(10)), "writer stalled");
                        left -= n;
                    }
                    Duration::from_nanos(thread_cpu_ns(tid).unwrap_or(0).saturating_sub(start))
                })
            });
        }
        _ => eprintln!("access_log_format_write skipped: no per-thread CPU time in /proc on this system"),
    }
    g.finish();
    if dropped.get() > dropped_before {
        eprintln!("note: {} access-log lines dropped while benchmarking", dropped.get() - dropped_before);
    }
}

fn stack(c: &mut Criterion) {
    let sc = sidecar();
    let _rt = sc.runtime.enter();
    let conn = conn();
    // stack.rs's very steps, with an instant app in place of the proxy.
    let mut svc = paymesh_sidecar::stack::around(&sc.handles, service_fn(app_answer));
    let mut g = c.benchmark_group("stack");
    g.bench_function("get", |b| {
        b.iter_batched(
            || request(Method::GET, "/v1/charges/ch_3f9a1c7e5b2d", Bytes::new(), &conn),
            |req| {
                let Ok(res) = ready(svc.call(req));
                drain(res.into_body())
            },
            BatchSize::SmallInput,
        )
    });
    let body = Bytes::from(vec![b'x'; 1024]);
    g.bench_function("post_1k", |b| {
        b.iter_batched(
            || request(Method::POST, "/v1/charges", body.clone(), &conn),
            |req| {
                let Ok(res) = ready(svc.call(req));
                drain(res.into_body())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Thread ids of this process.
fn thread_ids() -> HashSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The writer thread started since `before` was taken. A new thread names
/// itself once it runs, so look for a little while.
fn writer_thread(before: &HashSet<u32>) -> Option<u32> {
    for _ in 0..100 {
        let found = thread_ids().difference(before).copied().find(|t| thread_name(*t).as_deref() == Some("access-log"));
        if found.is_some() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn thread_name(tid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok().map(|s| s.trim().to_owned())
}

/// Nanoseconds a thread of this process has run (first field of schedstat).
fn thread_cpu_ns(tid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?.split_whitespace().next()?.parse().ok()
}

criterion_group!(benches, steps, stack);
criterion_main!(benches);

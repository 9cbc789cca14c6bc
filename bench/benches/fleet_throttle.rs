//! Criterion: the throttle's per-request cost for a `scope: fleet` client
//! against a `scope: local` one, through the sidecar's real throttle step
//! and client table (`paymesh_sidecar::test_util`: no sockets, no tasks).
//!
//! Both clients run at the same rate, far above what the loop can take, so
//! every call takes the allow path. A third case changes the fleet
//! client's share from another thread as fast as it can (the fleet task
//! does it once per report interval), to show that a share change costs a
//! request nothing beyond the cache line it touches. Programs that print
//! numbers, never assertions.
//!
//! ```text
//! cargo bench -p paymesh-bench --bench fleet_throttle
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use paymesh_sidecar::body::ProxyBody;
use paymesh_sidecar::config::{self, Rate};
use paymesh_sidecar::ctx::{Answer, Call, ConnInfo, Ctx};
use paymesh_sidecar::layers::auth::{Auth, Authenticated};
use paymesh_sidecar::layers::throttle::{Throttle, now_ns};
use paymesh_sidecar::layers::{Filter, filter};
use paymesh_sidecar::state::Snapshot;
use paymesh_sidecar::test_util;
use tower::{Layer, Service, service_fn};

mod support;

/// Far above what one core can take: every request is admitted.
const PER_SECOND: f64 = 1e9;
const BURST: u32 = 1_000_000_000;

const LOCAL_KEY: &str = "sk_bench_local";
const FLEET_KEY: &str = "sk_bench_fleet";

fn config(dir: &std::path::Path) -> config::Config {
    support::config(&format!(
        r#"clients:
  - id: local
    api_key_sha256: "{a}"
    rate: {{ per_second: {PER_SECOND}, burst: {BURST}, scope: local }}
  - id: fleet
    api_key_sha256: "{b}"
    rate: {{ per_second: {PER_SECOND}, burst: {BURST}, scope: fleet }}
migration:
  # Never reached: the runtime below is never driven, so the fleet task
  # never runs; the benchmark sets the share itself.
  etcd_endpoints: ["http://127.0.0.1:9"]
  cache_file: {dir}/migration.json
overload:
  telemetry_file: {dir}/no-telemetry.json
  events_file: {dir}/switch-events.jsonl
access_log: {{ path: /dev/null }}
"#,
        a = support::digest(LOCAL_KEY),
        b = support::digest(FLEET_KEY),
        dir = dir.display()
    ))
}

fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a benchmarked service waited"),
    }
}

fn app(call: Authenticated<Full<Bytes>>) -> std::future::Ready<Result<Answer<ProxyBody>, Infallible>> {
    std::future::ready(Ok(call.into_call().answer(Response::new(ProxyBody::full(Bytes::new())))))
}

/// A request of `key`'s client, authenticated (untimed): the throttle
/// takes only authenticated calls.
fn request(conn: &Arc<ConnInfo>, snap: &Arc<Snapshot>, key: &str) -> Authenticated<Full<Bytes>> {
    let req = Request::get("/v1/charges/ch_1")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let call = Call { ctx: Ctx::new(conn.clone(), snap.clone(), 1), req };
    Auth.check(call).unwrap_or_else(|_| panic!("the bench key authenticates"))
}

fn throttle(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _rt = runtime.enter();
    let h = test_util::handles(config(dir.path()), None);
    let snap = h.live.load_full();
    let local = snap.clients.by_id("local").expect("local client").clone();
    let fleet = snap.clients.by_id("fleet").expect("fleet client").clone();
    // The share the fleet task would set for a lone member: the whole rate.
    fleet.bucket.set_rate(Rate { per_second: PER_SECOND, burst: BURST });
    let conn = Arc::new(ConnInfo { peer: SocketAddr::from(([127, 0, 0, 1], 40000)), cert_client: None });
    let mut svc = filter(Throttle::new(h.components.clone())).layer(service_fn(app));

    let mut g = c.benchmark_group("throttle");
    for (name, client) in [("bucket_local", &local), ("bucket_fleet", &fleet)] {
        g.bench_function(name, |b| b.iter(|| black_box(client.bucket.try_acquire(now_ns()))));
    }
    for (name, key) in [("local", LOCAL_KEY), ("fleet", FLEET_KEY)] {
        g.bench_function(name, |b| {
            b.iter_batched(|| request(&conn, &snap, key), |req| black_box(ready(svc.call(req))), BatchSize::SmallInput)
        });
    }
    // The fleet task's work, as fast as another core can do it.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (bucket, stop) = (fleet.bucket.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i = i.wrapping_add(1);
                let per_second = PER_SECOND * (0.5 + f64::from(i % 2) * 0.5);
                bucket.set_rate(Rate { per_second, burst: BURST });
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        })
    };
    g.bench_function("fleet_while_shares_change", |b| {
        b.iter_batched(
            || request(&conn, &snap, FLEET_KEY),
            |req| black_box(ready(svc.call(req))),
            BatchSize::SmallInput,
        )
    });
    // The bucket alone, without the request and response around it.
    g.bench_function("bucket_fleet_while_shares_change", |b| b.iter(|| black_box(fleet.bucket.try_acquire(now_ns()))));
    stop.store(true, Ordering::Relaxed);
    swapper.join().expect("swapper thread");
    g.finish();
}

criterion_group!(benches, throttle);
criterion_main!(benches);

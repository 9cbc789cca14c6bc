//! `GET /debug/pprof/profile?seconds=N`: an on-demand CPU profile.
//!
//! The `profiling` component. Loopback peers with the admin token only. For N
//! seconds (1 to 60, default 10) every thread's stack is sampled 99 times a
//! second (SIGPROF, through the pprof crate); the answer is folded stacks,
//! one `thread;root;…;leaf count` line per distinct stack, the input of
//! `flamegraph.pl`, `inferno-flamegraph` and speedscope. One profile runs at
//! a time (409 otherwise). While `profiling` is off the endpoint answers 503
//! with the reason, and a profile that is running when the component is shed
//! stops at once: sampling costs CPU the host does not have.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use super::{authorize, json};
use crate::components::Component;
use crate::state::Shared;

pub const PATH: &str = "/debug/pprof/profile";
const FREQUENCY_HZ: i32 = 99;
const DEFAULT_SECONDS: u64 = 10;
const MAX_SECONDS: u64 = 60;

/// The profiler is process-wide (one SIGPROF timer): one profile at a time.
static RUNNING: AtomicBool = AtomicBool::new(false);

pub async fn handle(req: Request<Incoming>, shared: Arc<Shared>, peer: std::net::SocketAddr) -> Response<Full<Bytes>> {
    if req.method() != http::Method::GET {
        return problem(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", None);
    }
    if let Some(refused) = authorize(&req, &shared, peer) {
        return refused;
    }
    let seconds = match seconds(req.uri().query()) {
        Ok(s) => s,
        Err(message) => return problem(StatusCode::BAD_REQUEST, &message, None),
    };
    if !shared.components.enabled(Component::Profiling) {
        return shed(&shared);
    }
    if RUNNING.swap(true, Ordering::AcqRel) {
        return problem(StatusCode::CONFLICT, "a profile is already running; try again when it ends", None);
    }
    let running = shared.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let outcome = profile(&running, Duration::from_secs(seconds));
        RUNNING.store(false, Ordering::Release);
        outcome
    })
    .await;
    match outcome {
        Ok(Ok((folded, samples))) => {
            let mut res = Response::new(Full::new(Bytes::from(folded)));
            let headers = res.headers_mut();
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            headers.insert("x-profile-samples", HeaderValue::from(samples));
            headers.insert("x-profile-seconds", HeaderValue::from(seconds));
            res
        }
        Ok(Err(Failed::Shed)) => shed(&shared),
        Ok(Err(Failed::Profiler(e))) => {
            tracing::error!(error = %e, "CPU profile failed");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "the profiler failed; see the sidecar's log", None)
        }
        Err(e) => {
            RUNNING.store(false, Ordering::Release);
            tracing::error!(error = %e, "CPU profile task failed");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "the profiler failed; see the sidecar's log", None)
        }
    }
}

fn seconds(query: Option<&str>) -> Result<u64, String> {
    let value = query.unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("seconds="));
    match value.map(str::parse::<u64>) {
        None => Ok(DEFAULT_SECONDS),
        Some(Ok(s)) if (1..=MAX_SECONDS).contains(&s) => Ok(s),
        Some(_) => Err(format!("seconds must be a whole number from 1 to {MAX_SECONDS}")),
    }
}

enum Failed {
    Shed,
    Profiler(pprof::Error),
}

/// Samples for `duration`, checking ten times a second that profiling is
/// still wanted. Blocking: runs on tokio's blocking pool.
fn profile(shared: &Shared, duration: Duration) -> Result<(String, u64), Failed> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        // Unwinding through these from a signal handler can deadlock.
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(Failed::Profiler)?;
    let deadline = Instant::now() + duration;
    loop {
        if !shared.components.enabled(Component::Profiling) {
            return Err(Failed::Shed);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
    let report = guard.report().build().map_err(Failed::Profiler)?;
    Ok(folded(&report))
}

/// Folded stacks, root first, sorted; and the number of samples.
fn folded(report: &pprof::Report) -> (String, u64) {
    let mut lines: Vec<(String, isize)> = report
        .data
        .iter()
        .map(|(frames, count)| {
            let mut stack = if frames.thread_name.is_empty() {
                format!("thread-{}", frames.thread_id)
            } else {
                frames.thread_name.clone()
            };
            // pprof lists frames leaf first, and inlined calls innermost first.
            for symbol in frames.frames.iter().rev().flat_map(|f| f.iter().rev()) {
                stack.push(';');
                stack.push_str(&symbol.name().replace(';', ":"));
            }
            // A sample taken inside a blocklisted library (a syscall in libc)
            // has no frame left; name it the way perf does rather than emit a
            // stack that is only a thread name.
            if frames.frames.iter().all(Vec::is_empty) {
                stack.push_str(";[unknown]");
            }
            (stack, *count)
        })
        .collect();
    lines.sort();
    let samples = lines.iter().map(|(_, n)| *n as u64).sum();
    let text = lines.iter().map(|(stack, n)| format!("{stack} {n}\n")).collect();
    (text, samples)
}

fn shed(shared: &Shared) -> Response<Full<Bytes>> {
    let reason = shared.overload.why_off(Component::Profiling);
    problem(StatusCode::SERVICE_UNAVAILABLE, "profiling is off", Some(reason))
}

fn problem(status: StatusCode, message: &str, reason: Option<&str>) -> Response<Full<Bytes>> {
    json(status, json!({ "error": message, "component": "profiling", "reason": reason }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_bounded() {
        assert_eq!(seconds(None), Ok(DEFAULT_SECONDS));
        assert_eq!(seconds(Some("seconds=3")), Ok(3));
        assert_eq!(seconds(Some("debug=1&seconds=60")), Ok(60));
        assert!(seconds(Some("seconds=0")).is_err());
        assert!(seconds(Some("seconds=61")).is_err());
        assert!(seconds(Some("seconds=ten")).is_err());
    }
}

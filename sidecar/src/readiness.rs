//! Is the sidecar ready for traffic? Config loaded, app up, not draining.
//!
//! A background task probes the app's `GET /healthz` about once a second
//! and caches the answer in an `AtomicBool`; `/readyz` only reads it, so
//! a burst of readiness checks never becomes a burst of app requests.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Uri;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::state::Shared;

pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// `Ok` when ready, else why not.
pub fn readiness(shared: &Shared) -> Result<(), &'static str> {
    if shared.draining.load(Ordering::SeqCst) {
        Err("draining")
    } else if !shared.app_reachable.load(Ordering::Relaxed) {
        Err("app unreachable")
    } else {
        Ok(())
    }
}

pub async fn probe_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = crate::server::stopped(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        let snap = shared.live.load_full();
        let uri: Uri =
            format!("http://{}/healthz", snap.app_authority).parse().expect("an authority makes a valid URI");
        let limit = snap.config.limits.connect_timeout + Duration::from_secs(1);
        let ok = match tokio::time::timeout(limit, snap.side.get(uri)).await {
            Ok(Ok(res)) => {
                let ok = res.status().is_success();
                // Read the (tiny) body so the connection goes back to the pool.
                let _ = res.into_body().collect().await;
                ok
            }
            _ => false,
        };
        let was = shared.app_reachable.swap(ok, Ordering::Relaxed);
        if was != ok {
            if ok {
                tracing::info!(app = %snap.config.app, "app is reachable");
            } else {
                tracing::warn!(app = %snap.config.app, "app is unreachable (GET /healthz failed)");
            }
        }
    }
}

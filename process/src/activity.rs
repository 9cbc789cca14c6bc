//! What one connection is doing: requests started and finished, for the
//! watchdogs that close idle connections and for the drain, which must not
//! close a connection whose request is on its way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// A connection's requests, counted. A request starts when the server hands
/// it to the service and finishes when its guard is dropped (when the
/// response is done, or given up).
#[derive(Debug, Default)]
pub struct Activity {
    started: AtomicU64,
    finished: AtomicU64,
    /// Woken by every start, for `DrainWatch::close_due`. With no one
    /// waiting it keeps one permit: a compare-and-swap, no lock.
    began: Notify,
}

impl Activity {
    pub fn start(self: &Arc<Self>) -> RequestGuard {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.began.notify_one();
        RequestGuard(self.clone())
    }

    /// (started, finished), to compare between two looks.
    pub fn mark(&self) -> (u64, u64) {
        // `finished` first: a request that ends between the two loads
        // cannot make the connection look idle.
        let finished = self.finished.load(Ordering::Acquire);
        (self.started.load(Ordering::Acquire), finished)
    }

    pub fn any_request(&self) -> bool {
        self.started.load(Ordering::Acquire) > 0
    }

    /// Resolves once a request has started after `mark`'s count `since`.
    pub(crate) async fn started_after(&self, since: u64) {
        loop {
            let began = self.began.notified();
            if self.started.load(Ordering::Acquire) > since {
                return;
            }
            began.await;
        }
    }
}

/// Idle between two looks: nothing in flight at the second, and nothing
/// started or finished since the first.
pub fn idle_between(before: (u64, u64), now: (u64, u64)) -> bool {
    before == now && now.0 == now.1
}

/// Marks one request of a connection finished when dropped.
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_means_nothing_in_flight_and_nothing_moved() {
        let activity = Arc::new(Activity::default());
        let m0 = activity.mark();
        assert!(idle_between(m0, activity.mark()));
        let guard = activity.start();
        let m1 = activity.mark();
        assert!(!idle_between(m0, m1));
        assert!(!idle_between(m1, activity.mark()), "a request in flight is not idle");
        drop(guard);
        let m2 = activity.mark();
        assert!(!idle_between(m1, m2));
        assert!(idle_between(m2, activity.mark()));
        assert!(activity.any_request());
    }
}

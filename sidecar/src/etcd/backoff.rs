//! Capped exponential backoff with full jitter, for every etcd task.

use std::time::Duration;

use tokio::sync::watch;

/// Capped exponential backoff with full jitter: each wait is uniform in
/// [0, ceiling], and the ceiling doubles after each wait up to `max`. The
/// spread is the point: sidecars that lost etcd at the same moment retry
/// at different ones.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max, ceiling: first }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        let wait = spread(self.ceiling, random());
        self.ceiling = (self.ceiling * 2).min(self.max);
        wait
    }

    /// After a success: the next failure waits little again.
    pub fn reset(&mut self) {
        self.ceiling = self.first;
    }

    /// Sleeps the next wait; `false` if shutdown came first.
    pub async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let wait = self.next_wait();
        tokio::select! {
            _ = crate::server::stopped(shutdown) => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

/// `r` (uniform over u64) as a point in [0, ceiling].
fn spread(ceiling: Duration, r: u64) -> Duration {
    ceiling.mul_f64(r as f64 / u64::MAX as f64)
}

fn random() -> u64 {
    // The OS's generator cannot fail on Linux in practice; if it did, the
    // middle of the range still backs off, without the spread.
    getrandom::u64().unwrap_or(u64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn ceilings(b: &mut Backoff, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|_| {
                let c = b.ceiling;
                let wait = b.next_wait();
                assert!(wait <= c, "{wait:?} above its ceiling {c:?}");
                c
            })
            .collect()
    }

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let mut b = Backoff::new(FIRST, MAX);
        let ms: Vec<u128> = ceilings(&mut b, 9).iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        for _ in 0..1000 {
            assert!(b.next_wait() <= MAX);
        }
    }

    #[test]
    fn a_success_resets_the_ceiling() {
        let mut b = Backoff::new(FIRST, MAX);
        ceilings(&mut b, 20);
        b.reset();
        assert_eq!(ceilings(&mut b, 3), [FIRST, FIRST * 2, FIRST * 4]);
    }

    #[test]
    fn waits_are_spread_over_the_whole_range() {
        assert_eq!(spread(MAX, 0), Duration::ZERO);
        assert_eq!(spread(MAX, u64::MAX), MAX);
        assert!(spread(MAX, u64::MAX / 2).abs_diff(MAX / 2) < Duration::from_millis(1));
        // A thousand sidecars at the cap: not in step, and both halves of
        // the range used (each half missed: a chance of 2^-1000).
        let mut b = Backoff::new(MAX, MAX);
        let waits: Vec<Duration> = (0..1000).map(|_| b.next_wait()).collect();
        assert!(waits.iter().any(|w| *w < MAX / 2) && waits.iter().any(|w| *w > MAX / 2));
        let mut distinct = waits.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 990, "only {} distinct waits of 1000", distinct.len());
    }

    #[tokio::test]
    async fn a_wait_ends_at_shutdown() {
        let (tx, mut rx) = watch::channel(false);
        let mut b = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        b.next_wait(); // the next one is up to an hour
        let started = std::time::Instant::now();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(true).unwrap();
        });
        assert!(!b.wait(&mut rx).await, "shutdown, not the timer, ended the wait");
        assert!(started.elapsed() < Duration::from_secs(5));
        stopper.await.unwrap();
    }
}

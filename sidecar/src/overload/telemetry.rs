//! Reads the telemetry file that `paymesh-telemetryd` replaces every interval.
//!
//! The daemon renames a complete file over the old one, so one read sees
//! one whole sample. Anything short of a fresh, valid sample (a missing
//! file, bytes that do not parse, readings that cannot be, a sample older
//! than three of its own intervals or dated more than one interval in the
//! future) is reported as such and never becomes a reading the switch board
//! acts on.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use paymesh_telemetryd::TelemetrySnapshot;

/// The outcome of one read.
#[derive(Debug, Clone)]
pub enum Observation {
    Fresh(TelemetrySnapshot),
    /// Valid, but older than three intervals: the daemon stopped or hangs.
    Stale {
        snapshot: TelemetrySnapshot,
        age_ms: u64,
    },
    /// Valid, but dated more than one interval ahead of this host's clock
    /// (clock skew, a bad write): as unusable as a stale one.
    Future {
        snapshot: TelemetrySnapshot,
        ahead_ms: u64,
    },
    Unreadable(String),
    Malformed(String),
}

impl Observation {
    pub fn fresh(&self) -> Option<&TelemetrySnapshot> {
        match self {
            Observation::Fresh(s) => Some(s),
            _ => None,
        }
    }

    /// Every value `status` can take.
    pub const STATUSES: [&'static str; 5] = ["fresh", "stale", "future", "unreadable", "malformed"];

    /// `fresh`, `stale`, `future`, `unreadable` or `malformed`.
    pub fn status(&self) -> &'static str {
        match self {
            Observation::Fresh(_) => "fresh",
            Observation::Stale { .. } => "stale",
            Observation::Future { .. } => "future",
            Observation::Unreadable(_) => "unreadable",
            Observation::Malformed(_) => "malformed",
        }
    }

    /// Why the observation cannot be used; `None` when it can.
    pub fn problem(&self) -> Option<String> {
        match self {
            Observation::Fresh(_) => None,
            Observation::Stale { snapshot, age_ms } => Some(format!(
                "the last sample is {age_ms} ms old, more than three intervals of {} ms",
                snapshot.interval_ms
            )),
            Observation::Future { snapshot, ahead_ms } => Some(format!(
                "the last sample is dated {ahead_ms} ms in the future, more than one interval of {} ms \
                 (clock skew or a bad write)",
                snapshot.interval_ms
            )),
            Observation::Unreadable(e) | Observation::Malformed(e) => Some(e.clone()),
        }
    }
}

/// Reads and judges the file at `path` as of `now_ms` (Unix milliseconds).
pub async fn read(path: &Path, now_ms: u64) -> Observation {
    match tokio::fs::read(path).await {
        Ok(bytes) => judge(&bytes, now_ms),
        Err(e) => Observation::Unreadable(format!("{}: {e}", path.display())),
    }
}

pub fn judge(bytes: &[u8], now_ms: u64) -> Observation {
    match TelemetrySnapshot::parse(bytes) {
        Ok(s) if s.is_future(now_ms) => {
            Observation::Future { ahead_ms: s.sampled_at_ms.saturating_sub(now_ms), snapshot: s }
        }
        Ok(s) if s.is_stale(now_ms) => {
            Observation::Stale { age_ms: now_ms.saturating_sub(s.sampled_at_ms), snapshot: s }
        }
        Ok(s) => Observation::Fresh(s),
        Err(e) => Observation::Malformed(e.to_string()),
    }
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64) -> Vec<u8> {
        format!(
            r#"{{"sampled_at_ms":{at_ms},"interval_ms":1000,"cpus":2,"cpu_percent":42.5,"load1":0.8,"load5":0.7,
                "load15":0.5,"mem_used_percent":35.1,"disk_free_percent":71.0,"cgroup":null}}"#
        )
        .into_bytes()
    }

    #[test]
    fn judges_age_and_shape() {
        let now = 1_764_000_010_000;
        assert_eq!(judge(&sample(now - 3_000), now).status(), "fresh");
        let stale = judge(&sample(now - 3_001), now);
        assert_eq!(stale.status(), "stale");
        assert!(stale.problem().unwrap().contains("3001 ms old"), "{:?}", stale.problem());
        assert_eq!(judge(b"{\"cpu_percent\": 12", now).status(), "malformed");
        let impossible = String::from_utf8(sample(now)).unwrap().replace("42.5", "420");
        let judged = judge(impossible.as_bytes(), now);
        assert_eq!(judged.status(), "malformed");
        assert!(judged.problem().unwrap().contains("cpu_percent"));
    }

    #[test]
    fn a_sample_from_the_future_is_not_fresh() {
        let now = 1_764_000_010_000;
        assert_eq!(judge(&sample(now + 1_000), now).status(), "fresh");
        let ahead = judge(&sample(now + 1_001), now);
        assert_eq!(ahead.status(), "future");
        assert!(ahead.fresh().is_none());
        assert!(ahead.problem().unwrap().contains("1001 ms in the future"), "{:?}", ahead.problem());
        assert_eq!(judge(&sample(now + 3_600_000), now).status(), "future");
    }

    #[tokio::test]
    async fn a_missing_file_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let o = read(&dir.path().join("nope.json"), 0).await;
        assert_eq!(o.status(), "unreadable");
        assert!(o.problem().unwrap().contains("nope.json"));
    }
}

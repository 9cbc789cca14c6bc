//! `paymesh-telemetryd --check`: the liveness probe of a running daemon.
//!
//! It reads the daemon's own output file and passes only when the file
//! holds a valid sample no older than three intervals, the same rule the
//! sidecar uses to call telemetry stale. A wedged or dead sampler thus gets
//! its container restarted instead of being noticed only through
//! `paymesh_telemetry_stale`. It never writes anything.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use paymesh_telemetryd::TelemetrySnapshot;

/// How many intervals old the file may be.
const STALE_AFTER_INTERVALS: u32 = 3;

/// `Ok(what was found)` when the file at `out` is fresh at `now`, else why
/// not. `interval` is the daemon's `--interval`; the file's own interval is
/// used when it is longer (a daemon started with another setting).
pub fn check(out: &Path, interval: Duration, now: SystemTime) -> Result<String, String> {
    let bytes = std::fs::read(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let snapshot = TelemetrySnapshot::parse(&bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    let now_ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let interval_ms = (interval.as_millis() as u64).max(snapshot.interval_ms);
    let limit_ms = interval_ms.saturating_mul(u64::from(STALE_AFTER_INTERVALS));
    let age_ms = now_ms.saturating_sub(snapshot.sampled_at_ms);
    if age_ms > limit_ms {
        return Err(format!(
            "{}: the last sample is {age_ms} ms old, more than {STALE_AFTER_INTERVALS} intervals of {interval_ms} ms",
            out.display()
        ));
    }
    Ok(format!("{}: fresh, sampled {age_ms} ms ago", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, at_ms: u64) {
        let text = format!(
            r#"{{"sampled_at_ms":{at_ms},"interval_ms":1000,"cpus":2,"cpu_percent":1.0,"load1":0.1,"load5":0.1,
                "load15":0.1,"mem_used_percent":10.0,"disk_free_percent":50.0,"cgroup":null}}"#
        );
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn passes_fresh_and_fails_old_missing_or_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("telemetry.json");
        let now = UNIX_EPOCH + Duration::from_millis(1_764_000_010_000);
        let second = Duration::from_secs(1);
        assert!(check(&out, second, now).unwrap_err().contains("telemetry.json"));
        write(&out, 1_764_000_007_000);
        assert!(check(&out, second, now).is_ok());
        write(&out, 1_764_000_006_999);
        assert!(check(&out, second, now).unwrap_err().contains("3001 ms old"));
        // A longer --interval than the file's widens the window.
        assert!(check(&out, Duration::from_secs(2), now).is_ok());
        std::fs::write(&out, "{\"sampled_at_ms\": 1").unwrap();
        assert!(check(&out, second, now).is_err());
    }
}

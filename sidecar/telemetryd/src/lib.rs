//! The telemetry file: what `paymesh-telemetryd` writes and the sidecar reads.
//!
//! [`TelemetrySnapshot`] is the contract of DESIGN.md's "Telemetry file"
//! section. Its field names are public: extend them, never rename them.
//! Readers go through [`TelemetrySnapshot::parse`], which refuses a file that
//! deserialises but makes no sense (a percent of 140, a NaN load), so a
//! half-broken daemon can never drive the overload switch.
//!
//! This library must stay light: no runtime, no daemon code. Everything the
//! binary needs sits behind the `daemon` feature.

use serde::{Deserialize, Serialize};

/// One sample of the host, as written to the telemetry file.
///
/// Unknown fields are ignored on purpose: a newer daemon may add readings,
/// and an older sidecar must keep reading the ones it knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetrySnapshot {
    /// Wall-clock time of the sample, milliseconds since the Unix epoch.
    pub sampled_at_ms: u64,
    /// How often the daemon samples; staleness is measured in these.
    pub interval_ms: u64,
    /// CPUs this process may run on.
    pub cpus: u32,
    /// Host CPU busy time over the last interval, in percent of all CPUs.
    pub cpu_percent: f64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    /// Memory in use, not counting what the kernel can reclaim at once.
    pub mem_used_percent: f64,
    /// The lowest free-space percentage over the watched directories.
    pub disk_free_percent: f64,
    /// Readings against the container's own limits; `None` (JSON `null`)
    /// outside a cgroup v2 container with limits.
    pub cgroup: Option<CgroupUsage>,
}

/// Utilisation against the limits of the cgroup the daemon runs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CgroupUsage {
    pub cpu_percent_of_limit: f64,
    pub mem_percent_of_limit: f64,
}

/// Why a telemetry file cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Not JSON, or not the snapshot's shape (serde names the field).
    #[error("malformed telemetry: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Well-formed, but a reading is impossible.
    #[error("invalid telemetry: `{field}` is {value}, expected {expected}")]
    Invalid { field: &'static str, value: f64, expected: &'static str },
}

impl TelemetrySnapshot {
    /// Parses and validates the contents of a telemetry file.
    pub fn parse(bytes: &[u8]) -> Result<Self, TelemetryError> {
        let snapshot: Self = serde_json::from_slice(bytes)?;
        snapshot.validate()?;
        Ok(snapshot)
    }

    /// Checks that every reading is a finite number in its range.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        if self.interval_ms == 0 {
            return Err(invalid("interval_ms", 0.0, "a positive interval"));
        }
        if self.cpus == 0 {
            return Err(invalid("cpus", 0.0, "at least one CPU"));
        }
        check_percent("cpu_percent", self.cpu_percent)?;
        check_load("load1", self.load1)?;
        check_load("load5", self.load5)?;
        check_load("load15", self.load15)?;
        check_percent("mem_used_percent", self.mem_used_percent)?;
        check_percent("disk_free_percent", self.disk_free_percent)?;
        if let Some(cgroup) = &self.cgroup {
            check_percent("cgroup.cpu_percent_of_limit", cgroup.cpu_percent_of_limit)?;
            check_percent("cgroup.mem_percent_of_limit", cgroup.mem_percent_of_limit)?;
        }
        Ok(())
    }

    /// Whether the sample is older than three intervals at `now_ms`: the
    /// daemon has stopped or is stuck, and the readings must not be acted on.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        let age_ms = now_ms.saturating_sub(self.sampled_at_ms);
        age_ms > self.interval_ms.saturating_mul(3)
    }

    /// Whether the sample is dated more than one interval after `now_ms`:
    /// a skewed clock or a bad write. Such a sample is no fresher than a
    /// stale one, whatever its readings say.
    pub fn is_future(&self, now_ms: u64) -> bool {
        self.sampled_at_ms.saturating_sub(now_ms) > self.interval_ms
    }
}

fn check_percent(field: &'static str, value: f64) -> Result<(), TelemetryError> {
    if (0.0..=100.0).contains(&value) { Ok(()) } else { Err(invalid(field, value, "a percent in [0, 100]")) }
}

fn check_load(field: &'static str, value: f64) -> Result<(), TelemetryError> {
    if value.is_finite() && value >= 0.0 { Ok(()) } else { Err(invalid(field, value, "a finite load average >= 0")) }
}

fn invalid(field: &'static str, value: f64, expected: &'static str) -> TelemetryError {
    TelemetryError::Invalid { field, value, expected }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"sampled_at_ms": 1764000000000, "interval_ms": 1000, "cpus": 2,
        "cpu_percent": 42.5, "load1": 0.8, "load5": 0.7, "load15": 0.5,
        "mem_used_percent": 35.1, "disk_free_percent": 71.0,
        "cgroup": {"cpu_percent_of_limit": 55.0, "mem_percent_of_limit": 40.2}}"#;

    fn good() -> TelemetrySnapshot {
        TelemetrySnapshot::parse(GOOD.as_bytes()).expect("the DESIGN.md example parses")
    }

    fn invalid_field(snapshot: &TelemetrySnapshot) -> &'static str {
        match snapshot.validate() {
            Err(TelemetryError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_design_example() {
        let snapshot = good();
        assert_eq!(snapshot.cpus, 2);
        assert_eq!(snapshot.cpu_percent, 42.5);
        assert_eq!(snapshot.cgroup, Some(CgroupUsage { cpu_percent_of_limit: 55.0, mem_percent_of_limit: 40.2 }));
    }

    #[test]
    fn round_trips_through_json() {
        let snapshot = good();
        let bytes = serde_json::to_vec(&snapshot).unwrap();
        assert_eq!(TelemetrySnapshot::parse(&bytes).unwrap(), snapshot);
    }

    #[test]
    fn null_cgroup_is_no_limits() {
        let text = GOOD.replace(r#"{"cpu_percent_of_limit": 55.0, "mem_percent_of_limit": 40.2}"#, "null");
        assert_eq!(TelemetrySnapshot::parse(text.as_bytes()).unwrap().cgroup, None);
    }

    #[test]
    fn ignores_fields_it_does_not_know() {
        let text = GOOD.replacen('{', r#"{"swap_used_percent": 3.0, "#, 1);
        assert_eq!(TelemetrySnapshot::parse(text.as_bytes()).unwrap(), good());
    }

    #[test]
    fn rejects_garbage() {
        for bytes in [&b""[..], b"not json", b"[]", b"{\"cpus\": 2", b"\xff\xfe"] {
            let err = TelemetrySnapshot::parse(bytes).unwrap_err();
            assert!(matches!(err, TelemetryError::Malformed(_)), "{err}");
        }
    }

    #[test]
    fn names_a_missing_field() {
        let text = GOOD.replace(r#""load5": 0.7, "#, "");
        let err = TelemetrySnapshot::parse(text.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("load5"), "{err}");
    }

    #[test]
    fn rejects_nan() {
        // JSON has no NaN, so it can only arrive as a bad token...
        let text = GOOD.replace("0.8", "NaN");
        let err = TelemetrySnapshot::parse(text.as_bytes()).unwrap_err();
        assert!(matches!(err, TelemetryError::Malformed(_)), "{err}");

        // ...or through a snapshot built in memory.
        let mut snapshot = good();
        snapshot.load1 = f64::NAN;
        assert_eq!(invalid_field(&snapshot), "load1");
        let mut snapshot = good();
        snapshot.mem_used_percent = f64::NAN;
        assert_eq!(invalid_field(&snapshot), "mem_used_percent");
    }

    #[test]
    fn rejects_out_of_range_readings() {
        let cases = [
            (r#""cpu_percent": 42.5"#, r#""cpu_percent": 100.5"#, "cpu_percent"),
            (r#""cpu_percent": 42.5"#, r#""cpu_percent": -1"#, "cpu_percent"),
            (r#""load15": 0.5"#, r#""load15": -0.5"#, "load15"),
            (r#""disk_free_percent": 71.0"#, r#""disk_free_percent": 1e3"#, "disk_free_percent"),
            (r#""mem_percent_of_limit": 40.2"#, r#""mem_percent_of_limit": 400"#, "cgroup.mem_percent_of_limit"),
            (r#""interval_ms": 1000"#, r#""interval_ms": 0"#, "interval_ms"),
            (r#""cpus": 2"#, r#""cpus": 0"#, "cpus"),
        ];
        for (from, to, field) in cases {
            let text = GOOD.replace(from, to);
            let err = TelemetrySnapshot::parse(text.as_bytes()).unwrap_err();
            assert!(matches!(err, TelemetryError::Invalid { field: f, .. } if f == field), "{to}: {err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn negative_counts_are_malformed() {
        let text = GOOD.replace(r#""cpus": 2"#, r#""cpus": -2"#);
        let err = TelemetrySnapshot::parse(text.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("-2"), "{err}");
    }

    #[test]
    fn stale_after_three_intervals() {
        let snapshot = good(); // sampled at 1764000000000, every 1000 ms
        let at = snapshot.sampled_at_ms;
        assert!(!snapshot.is_stale(at));
        assert!(!snapshot.is_stale(at + 3_000));
        assert!(snapshot.is_stale(at + 3_001));
        // A clock that stepped back is not staleness, but it is the future.
        assert!(!snapshot.is_stale(at - 60_000));
        assert!(snapshot.is_future(at - 60_000));
        assert!(!snapshot.is_future(at - 1_000));
        assert!(snapshot.is_future(at - 1_001));
        assert!(!snapshot.is_future(at + 5_000));
    }
}

//! Host CPU utilisation from the aggregate `cpu` line of `/proc/stat`.
//!
//! The line holds cumulative clock ticks per state since boot, so a
//! utilisation is always the difference between two readings.

use anyhow::{Context, bail};

/// Cumulative ticks from one reading of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every tick of every CPU.
    pub total: u64,
    /// Ticks doing nothing: `idle` plus `iowait` (waiting on a disk is
    /// not work a CPU could be relieved of).
    pub idle: u64,
}

impl CpuTimes {
    pub fn parse(proc_stat: &str) -> anyhow::Result<Self> {
        let line = proc_stat
            .lines()
            .find(|line| line.starts_with("cpu "))
            .context("/proc/stat has no aggregate `cpu` line")?;
        let ticks = line
            .split_whitespace()
            .skip(1)
            .map(str::parse::<u64>)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("/proc/stat: bad `cpu` line {line:?}"))?;
        // user nice system idle iowait irq softirq steal guest guest_nice:
        // guest time is already counted in user and nice, so stop at steal.
        if ticks.len() < 4 {
            bail!("/proc/stat: `cpu` line has {} fields: {line:?}", ticks.len());
        }
        let counted = &ticks[..ticks.len().min(8)];
        Ok(Self { total: counted.iter().sum(), idle: counted[3] + counted.get(4).copied().unwrap_or(0) })
    }

    /// Percent of CPU time spent busy between `earlier` and `self`, or
    /// `None` if no tick passed.
    pub fn busy_percent_since(&self, earlier: &CpuTimes) -> Option<f64> {
        // Counters can step back (iowait does on some kernels): saturate
        // rather than wrap, and clamp what is left.
        let total = self.total.saturating_sub(earlier.total);
        let idle = self.idle.saturating_sub(earlier.idle).min(total);
        if total == 0 {
            return None;
        }
        Some((total - idle) as f64 * 100.0 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "\
cpu  4705 356 584 3699176 23 0 6 7 0 0
cpu0 1393 280 254 1849370 11 0 4 3 0 0
cpu1 3312 76 330 1849806 12 0 2 4 0 0
intr 1462898 0 0 0
ctxt 2397373
btime 1764000000
";

    #[test]
    fn parses_the_aggregate_line() {
        let times = CpuTimes::parse(STAT).unwrap();
        assert_eq!(times, CpuTimes { total: 4705 + 356 + 584 + 3699176 + 23 + 6 + 7, idle: 3699176 + 23 });
    }

    #[test]
    fn guest_time_is_not_counted_twice() {
        let times = CpuTimes::parse("cpu  10 0 0 10 0 0 0 0 10 10\n").unwrap();
        assert_eq!(times.total, 20);
    }

    #[test]
    fn accepts_old_kernels_with_four_fields() {
        let times = CpuTimes::parse("cpu 1 2 3 4\n").unwrap();
        assert_eq!(times, CpuTimes { total: 10, idle: 4 });
    }

    #[test]
    fn rejects_what_is_not_proc_stat() {
        for bad in ["", "cpu0 1 2 3 4\n", "cpu  1 2 x 4\n", "cpu  1 2 3\n"] {
            assert!(CpuTimes::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn busy_percent_is_the_busy_share_of_the_delta() {
        let before = CpuTimes { total: 1000, idle: 800 };
        let after = CpuTimes { total: 1200, idle: 950 };
        assert_eq!(after.busy_percent_since(&before), Some(25.0));
        assert_eq!(before.busy_percent_since(&before), None);
    }

    #[test]
    fn busy_percent_survives_counters_stepping_back() {
        let before = CpuTimes { total: 1000, idle: 800 };
        // idle grew more than total (iowait noise): fully idle, not negative.
        let idle = CpuTimes { total: 1100, idle: 950 };
        assert_eq!(idle.busy_percent_since(&before), Some(0.0));
        // total went backwards: no ticks to judge by.
        let back = CpuTimes { total: 900, idle: 700 };
        assert_eq!(back.busy_percent_since(&before), None);
    }
}

//! Taking one [`TelemetrySnapshot`] of the host.
//!
//! CPU figures are rates, so the sampler keeps the previous counters and
//! every snapshot covers the time since the one before. A sample that fails
//! part-way is simply not written; the next one measures from the readings
//! that did succeed.

mod cgroup;
mod host;
mod proc_stat;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use paymesh_telemetryd::TelemetrySnapshot;

use self::cgroup::{Cgroup, HostCapacity};
use self::host::MemInfo;
use self::proc_stat::CpuTimes;

#[derive(Debug)]
pub struct Sampler {
    interval: Duration,
    disk_paths: Vec<PathBuf>,
    last_cpu: Option<CpuTimes>,
    cgroup: Cgroup,
}

impl Sampler {
    pub fn new(interval: Duration, disk_paths: Vec<PathBuf>, cgroup_root: PathBuf) -> Self {
        Self { interval, disk_paths, last_cpu: None, cgroup: Cgroup::new(cgroup_root) }
    }

    /// Takes the CPU counters that the first snapshot is measured against.
    /// This sample has nothing to measure against and so always fails;
    /// anything else wrong fails the first real sample too, and is logged
    /// there.
    pub fn prime(&mut self) {
        let _ = self.sample();
    }

    pub fn sample(&mut self) -> anyhow::Result<TelemetrySnapshot> {
        let mem = MemInfo::parse(&read("/proc/meminfo")?)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let host = HostCapacity { cpus: f64::from(cpus), mem_bytes: mem.total_kb.saturating_mul(1024) };
        // Both CPU counters are read, and both baselines moved on, before
        // either can fail the sample: the two figures keep measuring the
        // same span of time.
        let cpu = CpuTimes::parse(&read("/proc/stat")?)?;
        let last_cpu = self.last_cpu.replace(cpu);
        let cgroup = self.cgroup.sample(host);
        let last_cpu = last_cpu.context("no earlier CPU reading to measure against yet")?;
        let cpu_percent = cpu.busy_percent_since(&last_cpu).context("no CPU ticks since the last sample")?;
        let cgroup = cgroup?;
        let (load1, load5, load15) = host::load_averages()?;
        let disk_free_percent = host::disk_free_percent(&self.disk_paths)?;

        let sampled_at_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).context("the clock is before 1970")?.as_millis() as u64;
        Ok(TelemetrySnapshot {
            sampled_at_ms,
            interval_ms: self.interval.as_millis() as u64,
            cpus,
            cpu_percent: round2(cpu_percent),
            load1: round2(load1),
            load5: round2(load5),
            load15: round2(load15),
            mem_used_percent: round2(mem.used_percent()),
            disk_free_percent: round2(disk_free_percent),
            cgroup: cgroup.map(|mut usage| {
                usage.cpu_percent_of_limit = round2(usage.cpu_percent_of_limit);
                usage.mem_percent_of_limit = round2(usage.mem_percent_of_limit);
                usage
            }),
        })
    }
}

fn read(path: &str) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

/// Two decimals are more than any threshold needs, and keep the file
/// readable for the operator who `cat`s it.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_machine() {
        let dir = std::env::temp_dir();
        let mut sampler = Sampler::new(Duration::from_millis(100), vec![dir.clone()], dir.join("no-cgroup-here"));
        assert!(sampler.sample().is_err(), "the first sample has no baseline");
        // Two CPUs idle for 50 ms may still tick zero times; keep trying.
        let snapshot = (0..100)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(20));
                sampler.sample().ok()
            })
            .expect("a sample within two seconds");
        snapshot.validate().unwrap();
        assert_eq!(snapshot.interval_ms, 100);
        assert_eq!(snapshot.cgroup, None);
    }

    #[test]
    fn rounds_to_two_decimals() {
        assert_eq!(round2(42.53846153846154), 42.54);
        assert_eq!(round2(0.0), 0.0);
        assert_eq!(round2(100.0), 100.0);
    }
}

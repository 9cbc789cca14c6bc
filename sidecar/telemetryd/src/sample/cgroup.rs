//! Utilisation against the limits of the cgroup v2 the daemon runs in, so a
//! pod's pressure is seen against its own limits rather than the node's.
//!
//! Inside a container the cgroup namespace mounts the pod's own cgroup at
//! `/sys/fs/cgroup`; on a host that is the root cgroup, which has no limit
//! files, and the readings are `None`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use paymesh_telemetryd::CgroupUsage;

/// What the host offers, for the resource a cgroup leaves unlimited.
#[derive(Debug, Clone, Copy)]
pub struct HostCapacity {
    pub cpus: f64,
    pub mem_bytes: u64,
}

#[derive(Debug)]
pub struct Cgroup {
    root: PathBuf,
    /// `usage_usec` from `cpu.stat` at the previous sample, and when.
    last_usage: Option<(u64, Instant)>,
}

impl Cgroup {
    pub fn new(root: PathBuf) -> Self {
        Self { root, last_usage: None }
    }

    /// Reads the usage and the limits. `None` without cgroup v2 or without
    /// any limit. When only one resource is limited the other is measured
    /// against the host, which is its limit in effect.
    pub fn sample(&mut self, host: HostCapacity) -> anyhow::Result<Option<CgroupUsage>> {
        if !self.root.join("cgroup.controllers").exists() {
            return Ok(None);
        }
        let cpu_limit = match self.read_optional("cpu.max")? {
            Some(text) => parse_cpu_max(&text)?,
            None => None,
        };
        let mem_limit = match self.read_optional("memory.max")? {
            Some(text) => parse_memory_max(&text)?,
            None => None,
        };
        let usage_usec = parse_usage_usec(&self.read("cpu.stat")?)?;
        let now = Instant::now();
        let last = self.last_usage.replace((usage_usec, now));

        if cpu_limit.is_none() && mem_limit.is_none() {
            return Ok(None);
        }
        let Some((last_usec, last_at)) = last else {
            bail!("no earlier cgroup CPU reading to measure against yet");
        };
        let cpus = cpu_limit.unwrap_or(host.cpus);
        let elapsed_usec = now.duration_since(last_at).as_micros() as f64;
        let used_usec = usage_usec.saturating_sub(last_usec) as f64;
        let cpu_percent = if elapsed_usec > 0.0 { used_usec * 100.0 / (elapsed_usec * cpus) } else { 0.0 };

        let mem_limit = mem_limit.unwrap_or(host.mem_bytes);
        let current = parse_bytes("memory.current", &self.read("memory.current")?)?;
        let inactive_file = match self.read_optional("memory.stat")? {
            Some(stat) => stat_field(&stat, "inactive_file").unwrap_or(0),
            None => 0,
        };
        let mem_percent = working_set(current, inactive_file) as f64 * 100.0 / mem_limit as f64;

        // Bursts (`cpu.max.burst`), a limit lowered under current usage and
        // the few microseconds between reading usage and the clock can all
        // land a little past 100: past the limit is simply "at the limit".
        Ok(Some(CgroupUsage {
            cpu_percent_of_limit: cpu_percent.clamp(0.0, 100.0),
            mem_percent_of_limit: mem_percent.clamp(0.0, 100.0),
        }))
    }

    fn read(&self, name: &str) -> anyhow::Result<String> {
        let path = self.root.join(name);
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// The root cgroup has no `cpu.max` and a cgroup without the memory
    /// controller no `memory.max`: absent means unlimited.
    fn read_optional(&self, name: &str) -> anyhow::Result<Option<String>> {
        let path: &Path = &self.root.join(name);
        match fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// `cpu.max` is `<quota|max> <period>` in microseconds. Returns the CPUs
/// the quota allows, `None` when unlimited.
fn parse_cpu_max(text: &str) -> anyhow::Result<Option<f64>> {
    let mut fields = text.split_whitespace();
    let quota = fields.next().unwrap_or_default();
    if quota == "max" {
        return Ok(None);
    }
    let quota: u64 = quota
        .parse()
        .ok()
        .filter(|&q| q > 0)
        .with_context(|| format!("cpu.max: expected `<quota|max> <period>`, got {text:?}"))?;
    let period: u64 = fields
        .next()
        .and_then(|p| p.parse().ok())
        .filter(|&p| p > 0)
        .with_context(|| format!("cpu.max: expected `<quota|max> <period>`, got {text:?}"))?;
    Ok(Some(quota as f64 / period as f64))
}

/// `memory.max` is a byte count or `max`.
fn parse_memory_max(text: &str) -> anyhow::Result<Option<u64>> {
    if text.trim() == "max" {
        return Ok(None);
    }
    let bytes = parse_bytes("memory.max", text)?;
    if bytes == 0 {
        bail!("memory.max: a limit of 0 bytes");
    }
    Ok(Some(bytes))
}

fn parse_bytes(file: &str, text: &str) -> anyhow::Result<u64> {
    text.trim().parse().with_context(|| format!("{file}: expected a byte count, got {text:?}"))
}

fn parse_usage_usec(cpu_stat: &str) -> anyhow::Result<u64> {
    stat_field(cpu_stat, "usage_usec").context("cpu.stat has no usage_usec")
}

/// A value from a flat-keyed cgroup file (`key value` per line).
fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key { v.trim().parse().ok() } else { None }
    })
}

/// Memory the cgroup cannot give back without reclaiming work: what the
/// kubelet calls the working set. Inactive page cache is dropped long
/// before the OOM killer is involved, so it is not pressure.
fn working_set(current: u64, inactive_file: u64) -> u64 {
    current.saturating_sub(inactive_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max() {
        assert_eq!(parse_cpu_max("max 100000\n").unwrap(), None);
        assert_eq!(parse_cpu_max("max\n").unwrap(), None);
        assert_eq!(parse_cpu_max("50000 100000\n").unwrap(), Some(0.5));
        assert_eq!(parse_cpu_max("200000 100000").unwrap(), Some(2.0));
        for bad in ["", "half 100000", "50000", "50000 0", "0 100000", "-1 100000"] {
            assert!(parse_cpu_max(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn memory_max() {
        assert_eq!(parse_memory_max("max\n").unwrap(), None);
        assert_eq!(parse_memory_max("1073741824\n").unwrap(), Some(1 << 30));
        for bad in ["", "1G", "0", "-5"] {
            assert!(parse_memory_max(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpu_stat_usage() {
        let stat = "usage_usec 8842315\nuser_usec 5121000\nsystem_usec 3721315\n\
                    nr_periods 10\nnr_throttled 2\nthrottled_usec 51000\n";
        assert_eq!(parse_usage_usec(stat).unwrap(), 8842315);
        assert!(parse_usage_usec("user_usec 1\n").is_err());
    }

    #[test]
    fn working_set_leaves_out_inactive_cache() {
        let stat = "anon 1000\nfile 600\nactive_file 200\ninactive_file 400\n";
        let inactive = stat_field(stat, "inactive_file").unwrap();
        assert_eq!(working_set(1600, inactive), 1200);
        assert_eq!(working_set(100, 400), 0);
    }

    /// A cgroup directory holding `files`, and a reader of it.
    fn fake_cgroup(files: &[(&str, &str)]) -> (tempfile::TempDir, Cgroup) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        let cgroup = Cgroup::new(dir.path().to_path_buf());
        (dir, cgroup)
    }

    /// A [`fake_cgroup`] of cgroup v2 with the cpu and memory controllers
    /// and a first CPU reading, plus `files`.
    fn fake_cgroup_v2(files: &[(&str, &str)]) -> (tempfile::TempDir, Cgroup) {
        let v2 = [("cgroup.controllers", "cpu memory\n"), ("cpu.stat", "usage_usec 10\n")];
        fake_cgroup(&[&v2[..], files].concat())
    }

    const HOST: HostCapacity = HostCapacity { cpus: 2.0, mem_bytes: 4 << 30 };

    #[test]
    fn no_cgroup_v2_means_none() {
        let (_dir, mut cgroup) = fake_cgroup(&[("cpu.max", "50000 100000\n")]);
        assert_eq!(cgroup.sample(HOST).unwrap(), None);
    }

    #[test]
    fn no_limits_means_none() {
        let (_dir, mut cgroup) =
            fake_cgroup_v2(&[("cpu.max", "max 100000\n"), ("memory.max", "max\n"), ("memory.current", "100\n")]);
        assert_eq!(cgroup.sample(HOST).unwrap(), None);
        assert_eq!(cgroup.sample(HOST).unwrap(), None);
    }

    #[test]
    fn limits_give_readings_from_the_second_sample() {
        let (dir, mut cgroup) = fake_cgroup_v2(&[
            ("cpu.max", "50000 100000\n"),
            ("memory.max", "1000\n"),
            ("memory.current", "600\n"),
            ("memory.stat", "inactive_file 100\n"),
        ]);
        assert!(cgroup.sample(HOST).is_err(), "no CPU baseline yet");

        fs::write(dir.path().join("cpu.stat"), "usage_usec 1000000000\n").unwrap();
        let usage = cgroup.sample(HOST).unwrap().expect("limits are set");
        assert_eq!(usage.mem_percent_of_limit, 50.0);
        // Far more CPU than half a core could have used: at the limit.
        assert_eq!(usage.cpu_percent_of_limit, 100.0);
    }

    #[test]
    fn an_unlimited_resource_is_measured_against_the_host() {
        let (_dir, mut cgroup) = fake_cgroup_v2(&[("cpu.max", "50000 100000\n"), ("memory.current", "1073741824\n")]);
        let _ = cgroup.sample(HOST);
        let usage = cgroup.sample(HOST).unwrap().unwrap();
        assert_eq!(usage.mem_percent_of_limit, 25.0);
        assert_eq!(usage.cpu_percent_of_limit, 0.0);
    }
}

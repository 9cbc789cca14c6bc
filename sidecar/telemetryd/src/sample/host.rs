//! Host-wide readings besides CPU: memory, load averages, free disk.

use std::path::PathBuf;

use anyhow::{Context, bail};
use nix::sys::{statvfs::statvfs, sysinfo::sysinfo};

/// The three load averages, through `sysinfo(2)`.
pub fn load_averages() -> anyhow::Result<(f64, f64, f64)> {
    Ok(sysinfo().context("sysinfo")?.load_average())
}

/// Memory figures from `/proc/meminfo`, in kB.
///
/// Not `sysinfo(2)`: its `freeram` counts page cache as used, so a host
/// that has merely read a lot of files would look out of memory and shed
/// for nothing. `MemAvailable` is the kernel's own estimate of what can be
/// handed out without swapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total_kb: u64,
    pub available_kb: u64,
}

impl MemInfo {
    pub fn parse(meminfo: &str) -> anyhow::Result<Self> {
        let field = |key: &str| {
            meminfo
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("/proc/meminfo has no readable {key}"))
        };
        let total_kb = field("MemTotal")?;
        if total_kb == 0 {
            bail!("/proc/meminfo: MemTotal is 0");
        }
        Ok(Self { total_kb, available_kb: field("MemAvailable")? })
    }

    pub fn used_percent(&self) -> f64 {
        let used = self.total_kb.saturating_sub(self.available_kb);
        used as f64 * 100.0 / self.total_kb as f64
    }
}

/// The lowest free-space percentage over the filesystems holding `paths`,
/// counting only the space an unprivileged writer may still use.
pub fn disk_free_percent(paths: &[PathBuf]) -> anyhow::Result<f64> {
    let mut lowest = 100.0_f64;
    for path in paths {
        let stat = statvfs(path.as_path()).with_context(|| format!("statvfs {}", path.display()))?;
        if stat.blocks() == 0 {
            bail!("{} is on a filesystem without blocks", path.display());
        }
        let free = stat.blocks_available() as f64 * 100.0 / stat.blocks() as f64;
        lowest = lowest.min(free);
    }
    Ok(lowest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "\
MemTotal:       24684544 kB
MemFree:        23488512 kB
MemAvailable:   18513408 kB
Buffers:           66560 kB
Cached:          1041408 kB
";

    #[test]
    fn meminfo_used_excludes_what_is_available() {
        let info = MemInfo::parse(MEMINFO).unwrap();
        assert_eq!(info, MemInfo { total_kb: 24684544, available_kb: 18513408 });
        assert_eq!(info.used_percent(), 25.0);
    }

    #[test]
    fn meminfo_needs_both_fields() {
        let err = MemInfo::parse("MemTotal: 100 kB\nMemFree: 50 kB\n").unwrap_err();
        assert!(err.to_string().contains("MemAvailable"), "{err}");
        assert!(MemInfo::parse("MemTotal: 0 kB\nMemAvailable: 0 kB\n").is_err());
    }

    #[test]
    fn disk_free_on_this_machine() {
        let here = std::env::temp_dir();
        let free = disk_free_percent(&[here.clone(), here]).unwrap();
        assert!((0.0..=100.0).contains(&free), "{free}");
        assert!(disk_free_percent(&["/no/such/dir".into()]).is_err());
    }
}

//! Command line and environment. Every flag has a `PAYMESH_*` variable so the
//! daemon can be configured from a Kubernetes pod spec alone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use paymesh_process::LogFormat;

/// Samples host and cgroup v2 utilisation and writes the telemetry file the
/// paymesh sidecar reads.
#[derive(Debug, Parser)]
#[command(name = "paymesh-telemetryd", version)]
pub struct Args {
    /// The telemetry file to write (atomically, every interval).
    #[arg(long, value_name = "FILE", env = "PAYMESH_TELEMETRY_OUT")]
    pub out: PathBuf,

    /// Time between samples, e.g. `1s`, `500ms`.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PAYMESH_TELEMETRY_INTERVAL",
        default_value = "1s",
        value_parser = parse_interval
    )]
    pub interval: Duration,

    /// A directory whose filesystem's free space to watch (repeatable; the
    /// variable takes a comma-separated list). The file reports the lowest.
    /// Default: the directory of --out.
    #[arg(long = "disk-path", value_name = "DIR", env = "PAYMESH_TELEMETRY_DISK_PATHS", value_delimiter = ',')]
    pub disk_paths: Vec<PathBuf>,

    /// Where the daemon's own cgroup v2 is mounted.
    #[arg(long, value_name = "DIR", env = "PAYMESH_TELEMETRY_CGROUP_ROOT", default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,

    /// Do not sample: check that --out holds a valid sample no older than
    /// three intervals and exit 0 if so, 1 if not (a liveness probe).
    #[arg(long, env = "PAYMESH_TELEMETRY_CHECK")]
    pub check: bool,

    /// Log line format (on stderr).
    #[arg(
        long,
        value_enum,
        env = "PAYMESH_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

impl Args {
    /// The directory the telemetry file lives in.
    pub fn out_dir(&self) -> &Path {
        match self.out.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// The directories whose free space is watched.
    pub fn disk_paths(&self) -> Vec<PathBuf> {
        if self.disk_paths.is_empty() { vec![self.out_dir().to_path_buf()] } else { self.disk_paths.clone() }
    }
}

/// The jiffy (10 ms) is the resolution of `/proc/stat`; sampling faster
/// measures nothing but rounding.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < MIN_INTERVAL {
        return Err(format!("must be at least {}", humantime::format_duration(MIN_INTERVAL)));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("paymesh-telemetryd").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let args = parse(&["--out", "/run/paymesh/telemetry.json"]).unwrap();
        assert_eq!(args.interval, Duration::from_secs(1));
        assert_eq!(args.disk_paths(), vec![PathBuf::from("/run/paymesh")]);
        assert_eq!(args.cgroup_root, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(args.log_format, LogFormat::Text);
        assert!(!args.check);
        assert!(parse(&["--out", "/run/t.json", "--check"]).unwrap().check);
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        let args = parse(&["--out", "telemetry.json"]).unwrap();
        assert_eq!(args.disk_paths(), vec![PathBuf::from(".")]);
    }

    #[test]
    fn disk_paths_repeat_or_split_on_commas() {
        let args = parse(&["--out=/run/t.json", "--disk-path=/var/lib/paymesh,/var/log", "--disk-path=/data"]).unwrap();
        let expected: Vec<PathBuf> = ["/var/lib/paymesh", "/var/log", "/data"].map(PathBuf::from).into();
        assert_eq!(args.disk_paths(), expected);
    }

    #[test]
    fn rejects_bad_intervals() {
        for bad in ["banana", "0s", "1ms", "-1s"] {
            let flag = format!("--interval={bad}");
            let err = parse(&["--out=/run/t.json", &flag]).unwrap_err();
            assert!(err.to_string().contains("--interval"), "{bad}: {err}");
        }
        let args = parse(&["--out=/run/t.json", "--interval", "250ms"]).unwrap();
        assert_eq!(args.interval, Duration::from_millis(250));
    }

    #[test]
    fn out_is_required() {
        assert!(parse(&[]).is_err());
    }
}

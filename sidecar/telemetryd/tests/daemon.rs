//! The real `paymesh-telemetryd` process, on this machine: the file it
//! writes, what it survives, and how it stops.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use paymesh_telemetryd::{CgroupUsage, TelemetrySnapshot};

const BIN: &str = env!("CARGO_BIN_EXE_paymesh-telemetryd");

/// Generous: a loaded CI machine may be slow, and nothing here is a
/// performance assertion.
const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `check` until it gives a value, or fails the test after
/// [`PATIENCE`] saying what it was waiting for.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running daemon, killed if the test ends without stopping it.
struct Daemon {
    child: Child,
    out: PathBuf,
}

impl Daemon {
    fn start(out: &Path, extra: &[&str]) -> Self {
        let mut command = Command::new(BIN);
        command.env_clear().env("RUST_LOG", "warn").arg("--out").arg(out).args(extra).stdout(Stdio::null());
        Self::spawn(&mut command, out)
    }

    fn spawn(command: &mut Command, out: &Path) -> Self {
        Self { child: command.spawn().expect("start paymesh-telemetryd"), out: out.to_path_buf() }
    }

    /// The next valid snapshot on disk.
    fn snapshot(&self) -> TelemetrySnapshot {
        eventually("a valid telemetry file", || TelemetrySnapshot::parse(&fs::read(&self.out).ok()?).ok())
    }

    fn signal(&mut self, signal: Signal) -> ExitStatus {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("send signal");
        eventually("the daemon to exit", || self.child.try_wait().unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn run_with(args: &[&str]) -> Output {
    Command::new(BIN).env_clear().args(args).output().expect("run paymesh-telemetryd")
}

#[test]
fn writes_a_valid_file_on_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("telemetry.json");
    let daemon = Daemon::start(&out, &["--interval", "200ms"]);

    let first = daemon.snapshot();
    assert_eq!(first.interval_ms, 200);
    assert!(first.cpus >= 1);
    assert!(!first.is_stale(now_ms()));

    // And it keeps sampling.
    eventually("a newer sample", || {
        let next = daemon.snapshot();
        (next.sampled_at_ms > first.sampled_at_ms).then_some(())
    });
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| !name.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert_eq!(names, ["telemetry.json"]);
}

#[test]
fn recreates_its_output_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run/paymesh");
    fs::create_dir_all(&dir).unwrap();
    let out = dir.join("telemetry.json");
    let daemon = Daemon::start(&out, &["--interval", "100ms"]);
    let before = daemon.snapshot();

    fs::remove_dir_all(root.path().join("run")).unwrap();
    let after = daemon.snapshot();
    assert!(dir.is_dir());
    assert!(after.sampled_at_ms >= before.sampled_at_ms);
}

#[test]
fn reads_a_cgroup_with_limits() {
    let cgroup = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("cgroup.controllers", "cpuset cpu io memory pids\n"),
        ("cpu.max", "50000 100000\n"),
        ("cpu.stat", "usage_usec 1000\nuser_usec 600\nsystem_usec 400\n"),
        ("memory.max", "1073741824\n"),
        ("memory.current", "268435456\n"),
    ] {
        fs::write(cgroup.path().join(name), text).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("telemetry.json");
    let root = cgroup.path().to_str().unwrap();
    let daemon = Daemon::start(&out, &["--interval", "100ms", "--cgroup-root", root]);

    let usage = daemon.snapshot().cgroup.expect("readings against the limits");
    assert_eq!(
        usage,
        CgroupUsage {
            // The fake cgroup's usage never moves.
            cpu_percent_of_limit: 0.0,
            mem_percent_of_limit: 25.0,
        }
    );
}

#[test]
fn no_cgroup_limits_is_null() {
    let cgroup = tempfile::tempdir().unwrap();
    fs::write(cgroup.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
    fs::write(cgroup.path().join("cpu.stat"), "usage_usec 1000\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("telemetry.json");
    let root = cgroup.path().to_str().unwrap();
    let daemon = Daemon::start(&out, &["--interval", "100ms", "--cgroup-root", root]);

    assert_eq!(daemon.snapshot().cgroup, None);
    let text = fs::read_to_string(&out).unwrap();
    assert!(text.contains(r#""cgroup":null"#), "{text}");
}

#[test]
fn sigterm_and_sigint_exit_zero_mid_interval() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("telemetry.json");
        // An hour-long interval: only the signal can end the wait.
        let mut daemon = Daemon::start(&out, &["--interval", "1h"]);
        daemon.snapshot();
        let status = daemon.signal(signal);
        assert!(status.success(), "{signal}: {status}");
    }
}

#[test]
fn bad_flags_fail_with_a_message() {
    let cases: [(&[&str], &str); 3] = [
        (&[], "--out"),
        (&["--out", "/tmp/t.json", "--interval", "soon"], "--interval"),
        (&["--out", "/tmp/t.json", "--log-format", "xml"], "--log-format"),
    ];
    for (args, flag) in cases {
        let output = run_with(args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn flags_come_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("telemetry.json");
    let mut daemon = Daemon::spawn(
        Command::new(BIN)
            .env_clear()
            .env("PAYMESH_TELEMETRY_OUT", &out)
            .env("PAYMESH_TELEMETRY_INTERVAL", "300ms")
            .env("PAYMESH_TELEMETRY_DISK_PATHS", format!("{},/", dir.path().display()))
            .env("PAYMESH_LOG_FORMAT", "json")
            .stderr(Stdio::piped()),
        &out,
    );
    assert_eq!(daemon.snapshot().interval_ms, 300);
    assert!(daemon.signal(Signal::SIGTERM).success());

    let mut logs = String::new();
    let mut stderr = daemon.child.stderr.take().unwrap();
    std::io::Read::read_to_string(&mut stderr, &mut logs).unwrap();
    let first: serde_json::Value = serde_json::from_str(logs.lines().next().unwrap())
        .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {logs}"));
    assert_eq!(first["fields"]["message"], "paymesh-telemetryd started");
}

#[test]
fn check_passes_while_the_daemon_writes_and_fails_once_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("telemetry.json");
    let out_arg = out.to_str().unwrap();
    let check = |interval: &str| run_with(&["--check", "--out", out_arg, "--interval", interval]);

    let missing = check("200ms");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("telemetry.json"));

    let mut daemon = Daemon::start(&out, &["--interval", "200ms"]);
    daemon.snapshot();
    let ok = check("200ms");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(daemon.signal(Signal::SIGTERM).success());

    // Stopped: the file ages past three intervals of 200 ms.
    eventually("--check to fail on the stopped daemon's file", || (!check("200ms").status.success()).then_some(()));
    let stale = check("200ms");
    assert!(String::from_utf8_lossy(&stale.stderr).contains("ms old"), "{}", String::from_utf8_lossy(&stale.stderr));

    fs::write(&out, "not json").unwrap();
    assert!(!check("1h").status.success());
}

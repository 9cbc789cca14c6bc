//! What the daemon costs the host it watches. Runs the release
//! `paymesh-telemetryd` at a 1 s interval for 30 s (`COST_SECONDS` to
//! change) and prints its resident memory (`VmRSS`, `VmHWM` from
//! `/proc/PID/status`) and its share of one core (`utime + stime` from
//! `/proc/PID/stat`, and the nanosecond run time from `/proc/PID/schedstat`
//! where the kernel keeps it, since a daemon this idle may use a single
//! 10 ms tick in 30 s). The budget is 5 MB and 1 % of a core.
//!
//! ```text
//! cargo bench -p paymesh-telemetryd --bench cost
//! ```

use std::fs;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, SysconfVar, sysconf};
use paymesh_telemetryd::TelemetrySnapshot;

fn main() {
    let seconds: u64 = std::env::var("COST_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let ticks_per_second = sysconf(SysconfVar::CLK_TCK).expect("sysconf").expect("CLK_TCK") as f64;

    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("telemetry.json");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_paymesh-telemetryd"))
        .env_clear()
        .arg("--out")
        .arg(&out)
        .args(["--interval", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start paymesh-telemetryd");
    let pid = daemon.id();

    // Measure the steady state, not start-up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out.exists() {
        assert!(Instant::now() < deadline, "no telemetry file after 10 s");
        sleep(Duration::from_millis(50));
    }
    let cpu_before = cpu_ticks(pid);
    let run_ns_before = run_time_ns(pid);
    let started = Instant::now();
    let mut rss_max_kb = 0;
    for _ in 0..seconds {
        sleep(Duration::from_secs(1));
        rss_max_kb = rss_max_kb.max(status_kb(pid, "VmRSS"));
    }
    let cpu_ticks_used = cpu_ticks(pid) - cpu_before;
    let run_ns = run_time_ns(pid).zip(run_ns_before).map(|(a, b)| a - b);
    let elapsed = started.elapsed().as_secs_f64();
    let rss_kb = status_kb(pid, "VmRSS");
    let hwm_kb = status_kb(pid, "VmHWM");
    let (anon_kb, file_kb) = (status_kb(pid, "RssAnon"), status_kb(pid, "RssFile"));

    let snapshot = TelemetrySnapshot::parse(&fs::read(&out).expect("read telemetry")).expect("a valid telemetry file");
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let still_writing = !snapshot.is_stale(now_ms);
    stop(&mut daemon);

    let tick_percent = cpu_ticks_used as f64 / ticks_per_second / elapsed * 100.0;
    println!("paymesh-telemetryd at a 1 s interval, measured over {elapsed:.1} s:");
    if let Some(ns) = run_ns {
        let percent = ns as f64 / 1e9 / elapsed * 100.0;
        let per_sample_us = ns as f64 / 1e3 / elapsed;
        println!(
            "  cpu: {percent:.4} % of one core (schedstat: {:.1} ms run time, ~{per_sample_us:.0} us per sample)",
            ns as f64 / 1e6
        );
    }
    println!("  cpu: {tick_percent:.3} % of one core (utime+stime: {cpu_ticks_used} ticks of 1/{ticks_per_second} s)");
    println!(
        "  rss: {} now ({} anonymous, {} file-backed), {} highest sampled, {} peak (VmHWM)",
        mib(rss_kb),
        mib(anon_kb),
        mib(file_kb),
        mib(rss_max_kb),
        mib(hwm_kb)
    );
    println!("  file fresh at the end: {still_writing}");
    println!("  budget: < 5 MB RSS, < 1 % of one core");
}

/// `utime + stime` of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name is in parentheses and may hold spaces: count fields
    // from after it. utime and stime are fields 14 and 15 of the line,
    // 12th and 13th after the name.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| fields[i].parse::<u64>().expect("a tick count");
    field(11) + field(12)
}

/// Time spent on a CPU, in nanoseconds: the first field of
/// `/proc/PID/schedstat`, which only kernels with scheduler statistics have.
fn run_time_ns(pid: u32) -> Option<u64> {
    let schedstat = fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    schedstat.split_whitespace().next()?.parse().ok()
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn mib(kb: u64) -> String {
    format!("{:.2} MiB", kb as f64 / 1024.0)
}

fn stop(daemon: &mut Child) {
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = daemon.wait().expect("wait");
    assert!(status.success(), "paymesh-telemetryd exited with {status}");
}

//! The load harness (`make bench`) is Python; its pure parts (the wrk and
//! oha parsers, the statistics, the targets, the report and the chart) have
//! tests on canned data in `harness/selftest.py`. This runs them with the
//! workspace's tests, so a change that breaks the report is caught by
//! `make test` without running any load.

use std::process::Command;

#[test]
fn harness_selftest_passes() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/harness/selftest.py");
    let out =
        Command::new("python3").arg(script).output().unwrap_or_else(|e| panic!("cannot run python3 {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

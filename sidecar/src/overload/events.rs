//! Switch records: one JSON line per switch in `overload.events_file`.
//!
//! The file is the durable record: each line is appended and fsynced
//! before the switch counts as recorded. The same record then goes to etcd
//! through a bounded queue (see `etcd.rs`), so an etcd outage delays the
//! shared copy but can never lose or block a switch.
//!
//! The file rotates by size (`overload.events_rotate`) before a line would
//! take it past `max_bytes`, so it never grows without bound. Each append
//! opens the path afresh, so after an external logrotate moved the file the
//! next record lands in a new one at the path (SIGUSR1 needs to do nothing
//! here).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use paymesh_telemetryd::TelemetrySnapshot;
use serde::{Deserialize, Serialize};

use super::board::{Policy, Switch};
use crate::observe::rotate::{self, Rotate};

/// One switch, as written to the file and to etcd (`paymeshctl
/// switch-events` reads both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchEvent {
    /// RFC 3339 with microseconds; also the etcd key's last segment.
    pub time: String,
    pub time_ms: u64,
    pub pod: String,
    pub component: String,
    /// `on` or `off`.
    pub state: String,
    /// `overload`, `recovered`, `manual` or `config`.
    pub reason: String,
    /// `board` or `manual`: who controls the component after this switch.
    pub control: String,
    /// The last telemetry sample the board had, if any.
    pub readings: Option<TelemetrySnapshot>,
    pub thresholds: EventThresholds,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventThresholds {
    pub shed: Levels,
    pub restore: Levels,
    pub hold_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Levels {
    pub cpu_percent: f64,
    pub mem_percent: f64,
}

impl SwitchEvent {
    pub fn new(
        time: SystemTime,
        pod: &str,
        switch: Switch,
        control: &str,
        readings: Option<TelemetrySnapshot>,
        policy: &Policy,
    ) -> Self {
        let levels = |t: crate::config::Thresholds| Levels { cpu_percent: t.cpu_percent, mem_percent: t.mem_percent };
        SwitchEvent {
            time: humantime::format_rfc3339_micros(time).to_string(),
            time_ms: super::telemetry::unix_ms(time),
            pod: pod.to_owned(),
            component: switch.component.as_str().to_owned(),
            state: if switch.on { "on" } else { "off" }.to_owned(),
            reason: switch.reason.as_str().to_owned(),
            control: control.to_owned(),
            readings,
            thresholds: EventThresholds {
                shed: levels(policy.shed),
                restore: levels(policy.restore),
                hold_ms: policy.hold.as_millis() as u64,
            },
        }
    }

    /// `<pod>/<time>`: the key below `<prefix>/switch-events/`. The time is
    /// fixed-width, so keys sort in time order.
    pub fn key_suffix(&self) -> String {
        format!("{}/{}", self.pod, self.time)
    }

    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a switch event serialises")
    }
}

/// Appends `line` and a newline to `path` in one write, then fsyncs,
/// rotating first if the line would take the file past `rotate.max_bytes`.
/// A new file's directory is created if needed and fsynced too, so the file
/// itself (and a rotation's renames) survive a crash. Blocking: run off the
/// async workers.
pub fn append(path: &Path, line: &str, rotate: Rotate) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut existed = path.exists();
    if existed && rotate.due(std::fs::metadata(path)?.len(), line.len() as u64 + 1) {
        rotate::shift(path, rotate.keep)?;
        existed = false;
    }
    if !existed {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    file.write_all(buf.as_bytes())?;
    file.sync_data()?;
    if !existed {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Makes wall-clock times strictly increasing, so two records of one pod
/// never share an etcd key even if the clock steps back or stands still.
#[derive(Debug, Default)]
pub struct Clock {
    last: Option<SystemTime>,
}

impl Clock {
    pub fn now(&mut self) -> SystemTime {
        let mut t = SystemTime::now();
        if let Some(last) = self.last.filter(|l| *l >= t) {
            t = last + Duration::from_micros(1);
        }
        self.last = Some(t);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::Component;
    use crate::config::Thresholds;
    use crate::overload::board::Reason;

    fn policy() -> Policy {
        Policy {
            order: Component::ALL.to_vec(),
            shed: Thresholds { cpu_percent: 85.0, mem_percent: 90.0 },
            restore: Thresholds { cpu_percent: 60.0, mem_percent: 75.0 },
            hold: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_record_has_the_fields_paymeshctl_reads() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456);
        let switch = Switch { component: Component::AccessLog, on: false, reason: Reason::Overload };
        let e = SwitchEvent::new(time, "pod-1", switch, "board", None, &policy());
        let v: serde_json::Value = serde_json::from_str(&e.to_line()).unwrap();
        assert_eq!(v["time"], "2025-11-24T16:00:00.123456Z");
        assert_eq!(v["time_ms"], 1_764_000_000_123u64);
        assert_eq!(v["pod"], "pod-1");
        assert_eq!(v["component"], "access_log");
        assert_eq!(v["state"], "off");
        assert_eq!(v["reason"], "overload");
        assert!(v["readings"].is_null());
        assert_eq!(v["thresholds"]["shed"]["cpu_percent"], 85.0);
        assert_eq!(v["thresholds"]["hold_ms"], 10_000);
        assert_eq!(e.key_suffix(), "pod-1/2025-11-24T16:00:00.123456Z");
    }

    #[test]
    fn appends_lines_creating_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib/events.jsonl");
        append(&path, "{\"a\":1}", NO_ROTATE).unwrap();
        append(&path, "{\"a\":2}", NO_ROTATE).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }

    const NO_ROTATE: Rotate = Rotate { max_bytes: u64::MAX, keep: 1 };

    #[test]
    fn rotates_before_a_line_would_pass_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let rotate = Rotate { max_bytes: 22, keep: 2 };
        for i in 0..7 {
            append(&path, &format!("{{\"n\":{i:04}}}"), rotate).unwrap(); // 11 bytes with the newline
        }
        let files = rotate::kept_files(&path, 2);
        let texts: Vec<_> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
        // 0..1 were dropped with the oldest file; each file holds whole lines.
        assert_eq!(texts, ["{\"n\":0002}\n{\"n\":0003}\n", "{\"n\":0004}\n{\"n\":0005}\n", "{\"n\":0006}\n"]);
    }

    #[test]
    fn clock_never_repeats() {
        let mut c = Clock::default();
        let times: Vec<_> = (0..1000).map(|_| c.now()).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }
}

//! The overload switch: shed non-functional work while the host is
//! overloaded, restore it once the host has recovered, record every switch.
//!
//! Every `overload.check_interval` a background job reads the telemetry
//! file (`telemetry`), feeds the readings to the `SwitchBoard` (`board`, a
//! pure state machine), flips the component's switch in `Components` (which
//! the request path reads with one relaxed load), and records the switch
//! (`events`: a fsynced line in `overload.events_file`, then a copy in etcd
//! by `etcd`). Operators can pin a component on or off from the admin
//! listener; those switches are recorded the same way.
//!
//! It must never shed authentication, throttling, routing or proxying
//! (they have no switch), never act on telemetry it cannot trust, and never
//! let a slow disk or a dead etcd delay a request or a switch.

mod board;
mod etcd;
mod events;
mod metrics;
mod telemetry;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use paymesh_telemetryd::TelemetrySnapshot;
use prometheus::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

pub use board::{Control, Policy, Pressure, Readings, Reason, Switch, SwitchBoard};
pub use events::SwitchEvent;
pub use telemetry::Observation;

use crate::components::Component;
use crate::state::Shared;
use etcd::{EtcdBacklog, EtcdQueue};
use events::Clock;
use metrics::OverloadMetrics;

/// The switch board and everything around it, shared by the check job and
/// the admin listener.
#[derive(Debug)]
pub struct OverloadControl {
    /// Who the records say switched: `POD_NAME`, else `HOSTNAME`.
    pod: String,
    board: Mutex<SwitchBoard>,
    status: Mutex<Status>,
    /// Held from a decision until its record is written, so the file and
    /// etcd get records in the order the switches happened.
    recording: tokio::sync::Mutex<Clock>,
    etcd: EtcdQueue,
    backlog: Mutex<Option<EtcdBacklog>>,
    metrics: OverloadMetrics,
}

/// What `/admin/state` shows beyond the switches themselves.
#[derive(Debug, Default)]
struct Status {
    observation: Option<Observation>,
    checked_at: Option<SystemTime>,
    /// The last valid sample, fresh or stale.
    last_sample: Option<TelemetrySnapshot>,
    /// In an episode of unusable telemetry (warned once, at its start).
    blind: bool,
    /// Each component's last switch: why and when.
    last: [Option<(Reason, SystemTime)>; Component::ALL.len()],
}

impl OverloadControl {
    pub fn new(registry: &Registry, config: &crate::config::Overload) -> Self {
        let (etcd, backlog) = etcd::queue();
        Self {
            pod: pod_name(),
            board: Mutex::new(SwitchBoard::new(Policy::from_config(config))),
            status: Mutex::default(),
            recording: tokio::sync::Mutex::new(Clock::default()),
            etcd,
            backlog: Mutex::new(Some(backlog)),
            metrics: OverloadMetrics::register(registry),
        }
    }

    /// One scheduled check: read, decide, switch, record.
    pub async fn check(&self, shared: &Shared) {
        let config = shared.live.load().config.overload.clone();
        let observation = telemetry::read(&config.telemetry_file, telemetry::unix_ms(SystemTime::now())).await;
        let mut clock = self.recording.lock().await;
        let decided = {
            let mut board = self.board.lock().expect("board lock");
            board.set_policy(Policy::from_config(&config));
            let switch = board.check(observation.fresh().map(Readings::from_snapshot), Instant::now());
            switch.map(|s| {
                shared.components.set(s.component, s.on);
                (s, board.control(s.component), board.policy().clone())
            })
        };
        self.observed(&config.telemetry_file, observation);
        if let Some((switch, control, policy)) = decided {
            self.record(&mut clock, switch, control, &policy, &config).await;
        }
    }

    /// `POST /admin/components/{name}`: pins `c` on or off, or (`None`)
    /// hands it back to the board. Recorded whether or not it flipped.
    pub async fn set_manual(&self, shared: &Shared, c: Component, enabled: Option<bool>) -> (bool, Control) {
        let config = shared.live.load().config.overload.clone();
        let mut clock = self.recording.lock().await;
        let (switch, control, policy) = {
            let mut board = self.board.lock().expect("board lock");
            let (switch, _) = board.set_manual(c, enabled, Instant::now());
            shared.components.set(c, switch.on);
            (switch, board.control(c), board.policy().clone())
        };
        self.record(&mut clock, switch, control, &policy, &config).await;
        (switch.on, control)
    }

    async fn record(
        &self,
        clock: &mut Clock,
        switch: Switch,
        control: Control,
        policy: &Policy,
        config: &crate::config::Overload,
    ) {
        let (path, rotate) = (config.events_file.as_path(), config.events_rotate);
        let time = clock.now();
        let readings = {
            let mut status = self.status.lock().expect("status lock");
            status.last[switch.component as usize] = Some((switch.reason, time));
            status.last_sample.clone()
        };
        let event = SwitchEvent::new(time, &self.pod, switch, control.as_str(), readings, policy);
        self.metrics.switched(switch.component, switch.on);
        let (component, state, reason) = (switch.component.as_str(), &event.state, switch.reason.as_str());
        if switch.on {
            tracing::info!(component, state, reason, "component switched on");
        } else {
            tracing::warn!(component, state, reason, "component switched off");
        }
        let (p, line) = (path.to_owned(), event.to_line());
        match tokio::task::spawn_blocking(move || events::append(&p, &line, rotate)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, path = %path.display(), "cannot append to overload.events_file");
            }
            Err(e) => tracing::error!(error = %e, "the events file writer failed"),
        }
        self.etcd.push(event);
    }

    /// Updates the status, the gauges and the once-per-episode warning.
    fn observed(&self, path: &Path, observation: Observation) {
        let mut status = self.status.lock().expect("status lock");
        match &observation {
            Observation::Fresh(s) => {
                if status.blind {
                    tracing::info!(path = %path.display(), "telemetry is fresh again; the switch board acts on it");
                }
                status.blind = false;
                self.metrics.fresh(Readings::from_snapshot(s));
                status.last_sample = Some(s.clone());
            }
            unusable => {
                if !status.blind {
                    tracing::warn!(
                        path = %path.display(),
                        status = unusable.status(),
                        problem = unusable.problem().unwrap_or_default(),
                        "telemetry is unusable: no component will be switched until it is fresh again"
                    );
                }
                status.blind = true;
                self.metrics.blind(unusable.status());
                if let Observation::Stale { snapshot, .. } | Observation::Future { snapshot, .. } = unusable {
                    status.last_sample = Some(snapshot.clone());
                }
            }
        }
        status.observation = Some(observation);
        status.checked_at = Some(SystemTime::now());
    }

    /// `/admin/state`'s view of one component: who controls it, and its
    /// last switch.
    pub fn component_state(&self, c: Component) -> Value {
        let control = self.board.lock().expect("board lock").control(c);
        let last = self.status.lock().expect("status lock").last[c as usize];
        json!({
            "control": control.as_str(),
            "reason": last.map(|(r, _)| r.as_str()),
            "since": last.map(|(_, t)| humantime::format_rfc3339_millis(t).to_string()),
        })
    }

    /// `/admin/state`'s `telemetry`: the last read and the readings.
    pub fn telemetry_state(&self, telemetry_file: &Path) -> Value {
        let status = self.status.lock().expect("status lock");
        let effective = status.last_sample.as_ref().map(Readings::from_snapshot);
        json!({
            "file": telemetry_file.display().to_string(),
            "status": status.observation.as_ref().map_or("pending", Observation::status),
            "stale": status.blind,
            // Why it is stale: stale (too old), future, unreadable or malformed.
            "reason": status.observation.as_ref().filter(|o| o.fresh().is_none()).map(Observation::status),
            "problem": status.observation.as_ref().and_then(Observation::problem),
            "checked_at": status.checked_at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
            "readings": status.last_sample,
            "effective": effective.map(|r| json!({ "cpu_percent": r.cpu_percent, "mem_percent": r.mem_percent })),
        })
    }

    /// `/admin/state`'s `overload`: the board's view and the records.
    pub fn overload_state(&self, config: &crate::config::Overload) -> Value {
        let pressure = self.board.lock().expect("board lock").pressure();
        json!({
            "pressure": pressure.as_str(),
            "pod": self.pod,
            "events_file": config.events_file.display().to_string(),
            "etcd_pending": self.etcd.pending.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Whether a manual override or the board switched `c` off, for the
    /// answer of an endpoint that refuses while it is off.
    pub fn why_off(&self, c: Component) -> &'static str {
        match self.board.lock().expect("board lock").control(c) {
            Control::Manual => "switched off by an operator (POST /admin/components)",
            Control::Board => "shed by the overload switch board",
        }
    }
}

/// Starts the check job and the etcd writer.
pub fn spawn(shared: &Arc<Shared>, etcd: crate::etcd::Etcd, shutdown: watch::Receiver<bool>) {
    let backlog = shared.overload.backlog.lock().expect("backlog lock").take().expect("overload::spawn runs once");
    let files = {
        let config = &shared.live.load().config.overload;
        etcd::Replay { events_file: config.events_file.clone(), keep: config.events_rotate.keep }
    };
    tokio::spawn(etcd::run(etcd, files, shared.overload.pod.clone(), backlog, shutdown.clone()));
    tokio::spawn(run(shared.clone(), shutdown));
}

/// Checks at once, then every `overload.check_interval` (re-read after
/// each check, so a reload changes the pace).
async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut every = shared.live.load().config.overload.check_interval;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = crate::server::stopped(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        shared.overload.check(&shared).await;
        let now = shared.live.load().config.overload.check_interval;
        if now != every {
            every = now;
            tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
    }
}

/// Who this sidecar is in etcd keys: `POD_NAME`, else `HOSTNAME`, else the
/// kernel's hostname (switch records and fleet membership alike).
pub(crate) fn pod_name() -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .chain(std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty() && !s.contains('/'))
        .unwrap_or_else(|| "unknown".to_owned())
}

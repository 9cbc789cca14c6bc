//! The overload switch's own series, registered in the sidecar's registry.
//!
//! `paymesh_component_enabled` lives with the other gauges that mirror
//! state (`observe::metrics`); these are the ones only the switch updates.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::board::Readings;
use super::telemetry::Observation;
use crate::components::Component;

#[derive(Debug)]
pub struct OverloadMetrics {
    /// Indexed by component, then `[off, on]`.
    switch_events: [[IntCounter; 2]; Component::ALL.len()],
    stale: IntGauge,
    /// One-hot, indexed like `Observation::STATUSES`: why telemetry is stale.
    status: [IntGauge; 5],
    cpu_percent: Gauge,
    mem_used_percent: Gauge,
}

impl OverloadMetrics {
    pub fn register(registry: &Registry) -> Self {
        let events = IntCounterVec::new(
            Opts::new("paymesh_switch_events_total", "Switches of sheddable components, by component and new state."),
            &["component", "state"],
        )
        .expect("valid metric");
        let switch_events = Component::ALL.map(|c| ["off", "on"].map(|s| events.with_label_values(&[c.as_str(), s])));
        let stale = IntGauge::new(
            "paymesh_telemetry_stale",
            "1 while the telemetry file is stale, dated in the future, unreadable or malformed (no switch moves), \
             else 0.",
        )
        .expect("valid metric");
        let status_vec = prometheus::IntGaugeVec::new(
            Opts::new(
                "paymesh_telemetry_status",
                "1 for the last telemetry read's status (fresh, stale, future, unreadable, malformed), 0 for the others.",
            ),
            &["status"],
        )
        .expect("valid metric");
        let status = Observation::STATUSES.map(|s| status_vec.with_label_values(&[s]));
        let cpu_percent = Gauge::new(
            "paymesh_telemetry_cpu_percent",
            "CPU use the switch board acts on: the worse of the host's and the cgroup's (against its limit).",
        )
        .expect("valid metric");
        let mem_used_percent = Gauge::new(
            "paymesh_telemetry_mem_used_percent",
            "Memory use the switch board acts on: the worse of the host's and the cgroup's (against its limit).",
        )
        .expect("valid metric");
        for c in [
            Box::new(events) as Box<dyn prometheus::core::Collector>,
            Box::new(stale.clone()),
            Box::new(status_vec),
            Box::new(cpu_percent.clone()),
            Box::new(mem_used_percent.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self { switch_events, stale, status, cpu_percent, mem_used_percent }
    }

    pub fn switched(&self, c: Component, on: bool) {
        self.switch_events[c as usize][usize::from(on)].inc();
    }

    pub fn fresh(&self, r: Readings) {
        self.stale.set(0);
        self.set_status("fresh");
        self.cpu_percent.set(r.cpu_percent);
        self.mem_used_percent.set(r.mem_percent);
    }

    pub fn blind(&self, status: &str) {
        self.stale.set(1);
        self.set_status(status);
    }

    fn set_status(&self, status: &str) {
        for (g, s) in self.status.iter().zip(Observation::STATUSES) {
            g.set(i64::from(s == status));
        }
    }
}

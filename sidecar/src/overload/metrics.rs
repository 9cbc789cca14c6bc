//! The overload switch's own series, registered in the sidecar's registry.
//!
//! `paymesh_component_enabled` lives with the other gauges that mirror
//! state (`observe::metrics`); these are the ones only the switch updates.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::board::Readings;
use crate::components::Component;

#[derive(Debug)]
pub struct OverloadMetrics {
    /// Indexed by component, then `[off, on]`.
    switch_events: [[IntCounter; 2]; 4],
    stale: IntGauge,
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
            "1 while the telemetry file is stale, unreadable or malformed (no switch moves), else 0.",
        )
        .expect("valid metric");
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
            Box::new(cpu_percent.clone()),
            Box::new(mem_used_percent.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self { switch_events, stale, cpu_percent, mem_used_percent }
    }

    pub fn switched(&self, c: Component, on: bool) {
        self.switch_events[c as usize][usize::from(on)].inc();
    }

    pub fn fresh(&self, r: Readings) {
        self.stale.set(0);
        self.cpu_percent.set(r.cpu_percent);
        self.mem_used_percent.set(r.mem_percent);
    }

    pub fn blind(&self) {
        self.stale.set(1);
    }
}

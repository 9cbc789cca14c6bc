//! The sidecar's Prometheus metrics, with label handles resolved up front.
//!
//! Every (feature, route, status class) counter and every (feature, route)
//! histogram is created at start and kept in arrays indexed by enum, so the
//! request path does two array lookups and an atomic add, never a label
//! hash. Labels are bounded: features, routes, classes and client ids from
//! the config, never anything taken from a request.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::components::{Component, Components};
use crate::migration::{Feature, MigrationTable, Route};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Latency buckets in seconds, dense below 10 ms where a sidecar lives.
const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    requests: Vec<IntCounter>,
    durations: Vec<Histogram>,
    pub inflight: IntGauge,
    throttled: IntCounterVec,
    migration_percent: [Gauge; 3],
    component_enabled: [IntGauge; 4],
    pub access_log_dropped: IntCounter,
    pub config_reloads: IntCounter,
    pub config_reload_errors: IntCounter,
    pub migration_config_errors: IntCounter,
    /// 1 while the migration watch has etcd's snapshot and a live watch.
    pub etcd_connected: IntGauge,
    /// Failed etcd connects (`kind="connect"`) and ended watches (`"watch"`).
    pub etcd_errors: [IntCounter; 2],
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests_vec = IntCounterVec::new(
            Opts::new("paymesh_requests_total", "Requests answered, by feature, route and status class."),
            &["feature", "route", "code"],
        )
        .expect("valid metric");
        let durations_vec = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "paymesh_request_duration_seconds",
                "Time from request to response headers, by feature and route.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["feature", "route"],
        )
        .expect("valid metric");
        let mut requests = Vec::with_capacity(Feature::ALL.len() * Route::ALL.len() * 5);
        let mut durations = Vec::with_capacity(Feature::ALL.len() * Route::ALL.len());
        for f in Feature::ALL {
            for r in Route::ALL {
                durations.push(durations_vec.with_label_values(&[f.as_str(), r.as_str()]));
                for c in CLASSES {
                    requests.push(requests_vec.with_label_values(&[f.as_str(), r.as_str(), c]));
                }
            }
        }
        let throttled = IntCounterVec::new(
            Opts::new("paymesh_throttled_total", "Requests refused with 429, by client (a detailed metric)."),
            &["client"],
        )
        .expect("valid metric");
        let percent_vec = prometheus::GaugeVec::new(
            Opts::new("paymesh_migration_percent", "Percent of a feature's traffic sent to the orchestration path."),
            &["feature"],
        )
        .expect("valid metric");
        let migration_percent = Feature::MIGRATING.map(|f| percent_vec.with_label_values(&[f.as_str()]));
        let enabled_vec = IntGaugeVec::new(
            Opts::new("paymesh_component_enabled", "1 when a sheddable component is on, 0 when shed."),
            &["component"],
        )
        .expect("valid metric");
        let component_enabled = Component::ALL.map(|c| enabled_vec.with_label_values(&[c.as_str()]));
        let inflight = IntGauge::new("paymesh_inflight_requests", "Requests in flight.").expect("valid metric");
        let access_log_dropped = IntCounter::new(
            "paymesh_access_log_dropped_total",
            "Access-log lines dropped because the writer was behind.",
        )
        .expect("valid metric");
        let config_reloads = IntCounter::new("paymesh_config_reloads_total", "Configuration reloads that took effect.")
            .expect("valid metric");
        let config_reload_errors = IntCounter::new(
            "paymesh_config_reload_errors_total",
            "Configuration reloads refused because the new file was invalid.",
        )
        .expect("valid metric");
        let migration_config_errors = IntCounter::new(
            "paymesh_migration_config_errors_total",
            "Migration values from etcd refused as invalid (the last good value stayed).",
        )
        .expect("valid metric");
        let etcd_connected = IntGauge::new(
            "paymesh_etcd_connected",
            "1 while the migration watch is connected to etcd, 0 while it serves cached or default percents.",
        )
        .expect("valid metric");
        let etcd_errors_vec = IntCounterVec::new(
            Opts::new("paymesh_etcd_errors_total", "etcd failures of the migration watch, by kind (connect, watch)."),
            &["kind"],
        )
        .expect("valid metric");
        let etcd_errors = ["connect", "watch"].map(|k| etcd_errors_vec.with_label_values(&[k]));
        for c in [
            Box::new(migration_config_errors.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(etcd_connected.clone()),
            Box::new(etcd_errors_vec),
            Box::new(requests_vec),
            Box::new(durations_vec),
            Box::new(throttled.clone()),
            Box::new(percent_vec),
            Box::new(enabled_vec),
            Box::new(inflight.clone()),
            Box::new(access_log_dropped.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_reload_errors.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // process_cpu_seconds_total, process_resident_memory_bytes,
        // process_open_fds, process_max_fds, process_start_time_seconds, …
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process metrics register once");
        Self {
            registry,
            requests,
            durations,
            inflight,
            throttled,
            migration_percent,
            component_enabled,
            access_log_dropped,
            config_reloads,
            config_reload_errors,
            migration_config_errors,
            etcd_connected,
            etcd_errors,
        }
    }

    /// Counts one answered request.
    pub fn record(&self, feature: Feature, route: Route, status: u16, seconds: Option<f64>) {
        let fr = feature.index() * Route::ALL.len() + route.index();
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.requests[fr * CLASSES.len() + class].inc();
        if let Some(s) = seconds {
            self.durations[fr].observe(s);
        }
    }

    /// The per-client 429 counter, resolved when a config is loaded.
    pub fn throttled_for(&self, client: &str) -> IntCounter {
        self.throttled.with_label_values(&[client])
    }

    /// Prometheus text for `/metrics`; gauges that mirror state are set here,
    /// at scrape time, rather than on every change.
    pub fn render(&self, table: &MigrationTable, components: &Components) -> String {
        for f in Feature::MIGRATING {
            self.migration_percent[f.index()].set(f64::from(table.basis_points(f)) / 100.0);
        }
        for c in Component::ALL {
            self.component_enabled[c as usize].set(i64::from(components.enabled(c)));
        }
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_hits_the_right_series() {
        let m = Metrics::new();
        m.record(Feature::Refund, Route::Orchestration, 201, Some(0.002));
        m.record(Feature::Other, Route::None, 429, None);
        let text = m.render(&MigrationTable::new([1250, 0, 0]), &Components::default());
        assert!(text.contains(r#"paymesh_requests_total{code="2xx",feature="refund",route="orchestration"} 1"#));
        assert!(text.contains(r#"paymesh_requests_total{code="4xx",feature="other",route="none"} 1"#));
        assert!(text.contains(r#"paymesh_migration_percent{feature="charge"} 12.5"#));
        assert!(text.contains(r#"paymesh_component_enabled{component="access_log"} 1"#));
        assert!(text.contains(r#"paymesh_request_duration_seconds_count{feature="refund",route="orchestration"} 1"#));
        assert!(text.contains("paymesh_etcd_connected 0"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn renders_the_standard_process_metrics() {
        let text = Metrics::new().render(&MigrationTable::new([0, 0, 0]), &Components::default());
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.lines().any(|l| l.starts_with(&format!("{name} "))), "{name} missing from:\n{text}");
        }
    }
}

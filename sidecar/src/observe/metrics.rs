//! The sidecar's Prometheus metrics, with label handles resolved up front.
//!
//! Every (feature, route, status class) counter and every (feature, route)
//! histogram is created at start and kept in arrays indexed by enum, so the
//! request path does two array lookups and an atomic add, never a label
//! hash. Labels are bounded: features, routes, classes and client ids from
//! the config, never anything taken from a request.
//!
//! Per-client series (`paymesh_client_requests_total`,
//! `paymesh_client_request_duration_seconds`) exist for the configured
//! clients only, for the migrating features on the two routes, zeros
//! included (a ramp's `increase(…{code="5xx"})` must see them); they are
//! detailed metrics, shed with `detailed_metrics`. They are plain atomics
//! per client ([`ClientCounts`], kept by id across reloads) rendered at
//! scrape time: a labelled child of the prometheus crate per series cost
//! about 41 KB a client (431 MB of RSS with 10,000 clients). Each client
//! still adds about 15 KB to every scrape, so `metrics.client_series` may
//! name the clients shown; a client with a migration override is shown
//! anyway, since its ramp is judged by them. Every client is counted.
//!
//! `paymesh_migration_percent{feature}` keeps its series; a configured
//! client with an override adds `{client,feature}`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::components::{Component, Components};
use crate::config;
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
    component_enabled: [IntGauge; Component::ALL.len()],
    pub access_log_dropped: IntCounter,
    pub config_reloads: IntCounter,
    pub config_reload_errors: IntCounter,
    pub migration_config_errors: IntCounter,
    /// 1 while the etcd connection works (`crate::etcd`).
    pub etcd_connected: IntGauge,
    /// Failed etcd connects (`kind="connect"`, a certificate refused
    /// included), failed or ended calls, watches and leases (`"watch"`),
    /// refused credentials (`"auth"`) and missing permissions
    /// (`"permission"`), indexed by `etcd::ErrorKind`.
    pub etcd_errors: [IntCounter; 4],
    /// Overrides applied for client ids the config does not have.
    pub migration_unknown_client_overrides: IntCounter,
    /// The configured clients' counts and whose are shown.
    clients: Mutex<ClientTable>,
}

#[derive(Debug, Default)]
struct ClientTable {
    /// Each configured client's counts, by id, kept across reloads; its
    /// keys are the loaded config's clients, whose overrides are shown.
    counts: HashMap<Arc<str>, Arc<ClientCounts>>,
    /// `metrics.client_series` as a set; `None`: every client's.
    shown: Option<HashSet<Arc<str>>>,
}

/// The (migrating feature, legacy|orchestration) pairs a client is counted by.
const PAIRS: usize = Feature::MIGRATING.len() * 2;

/// The index of a (migrating feature, legacy|orchestration) pair.
fn pair(feature: Feature, route: Route) -> usize {
    feature.index() * 2 + route.index()
}

/// One configured client's answers: what `paymesh_client_requests_total`
/// and `paymesh_client_request_duration_seconds` render, about 1 KB.
#[derive(Debug, Default)]
pub struct ClientCounts {
    /// By (pair, class).
    requests: [AtomicU64; PAIRS * CLASSES.len()],
    /// By pair.
    durations: [DurationCounts; PAIRS],
}

#[derive(Debug, Default)]
struct DurationCounts {
    /// Observations per bucket of `DURATION_BUCKETS` (not cumulative), then
    /// those above the last bound.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl ClientCounts {
    /// This client's series: a counter per (pair, class) onto `requests`,
    /// a histogram per pair onto `durations`.
    fn render(
        &self,
        id: &str,
        requests: &mut Vec<prometheus::proto::Metric>,
        durations: &mut Vec<prometheus::proto::Metric>,
    ) {
        use prometheus::proto::{Bucket, Counter, Histogram as HistogramValue, Metric};
        let pairs = Feature::MIGRATING.into_iter().flat_map(|f| [Route::Legacy, Route::Orchestration].map(|r| (f, r)));
        for (feature, route) in pairs {
            let pair = pair(feature, route);
            let [client, feature, route] = [("client", id), ("feature", feature.as_str()), ("route", route.as_str())];
            for (c, class) in CLASSES.iter().enumerate() {
                let mut value = Counter::default();
                value.set_value(self.requests[pair * CLASSES.len() + c].load(Relaxed) as f64);
                let mut m = Metric::default();
                m.set_counter(value);
                m.set_label(label_pairs(&[client, ("code", class), feature, route]));
                requests.push(m);
            }
            let d = &self.durations[pair];
            let mut cumulative = 0;
            let buckets = DURATION_BUCKETS.iter().zip(&d.buckets).map(|(bound, n)| {
                cumulative += n.load(Relaxed);
                let mut b = Bucket::default();
                b.set_cumulative_count(cumulative);
                b.set_upper_bound(*bound);
                b
            });
            let mut value = HistogramValue::default();
            value.set_bucket(buckets.collect());
            value.set_sample_count(cumulative + d.buckets[DURATION_BUCKETS.len()].load(Relaxed));
            value.set_sample_sum(d.sum_nanos.load(Relaxed) as f64 / 1e9);
            let mut m = Metric::default();
            m.set_histogram(value);
            m.set_label(label_pairs(&[client, feature, route]));
            durations.push(m);
        }
    }
}

/// A configured client's counts, as its `ClientEntry` holds them.
#[derive(Debug, Clone)]
pub struct ClientSeries(Arc<ClientCounts>);

impl ClientSeries {
    /// Counts one of this client's answers. Only routed requests of a
    /// migrating feature count: what a per-client ramp judges.
    pub fn record(&self, feature: Feature, route: Route, status: u16, seconds: Option<f64>) {
        if feature == Feature::Other || route == Route::None {
            return;
        }
        let pair = pair(feature, route);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.0.requests[pair * CLASSES.len() + class].fetch_add(1, Relaxed);
        if let Some(s) = seconds {
            let d = &self.0.durations[pair];
            // Prometheus's `le`: the first bound at or above the value.
            d.buckets[DURATION_BUCKETS.partition_point(|&bound| bound < s)].fetch_add(1, Relaxed);
            d.sum_nanos.fetch_add((s.max(0.0) * 1e9) as u64, Relaxed);
        }
    }
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
            "1 while the etcd connection works (its last call succeeded), 0 after a failure until the next success.",
        )
        .expect("valid metric");
        let etcd_errors_vec = IntCounterVec::new(
            Opts::new(
                "paymesh_etcd_errors_total",
                "etcd failures, by kind (connect, a TLS certificate included; watch: a call, watch or lease; \
                 auth: credentials refused; permission: a key range the etcd user may not use).",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let etcd_errors = crate::etcd::ErrorKind::ALL.map(|k| etcd_errors_vec.with_label_values(&[k.as_str()]));
        let migration_unknown_client_overrides = IntCounter::new(
            "paymesh_migration_unknown_client_overrides_total",
            "Per-client migration overrides in etcd for client ids the config does not have (ignored).",
        )
        .expect("valid metric");
        registry.register(Box::new(migration_unknown_client_overrides.clone())).expect("metric names are unique");
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
            migration_unknown_client_overrides,
            clients: Mutex::default(),
        }
    }

    /// A configured client's counts: the same ones across reloads, so a
    /// reload never resets a counter.
    pub fn client_series(&self, client: &str) -> ClientSeries {
        let counts = &mut self.clients().counts;
        if let Some(c) = counts.get(client) {
            return ClientSeries(c.clone());
        }
        let c = Arc::new(ClientCounts::default());
        counts.insert(Arc::from(client), c.clone());
        ClientSeries(c)
    }

    /// The loaded config's client ids, and whose series a scrape shows:
    /// only their overrides are shown, and the counts of clients no longer
    /// configured are dropped.
    pub fn set_config_clients(&self, ids: Vec<Arc<str>>, shown: &config::ShownClients) {
        let keep: HashSet<&str> = ids.iter().map(|id| &**id).collect();
        let mut clients = self.clients();
        clients.counts.retain(|id, _| keep.contains(&**id));
        clients.shown = match shown {
            config::ShownClients::All => None,
            config::ShownClients::Listed(listed) => Some(listed.iter().map(|id| Arc::from(id.as_str())).collect()),
        };
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, ClientTable> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `paymesh_client_requests_total` and
    /// `paymesh_client_request_duration_seconds` of every configured client
    /// shown (listed in `metrics.client_series`, or with an override),
    /// zeros included, in client order.
    fn client_families(&self, table: &MigrationTable) -> [prometheus::proto::MetricFamily; 2] {
        use prometheus::proto::{MetricFamily, MetricType};
        let overrides = table.overrides();
        let overridden = |id: &str| overrides.iter().any(|per_feature| per_feature.contains_key(id));
        let mut clients: Vec<(Arc<str>, Arc<ClientCounts>)> = {
            let t = self.clients();
            let shown = |id: &str| t.shown.as_ref().is_none_or(|s| s.contains(id)) || overridden(id);
            t.counts.iter().filter(|(id, _)| shown(id)).map(|(id, c)| (id.clone(), c.clone())).collect()
        };
        clients.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let (mut requests, mut durations) = (Vec::new(), Vec::new());
        for (id, counts) in &clients {
            counts.render(id, &mut requests, &mut durations);
        }
        let family = |name: &str, help: &str, kind, metrics| {
            let mut f = MetricFamily::default();
            f.set_name(name.to_owned());
            f.set_help(help.to_owned());
            f.set_field_type(kind);
            f.set_metric(metrics);
            f
        };
        [
            family(
                "paymesh_client_requests_total",
                "Routed requests of the migrating features, by client (from the config), feature, route and status \
                 class (a detailed metric).",
                MetricType::COUNTER,
                requests,
            ),
            family(
                "paymesh_client_request_duration_seconds",
                "Time from request to response headers, by client, feature and route (a detailed metric).",
                MetricType::HISTOGRAM,
                durations,
            ),
        ]
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
        let mut families = self.registry.gather();
        if let Some(family) = families.iter_mut().find(|f| f.name() == "paymesh_migration_percent") {
            family.mut_metric().extend(self.override_series(table));
        }
        // The encoder refuses a family without a series (no client yet).
        families.extend(self.client_families(table).into_iter().filter(|f| !f.get_metric().is_empty()));
        families.sort_by(|a, b| a.name().cmp(b.name()));
        prometheus::TextEncoder::new().encode_to_string(&families).unwrap_or_default()
    }

    /// `paymesh_migration_percent{client,feature}` for each configured
    /// client with an override, next to the feature's own series.
    fn override_series(&self, table: &MigrationTable) -> Vec<prometheus::proto::Metric> {
        use prometheus::proto::{Gauge as GaugeValue, Metric};
        let clients = self.clients();
        let overrides = table.overrides();
        let mut out = Vec::new();
        for f in Feature::MIGRATING {
            for (id, o) in &overrides[f.index()] {
                if !clients.counts.contains_key(&**id) {
                    continue;
                }
                let mut value = GaugeValue::default();
                value.set_value(f64::from(o.basis_points) / 100.0);
                let mut m = Metric::from_gauge(value);
                m.set_label(label_pairs(&[("client", id), ("feature", f.as_str())]));
                out.push(m);
            }
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Label pairs, in the order given (sorted by name, as Prometheus's text
/// format has them).
fn label_pairs(labels: &[(&str, &str)]) -> Vec<prometheus::proto::LabelPair> {
    labels
        .iter()
        .map(|(name, value)| {
            let mut l = prometheus::proto::LabelPair::default();
            l.set_name((*name).to_owned());
            l.set_value((*value).to_owned());
            l
        })
        .collect()
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

    #[test]
    fn overrides_of_configured_clients_add_series_and_keep_the_feature_ones() {
        use crate::migration::{Override, Overrides, Source};
        let m = Metrics::new();
        m.set_config_clients(vec![Arc::from("internal"), Arc::from("checkout")], &config::ShownClients::All);
        let table = MigrationTable::new([1000, 0, 0]);
        let mut o = Overrides::default();
        o[0].insert("internal".into(), Override { basis_points: 5000, source: Source::Etcd });
        o[0].insert("stranger".into(), Override { basis_points: 100, source: Source::Etcd });
        table.set_overrides(o);
        let series = m.client_series("internal");
        series.record(Feature::Charge, Route::Orchestration, 201, Some(0.01));
        series.record(Feature::Other, Route::Legacy, 200, Some(0.01));
        let text = m.render(&table, &Components::default());
        assert!(text.contains(r#"paymesh_migration_percent{feature="charge"} 10"#), "{text}");
        assert!(text.contains(r#"paymesh_migration_percent{client="internal",feature="charge"} 50"#), "{text}");
        assert!(!text.contains("stranger"), "ids not in the config are never labels");
        assert!(text.contains(
            r#"paymesh_client_requests_total{client="internal",code="2xx",feature="charge",route="orchestration"} 1"#
        ));
        assert!(text.contains(
            r#"paymesh_client_request_duration_seconds_count{client="internal",feature="charge",route="orchestration"} 1"#
        ));
        assert!(!text.contains(r#"client="internal",code="2xx",feature="other""#), "only migrating features");
        m.set_config_clients(vec![Arc::from("checkout")], &config::ShownClients::All);
        let text = m.render(&table, &Components::default());
        assert!(!text.contains(r#"client="internal""#), "a removed client's series go");
    }

    #[test]
    fn client_counts_render_with_zeros_survive_reloads_and_fill_the_right_buckets() {
        let m = Metrics::new();
        let internal = m.client_series("internal");
        m.client_series("checkout");
        m.set_config_clients(vec![Arc::from("internal"), Arc::from("checkout")], &config::ShownClients::All);
        internal.record(Feature::Charge, Route::Orchestration, 201, Some(0.003));
        internal.record(Feature::Charge, Route::Orchestration, 503, Some(20.0));
        // A reload hands out the same counts.
        m.client_series("internal").record(Feature::Charge, Route::Orchestration, 204, None);
        m.client_series("checkout");
        m.set_config_clients(vec![Arc::from("internal"), Arc::from("checkout")], &config::ShownClients::All);
        let text = m.render(&MigrationTable::new([0, 0, 0]), &Components::default());
        let value = |series: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '));
            line.unwrap_or_else(|| panic!("{series} missing from:\n{text}"))[series.len() + 1..].parse().unwrap()
        };
        let ours = r#"client="internal",feature="charge",route="orchestration""#;
        assert_eq!(
            value(
                r#"paymesh_client_requests_total{client="internal",code="2xx",feature="charge",route="orchestration"}"#
            ),
            2.0
        );
        assert_eq!(
            value(
                r#"paymesh_client_requests_total{client="internal",code="5xx",feature="charge",route="orchestration"}"#
            ),
            1.0
        );
        // Every configured client's series, zeros included.
        assert_eq!(
            value(r#"paymesh_client_requests_total{client="checkout",code="5xx",feature="refund",route="legacy"}"#),
            0.0
        );
        assert_eq!(value(&format!("paymesh_client_request_duration_seconds_bucket{{{ours},le=\"0.0025\"}}")), 0.0);
        assert_eq!(value(&format!("paymesh_client_request_duration_seconds_bucket{{{ours},le=\"0.005\"}}")), 1.0);
        assert_eq!(value(&format!("paymesh_client_request_duration_seconds_bucket{{{ours},le=\"10\"}}")), 1.0);
        assert_eq!(value(&format!("paymesh_client_request_duration_seconds_bucket{{{ours},le=\"+Inf\"}}")), 2.0);
        assert_eq!(value(&format!("paymesh_client_request_duration_seconds_count{{{ours}}}")), 2.0);
        assert!((value(&format!("paymesh_client_request_duration_seconds_sum{{{ours}}}")) - 20.003).abs() < 1e-9);
        assert_eq!(text.matches("# TYPE paymesh_client_requests_total counter").count(), 1);
        assert_eq!(text.matches("# TYPE paymesh_client_request_duration_seconds histogram").count(), 1);
        // 2 clients × 3 features × 2 routes × 5 classes.
        assert_eq!(text.lines().filter(|l| l.starts_with("paymesh_client_requests_total{")).count(), 60);
    }

    #[test]
    fn a_listed_client_series_shows_the_listed_and_the_overridden_clients_only() {
        use crate::migration::{Override, Overrides, Source};
        let m = Metrics::new();
        let ids = ["ops", "web", "batch"].map(|id| {
            m.client_series(id).record(Feature::Charge, Route::Legacy, 200, Some(0.001));
            Arc::from(id)
        });
        m.set_config_clients(ids.to_vec(), &config::ShownClients::Listed(vec!["ops".into()]));
        let table = MigrationTable::new([0, 0, 0]);
        let shown = |table: &MigrationTable| {
            let text = m.render(table, &Components::default());
            let mut ids: Vec<String> = ["ops", "web", "batch"]
                .into_iter()
                .filter(|id| text.contains(&format!("paymesh_client_requests_total{{client=\"{id}\"")))
                .map(str::to_owned)
                .collect();
            ids.sort();
            // A client is shown whole or not at all: 30 counters, 6 histograms.
            let counters = text.lines().filter(|l| l.starts_with("paymesh_client_requests_total{")).count();
            let histograms =
                text.lines().filter(|l| l.starts_with("paymesh_client_request_duration_seconds_count{")).count();
            assert_eq!((counters, histograms), (30 * ids.len(), 6 * ids.len()), "{text}");
            ids
        };
        assert_eq!(shown(&table), ["ops"]);
        // A client being ramped (an override on any feature) is shown too.
        let mut o = Overrides::default();
        o[2].insert("batch".into(), Override { basis_points: 0, source: Source::Etcd });
        table.set_overrides(o);
        assert_eq!(shown(&table), ["batch", "ops"]);
        // Counted all along, shown or not.
        m.client_series("web").record(Feature::Charge, Route::Legacy, 200, None);
        m.set_config_clients(ids.to_vec(), &config::ShownClients::All);
        let text = m.render(&table, &Components::default());
        assert!(
            text.contains(
                r#"paymesh_client_requests_total{client="web",code="2xx",feature="charge",route="legacy"} 2"#
            ),
            "{text}"
        );
        assert_eq!(shown(&table), ["batch", "ops", "web"]);
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

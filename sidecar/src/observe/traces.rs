//! The span exporter's counts on `/metrics`:
//! `paymesh_trace_spans_exported_total` and
//! `paymesh_trace_spans_dropped_total{reason}` (`queue_full`: the export
//! queue was full; `export_failed`: the collector did not take the batch).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use paymesh_otel::Stats;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Reads the exporter's atomics at each scrape into ordinary counters.
struct TraceStats {
    stats: Arc<Stats>,
    exported: IntCounter,
    dropped: IntCounterVec,
    descs: Vec<Desc>,
}

impl Collector for TraceStats {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        catch_up(&self.exported, &self.stats.exported);
        catch_up(&self.dropped.with_label_values(&["queue_full"]), &self.stats.dropped_queue_full);
        catch_up(&self.dropped.with_label_values(&["export_failed"]), &self.stats.dropped_export_failed);
        let mut families = self.exported.collect();
        families.extend(self.dropped.collect());
        families
    }
}

/// Brings a counter up to the atomic it mirrors (both only grow).
fn catch_up(counter: &IntCounter, source: &AtomicU64) {
    let (now, shown) = (source.load(Ordering::Relaxed), counter.get());
    if now > shown {
        counter.inc_by(now - shown);
    }
}

pub fn register_trace_stats(registry: &Registry, stats: Arc<Stats>) {
    let exported = IntCounter::new("paymesh_trace_spans_exported_total", "Spans the OTLP collector accepted")
        .expect("valid metric");
    let dropped = IntCounterVec::new(
        Opts::new("paymesh_trace_spans_dropped_total", "Spans lost: the export queue was full, or the export failed"),
        &["reason"],
    )
    .expect("valid metric");
    for reason in ["queue_full", "export_failed"] {
        dropped.with_label_values(&[reason]);
    }
    let mut descs: Vec<Desc> = exported.desc().into_iter().cloned().collect();
    descs.extend(dropped.desc().into_iter().cloned());
    registry.register(Box::new(TraceStats { stats, exported, dropped, descs })).expect("registered once");
}

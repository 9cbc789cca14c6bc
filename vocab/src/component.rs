//! The sheddable components' names: in the config (`overload.components`),
//! the admin endpoint (`/admin/components/<name>`), metric labels, switch
//! events and `paymeshctl component`. Authentication, throttling, routing
//! and proxying are core and have no name here.

crate::labels! {
    pub enum Component {
        /// Shadow reads: a sampled GET fetched again through the other
        /// path and compared. First in the default order: under overload
        /// it is the first to go, as it only adds load.
        ShadowCompare = "shadow_compare",
        AccessLog = "access_log",
        /// Histograms and per-client series; plain counters stay.
        DetailedMetrics = "detailed_metrics",
        /// Span export and debug detail.
        Tracing = "tracing",
        /// On-demand CPU profiles.
        Profiling = "profiling",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_exactly() {
        for c in Component::ALL {
            assert_eq!(Component::from_name(c.as_str()), Some(c));
        }
        assert_eq!(Component::AccessLog.as_str(), "access_log");
        assert_eq!(Component::Profiling.as_str(), "profiling");
        assert_eq!(Component::ShadowCompare.as_str(), "shadow_compare");
        for bad in ["", "Tracing", "tracing ", "access-log", "trac\u{ed}ng", &"x".repeat(1 << 16)] {
            assert_eq!(Component::from_name(bad), None, "{bad:?}");
        }
    }
}

//! The sheddable components' names: in the config (`overload.components`),
//! the admin endpoint (`/admin/components/<name>`), metric labels, switch
//! events and `paymeshctl component`. Authentication, throttling, routing
//! and proxying are core and have no name here.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Component {
    AccessLog = 0,
    /// Histograms and per-client series; plain counters stay.
    DetailedMetrics = 1,
    /// Span export and debug detail.
    Tracing = 2,
    /// On-demand CPU profiles.
    Profiling = 3,
}

impl Component {
    /// Every component, in `index()` order (also the default shedding order).
    pub const ALL: [Component; 4] =
        [Component::AccessLog, Component::DetailedMetrics, Component::Tracing, Component::Profiling];

    /// `ALL`'s names, for lists in messages, config defaults and CLIs.
    pub const NAMES: [&'static str; 4] = ["access_log", "detailed_metrics", "tracing", "profiling"];

    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn as_str(self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// The component of an exact name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.as_str() == name)
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
        for bad in ["", "Tracing", "tracing ", "access-log", "trac\u{ed}ng", &"x".repeat(1 << 16)] {
            assert_eq!(Component::from_name(bad), None, "{bad:?}");
        }
    }
}

//! Runtime switches for the non-functional components that may be shed.
//!
//! Each switch is an `AtomicBool` read with a relaxed load on every request,
//! so flipping one (the overload switch board, or an operator's override) takes effect
//! on the next request without a lock. Authentication, throttling, routing
//! and proxying are core and have no switch.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    AccessLog,
    /// Histograms and per-client series; plain counters stay.
    DetailedMetrics,
    /// Span export and debug detail.
    Tracing,
    /// On-demand CPU profiles.
    Profiling,
}

impl Component {
    pub const ALL: [Component; 4] =
        [Component::AccessLog, Component::DetailedMetrics, Component::Tracing, Component::Profiling];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::AccessLog => "access_log",
            Component::DetailedMetrics => "detailed_metrics",
            Component::Tracing => "tracing",
            Component::Profiling => "profiling",
        }
    }

    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// One switch per component, all on at start.
#[derive(Debug)]
pub struct Components {
    on: [AtomicBool; 4],
}

impl Default for Components {
    fn default() -> Self {
        Self { on: [true; 4].map(AtomicBool::new) }
    }
}

impl Components {
    pub fn enabled(&self, c: Component) -> bool {
        self.on[c as usize].load(Ordering::Relaxed)
    }

    /// Sets a switch and returns its previous state.
    pub fn set(&self, c: Component, on: bool) -> bool {
        self.on[c as usize].swap(on, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_flip_independently() {
        let c = Components::default();
        assert!(Component::ALL.iter().all(|&x| c.enabled(x)));
        assert!(c.set(Component::AccessLog, false));
        assert!(!c.enabled(Component::AccessLog));
        assert!(c.enabled(Component::DetailedMetrics));
        assert_eq!(Component::from_name("profiling"), Some(Component::Profiling));
    }
}

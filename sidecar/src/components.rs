//! Runtime switches for the non-functional components that may be shed.
//!
//! Each switch is an `AtomicBool` read with a relaxed load on every request,
//! so flipping one (the overload switch board, or an operator's override) takes effect
//! on the next request without a lock. Authentication, throttling, routing
//! and proxying are core and have no switch.

use std::sync::atomic::{AtomicBool, Ordering};

/// The components' names are shared vocabulary: the config, the admin
/// endpoint, metric labels and `paymeshctl` use the same ones.
pub use paymesh_vocab::Component;

/// One switch per component, all on at start.
#[derive(Debug)]
pub struct Components {
    on: [AtomicBool; Component::ALL.len()],
}

impl Default for Components {
    fn default() -> Self {
        Self { on: [true; Component::ALL.len()].map(AtomicBool::new) }
    }
}

impl Components {
    pub fn enabled(&self, c: Component) -> bool {
        self.on[c.index()].load(Ordering::Relaxed)
    }

    /// Sets a switch and returns its previous state.
    pub fn set(&self, c: Component, on: bool) -> bool {
        self.on[c.index()].swap(on, Ordering::Relaxed)
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

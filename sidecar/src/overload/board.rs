//! The switch board: which sheddable components are on, and when to flip one.
//!
//! A pure state machine, fed one observation per check and the time, so
//! every rule is unit-tested without a clock or a file:
//!
//! - **Hysteresis.** Overloaded when a reading exceeds its `shed`
//!   threshold; recovered when every reading is under its `restore`
//!   threshold; in between, nothing moves.
//! - **Order.** While overloaded, one more component is shed per check, in
//!   the configured order. Once recovered for `hold`, one is restored per
//!   check, in reverse order.
//! - **Hold.** No component flips again within `hold` of its last flip, so
//!   readings that oscillate around the thresholds cannot make it flap.
//! - **Blind checks change nothing.** Without a usable reading (stale,
//!   unreadable, malformed telemetry) no switch moves, and the time does
//!   not count towards recovery.
//! - **The operator wins.** A manual override pins a component on or off
//!   until it is released; the board keeps its own plan for it meanwhile.

use std::time::{Duration, Instant};

use crate::components::Component;
use crate::config::Thresholds;

/// The readings the board acts on: for each resource, the worse of the
/// host's and the container's (against its own limits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Readings {
    pub cpu_percent: f64,
    pub mem_percent: f64,
}

impl Readings {
    pub fn from_snapshot(s: &paymesh_telemetryd::TelemetrySnapshot) -> Self {
        let (cpu, mem) = s.cgroup.as_ref().map_or((0.0, 0.0), |c| (c.cpu_percent_of_limit, c.mem_percent_of_limit));
        Readings { cpu_percent: s.cpu_percent.max(cpu), mem_percent: s.mem_used_percent.max(mem) }
    }

    pub fn pressure(&self, shed: &Thresholds, restore: &Thresholds) -> Pressure {
        if self.cpu_percent > shed.cpu_percent || self.mem_percent > shed.mem_percent {
            Pressure::Overloaded
        } else if self.cpu_percent < restore.cpu_percent && self.mem_percent < restore.mem_percent {
            Pressure::Recovered
        } else {
            Pressure::Steady
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    Overloaded,
    /// Between the restore and shed thresholds: hold the current state.
    Steady,
    Recovered,
    /// No usable reading.
    Unknown,
}

impl Pressure {
    pub fn as_str(self) -> &'static str {
        match self {
            Pressure::Overloaded => "overloaded",
            Pressure::Steady => "steady",
            Pressure::Recovered => "recovered",
            Pressure::Unknown => "unknown",
        }
    }
}

/// What the board is configured to do (`overload.*`; may change on reload).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Shed in this order, restore in reverse.
    pub order: Vec<Component>,
    pub shed: Thresholds,
    pub restore: Thresholds,
    pub hold: Duration,
}

impl Policy {
    pub fn from_config(o: &crate::config::Overload) -> Self {
        Policy {
            order: o.components.iter().filter_map(|n| Component::from_name(n)).collect(),
            shed: o.shed,
            restore: o.restore,
            hold: o.hold,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Overload,
    Recovered,
    Manual,
    /// The component left `overload.components` while shed.
    Config,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Overload => "overload",
            Reason::Recovered => "recovered",
            Reason::Manual => "manual",
            Reason::Config => "config",
        }
    }
}

/// Who decides a component's state right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Board,
    Manual,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Board => "board",
            Control::Manual => "manual",
        }
    }
}

/// One decision: set `component` to `on`, because of `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub component: Component,
    pub on: bool,
    pub reason: Reason,
}

#[derive(Debug)]
pub struct SwitchBoard {
    policy: Policy,
    /// The board's own plan, whatever the overrides say.
    shed: [bool; Component::ALL.len()],
    manual: [Option<bool>; Component::ALL.len()],
    last_flip: [Option<Instant>; Component::ALL.len()],
    recovered_since: Option<Instant>,
    pressure: Pressure,
}

impl SwitchBoard {
    /// Everything on, nothing overridden.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            shed: [false; Component::ALL.len()],
            manual: [None; Component::ALL.len()],
            last_flip: [None; Component::ALL.len()],
            recovered_since: None,
            pressure: Pressure::Unknown,
        }
    }

    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn is_on(&self, c: Component) -> bool {
        self.manual[c as usize].unwrap_or(!self.shed[c as usize])
    }

    pub fn control(&self, c: Component) -> Control {
        if self.manual[c as usize].is_some() { Control::Manual } else { Control::Board }
    }

    /// The pressure seen at the last check.
    pub fn pressure(&self) -> Pressure {
        self.pressure
    }

    /// One scheduled check; `None` readings mean the telemetry is unusable.
    /// Returns the one switch to make, if any.
    pub fn check(&mut self, readings: Option<Readings>, now: Instant) -> Option<Switch> {
        self.pressure = readings.map_or(Pressure::Unknown, |r| r.pressure(&self.policy.shed, &self.policy.restore));
        if self.pressure != Pressure::Recovered {
            self.recovered_since = None;
        }
        if self.pressure == Pressure::Unknown {
            return None;
        }
        // A component taken off the list while shed comes back first,
        // whatever the pressure: the operator no longer wants it shed.
        if let Some(c) = Component::ALL.into_iter().find(|c| self.shed[*c as usize] && !self.policy.order.contains(c)) {
            return self.plan(c, true, Reason::Config, now);
        }
        match self.pressure {
            Pressure::Overloaded => {
                let next = self.policy.order.iter().copied().filter(|c| !self.shed[*c as usize]);
                self.step(next.collect(), true, Reason::Overload, now)
            }
            Pressure::Recovered => {
                let since = *self.recovered_since.get_or_insert(now);
                if now.saturating_duration_since(since) < self.policy.hold {
                    return None;
                }
                let next = self.policy.order.iter().rev().copied().filter(|c| self.shed[*c as usize]);
                self.step(next.collect(), false, Reason::Recovered, now)
            }
            Pressure::Steady | Pressure::Unknown => None,
        }
    }

    /// Pins `c` on or off (`Some`), or hands it back to the board (`None`).
    /// Always returns the resulting state; `changed` says whether it flipped.
    pub fn set_manual(&mut self, c: Component, enabled: Option<bool>, now: Instant) -> (Switch, bool) {
        let before = self.is_on(c);
        self.manual[c as usize] = enabled;
        let on = self.is_on(c);
        if on != before {
            self.last_flip[c as usize] = Some(now);
        }
        (Switch { component: c, on, reason: Reason::Manual }, on != before)
    }

    /// Walks `candidates` in turn and makes the first switch that changes
    /// something. A pinned component takes its turn in the plan without a
    /// flip, so the next one is tried in the same check; one still within
    /// its hold stops the walk, keeping the order.
    fn step(&mut self, candidates: Vec<Component>, shed: bool, reason: Reason, now: Instant) -> Option<Switch> {
        for c in candidates {
            if self.manual[c as usize].is_some() {
                self.shed[c as usize] = shed;
                continue;
            }
            return self.plan(c, !shed, reason, now);
        }
        None
    }

    fn plan(&mut self, c: Component, on: bool, reason: Reason, now: Instant) -> Option<Switch> {
        let held = self.last_flip[c as usize].is_some_and(|t| now.saturating_duration_since(t) < self.policy.hold);
        if held && self.manual[c as usize].is_none() {
            return None;
        }
        let before = self.is_on(c);
        self.shed[c as usize] = !on;
        if self.is_on(c) == before {
            return None;
        }
        self.last_flip[c as usize] = Some(now);
        Some(Switch { component: c, on, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Component::*;

    const HOLD: Duration = Duration::from_secs(10);
    const TICK: Duration = Duration::from_secs(1);
    const HOT: Option<Readings> = Some(Readings { cpu_percent: 95.0, mem_percent: 40.0 });
    const WARM: Option<Readings> = Some(Readings { cpu_percent: 70.0, mem_percent: 40.0 });
    const COOL: Option<Readings> = Some(Readings { cpu_percent: 20.0, mem_percent: 40.0 });

    fn board() -> SwitchBoard {
        SwitchBoard::new(Policy {
            order: vec![AccessLog, DetailedMetrics, Tracing, Profiling],
            shed: Thresholds { cpu_percent: 85.0, mem_percent: 90.0 },
            restore: Thresholds { cpu_percent: 60.0, mem_percent: 75.0 },
            hold: HOLD,
        })
    }

    /// Runs one check per second from `start`, one per reading; returns the
    /// switches made with their second.
    fn run(b: &mut SwitchBoard, start: Instant, from: u64, readings: &[Option<Readings>]) -> Vec<(u64, Switch)> {
        let mut out = Vec::new();
        for (i, r) in readings.iter().enumerate() {
            let second = from + i as u64;
            if let Some(s) = b.check(*r, start + TICK * second as u32) {
                out.push((second, s));
            }
        }
        out
    }

    fn off(c: Component) -> Switch {
        Switch { component: c, on: false, reason: Reason::Overload }
    }

    fn on(c: Component) -> Switch {
        Switch { component: c, on: true, reason: Reason::Recovered }
    }

    #[test]
    fn cgroup_readings_count_when_worse() {
        let mut s = paymesh_telemetryd::TelemetrySnapshot::parse(
            br#"{"sampled_at_ms":1,"interval_ms":1000,"cpus":2,"cpu_percent":30,"load1":0,"load5":0,"load15":0,
                "mem_used_percent":50,"disk_free_percent":50,
                "cgroup":{"cpu_percent_of_limit":97,"mem_percent_of_limit":20}}"#,
        )
        .unwrap();
        assert_eq!(Readings::from_snapshot(&s), Readings { cpu_percent: 97.0, mem_percent: 50.0 });
        s.cgroup = None;
        assert_eq!(Readings::from_snapshot(&s), Readings { cpu_percent: 30.0, mem_percent: 50.0 });
    }

    #[test]
    fn sheds_one_per_check_in_order_then_restores_in_reverse_after_hold() {
        let mut b = board();
        let t = Instant::now();
        let shed = run(&mut b, t, 0, &[HOT; 5]);
        assert_eq!(shed, vec![(0, off(AccessLog)), (1, off(DetailedMetrics)), (2, off(Tracing)), (3, off(Profiling))]);
        assert!([AccessLog, DetailedMetrics, Tracing, Profiling].iter().all(|c| !b.is_on(*c)));
        assert!(b.is_on(ShadowCompare), "a component left off the list is never shed");

        // Recovered from second 5: nothing until it has lasted `hold`.
        let restored = run(&mut b, t, 5, &[COOL; 15]);
        assert_eq!(
            restored,
            vec![(15, on(Profiling)), (16, on(Tracing)), (17, on(DetailedMetrics)), (18, on(AccessLog))]
        );
    }

    #[test]
    fn hysteresis_holds_between_the_thresholds() {
        let mut b = board();
        let t = Instant::now();
        // Warm readings shed nothing...
        assert!(run(&mut b, t, 0, &[WARM; 30]).is_empty());
        // ...and once shed, restore nothing, however long they last.
        assert_eq!(run(&mut b, t, 30, &[HOT]), vec![(30, off(AccessLog))]);
        assert!(run(&mut b, t, 31, &[WARM; 60]).is_empty());
        assert!(!b.is_on(AccessLog));
        assert_eq!(b.pressure(), Pressure::Steady);
        // Memory alone is enough to be overloaded, and must also recover.
        let mem_hot = Some(Readings { cpu_percent: 10.0, mem_percent: 95.0 });
        let mem_warm = Some(Readings { cpu_percent: 10.0, mem_percent: 80.0 });
        assert_eq!(run(&mut b, t, 91, &[mem_hot]), vec![(91, off(DetailedMetrics))]);
        assert!(run(&mut b, t, 92, &[mem_warm; 30]).is_empty());
    }

    #[test]
    fn a_threshold_must_be_exceeded_not_met() {
        let shed = Thresholds { cpu_percent: 85.0, mem_percent: 90.0 };
        let restore = Thresholds { cpu_percent: 60.0, mem_percent: 75.0 };
        let at = |cpu, mem| Readings { cpu_percent: cpu, mem_percent: mem }.pressure(&shed, &restore);
        assert_eq!(at(85.0, 90.0), Pressure::Steady);
        assert_eq!(at(85.01, 0.0), Pressure::Overloaded);
        assert_eq!(at(60.0, 0.0), Pressure::Steady);
        assert_eq!(at(59.9, 74.9), Pressure::Recovered);
    }

    #[test]
    fn recovery_must_last_hold_without_a_break() {
        let mut b = board();
        let t = Instant::now();
        run(&mut b, t, 0, &[HOT]);
        // Nine cool seconds, one warm: the count starts again.
        let mut readings = vec![COOL; 9];
        readings.push(WARM);
        readings.extend([COOL; 10]);
        assert!(run(&mut b, t, 1, &readings).is_empty());
        assert_eq!(run(&mut b, t, 21, &[COOL]), vec![(21, on(AccessLog))]);
    }

    #[test]
    fn oscillating_readings_do_not_flap() {
        let mut b = board();
        let t = Instant::now();
        let readings: Vec<_> = (0..120).map(|i| if i % 2 == 0 { HOT } else { COOL }).collect();
        let switches = run(&mut b, t, 0, &readings);
        // Each component is shed once and never restored while it goes on.
        assert_eq!(switches.len(), 4, "{switches:?}");
        assert!(switches.iter().all(|(_, s)| !s.on));
        // Slower than the checks but faster than the hold: the same.
        let mut b = board();
        let readings: Vec<_> = (0..120).map(|i| if (i / 7) % 2 == 0 { HOT } else { COOL }).collect();
        let switches = run(&mut b, t, 0, &readings);
        assert!(switches.iter().all(|(_, s)| !s.on), "{switches:?}");
    }

    #[test]
    fn hold_bounds_how_soon_a_component_flips_back() {
        let mut b = board();
        b.policy.order = vec![AccessLog];
        let t = Instant::now();
        run(&mut b, t, 0, &[HOT]);
        let back = run(&mut b, t, 1, &[COOL; 11]);
        assert_eq!(back, vec![(11, on(AccessLog))]);
        // Overloaded right after the restore: the shed waits out the hold.
        let again = run(&mut b, t, 12, &[HOT; 12]);
        assert_eq!(again, vec![(21, off(AccessLog))]);
    }

    #[test]
    fn blind_checks_change_nothing_and_do_not_count_as_recovery() {
        let mut b = board();
        let t = Instant::now();
        assert!(run(&mut b, t, 0, &[None; 5]).is_empty());
        assert_eq!(b.pressure(), Pressure::Unknown);
        run(&mut b, t, 5, &[HOT, HOT]);
        // Stale for a minute while shed: nothing moves either way.
        assert!(run(&mut b, t, 7, &[None; 60]).is_empty());
        assert!(!b.is_on(AccessLog) && !b.is_on(DetailedMetrics) && b.is_on(Tracing));
        // Recovery is counted from the first usable cool reading.
        let mut readings = vec![COOL, None];
        readings.extend([COOL; 11]);
        let back = run(&mut b, t, 67, &readings);
        assert_eq!(back, vec![(79, on(DetailedMetrics))]);
    }

    #[test]
    fn a_manual_override_pins_until_released() {
        let mut b = board();
        let t = Instant::now();
        let (s, changed) = b.set_manual(AccessLog, Some(true), t);
        assert!(s.on && !changed);
        assert_eq!(b.control(AccessLog), Control::Manual);
        // The board skips the pinned component and sheds the next one.
        assert_eq!(run(&mut b, t, 1, &[HOT]), vec![(1, off(DetailedMetrics))]);
        assert!(b.is_on(AccessLog));
        // Released under overload: the board's plan (shed) applies at once.
        let (s, changed) = b.set_manual(AccessLog, None, t + 2 * TICK);
        assert!(!s.on && changed);
        assert_eq!(s.reason, Reason::Manual);
        assert_eq!(b.control(AccessLog), Control::Board);
        // An operator may switch a component off whatever the pressure.
        let (s, changed) = b.set_manual(Profiling, Some(false), t + 3 * TICK);
        assert!(!s.on && changed);
        assert!(run(&mut b, t, 4, &[COOL; 30]).iter().all(|(_, s)| s.component != Profiling));
        assert!(!b.is_on(Profiling));
    }

    #[test]
    fn a_component_dropped_from_the_list_comes_back() {
        let mut b = board();
        let t = Instant::now();
        run(&mut b, t, 0, &[HOT, HOT]);
        let mut p = b.policy().clone();
        p.order = vec![DetailedMetrics, Tracing, Profiling];
        b.set_policy(p);
        let s = b.check(WARM, t + 20 * TICK).unwrap();
        assert_eq!(s, Switch { component: AccessLog, on: true, reason: Reason::Config });
        assert!(b.check(WARM, t + 21 * TICK).is_none());
        assert!(!b.is_on(DetailedMetrics));
    }
}

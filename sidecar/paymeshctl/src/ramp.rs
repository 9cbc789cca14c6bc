//! The guarded progressive ramp: raise a feature's (or one client's)
//! orchestration percent a step at a time, judge the traffic after each
//! interval, and roll back at once on a breach.
//!
//! The guards: the orchestration path's 5xx share (`--max-error-rate`) and
//! p99 (`--max-p99`), and, with `--max-mismatch-rate`, the share of the
//! sidecars' shadow compares whose answers differ between the paths (the
//! feature's: `paymesh_shadow_compares_total` has no client label). A
//! failed shadow read (`shadow_error`) is no compare: it says nothing about
//! agreement.
//!
//! A ramp yields to people. It holds the lock of its key (see `lock`) and
//! every write it makes is a compare-and-swap on the key's mod revision: if
//! anyone else wrote the key — an operator's `migration set`, an `etcdctl
//! put` — the ramp stops without writing, says what it found and exits.
//! It also watches the key while a step runs, so it stops within a second
//! of such a write. SIGTERM or SIGINT set the percent back to the last step
//! judged healthy (by compare-and-swap too) and release the lock. A step is
//! only judged on evidence: any missing signal holds it (see
//! `observe::Evidence`), and `--max-holds` bounds the wait.

use crate::lock::RampLock;
use crate::observe::{Evidence, Http, Scope, Side, Source};
use crate::progress::Progress;
use crate::store::{Cas, Current, Store, Target, actor_text, format_percent, now_ms};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::signal::unix::{Signal, SignalKind, signal};

#[derive(Clone, Debug)]
pub struct Plan {
    pub target: Target,
    pub to: f64,
    pub step: f64,
    pub interval: Duration,
    pub max_error_rate: f64,
    pub max_p99: Duration,
    pub min_requests: u64,
    /// Highest acceptable share of shadow compares that differ; `None`:
    /// shadow compares are not judged.
    pub max_mismatch_rate: Option<f64>,
    /// Shadow compares (match or mismatch) an interval needs, with
    /// `max_mismatch_rate`.
    pub min_compares: u64,
    /// Intervals a step may wait for evidence before the ramp gives up.
    pub max_holds: u32,
    pub rollback_to_zero: bool,
}

impl Plan {
    pub fn summary(&self) -> Value {
        let mut summary = json!({
            "to": self.to, "step": self.step,
            "interval": humantime::format_duration(self.interval).to_string(),
            "max_error_rate": self.max_error_rate,
            "max_p99": humantime::format_duration(self.max_p99).to_string(),
        });
        if let Some(rate) = self.max_mismatch_rate {
            summary["max_mismatch_rate"] = json!(rate);
            summary["min_compares"] = json!(self.min_compares);
        }
        summary
    }

    /// The guards, for the start message.
    fn limits(&self) -> String {
        let mut s = format!(
            "5xx ≤ {:.2}%, p99 ≤ {} ms, ≥ {} requests",
            self.max_error_rate * 100.0,
            self.max_p99.as_millis(),
            self.min_requests
        );
        if let Some(rate) = self.max_mismatch_rate {
            s.push_str(&format!(
                ", shadow mismatches ≤ {:.2}% of ≥ {} compares of {}",
                rate * 100.0,
                self.min_compares,
                self.target.feature
            ));
        }
        s
    }
}

/// A guard that failed, with the numbers, and the legacy path beside it.
#[derive(Debug, PartialEq)]
pub struct Breach {
    /// What failed and by how much.
    pub guard: String,
    /// The legacy path over the same interval.
    pub legacy: String,
    /// The legacy path failed too: a shared dependency, most likely.
    pub legacy_failing: bool,
}

/// How a ramp ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Reached(f64),
    RolledBack {
        from: f64,
        to: f64,
        breach: Breach,
    },
    GaveUp {
        at: f64,
        to: f64,
        reason: String,
    },
    /// Someone else wrote the key; the ramp wrote nothing after that.
    Preempted {
        at: f64,
        found: Current,
        by: String,
    },
    /// The ramp's lock lease was lost (etcd unreachable past its TTL).
    LostLock {
        at: f64,
    },
    /// SIGTERM or SIGINT: set back to `to`, the last healthy step.
    Stopped {
        signal: &'static str,
        at: f64,
        to: f64,
        note: Option<String>,
    },
}

/// What one interval showed.
#[derive(Debug, PartialEq)]
pub enum Judgement {
    Healthy,
    Breach(Breach),
    /// Not enough evidence to judge; why.
    Hold(String),
}

fn ms(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1000.0)
}

fn legacy_text(l: &Side, plan: &Plan) -> (String, bool) {
    if l.requests <= 0.0 {
        return ("the legacy path had no requests in the interval".to_owned(), false);
    }
    let failing = l.error_rate() > plan.max_error_rate;
    let text = format!(
        "the legacy path {} at the same time: 5xx {:.2}% over {:.0} requests",
        if failing { "was failing too" } else { "was healthy" },
        l.error_rate() * 100.0,
        l.requests
    );
    (text, failing)
}

pub fn judge(e: &Evidence, plan: &Plan) -> Judgement {
    let o = &e.orchestration;
    let (legacy, legacy_failing) = legacy_text(&e.legacy, plan);
    // Failures seen are evidence even when other signals are missing.
    if o.requests > 0.0 && o.error_rate() > plan.max_error_rate {
        let guard = format!(
            "--max-error-rate: 5xx share {:.2}% ({:.0} of {:.0} requests) exceeds {:.2}%",
            o.error_rate() * 100.0,
            o.errors,
            o.requests,
            plan.max_error_rate * 100.0
        );
        return Judgement::Breach(Breach { guard, legacy, legacy_failing });
    }
    if let Some(p99) = o.p99
        && o.requests > 0.0
        && p99 > plan.max_p99.as_secs_f64()
    {
        let guard = format!(
            "--max-p99: p99 {} over {:.0} requests exceeds {}",
            ms(p99),
            o.requests,
            ms(plan.max_p99.as_secs_f64())
        );
        return Judgement::Breach(Breach { guard, legacy, legacy_failing });
    }
    let s = &e.shadow;
    // Answers that differ are evidence even when other signals are missing.
    if let Some(max) = plan.max_mismatch_rate
        && s.compared() > 0.0
        && s.mismatches / s.compared() > max
    {
        let guard = format!(
            "--max-mismatch-rate: {:.0} of {:.0} shadow compares ({:.2}%) differ, over {:.2}%",
            s.mismatches,
            s.compared(),
            s.mismatches / s.compared() * 100.0,
            max * 100.0
        );
        return Judgement::Breach(Breach { guard, legacy, legacy_failing });
    }
    if !e.missing.is_empty() {
        return Judgement::Hold(e.missing.join("; "));
    }
    if o.requests < plan.min_requests as f64 {
        return Judgement::Hold(format!(
            "too little traffic: {:.0} requests, --min-requests is {}",
            o.requests, plan.min_requests
        ));
    }
    if o.p99.is_none() {
        return Judgement::Hold("no latency histogram for the interval (detailed_metrics shed?)".to_owned());
    }
    if plan.max_mismatch_rate.is_some() && s.compared() < plan.min_compares as f64 {
        let mut why = format!(
            "too few shadow compares: {:.0}, --min-compares is {} (is shadow.sample_percent above 0 for {}, and shadow_compare on?)",
            s.compared(),
            plan.min_compares,
            plan.target.feature
        );
        if s.errors > 0.0 {
            why.push_str(&format!("; {:.0} shadow read(s) failed (shadow_error), which are no compares", s.errors));
        }
        return Judgement::Hold(why);
    }
    Judgement::Healthy
}

/// The percents a ramp from `from` visits: `from + step`, … up to `to`.
pub fn steps(from: f64, to: f64, step: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut p = from;
    while p < to {
        p = (p + step).min(to);
        // Keep the percents etcd sees short and exact to four places.
        p = (p * 10_000.0).round() / 10_000.0;
        out.push(p);
    }
    out
}

/// SIGTERM and SIGINT, registered before the ramp writes anything.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn register() -> anyhow::Result<Signals> {
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The ramp's state between writes.
struct Ramp<'a> {
    store: &'a mut Store,
    lock: &'a RampLock,
    plan: &'a Plan,
    /// The key's mod revision as this ramp last wrote or read it.
    revision: i64,
    /// When this ramp last wrote, to find who wrote after it.
    wrote_at_ms: u64,
    healthy: f64,
}

enum Wait {
    Elapsed,
    Signal(&'static str),
    Changed(Current),
}

impl Ramp<'_> {
    async fn write(&mut self, percent: f64, history: Value) -> anyhow::Result<Result<(), Outcome>> {
        let lock = Some((self.lock.key.as_str(), self.lock.lease));
        match self.store.cas(&self.plan.target, self.revision, lock, percent, history).await? {
            Cas::Written(rev) => {
                self.revision = rev;
                self.wrote_at_ms = now_ms();
                Ok(Ok(()))
            }
            Cas::Preempted(found) => Ok(Err(self.preempted(percent, found).await)),
            Cas::LostLock => Ok(Err(Outcome::LostLock { at: percent })),
        }
    }

    /// Names who wrote the key (from its history) and records the stop.
    async fn preempted(&mut self, at: f64, found: Current) -> Outcome {
        let t = self.plan.target.clone();
        let me = std::process::id();
        let by = match self.store.history(&t.feature, t.client.as_deref(), 10).await {
            Ok(h) => h
                .iter()
                .rev()
                .find(|e| e["time_ms"].as_u64() >= Some(self.wrote_at_ms.saturating_sub(1000)) && e["by"]["pid"] != me)
                .map(|e| {
                    let to = e["to"].as_f64().map_or_else(|| e["to"].to_string(), format_percent);
                    format!("{} ({} → {to})", actor_text(&e["by"]), e["action"].as_str().unwrap_or("?"))
                }),
            Err(_) => None,
        }
        .unwrap_or_else(|| "a writer that left no history record (etcdctl or another tool)".to_owned());
        let entry = json!({
            "action": "preempted", "from": at, "to": found.raw,
            "reason": format!("the key was changed by {by} at revision {}; the ramp stopped without writing", found.mod_revision),
        });
        let _ = self.store.record(&t, entry).await;
        Outcome::Preempted { at, found, by }
    }

    /// Waits `d`, watching the key and the signals; on a terminal, keeps
    /// the live line fresh with `peek`.
    async fn wait(
        &mut self,
        d: Duration,
        signals: &mut Signals,
        mut tick: impl AsyncFnMut(Duration),
    ) -> anyhow::Result<Wait> {
        let end = Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Wait::Elapsed);
            }
            tokio::select! {
                s = signals.recv() => return Ok(Wait::Signal(s)),
                () = tokio::time::sleep(left.min(Duration::from_millis(500))) => {}
            }
            let now = self.store.read(&self.plan.target).await;
            if let Ok(now) = now
                && now.mod_revision != self.revision
            {
                return Ok(Wait::Changed(now));
            }
            tick(end.saturating_duration_since(Instant::now())).await;
        }
    }
}

pub async fn run(
    store: &mut Store,
    lock: &RampLock,
    signals: &mut Signals,
    source: &Source,
    http: &Http,
    plan: &Plan,
    progress: &mut Progress,
) -> anyhow::Result<Outcome> {
    let t = &plan.target;
    let (start, current) = store.effective(t).await?;
    anyhow::ensure!(
        plan.to >= start,
        "{t} is at {}% already, above --to {}%: a ramp only raises; lower it with `migration set`",
        format_percent(start),
        format_percent(plan.to)
    );
    let steps = steps(start, plan.to, plan.step);
    println!(
        "ramp {t}: {}% → {}% in {} step(s) of {}%, {} each; limits: {}; lock {}",
        format_percent(start),
        format_percent(plan.to),
        steps.len(),
        format_percent(plan.step),
        humantime::format_duration(plan.interval),
        plan.limits(),
        lock.key
    );
    let mut ramp = Ramp { store, lock, plan, revision: current.mod_revision, wrote_at_ms: now_ms(), healthy: start };
    let back_to = |healthy: f64| if plan.rollback_to_zero { 0.0 } else { healthy };
    for (n, percent) in steps.iter().copied().enumerate() {
        let history = json!({ "action": "step", "from": ramp.healthy, "to": percent });
        if let Err(outcome) = ramp.write(percent, history).await? {
            return Ok(outcome);
        }
        progress.line(&format!("[{}/{}] {t} set to {}%", n + 1, steps.len(), format_percent(percent)));
        let scope = Scope { feature: t.feature.clone(), client: t.client.clone(), percent };
        let mut holds = 0;
        loop {
            let mark = source.mark(http, &scope).await;
            let remaining_steps = steps.len() - n - 1;
            let label = format!("[{}/{}] {}%", n + 1, steps.len(), format_percent(percent));
            let waited = {
                let (progress, mark, scope, label) = (&mut *progress, &mark, &scope, &label);
                let tick = async move |left: Duration| {
                    if progress.is_live() {
                        let e = source.since(http, scope, mark).await;
                        let eta = left + plan.interval * remaining_steps as u32;
                        progress.live(&status(label, &e, Some(left), eta));
                    }
                };
                ramp.wait(plan.interval, signals, tick).await?
            };
            match waited {
                Wait::Elapsed => {}
                Wait::Changed(found) => return Ok(ramp.preempted(percent, found).await),
                Wait::Signal(sig) => return stop(&mut ramp, sig, percent).await,
            }
            let evidence = source.since(http, &scope, &mark).await;
            let eta = plan.interval * remaining_steps as u32;
            let judgement = judge(&evidence, plan);
            let verdict = match &judgement {
                Judgement::Healthy => "healthy".to_owned(),
                Judgement::Breach(b) => format!("BREACH: {}", b.guard),
                Judgement::Hold(why) => format!("holding ({}/{}): {why}", holds + 1, plan.max_holds),
            };
            progress.line(&format!("{} — {verdict}", status(&label, &evidence, None, eta)));
            match judgement {
                Judgement::Healthy => {
                    ramp.healthy = percent;
                    break;
                }
                Judgement::Breach(breach) => {
                    let back = back_to(ramp.healthy);
                    let history = json!({
                        "action": "rollback", "from": percent, "to": back,
                        "reason": format!("{}; {}", breach.guard, breach.legacy),
                    });
                    if let Err(outcome) = ramp.write(back, history).await? {
                        return Ok(outcome);
                    }
                    return Ok(Outcome::RolledBack { from: percent, to: back, breach });
                }
                Judgement::Hold(why) => {
                    holds += 1;
                    if holds >= plan.max_holds {
                        let back = back_to(ramp.healthy);
                        let reason = format!(
                            "no evidence to judge {}% after {holds} interval(s): {why}",
                            format_percent(percent)
                        );
                        let history = json!({ "action": "gave_up", "from": percent, "to": back, "reason": reason });
                        if let Err(outcome) = ramp.write(back, history).await? {
                            return Ok(outcome);
                        }
                        return Ok(Outcome::GaveUp { at: percent, to: back, reason });
                    }
                }
            }
        }
    }
    let _ = ramp.store.record(t, json!({ "action": "reached", "from": start, "to": ramp.healthy })).await;
    Ok(Outcome::Reached(ramp.healthy))
}

/// A signal: back to the last healthy step, unless someone else wrote.
async fn stop(ramp: &mut Ramp<'_>, signal: &'static str, at: f64) -> anyhow::Result<Outcome> {
    let to = ramp.healthy;
    let history = json!({
        "action": "stopped", "from": at, "to": to,
        "reason": format!("{signal}: back to the last step judged healthy"),
    });
    match ramp.write(to, history).await? {
        Ok(()) => Ok(Outcome::Stopped { signal, at, to, note: None }),
        Err(Outcome::Preempted { found, by, .. }) => Ok(Outcome::Stopped {
            signal,
            at,
            to: found.percent.and_then(Result::ok).unwrap_or(at),
            note: Some(format!("left as {by} set it (revision {})", found.mod_revision)),
        }),
        Err(other) => Ok(other),
    }
}

/// `[2/5] 40% · 1234 req · 5xx 0.00% · p99 12.3 ms · legacy 5xx 0.00% · 12s left · ETA 1m`.
pub fn status(label: &str, e: &Evidence, left: Option<Duration>, eta: Duration) -> String {
    let o = &e.orchestration;
    let p99 = o.p99.map_or("n/a".to_owned(), ms);
    let mut s = format!(
        "{label} · {:.0} req judged · 5xx {:.2}% · p99 {p99} · legacy 5xx {:.2}%",
        o.requests,
        o.error_rate() * 100.0,
        e.legacy.error_rate() * 100.0
    );
    if let Some(left) = left {
        s.push_str(&format!(" · {}s left", left.as_secs()));
    }
    s.push_str(&format!(" · ETA {}", humantime::format_duration(Duration::from_secs(eta.as_secs()))));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use paymeshctl::prom::Compares;

    fn plan() -> Plan {
        Plan {
            target: Target::new("charge", None).unwrap(),
            to: 50.0,
            step: 10.0,
            interval: Duration::from_secs(1),
            max_error_rate: 0.01,
            max_p99: Duration::from_millis(200),
            min_requests: 100,
            max_mismatch_rate: None,
            min_compares: 100,
            max_holds: 3,
            rollback_to_zero: false,
        }
    }

    fn evidence(requests: f64, errors: f64, p99: Option<f64>) -> Evidence {
        Evidence {
            orchestration: Side { requests, errors, p99, observed: requests },
            legacy: Side { requests: 1000.0, errors: 0.0, p99: None, observed: 0.0 },
            shadow: Compares::default(),
            missing: vec![],
        }
    }

    #[test]
    fn steps_clamp_to_the_target() {
        assert_eq!(steps(0.0, 25.0, 10.0), vec![10.0, 20.0, 25.0]);
        assert_eq!(steps(25.0, 25.0, 10.0), Vec::<f64>::new());
        assert_eq!(steps(0.0, 0.3, 0.1), vec![0.1, 0.2, 0.3]);
    }

    #[test]
    fn judgement() {
        let p = plan();
        assert_eq!(judge(&evidence(1000.0, 5.0, Some(0.05)), &p), Judgement::Healthy);
        assert!(
            matches!(judge(&evidence(1000.0, 20.0, Some(0.05)), &p), Judgement::Breach(b) if b.guard.contains("5xx share 2.00% (20 of 1000"))
        );
        assert!(
            matches!(judge(&evidence(1000.0, 0.0, Some(0.5)), &p), Judgement::Breach(b) if b.guard.contains("p99 500.0 ms"))
        );
        assert!(matches!(judge(&evidence(50.0, 0.0, Some(0.05)), &p), Judgement::Hold(w) if w.contains("too little")));
        // A failing path is a breach even on little traffic.
        assert!(matches!(judge(&evidence(10.0, 10.0, None), &p), Judgement::Breach(_)));
    }

    #[test]
    fn no_signal_is_never_healthy() {
        let p = plan();
        // Histograms shed: plenty of requests, no p99.
        assert!(matches!(judge(&evidence(1000.0, 0.0, None), &p), Judgement::Hold(w) if w.contains("latency")));
        let mut e = evidence(1000.0, 0.0, Some(0.01));
        e.missing.push("no data from sidecar http://b".into());
        assert!(matches!(judge(&e, &p), Judgement::Hold(w) if w.contains("http://b")));
        // ... but failures seen are still a breach.
        e.orchestration.errors = 500.0;
        assert!(matches!(judge(&e, &p), Judgement::Breach(_)));
    }

    fn shadowed(matches: f64, mismatches: f64, errors: f64) -> Evidence {
        Evidence { shadow: Compares { matches, mismatches, errors }, ..evidence(1000.0, 0.0, Some(0.05)) }
    }

    #[test]
    fn shadow_mismatches_over_the_limit_roll_back() {
        let p = Plan { max_mismatch_rate: Some(0.001), ..plan() };
        let Judgement::Breach(b) = judge(&shadowed(37.0, 3.0, 0.0), &p) else { panic!("a breach") };
        assert_eq!(b.guard, "--max-mismatch-rate: 3 of 40 shadow compares (7.50%) differ, over 0.10%");
        // At the limit is healthy; one more mismatch is not.
        assert_eq!(judge(&shadowed(999.0, 1.0, 0.0), &p), Judgement::Healthy);
        assert!(matches!(judge(&shadowed(998.0, 2.0, 0.0), &p), Judgement::Breach(_)));
        // Evidence even with too few compares and a missing signal.
        let mut e = shadowed(0.0, 1.0, 0.0);
        e.missing.push("no data from sidecar http://b".into());
        assert!(matches!(judge(&e, &p), Judgement::Breach(b) if b.guard.contains("1 of 1 shadow compares (100.00%)")));
        // The error-rate and p99 guards come first.
        let mut e = shadowed(0.0, 50.0, 0.0);
        e.orchestration.errors = 500.0;
        assert!(matches!(judge(&e, &p), Judgement::Breach(b) if b.guard.starts_with("--max-error-rate")));
        e.orchestration.errors = 0.0;
        e.orchestration.p99 = Some(1.0);
        assert!(matches!(judge(&e, &p), Judgement::Breach(b) if b.guard.starts_with("--max-p99")));
        // Without the flag mismatches are not judged.
        assert_eq!(judge(&shadowed(0.0, 50.0, 0.0), &plan()), Judgement::Healthy);
    }

    #[test]
    fn too_few_shadow_compares_hold() {
        let p = Plan { max_mismatch_rate: Some(0.01), min_compares: 100, ..plan() };
        assert_eq!(
            judge(&shadowed(99.0, 0.0, 0.0), &p),
            Judgement::Hold(
                "too few shadow compares: 99, --min-compares is 100 (is shadow.sample_percent above 0 for charge, and shadow_compare on?)"
                    .into()
            )
        );
        // Failed shadow reads are no compares, but the hold names them.
        assert_eq!(
            judge(&shadowed(10.0, 0.0, 500.0), &p),
            Judgement::Hold(
                "too few shadow compares: 10, --min-compares is 100 (is shadow.sample_percent above 0 for charge, and shadow_compare on?); 500 shadow read(s) failed (shadow_error), which are no compares"
                    .into()
            )
        );
        assert_eq!(judge(&shadowed(100.0, 0.0, 3.0), &p), Judgement::Healthy);
        // Other holds come first.
        assert!(
            matches!(judge(&Evidence { shadow: Compares::default(), ..evidence(50.0, 0.0, Some(0.05)) }, &p), Judgement::Hold(w) if w.contains("too little traffic"))
        );
        // Without the flag no compares are needed.
        assert_eq!(judge(&shadowed(0.0, 0.0, 0.0), &plan()), Judgement::Healthy);
    }

    #[test]
    fn the_summary_and_limits_name_the_shadow_guard_when_set() {
        let p = plan();
        assert!(p.summary().get("max_mismatch_rate").is_none() && p.summary().get("min_compares").is_none());
        assert!(!p.limits().contains("shadow"));
        let p = Plan { max_mismatch_rate: Some(0.001), min_compares: 250, ..plan() };
        assert_eq!(
            (p.summary()["max_mismatch_rate"].as_f64(), p.summary()["min_compares"].as_u64()),
            (Some(0.001), Some(250))
        );
        assert_eq!(
            p.limits(),
            "5xx ≤ 1.00%, p99 ≤ 200 ms, ≥ 100 requests, shadow mismatches ≤ 0.10% of ≥ 250 compares of charge"
        );
    }

    #[test]
    fn a_breach_says_whether_the_legacy_path_failed_too() {
        let p = plan();
        let mut e = evidence(1000.0, 300.0, Some(0.05));
        let Judgement::Breach(b) = judge(&e, &p) else { panic!() };
        assert!(!b.legacy_failing && b.legacy.contains("was healthy"), "{b:?}");
        e.legacy.errors = 400.0;
        let Judgement::Breach(b) = judge(&e, &p) else { panic!() };
        assert!(b.legacy_failing && b.legacy.contains("failing too") && b.legacy.contains("40.00%"), "{b:?}");
    }

    #[test]
    fn the_status_line_has_step_figures_and_times() {
        let s = status(
            "[2/5] 40%",
            &evidence(120.0, 0.0, Some(0.0123)),
            Some(Duration::from_secs(12)),
            Duration::from_secs(72),
        );
        assert_eq!(
            s,
            "[2/5] 40% · 120 req judged · 5xx 0.00% · p99 12.3 ms · legacy 5xx 0.00% · 12s left · ETA 1m 12s"
        );
    }
}

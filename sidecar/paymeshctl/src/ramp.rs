//! The guarded progressive ramp: raise a feature's orchestration percent a
//! step at a time, judge the orchestration path after each interval, and
//! roll back at once on a breach.

use crate::observe::{Http, Source, Window};
use crate::store::{Store, format_percent};
use serde_json::json;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Plan {
    pub feature: String,
    pub to: f64,
    pub step: f64,
    pub interval: Duration,
    pub max_error_rate: f64,
    pub max_p99: Duration,
    pub min_requests: u64,
    /// Intervals a step may wait for enough traffic before the ramp gives up.
    pub max_holds: u32,
    pub rollback_to_zero: bool,
}

/// How a ramp ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Reached(f64),
    RolledBack { from: f64, to: f64, reason: String },
    GaveUp { at: f64, to: f64, reason: String },
}

/// What one interval showed.
#[derive(Debug, PartialEq)]
pub enum Judgement {
    Healthy,
    Breach(String),
    TooLittleTraffic,
}

pub fn judge(w: &Window, plan: &Plan) -> Judgement {
    let rate = w.error_rate();
    if w.requests > 0.0 && rate > plan.max_error_rate {
        return Judgement::Breach(format!(
            "5xx share {:.2}% over {} requests exceeds {:.2}%",
            rate * 100.0,
            w.requests,
            plan.max_error_rate * 100.0
        ));
    }
    if let Some(p99) = w.p99
        && w.requests > 0.0
        && p99 > plan.max_p99.as_secs_f64()
    {
        return Judgement::Breach(format!(
            "p99 {:.1} ms exceeds {:.1} ms",
            p99 * 1000.0,
            plan.max_p99.as_secs_f64() * 1000.0
        ));
    }
    if w.requests < plan.min_requests as f64 {
        return Judgement::TooLittleTraffic;
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

pub async fn run(store: &mut Store, source: &Source, http: &Http, plan: &Plan) -> anyhow::Result<Outcome> {
    let start = store.get(&plan.feature).await?;
    anyhow::ensure!(
        plan.to >= start,
        "{} is at {}% already, above --to {}%: a ramp only raises; lower it with `migration set`",
        plan.feature,
        format_percent(start),
        format_percent(plan.to)
    );
    let steps = steps(start, plan.to, plan.step);
    let mut healthy = start;
    println!(
        "ramp {}: {}% → {}% in {} step(s) of {}%, {} each; limits: 5xx ≤ {:.2}%, p99 ≤ {} ms, ≥ {} requests",
        plan.feature,
        format_percent(start),
        format_percent(plan.to),
        steps.len(),
        format_percent(plan.step),
        humantime::format_duration(plan.interval),
        plan.max_error_rate * 100.0,
        plan.max_p99.as_millis(),
        plan.min_requests
    );
    for (n, percent) in steps.iter().copied().enumerate() {
        store.set(&plan.feature, percent, json!({ "action": "step", "from": healthy, "to": percent })).await?;
        println!("[{}/{}] {} set to {}%", n + 1, steps.len(), plan.feature, format_percent(percent));
        let mut holds = 0;
        loop {
            let mark = source.mark(http, &plan.feature).await;
            tokio::time::sleep(plan.interval).await;
            let window = match mark {
                Ok(mark) => source.since(http, &plan.feature, &mark, plan.interval).await,
                Err(e) => Err(e),
            };
            let judgement = match &window {
                Ok(w) => judge(w, plan),
                Err(e) => {
                    println!("      cannot read metrics: {e:#}");
                    Judgement::TooLittleTraffic
                }
            };
            if let Ok(w) = &window {
                println!(
                    "      {} requests, 5xx {:.2}%, p99 {}",
                    w.requests,
                    w.error_rate() * 100.0,
                    w.p99.map_or("n/a".to_owned(), |s| format!("{:.1} ms", s * 1000.0))
                );
            }
            match judgement {
                Judgement::Healthy => {
                    healthy = percent;
                    println!("      healthy");
                    break;
                }
                Judgement::Breach(reason) => {
                    let back = if plan.rollback_to_zero { 0.0 } else { healthy };
                    store
                        .set(
                            &plan.feature,
                            back,
                            json!({ "action": "rollback", "from": percent, "to": back, "reason": reason }),
                        )
                        .await?;
                    return Ok(Outcome::RolledBack { from: percent, to: back, reason });
                }
                Judgement::TooLittleTraffic => {
                    holds += 1;
                    if holds >= plan.max_holds {
                        let back = if plan.rollback_to_zero { 0.0 } else { healthy };
                        let reason =
                            format!("no judgeable traffic after {holds} interval(s) at {}%", format_percent(percent));
                        store
                            .set(
                                &plan.feature,
                                back,
                                json!({ "action": "gave_up", "from": percent, "to": back, "reason": reason }),
                            )
                            .await?;
                        return Ok(Outcome::GaveUp { at: percent, to: back, reason });
                    }
                    println!("      not enough traffic to judge (< {} requests); holding", plan.min_requests);
                }
            }
        }
    }
    Ok(Outcome::Reached(healthy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            feature: "charge".into(),
            to: 50.0,
            step: 10.0,
            interval: Duration::from_secs(1),
            max_error_rate: 0.01,
            max_p99: Duration::from_millis(200),
            min_requests: 100,
            max_holds: 3,
            rollback_to_zero: false,
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
        let w = |requests, errors, p99| Window { requests, errors, p99 };
        assert_eq!(judge(&w(1000.0, 5.0, Some(0.05)), &p), Judgement::Healthy);
        assert!(matches!(judge(&w(1000.0, 20.0, Some(0.05)), &p), Judgement::Breach(r) if r.contains("5xx")));
        assert!(matches!(judge(&w(1000.0, 0.0, Some(0.5)), &p), Judgement::Breach(r) if r.contains("p99")));
        assert_eq!(judge(&w(50.0, 0.0, Some(0.05)), &p), Judgement::TooLittleTraffic);
        // A failing path is a breach even on little traffic.
        assert!(matches!(judge(&w(10.0, 10.0, None), &p), Judgement::Breach(_)));
    }
}

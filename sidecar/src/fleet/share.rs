//! The pure part of fleet quotas: the split of a client's fleet rate into
//! per-member shares. The member record every sidecar writes to
//! `<prefix>/fleet/<pod>`, and its parser, are `paymesh_vocab::fleet`
//! (`paymeshctl fleet` reads records with the same parser).
//!
//! No record can push another member below its floor or the shares' sum
//! past the rate: a hostile demand is treated as zero or capped.

pub use paymesh_vocab::fleet::{
    ClientReport, MAX_CLIENTS, MAX_DEMAND, MAX_MEMBERS, MAX_POD, MAX_RECORD_BYTES, MemberRecord, Refusal, VERSION,
    parse_record, valid_pod,
};

/// Splits `rate` among members by demand. `demands[i]` is member i's
/// offered requests per second, `None` for a member that has not reported
/// yet.
///
/// A member without a report gets an even split, `rate / n`, as a new
/// sidecar gives itself. The rest is `k` even splits for the `k` reporting
/// members: each keeps `min_share` of an even split as its floor, and the
/// remainder follows demand. Every member then refuses about the same
/// fraction of what it is offered. The shares always sum to `rate`; a
/// hostile or broken demand is treated as zero or capped, so it moves at
/// most the remainder, never another member's floor.
pub fn allocate(rate: f64, min_share: f64, demands: &[Option<f64>]) -> Vec<f64> {
    let n = demands.len();
    if n == 0 || !rate.is_finite() || rate <= 0.0 {
        return vec![0.0; n];
    }
    let min_share = if min_share.is_finite() { min_share.clamp(0.0, 1.0) } else { 1.0 };
    let even = rate / n as f64;
    let clean = |d: f64| if d.is_finite() && d > 0.0 { d.min(MAX_DEMAND) } else { 0.0 };
    let reporting = demands.iter().filter(|d| d.is_some()).count();
    let total: f64 = demands.iter().flatten().map(|&d| clean(d)).sum();
    let floor = even * min_share;
    let spread = (even - floor) * reporting as f64;
    demands
        .iter()
        .map(|d| match d {
            None => even,
            Some(_) if total <= 0.0 => even,
            Some(d) => floor + spread * clean(*d) / total,
        })
        .collect()
}

/// A share's burst: the client's burst scaled by the share, at least one.
pub fn share_burst(burst: u32, rate: f64, share: f64) -> u32 {
    if !(rate > 0.0 && share.is_finite() && share > 0.0) {
        return 1;
    }
    ((f64::from(burst) * (share / rate).min(1.0)).round() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(v: &[f64]) -> f64 {
        v.iter().sum()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn shares_follow_demand_above_a_floor_and_sum_to_the_rate() {
        // 70/10/10/10 of 1,000 req/s at 300 req/s, floor 10 % of 75.
        let s = allocate(300.0, 0.1, &[Some(700.0), Some(100.0), Some(100.0), Some(100.0)]);
        assert!(close(sum(&s), 300.0), "{s:?}");
        assert!(close(s[0], 7.5 + 270.0 * 0.7), "{s:?}");
        assert!(close(s[1], 7.5 + 270.0 * 0.1), "{s:?}");
        // Each member refuses a similar fraction of what it is offered.
        let admitted: Vec<f64> = s.iter().zip([700.0, 100.0, 100.0, 100.0]).map(|(s, d)| s / d).collect();
        assert!(admitted[0] > 0.25 && admitted[1] < 0.4, "{admitted:?}");
        // An idle member keeps its floor; all idle is an even split.
        let s = allocate(300.0, 0.1, &[Some(500.0), Some(0.0)]);
        assert!(close(s[1], 15.0) && close(sum(&s), 300.0), "{s:?}");
        assert_eq!(allocate(300.0, 0.1, &[Some(0.0), Some(0.0), Some(0.0)]), vec![100.0; 3]);
        // min_share 1: even whatever the demand.
        assert_eq!(allocate(200.0, 1.0, &[Some(900.0), Some(1.0)]), vec![100.0; 2]);
        assert!(allocate(300.0, 0.1, &[]).is_empty());
    }

    #[test]
    fn a_member_without_a_report_gets_an_even_split() {
        // Three reporting members and a new one: rate / (members + 1).
        let s = allocate(300.0, 0.1, &[Some(700.0), Some(100.0), Some(100.0), None]);
        assert!(close(s[3], 75.0), "{s:?}");
        assert!(close(sum(&s), 300.0), "{s:?}");
        assert_eq!(allocate(300.0, 0.1, &[None]), vec![300.0]);
    }

    #[test]
    fn hostile_demands_move_the_remainder_only() {
        for bad in [f64::NAN, f64::INFINITY, -1e300, f64::MAX, 1e30, -5.0] {
            let s = allocate(300.0, 0.1, &[Some(bad), Some(100.0), Some(100.0)]);
            assert!(close(sum(&s), 300.0), "{bad}: {s:?}");
            assert!(s.iter().all(|&x| x.is_finite() && x >= 10.0 - 1e-9), "{bad}: {s:?}");
        }
        // A silly rate or floor neither panics nor makes a non-finite share.
        for (rate, min) in [(f64::NAN, 0.1), (-1.0, 0.1), (300.0, f64::NAN), (300.0, -3.0), (300.0, 7.0)] {
            let s = allocate(rate, min, &[Some(1.0), None]);
            assert!(s.iter().all(|x| x.is_finite()), "{rate} {min}: {s:?}");
        }
    }

    #[test]
    fn burst_scales_with_the_share() {
        assert_eq!(share_burst(400, 300.0, 75.0), 100);
        assert_eq!(share_burst(400, 300.0, 0.01), 1);
        assert_eq!(share_burst(400, 300.0, 900.0), 400);
        assert_eq!(share_burst(400, 300.0, f64::NAN), 1);
    }
}

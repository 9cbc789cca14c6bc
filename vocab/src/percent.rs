//! Migration percents: how etcd, the cache file, the config and
//! `paymeshctl` write them, and the basis points the sidecar keeps.
//!
//! A percent is a finite decimal in [0, 100] kept to two decimals, so the
//! sidecar's 10 000 sticky buckets map onto it exactly (`12.5` → 1250
//! basis points → buckets `0..1250` take the orchestration path). Values
//! come from etcd, which any holder of the prefix's write permission can
//! fill: everything here treats them as untrusted.

/// 100 %.
pub const MAX_BASIS_POINTS: u32 = 10_000;

/// Longest slice of a refused value quoted back in the error: a hostile
/// megabyte must not land in the log whole.
const QUOTE_MAX: usize = 64;

/// Parses a percent as text (an etcd value, a CLI argument): a finite
/// decimal in [0, 100], surrounding whitespace allowed, as basis points
/// (`12.5` → 1250). The error names the value and what is wrong with it.
pub fn parse_percent(text: &str) -> Result<u32, String> {
    let t = text.trim();
    match t.parse::<f64>() {
        Ok(p) => basis_points(p).ok_or_else(|| format!("{:?} is outside [0, 100]", quote(t))),
        Err(_) => Err(format!("{:?} is not a number", quote(t))),
    }
}

/// A percent as a number (the config file, the cache file) as basis
/// points; `None` when it is not finite or outside [0, 100].
pub fn basis_points(percent: f64) -> Option<u32> {
    (percent.is_finite() && (0.0..=100.0).contains(&percent)).then(|| (percent * 100.0).round() as u32)
}

/// Basis points as a percent: 1250 → 12.5.
pub fn percent(basis_points: u32) -> f64 {
    f64::from(basis_points) / 100.0
}

/// A percent for people: `12.5` → `"12.5"`, `30.0` → `"30"`, at most four
/// decimals. What it prints of a percent in range, [`parse_percent`] reads
/// back as the same basis points.
pub fn format_percent(p: f64) -> String {
    let s = format!("{p:.4}");
    // `{:.4}` prints a point for every finite value, so trimming stops
    // there; NaN and inf have no zeros to lose.
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn quote(t: &str) -> &str {
    match t.char_indices().nth(QUOTE_MAX) {
        Some((end, _)) => &t[..end],
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_parse_to_basis_points() {
        assert_eq!(parse_percent("12.5"), Ok(1250));
        assert_eq!(parse_percent(" 100\n"), Ok(10_000));
        assert_eq!(parse_percent("0"), Ok(0));
        assert_eq!(parse_percent("0.01"), Ok(1));
        assert_eq!(parse_percent("33.333"), Ok(3333));
        assert_eq!(parse_percent("-0"), Ok(0));
        assert_eq!(parse_percent("+7"), Ok(700));
        assert_eq!(parse_percent("1e1"), Ok(1000));
        for bad in ["", "abc", "-1", "100.5", "100.01", "NaN", "nan", "inf", "-inf", "1e9", "1e3", "12,5", "50%"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_text_is_refused_with_a_short_reason() {
        let huge_number = format!("1{}", "0".repeat(1 << 20));
        let huge_junk = "\u{1F4B8}".repeat(1 << 18);
        for bad in [
            huge_number.as_str(),
            huge_junk.as_str(),
            "\u{0661}\u{0662}", // Arabic-Indic digits are not ASCII digits
            "\u{FF11}\u{FF12}", // nor are fullwidth ones
            "12\u{00A0}5",
            "\0",
            "0x10",
            "1_0",
            "--1",
            "-0.0001",
            "100.0000001",
        ] {
            let e = parse_percent(bad).unwrap_err();
            assert!(!e.is_empty() && e.len() < 400, "{} bytes of error", e.len());
        }
        // Unicode whitespace is whitespace; the value inside is still checked.
        assert_eq!(parse_percent("\u{2003}42\u{3000}"), Ok(4200));
        // The smallest and largest in range round, never leave [0, 10 000].
        assert_eq!(parse_percent("0.004"), Ok(0));
        assert_eq!(parse_percent("99.999"), Ok(10_000));
        assert_eq!(parse_percent(&format!("0.{}1", "0".repeat(400))), Ok(0));
    }

    #[test]
    fn numbers_become_basis_points_only_in_range() {
        assert_eq!(basis_points(12.5), Some(1250));
        assert_eq!(basis_points(100.0), Some(10_000));
        assert_eq!(basis_points(-0.0), Some(0));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.01, 100.01, f64::MAX, f64::MIN, -f64::MIN_POSITIVE] {
            assert_eq!(basis_points(bad), None, "{bad}");
        }
        assert_eq!(percent(1250), 12.5);
        assert_eq!(percent(MAX_BASIS_POINTS), 100.0);
    }

    #[test]
    fn percents_format_compactly_and_read_back() {
        assert_eq!(format_percent(30.0), "30");
        assert_eq!(format_percent(12.5), "12.5");
        assert_eq!(format_percent(0.01), "0.01");
        assert_eq!(format_percent(0.0), "0");
        assert_eq!(format_percent(100.0), "100");
        assert_eq!(format_percent(f64::NAN), "NaN");
        assert_eq!(format_percent(f64::INFINITY), "inf");
        let huge = format_percent(1e300);
        assert!(huge.len() == 301 && !huge.contains('.'), "{huge}");
        for bp in 0..=MAX_BASIS_POINTS {
            assert_eq!(parse_percent(&format_percent(percent(bp))), Ok(bp), "{bp}");
        }
    }
}

//! ISO 4217 currencies and their minor units.
//!
//! The public API speaks integers in the minor unit (`1050` usd = 10.50);
//! the orchestration service speaks decimal strings in the major unit. The
//! exponent is what makes that translation exact, so it lives in one table.

/// Active ISO 4217 codes with a non-standard exponent (all others: 2).
const EXPONENTS: &[(&str, u32)] = &[
    ("bhd", 3),
    ("bif", 0),
    ("clf", 4),
    ("clp", 0),
    ("djf", 0),
    ("gnf", 0),
    ("iqd", 3),
    ("isk", 0),
    ("jod", 3),
    ("jpy", 0),
    ("kmf", 0),
    ("krw", 0),
    ("kwd", 3),
    ("lyd", 3),
    ("omr", 3),
    ("pyg", 0),
    ("rwf", 0),
    ("tnd", 3),
    ("ugx", 0),
    ("uyi", 0),
    ("uyw", 4),
    ("vnd", 0),
    ("vuv", 0),
    ("xaf", 0),
    ("xof", 0),
    ("xpf", 0),
];

/// Every active ISO 4217 currency code (funds and precious metals excluded),
/// sorted for binary search.
const CODES: &[&str] = &[
    "aed", "afn", "all", "amd", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt", "bhd", "bif", "bmd", "bnd",
    "bob", "bov", "brl", "bsd", "btn", "bwp", "byn", "bzd", "cad", "cdf", "che", "chf", "chw", "clf", "clp", "cny",
    "cop", "cou", "crc", "cup", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp", "ern", "etb", "eur", "fjd", "fkp",
    "gbp", "gel", "ghs", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl", "htg", "huf", "idr", "ils", "inr", "iqd",
    "irr", "isk", "jmd", "jod", "jpy", "kes", "kgs", "khr", "kmf", "kpw", "krw", "kwd", "kyd", "kzt", "lak", "lbp",
    "lkr", "lrd", "lsl", "lyd", "mad", "mdl", "mga", "mkd", "mmk", "mnt", "mop", "mru", "mur", "mvr", "mwk", "mxn",
    "mxv", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr", "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln",
    "pyg", "qar", "ron", "rsd", "rub", "rwf", "sar", "sbd", "scr", "sdg", "sek", "sgd", "shp", "sle", "sos", "srd",
    "ssp", "stn", "svc", "syp", "szl", "thb", "tjs", "tmt", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx",
    "usd", "usn", "uyi", "uyu", "uyw", "uzs", "ved", "ves", "vnd", "vuv", "wst", "xaf", "xcd", "xcg", "xof", "xpf",
    "yer", "zar", "zmw", "zwg",
];

/// Whether `code` is a lowercase, active ISO 4217 code.
pub fn is_known(code: &str) -> bool {
    CODES.binary_search(&code).is_ok()
}

/// Digits after the decimal point in the major unit (`jpy` 0, `usd` 2, `kwd` 3).
/// Case-insensitive; `None` for an unknown code.
pub fn exponent(code: &str) -> Option<u32> {
    let lower = code.to_ascii_lowercase();
    if !is_known(&lower) {
        return None;
    }
    Some(EXPONENTS.iter().find(|(c, _)| *c == lower).map_or(2, |(_, e)| *e))
}

/// Minor units to a major-unit decimal string: `(1050, "usd")` → `"10.50"`,
/// `(1000, "jpy")` → `"1000"`.
pub fn to_major(minor: u64, code: &str) -> Option<String> {
    let exp = exponent(code)?;
    if exp == 0 {
        return Some(minor.to_string());
    }
    let scale = 10u64.pow(exp);
    Some(format!("{}.{:0width$}", minor / scale, minor % scale, width = exp as usize))
}

/// A major-unit decimal string back to minor units. Refuses signs, exponents,
/// more fraction digits than the currency has, and overflow: a value we
/// cannot represent exactly must never be rounded into a payment.
pub fn to_minor(major: &str, code: &str) -> Option<u64> {
    let exp = exponent(code)?;
    let (whole, frac) = match major.split_once('.') {
        Some((w, f)) => (w, f),
        None => (major, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (major.contains('.') && !digits(frac)) || frac.len() > exp as usize {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut frac_value: u64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    frac_value = frac_value.checked_mul(10u64.pow(exp - frac.len() as u32))?;
    whole.checked_mul(10u64.pow(exp))?.checked_add(frac_value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(EXPONENTS.iter().all(|(c, _)| is_known(c)));
    }

    #[test]
    fn known_codes_are_lowercase_iso() {
        assert!(is_known("usd") && is_known("jpy") && is_known("kwd"));
        assert!(!is_known("USD") && !is_known("xyz") && !is_known("us") && !is_known(""));
    }

    #[test]
    fn minor_to_major_respects_the_exponent() {
        assert_eq!(to_major(1050, "usd").as_deref(), Some("10.50"));
        assert_eq!(to_major(5, "eur").as_deref(), Some("0.05"));
        assert_eq!(to_major(1000, "jpy").as_deref(), Some("1000"));
        assert_eq!(to_major(1234, "kwd").as_deref(), Some("1.234"));
        assert_eq!(to_major(1, "clf").as_deref(), Some("0.0001"));
        assert_eq!(to_major(1, "zzz"), None);
    }

    #[test]
    fn major_to_minor_is_exact_or_refused() {
        assert_eq!(to_minor("10.50", "USD"), Some(1050));
        assert_eq!(to_minor("10.5", "usd"), Some(1050));
        assert_eq!(to_minor("10", "usd"), Some(1000));
        assert_eq!(to_minor("1000", "JPY"), Some(1000));
        assert_eq!(to_minor("1.234", "kwd"), Some(1234));
        assert_eq!(to_minor("10.5", "jpy"), None, "jpy has no minor unit");
        assert_eq!(to_minor("1.005", "usd"), None, "never round");
        for bad in ["", ".", "1.", ".5", "-1", "+1", "1e3", "1,00", " 1", "99999999999999999999"] {
            assert_eq!(to_minor(bad, "usd"), None, "{bad:?}");
        }
    }

    #[test]
    fn round_trip() {
        for (amount, code) in [(0, "usd"), (1, "usd"), (99_999_999, "usd"), (99_999_999, "jpy"), (7, "bhd")] {
            let major = to_major(amount, code).unwrap();
            assert_eq!(to_minor(&major, code), Some(amount), "{major} {code}");
        }
    }
}

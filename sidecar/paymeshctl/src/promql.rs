//! The label matchers of `--selector` (`namespace="payments",cluster="eu-1"`)
//! and the series selectors paymeshctl builds with them: every metric it
//! asks Prometheus about carries them, so one Prometheus holding several
//! environments answers for the operator's environment only.
//!
//! The matchers are parsed, not pasted: a malformed one is refused before
//! a ramp starts, and one that sets a label paymeshctl chooses per query
//! (`feature`, `route`, …) is refused too, as it would silently match
//! nothing.

use std::fmt::Write as _;

/// Labels each query sets itself.
const RESERVED: &[&str] = &["__name__", "feature", "route", "code", "client", "le", "component", "outcome"];

/// Parsed `--selector` matchers, in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matchers(Vec<Matcher>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Matcher {
    name: String,
    op: &'static str,
    /// Unescaped.
    value: String,
}

impl Matchers {
    /// `a="x", b!~"y.*"`, optionally inside braces; values quoted with `"`,
    /// `'` or backticks, as in PromQL.
    pub fn parse(text: &str) -> Result<Matchers, String> {
        let mut rest = text.trim();
        if let Some(inner) = rest.strip_prefix('{') {
            rest =
                inner.strip_suffix('}').ok_or_else(|| format!("{text:?}: an opening brace without its closing one"))?;
        }
        let mut out = Vec::new();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let name = &rest[..end];
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!("{text:?}: expected a label name at {rest:?}"));
            }
            if RESERVED.contains(&name) {
                return Err(format!("{text:?}: paymeshctl sets the label {name} in each query itself"));
            }
            rest = rest[end..].trim_start();
            let op = ["=~", "!~", "!=", "="]
                .into_iter()
                .find(|op| rest.starts_with(op))
                .ok_or_else(|| format!("{text:?}: expected =, !=, =~ or !~ after {name}"))?;
            rest = rest[op.len()..].trim_start();
            let (value, after) = unquote(rest).map_err(|e| format!("{text:?}: the value of {name}: {e}"))?;
            out.push(Matcher { name: name.to_owned(), op, value });
            rest = after.trim_start();
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None if rest.is_empty() => break,
                None => return Err(format!("{text:?}: expected a comma at {rest:?}")),
            }
        }
        if out.is_empty() {
            return Err(format!("{text:?}: no label matcher"));
        }
        Ok(Matchers(out))
    }

    /// `metric{fixed…,matchers…}`: the selector of one series set; `fixed`
    /// are the query's own equality matchers.
    pub fn series(&self, metric: &str, fixed: &[(&str, &str)]) -> String {
        let mut parts: Vec<String> = fixed.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
        parts.extend(self.0.iter().map(|m| format!("{}{}{}", m.name, m.op, quote(&m.value))));
        if parts.is_empty() { metric.to_owned() } else { format!("{metric}{{{}}}", parts.join(",")) }
    }
}

/// A PromQL string literal at the start of `s`: its value and the rest.
fn unquote(s: &str) -> Result<(String, &str), String> {
    let quote = s.chars().next().filter(|c| matches!(c, '"' | '\'' | '`')).ok_or("not a quoted string")?;
    let mut value = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((value, &s[i + 1..])),
            '\\' if quote != '`' => match chars.next().map(|(_, c)| c) {
                Some(e @ ('\\' | '"' | '\'')) => value.push(e),
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some(e) => return Err(format!("unknown escape \\{e}")),
                None => break,
            },
            '\n' if quote != '`' => return Err("a newline in a quoted string".into()),
            c => value.push(c),
        }
    }
    Err("no closing quote".into())
}

/// `v` as a double-quoted PromQL string.
fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => {
                let _ = out.write_char(c);
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_are_parsed_and_rendered_into_each_selector() {
        let m = Matchers::parse(r#" namespace="payments", cluster!~'eu-.*' ,job=~`pay|mesh`, "#).unwrap();
        assert_eq!(m.series("up", &[]), r#"up{namespace="payments",cluster!~"eu-.*",job=~"pay|mesh"}"#);
        assert_eq!(
            m.series("paymesh_requests_total", &[("feature", "charge")]),
            r#"paymesh_requests_total{feature="charge",namespace="payments",cluster!~"eu-.*",job=~"pay|mesh"}"#
        );
        assert_eq!(Matchers::parse(r#"{a="x\"y"}"#).unwrap().series("m", &[]), r#"m{a="x\"y"}"#);
        assert_eq!(Matchers::default().series("up", &[]), "up");
    }

    #[test]
    fn malformed_or_reserved_matchers_are_refused() {
        for (bad, why) in [
            ("", "no label matcher"),
            ("namespace", "expected =, !=, =~ or !~"),
            ("namespace=payments", "not a quoted string"),
            (r#"namespace="payments"#, "no closing quote"),
            (r#"a="x" b="y""#, "expected a comma"),
            (r#"{a="x""#, "closing one"),
            (r#"1a="x""#, "label name"),
            (r#"a="\q""#, "unknown escape"),
            (r#"feature="refund""#, "sets the label feature"),
            (r#"outcome="match""#, "sets the label outcome"),
        ] {
            let e = Matchers::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}

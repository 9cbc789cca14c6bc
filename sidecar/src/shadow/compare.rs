//! The comparison of two representations of one resource.
//!
//! Normalisation (documented in docs/operations.md, "Shadow reads"): both
//! bodies are parsed as JSON, so whitespace and key order never differ;
//! numbers are equal when their values are (`1000` and `1000.0`); the
//! fields named in `shadow.ignore_fields` are left out on both sides.
//! Nothing else is forgiven: a string differs by one byte, an array by its
//! order, and a field present on one side only is a difference.

use serde_json::Value;

use crate::config::FieldPath;

/// At most this many differences are reported per mismatch.
pub const MAX_DIFFERENCES: usize = 16;

/// Keys whose values never appear in a mismatch record: a card source, a
/// payout destination, anything that looks like a secret. The record still
/// says that they differ.
const SECRET_KEYS: &[&str] =
    &["source", "destination", "card", "number", "cvc", "account", "token", "api_key", "authorization", "secret"];

/// A value shown in a record: strings longer than this are cut.
const MAX_SHOWN: usize = 96;

/// One place where the two sides disagree.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Difference {
    /// `$.amount`, `$.refunds[0].status`; `$` is the whole body.
    pub path: String,
    /// What the client got (absent: `null` with `missing`).
    pub primary: Value,
    /// What the other path says.
    pub shadow: Value,
}

/// The differences between `primary` and `shadow`, at most
/// [`MAX_DIFFERENCES`] (and whether there were more), secrets redacted.
pub fn differences(primary: &Value, shadow: &Value, ignore: &[FieldPath]) -> (Vec<Difference>, bool) {
    let mut walk = Walk { ignore, out: Vec::new(), more: false, keys: Vec::new() };
    walk.value(primary, shadow, &mut String::from("$"), false);
    (walk.out, walk.more)
}

struct Walk<'a> {
    ignore: &'a [FieldPath],
    out: Vec<Difference>,
    more: bool,
    /// The keys (and indexes, as text) from the root to here, to match
    /// against `ignore`.
    keys: Vec<String>,
}

impl Walk<'_> {
    fn value(&mut self, a: &Value, b: &Value, path: &mut String, secret: bool) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))).collect();
                keys.sort();
                for k in keys {
                    self.keys.push(k.clone());
                    if !self.ignored() {
                        let len = path.len();
                        path.push('.');
                        path.push_str(k);
                        let secret = secret || SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str());
                        let missing = Value::String("(missing)".into());
                        self.value(x.get(k).unwrap_or(&missing), y.get(k).unwrap_or(&missing), path, secret);
                        path.truncate(len);
                    }
                    self.keys.pop();
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (a, b)) in x.iter().zip(y).enumerate() {
                    self.keys.push(i.to_string());
                    if !self.ignored() {
                        let len = path.len();
                        path.push_str(&format!("[{i}]"));
                        self.value(a, b, path, secret);
                        path.truncate(len);
                    }
                    self.keys.pop();
                }
            }
            (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() && x.as_f64().is_some() => {}
            (a, b) if a == b => {}
            (a, b) => self.differ(path, a, b, secret),
        }
    }

    fn ignored(&self) -> bool {
        self.ignore.iter().any(|f| {
            f.0.len() == self.keys.len() && f.0.iter().zip(&self.keys).all(|(want, have)| want == "*" || want == have)
        })
    }

    fn differ(&mut self, path: &str, a: &Value, b: &Value, secret: bool) {
        if self.out.len() == MAX_DIFFERENCES {
            self.more = true;
            return;
        }
        self.out.push(Difference { path: path.to_owned(), primary: shown(a, secret), shadow: shown(b, secret) });
    }
}

/// A value as a record may show it: secrets replaced, long strings cut,
/// containers summarised (their members are compared one by one anyway).
fn shown(v: &Value, secret: bool) -> Value {
    match v {
        _ if secret => Value::String("(redacted)".into()),
        Value::String(s) if s.len() > MAX_SHOWN => {
            let cut = (0..=MAX_SHOWN).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            Value::String(format!("{}…", &s[..cut]))
        }
        Value::Array(a) => Value::String(format!("(array of {})", a.len())),
        Value::Object(o) => Value::String(format!("(object of {} fields)", o.len())),
        v => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ignore(paths: &[&str]) -> Vec<FieldPath> {
        paths.iter().map(|p| FieldPath::parse(p).unwrap()).collect()
    }

    fn diff(a: Value, b: Value, ignored: &[&str]) -> Vec<(String, Value, Value)> {
        let (d, _) = differences(&a, &b, &ignore(ignored));
        d.into_iter().map(|d| (d.path, d.primary, d.shadow)).collect()
    }

    #[test]
    fn equal_representations_match_whatever_the_key_order_and_number_form() {
        let a = json!({"id": "ch_1", "amount": 1000, "refunds": [{"amount": 5}]});
        let b: Value = serde_json::from_str(r#"{"refunds":[{"amount":5.0}],"amount":1000.0,"id":"ch_1"}"#).unwrap();
        assert!(diff(a, b, &[]).is_empty());
    }

    #[test]
    fn each_differing_field_is_named_with_both_values() {
        let a = json!({"amount": 1000, "status": "succeeded", "refunds": [{"amount": 5}], "gone": 1});
        let b = json!({"amount": 1001, "status": "pending", "refunds": [{"amount": 6}], "new": true});
        assert_eq!(
            diff(a, b, &[]),
            vec![
                ("$.amount".into(), json!(1000), json!(1001)),
                ("$.gone".into(), json!(1), json!("(missing)")),
                ("$.new".into(), json!("(missing)"), json!(true)),
                ("$.refunds[0].amount".into(), json!(5), json!(6)),
                ("$.status".into(), json!("succeeded"), json!("pending")),
            ]
        );
    }

    #[test]
    fn ignored_fields_are_left_out_at_their_path_only() {
        let a = json!({"created": 1, "refunds": [{"created": 1, "amount": 1}], "meta": {"created": 1}});
        let b = json!({"created": 2, "refunds": [{"created": 2, "amount": 1}], "meta": {"created": 2}});
        assert_eq!(
            diff(a.clone(), b.clone(), &["created", "refunds.*.created"]),
            vec![("$.meta.created".into(), json!(1), json!(2))]
        );
        assert!(diff(a, b, &["created", "refunds.*.created", "meta"]).is_empty());
    }

    #[test]
    fn secrets_are_redacted_but_still_reported() {
        let a = json!({"source": "tok_visa_4242", "payment": {"card": {"number": "4242424242424242"}}});
        let b = json!({"source": "tok_mc_4444", "payment": {"card": {"number": "5555555555554444"}}});
        let d = diff(a, b, &[]);
        assert_eq!(d.len(), 2);
        for (path, p, s) in &d {
            assert_eq!((p, s), (&json!("(redacted)"), &json!("(redacted)")), "{path}");
        }
        let text = serde_json::to_string(&differences(&json!({"Source": "tok_a"}), &json!({"Source": "tok_b"}), &[]).0)
            .unwrap();
        assert!(!text.contains("tok_"), "{text}");
    }

    #[test]
    fn arrays_of_another_length_and_other_types_differ_whole() {
        assert_eq!(
            diff(json!({"a": [1, 2]}), json!({"a": [1]}), &[]),
            vec![("$.a".into(), json!("(array of 2)"), json!("(array of 1)"))]
        );
        assert_eq!(diff(json!({"a": 1}), json!({"a": "1"}), &[]), vec![("$.a".into(), json!(1), json!("1"))]);
        assert_eq!(
            diff(json!([1]), json!({"x": 1}), &[]),
            vec![("$".into(), json!("(array of 1)"), json!("(object of 1 fields)"))]
        );
    }

    #[test]
    fn the_report_is_bounded() {
        let a: Value = (0..100).map(|i| (format!("k{i:03}"), json!(i))).collect::<serde_json::Map<_, _>>().into();
        let b: Value = (0..100).map(|i| (format!("k{i:03}"), json!(-i - 1))).collect::<serde_json::Map<_, _>>().into();
        let (d, more) = differences(&a, &b, &[]);
        assert_eq!((d.len(), more), (MAX_DIFFERENCES, true));
        let long = "é".repeat(200);
        let (d, _) = differences(&json!({"memo": long}), &json!({"memo": "x"}), &[]);
        let Value::String(shown) = &d[0].primary else { panic!() };
        assert!(shown.len() <= MAX_SHOWN + 3 && shown.ends_with('…'), "{shown}");
    }
}

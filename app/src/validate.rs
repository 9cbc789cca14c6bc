//! Request validation: every rule the public API promises, checked before
//! any backend is called, with errors that name the field.
//!
//! Fields are checked in a fixed order (unknown fields first, then each
//! known field as listed) so the same bad request always reads the same
//! error, whichever path would have served it.

use paymesh_adapters::{ApiError, NewCharge, NewDisbursement, NewRefund, currency};
use paymesh_vocab::{Feature, IdKind};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub const MAX_AMOUNT: u64 = 99_999_999;
pub const MAX_KEY_LEN: usize = 255;
const MAX_TEXT_LEN: usize = 1000;
const MAX_ID_LEN: usize = 255;

/// A parsed body and its fingerprint for idempotency.
#[derive(Debug)]
pub struct Body {
    fields: Map<String, Value>,
    pub fingerprint: String,
}

/// Parses a JSON object body; `operation` is part of the fingerprint, so a
/// key reused for another kind of request is a conflict.
pub fn parse(operation: &str, bytes: &[u8], allowed: &[&str]) -> Result<Body, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid("invalid_json", None, format!("The request body is not valid JSON: {e}.")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid("invalid_json", None, "The request body must be a JSON object."));
    };
    if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid("parameter_unknown", Some(unknown), format!("Unknown parameter: {unknown}.")));
    }
    // serde_json's map is ordered by key: this is a canonical form.
    let canonical = serde_json::to_vec(&fields).unwrap_or_default();
    let mut hash = Sha256::new();
    hash.update(operation.as_bytes());
    hash.update([0]);
    hash.update(&canonical);
    let fingerprint = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Body { fields, fingerprint })
}

impl Body {
    fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).filter(|v| !v.is_null())
    }

    fn required(&self, name: &str) -> Result<&Value, ApiError> {
        self.get(name).ok_or_else(|| {
            ApiError::invalid("parameter_missing", Some(name), format!("Missing required parameter: {name}."))
        })
    }

    fn amount(&self, name: &str, required: bool) -> Result<Option<u64>, ApiError> {
        let value = if required { Some(self.required(name)?) } else { self.get(name) };
        let Some(value) = value else { return Ok(None) };
        match value.as_u64() {
            Some(n) if (1..=MAX_AMOUNT).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::invalid(
                "invalid_amount",
                Some(name),
                format!("{name} must be a positive integer in the currency's minor unit, at most {MAX_AMOUNT}."),
            )),
        }
    }

    fn currency(&self) -> Result<String, ApiError> {
        match self.required("currency")?.as_str() {
            Some(c) if c.len() == 3 && currency::is_known(c) => Ok(c.to_owned()),
            _ => Err(ApiError::invalid(
                "invalid_currency",
                Some("currency"),
                "currency must be a three-letter lowercase ISO 4217 code, such as usd.",
            )),
        }
    }

    fn text(&self, name: &str, prefix: &str, max: usize, required: bool) -> Result<Option<String>, ApiError> {
        let value = if required { Some(self.required(name)?) } else { self.get(name) };
        let Some(value) = value else { return Ok(None) };
        match value.as_str() {
            Some(s) if !s.is_empty() && s.len() <= max && s.starts_with(prefix) && !s.chars().any(char::is_control) => {
                Ok(Some(s.to_owned()))
            }
            _ => {
                let shape = if prefix.is_empty() { String::new() } else { format!(" starting with {prefix}") };
                Err(ApiError::invalid(
                    "parameter_invalid",
                    Some(name),
                    format!("{name} must be a non-empty string{shape} of at most {max} characters."),
                ))
            }
        }
    }

    /// A required id of paymesh's exact format (`ch_` and 24 base62, ...).
    fn id(&self, name: &str, kind: IdKind) -> Result<String, ApiError> {
        match self.required(name)?.as_str() {
            Some(s) if kind.matches(s) => Ok(s.to_owned()),
            _ => Err(bad_id(name, kind)),
        }
    }
}

fn bad_id(name: &str, kind: IdKind) -> ApiError {
    ApiError::invalid(
        "parameter_invalid",
        Some(name),
        format!(
            "{name} must be an id of the form {}_ followed by {} letters or digits.",
            kind.prefix(),
            paymesh_vocab::ids::RANDOM_LEN
        ),
    )
}

pub fn charge(body: &Body) -> Result<NewCharge, ApiError> {
    Ok(NewCharge {
        amount: body.amount("amount", true)?.unwrap_or_default(),
        currency: body.currency()?,
        source: body.text("source", "", MAX_ID_LEN, true)?.unwrap_or_default(),
        description: body.text("description", "", MAX_TEXT_LEN, false)?,
    })
}

pub const CHARGE_FIELDS: &[&str] = &["amount", "currency", "source", "description"];

pub fn refund(body: &Body) -> Result<NewRefund, ApiError> {
    Ok(NewRefund { charge: body.id("charge", IdKind::Charge)?, amount: body.amount("amount", false)? })
}

pub const REFUND_FIELDS: &[&str] = &["charge", "amount"];

pub fn disbursement(body: &Body) -> Result<NewDisbursement, ApiError> {
    Ok(NewDisbursement {
        amount: body.amount("amount", true)?.unwrap_or_default(),
        currency: body.currency()?,
        destination: body.text("destination", "acct_", MAX_ID_LEN, true)?.unwrap_or_default(),
    })
}

pub const DISBURSEMENT_FIELDS: &[&str] = &["amount", "currency", "destination"];

/// `Idempotency-Key`: required on every POST, 1–255 visible ASCII characters.
pub fn idempotency_key(value: Option<&http::HeaderValue>) -> Result<&str, ApiError> {
    let Some(value) = value else {
        return Err(ApiError::invalid(
            "idempotency_key_missing",
            None,
            "An Idempotency-Key header is required on every POST.",
        ));
    };
    match value.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic()) => Ok(k),
        _ => Err(ApiError::invalid(
            "idempotency_key_invalid",
            None,
            format!("The Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters."),
        )),
    }
}

/// A resource id from a path: exactly the format of the feature's ids, so
/// that it can never reshape the backend URL it is placed in, and both paths
/// refuse it alike (400 naming `id`) before any backend is called.
pub fn path_id(feature: Feature, id: &str) -> Result<&str, ApiError> {
    match feature.id_kind() {
        Some(kind) if kind.matches(id) => Ok(id),
        Some(kind) => Err(bad_id("id", kind)),
        None => Err(ApiError::route_not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn charge_of(v: Value) -> Result<NewCharge, ApiError> {
        charge(&parse("charge", v.to_string().as_bytes(), CHARGE_FIELDS)?)
    }

    fn param(r: Result<impl std::fmt::Debug, ApiError>) -> (u16, &'static str, Option<String>) {
        let e = r.unwrap_err();
        (e.status, e.code, e.param)
    }

    #[test]
    fn a_good_charge_parses() {
        let c =
            charge_of(json!({"amount": 1000, "currency": "usd", "source": "tok_visa", "description": "x"})).unwrap();
        assert_eq!((c.amount, c.currency.as_str(), c.description.as_deref()), (1000, "usd", Some("x")));
        let c = charge_of(json!({"amount": 99_999_999, "currency": "jpy", "source": "tok_visa", "description": null}))
            .unwrap();
        assert_eq!(c.description, None);
    }

    #[test]
    fn amounts_are_positive_bounded_integers() {
        for bad in [json!(0), json!(-5), json!(1.5), json!("100"), json!(100_000_000), json!(true)] {
            let r = charge_of(json!({"amount": bad, "currency": "usd", "source": "tok_visa"}));
            assert_eq!(param(r), (400, "invalid_amount", Some("amount".into())), "{bad}");
        }
        let r = charge_of(json!({"currency": "usd", "source": "tok_visa"}));
        assert_eq!(param(r), (400, "parameter_missing", Some("amount".into())));
    }

    #[test]
    fn currencies_are_lowercase_iso_codes() {
        for bad in ["USD", "us", "usdd", "xyz", ""] {
            let r = charge_of(json!({"amount": 100, "currency": bad, "source": "tok_visa"}));
            assert_eq!(param(r), (400, "invalid_currency", Some("currency".into())), "{bad}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_json_are_refused() {
        let r = charge_of(json!({"amount": 100, "currency": "usd", "source": "tok_visa", "amonut": 1}));
        assert_eq!(param(r), (400, "parameter_unknown", Some("amonut".into())));
        assert_eq!(param(parse("charge", b"{\"amount\":", CHARGE_FIELDS)).1, "invalid_json");
        assert_eq!(param(parse("charge", b"[1,2]", CHARGE_FIELDS)).1, "invalid_json");
    }

    #[test]
    fn refunds_need_a_charge_id_and_allow_no_amount() {
        let r =
            refund(&parse("refund", br#"{"charge":"ch_0123456789abcdefghijKLMN"}"#, REFUND_FIELDS).unwrap()).unwrap();
        assert_eq!(r.amount, None);
        let bad = refund(&parse("refund", br#"{"charge":"py_1","amount":5}"#, REFUND_FIELDS).unwrap());
        assert_eq!(param(bad), (400, "parameter_invalid", Some("charge".into())));
        let bad =
            refund(&parse("refund", br#"{"charge":"ch_0123456789abcdefghijKLMN","amount":0}"#, REFUND_FIELDS).unwrap());
        assert_eq!(param(bad), (400, "invalid_amount", Some("amount".into())));
    }

    #[test]
    fn disbursements_need_an_account() {
        let b = parse("disbursement", br#"{"amount":5000,"currency":"eur","destination":"ch_1"}"#, DISBURSEMENT_FIELDS);
        assert_eq!(param(disbursement(&b.unwrap())), (400, "parameter_invalid", Some("destination".into())));
    }

    #[test]
    fn fingerprints_ignore_order_and_whitespace_but_not_content_or_operation() {
        let a = parse("charge", br#"{"amount":1,"currency":"usd"}"#, CHARGE_FIELDS).unwrap();
        let b = parse("charge", br#"{ "currency" : "usd", "amount" : 1 }"#, CHARGE_FIELDS).unwrap();
        let c = parse("charge", br#"{"amount":2,"currency":"usd"}"#, CHARGE_FIELDS).unwrap();
        let d = parse("disbursement", br#"{"amount":1,"currency":"usd"}"#, CHARGE_FIELDS).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_ne!(a.fingerprint, d.fingerprint);
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(param(idempotency_key(None)).1, "idempotency_key_missing");
        let long = http::HeaderValue::from_str(&"k".repeat(256)).unwrap();
        assert_eq!(param(idempotency_key(Some(&long))).1, "idempotency_key_invalid");
        let ok = http::HeaderValue::from_static("order-42");
        assert_eq!(idempotency_key(Some(&ok)).unwrap(), "order-42");
    }

    #[test]
    fn ids_have_their_exact_format() {
        assert!(path_id(Feature::Charge, "ch_0123456789abcdefghijKLMN").is_ok());
        for bad in ["", "../x", "ch_1?x=1", "ch%2F", "a/b", "ch_ x", "ch_1", "re_0123456789abcdefghijKLMN"] {
            assert_eq!(param(path_id(Feature::Charge, bad)), (400, "parameter_invalid", Some("id".into())), "{bad}");
        }
        for bad in ["ch_ x", "ch_0123456789abcdefghijKLM", "ch_0123456789abcdefghijKLMNO"] {
            let body = serde_json::json!({ "charge": bad }).to_string();
            let r = refund(&parse("refund", body.as_bytes(), REFUND_FIELDS).unwrap());
            assert_eq!(param(r), (400, "parameter_invalid", Some("charge".into())), "{bad}");
        }
    }
}

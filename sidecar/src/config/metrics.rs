//! `metrics:`, what `/metrics` shows beyond the fixed series: raw form and
//! typed form. The checks are in `validate.rs`.

use serde::Deserialize;

/// Above this many configured clients, `client_series: all` is worth a
/// warning: each client adds about 15 KB to every scrape.
pub const MANY_CLIENTS: usize = 1000;

/// `metrics:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub client_series: RawShownClients,
}

/// `client_series: all` or `client_series: [id, …]`.
#[derive(Debug, Default)]
pub enum RawShownClients {
    #[default]
    All,
    Listed(Vec<String>),
}

/// Hand-written rather than `#[serde(untagged)]`, whose one error for every
/// mistake would not say what was wrong.
impl<'de> Deserialize<'de> for RawShownClients {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Form;
        impl<'de> serde::de::Visitor<'de> for Form {
            type Value = RawShownClients;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all` or a list of client ids")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawShownClients, E> {
                match s {
                    "all" => Ok(RawShownClients::All),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawShownClients, A::Error> {
                let mut ids = Vec::new();
                while let Some(id) = seq.next_element::<String>()? {
                    ids.push(id);
                }
                Ok(RawShownClients::Listed(ids))
            }
        }
        d.deserialize_any(Form)
    }
}

/// The metrics settings, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub client_series: ShownClients,
}

/// Whose `paymesh_client_requests_total` and
/// `paymesh_client_request_duration_seconds` a scrape shows. Every
/// configured client is counted either way; this bounds only the scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ShownClients {
    /// Every configured client's.
    #[default]
    All,
    /// These clients' (each a configured one), and those of every client
    /// with a migration override: a client's ramp is judged by its series.
    Listed(Vec<String>),
}

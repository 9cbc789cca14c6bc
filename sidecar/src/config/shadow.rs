//! `shadow:`, the shadow reads: raw form and typed form. The checks are in
//! `validate.rs`, with the helpers every section shares.

use std::time::Duration;

use serde::Deserialize;

use crate::migration::Feature;

pub const MAX_INFLIGHT: u32 = 16;
/// Above this a shadow read is no longer a sample: it doubles the app's
/// read load.
pub const MAX_INFLIGHT_CEILING: u32 = 1024;
pub const TIMEOUT: &str = "2s";
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_IGNORE_FIELDS: usize = 64;

/// `shadow:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawShadow {
    pub sample_percent: RawSample,
    pub max_inflight: u32,
    pub timeout: String,
    pub ignore_fields: Vec<String>,
}

impl Default for RawShadow {
    fn default() -> Self {
        Self {
            sample_percent: RawSample::All(0.0),
            max_inflight: MAX_INFLIGHT,
            timeout: TIMEOUT.into(),
            ignore_fields: Vec::new(),
        }
    }
}

/// `sample_percent: 5`, or per feature: `sample_percent: { charge: 5 }`
/// (a feature left out samples nothing).
#[derive(Debug)]
pub enum RawSample {
    All(f64),
    PerFeature(Vec<(String, f64)>),
}

/// Hand-written rather than `#[serde(untagged)]`, whose one error for every
/// mistake would not say what was wrong.
impl<'de> Deserialize<'de> for RawSample {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Form;
        impl<'de> serde::de::Visitor<'de> for Form {
            type Value = RawSample;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a percent, or a map of feature to percent")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawSample, E> {
                Ok(RawSample::All(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawSample, E> {
                Ok(RawSample::All(v as f64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSample, E> {
                Ok(RawSample::All(v as f64))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawSample, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, f64>()? {
                    entries.push(entry);
                }
                Ok(RawSample::PerFeature(entries))
            }
        }
        d.deserialize_any(Form)
    }
}

/// The shadow read settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    /// The sampled share of each feature's successful GETs, in basis
    /// points, indexed by `Feature::index()`.
    pub sample_bp: [u32; 3],
    /// Shadow reads in flight at once; a sample beyond is skipped.
    pub max_inflight: u32,
    /// Bound on one shadow read, connect to last byte.
    pub timeout: Duration,
    /// Fields left out of the comparison.
    pub ignore_fields: Vec<FieldPath>,
}

impl Default for Shadow {
    fn default() -> Self {
        Self {
            sample_bp: [0; 3],
            max_inflight: MAX_INFLIGHT,
            timeout: Duration::from_secs(2),
            ignore_fields: Vec::new(),
        }
    }
}

impl Shadow {
    /// The sampled share of `feature`'s GETs in basis points (0 for
    /// `Other`, which is never shadowed).
    pub fn sample_bp(&self, feature: Feature) -> u32 {
        self.sample_bp.get(feature.index()).copied().unwrap_or(0)
    }
}

/// A field of a resource, from its root: `created`, `source.last4`; a `*`
/// segment stands for any key or array index at its depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    pub fn parse(s: &str) -> Result<FieldPath, &'static str> {
        if s.is_empty() || s.len() > 256 {
            return Err("must be a dotted field path like created or source.last4 (at most 256 bytes)");
        }
        let segments: Vec<String> = s.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err("has an empty segment; write fields as a.b.c");
        }
        Ok(FieldPath(segments))
    }
}

//! `tracing:`, span export over OTLP: raw form and typed form; checked in
//! `validate.rs`.

use serde::Deserialize;

pub use paymesh_otel::{Endpoint, Transport};

/// `tracing:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTracing {
    /// Empty: no export.
    pub otlp_endpoint: String,
    pub protocol: String,
    pub sample_ratio: f64,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self { otlp_endpoint: String::new(), protocol: "grpc".into(), sample_ratio: 1.0 }
    }
}

/// The span export settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// `None`: spans are not exported, and `traceparent` passes through.
    pub endpoint: Option<Endpoint>,
    /// The share of new traces (requests without a sampled or unsampled
    /// `traceparent`) that are sampled, in [0, 1].
    pub sample_ratio: f64,
}

impl Default for Tracing {
    fn default() -> Self {
        Self { endpoint: None, sample_ratio: 1.0 }
    }
}

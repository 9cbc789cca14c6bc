//! The bounded labels a request carries: its feature and its route.

/// The payments feature a request belongs to, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Feature {
    Charge = 0,
    Refund = 1,
    Disbursement = 2,
    /// Anything else; always served by the legacy path.
    Other = 3,
}

impl Feature {
    /// Features that can migrate, in `index()` order.
    pub const MIGRATING: [Feature; 3] = [Feature::Charge, Feature::Refund, Feature::Disbursement];
    pub const ALL: [Feature; 4] = [Feature::Charge, Feature::Refund, Feature::Disbursement, Feature::Other];

    pub fn from_path(path: &str) -> Feature {
        let Some(rest) = path.strip_prefix("/v1/") else {
            return Feature::Other;
        };
        // `/v1/charges`, `/v1/charges/ch_1`, `/v1/charges?x` — not `/v1/chargesX`.
        let matches = |name: &str| {
            rest.strip_prefix(name).is_some_and(|t| t.is_empty() || t.starts_with('/') || t.starts_with('?'))
        };
        if matches("charges") {
            Feature::Charge
        } else if matches("refunds") {
            Feature::Refund
        } else if matches("disbursements") {
            Feature::Disbursement
        } else {
            Feature::Other
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Charge => "charge",
            Feature::Refund => "refund",
            Feature::Disbursement => "disbursement",
            Feature::Other => "other",
        }
    }
}

/// The path that serves a request. `None` is for requests the sidecar
/// answered itself before choosing (401, 429, ...), so metrics stay honest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Route {
    Legacy = 0,
    Orchestration = 1,
    None = 2,
}

impl Route {
    pub const ALL: [Route; 3] = [Route::Legacy, Route::Orchestration, Route::None];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Legacy => "legacy",
            Route::Orchestration => "orchestration",
            Route::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_bounded_features() {
        assert_eq!(Feature::from_path("/v1/charges"), Feature::Charge);
        assert_eq!(Feature::from_path("/v1/charges/ch_123"), Feature::Charge);
        assert_eq!(Feature::from_path("/v1/refunds/re_1"), Feature::Refund);
        assert_eq!(Feature::from_path("/v1/disbursements"), Feature::Disbursement);
        assert_eq!(Feature::from_path("/v1/chargesX"), Feature::Other);
        assert_eq!(Feature::from_path("/healthz"), Feature::Other);
        assert_eq!(Feature::from_path("/"), Feature::Other);
    }
}

//! The public API's paths, read one way only.
//!
//! A path names an API resource only in its canonical form:
//! `/v1/<resource>` or `/v1/<resource>/<id>`, with no empty, `.` or `..`
//! segment and the collection spelled exactly. Anything else (`//v1/charges`,
//! `/v1/./charges`, `/v1/charges/`, `/v1/%63harges`) is not a feature path:
//! the sidecar labels it `other` and the app answers 404, so the two always
//! agree. The member segment is taken as sent; the app checks it against the
//! id format (a percent-encoded id is a 400 naming `id`).

crate::labels! {
    /// The payments feature a request belongs to, from its path.
    pub enum Feature {
        Charge = "charge",
        Refund = "refund",
        Disbursement = "disbursement",
        /// Anything else; always served by the legacy path.
        Other = "other",
    }
}

impl Feature {
    /// Features that can migrate, in `index()` order.
    pub const MIGRATING: [Feature; 3] = [Feature::Charge, Feature::Refund, Feature::Disbursement];

    /// The feature of a request path (the path alone: no query).
    pub fn from_path(path: &str) -> Feature {
        ApiPath::parse(path).map_or(Feature::Other, |p| p.feature)
    }

    /// The URL segment of the feature's collection.
    pub fn collection(self) -> Option<&'static str> {
        match self {
            Feature::Charge => Some("charges"),
            Feature::Refund => Some("refunds"),
            Feature::Disbursement => Some("disbursements"),
            Feature::Other => None,
        }
    }

    /// The kind of id the feature's resources have.
    pub fn id_kind(self) -> Option<crate::IdKind> {
        match self {
            Feature::Charge => Some(crate::IdKind::Charge),
            Feature::Refund => Some(crate::IdKind::Refund),
            Feature::Disbursement => Some(crate::IdKind::Disbursement),
            Feature::Other => None,
        }
    }
}

/// A canonical API path: a collection, or one member of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiPath<'a> {
    /// Never [`Feature::Other`].
    pub feature: Feature,
    /// The member segment as sent; its format is checked by the app, which
    /// answers 400 naming `id` when it is not an id of the feature's kind.
    pub id: Option<&'a str>,
}

impl<'a> ApiPath<'a> {
    /// Parses a request path; `None` for anything not canonical.
    pub fn parse(path: &'a str) -> Option<ApiPath<'a>> {
        let rest = path.strip_prefix("/v1/")?;
        let (collection, id) = match rest.split_once('/') {
            None => (rest, None),
            Some((c, id)) => (c, Some(id)),
        };
        let feature = match collection {
            "charges" => Feature::Charge,
            "refunds" => Feature::Refund,
            "disbursements" => Feature::Disbursement,
            _ => return None,
        };
        match id {
            Some(id) if !canonical_segment(id) => None,
            _ => Some(ApiPath { feature, id }),
        }
    }
}

/// One non-empty segment that is not a dot segment.
fn canonical_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_name_their_feature() {
        assert_eq!(Feature::from_path("/v1/charges"), Feature::Charge);
        assert_eq!(Feature::from_path("/v1/charges/ch_123"), Feature::Charge);
        assert_eq!(Feature::from_path("/v1/refunds/re_1"), Feature::Refund);
        assert_eq!(Feature::from_path("/v1/disbursements"), Feature::Disbursement);
        assert_eq!(ApiPath::parse("/v1/charges/ch_1"), Some(ApiPath { feature: Feature::Charge, id: Some("ch_1") }));
        assert_eq!(ApiPath::parse("/v1/refunds"), Some(ApiPath { feature: Feature::Refund, id: None }));
        // Taken as sent: the app refuses it as a malformed id (400, `id`).
        assert_eq!(
            ApiPath::parse("/v1/charges/ch%2F..%2Fx"),
            Some(ApiPath { feature: Feature::Charge, id: Some("ch%2F..%2Fx") })
        );
    }

    #[test]
    fn anything_else_is_other() {
        for path in [
            "/v1/chargesX",
            "/healthz",
            "/",
            "",
            "//v1/charges",
            "///v1/charges",
            "/v1//charges",
            "/v1/charges/",
            "/v1/./charges",
            "/v1/charges/.",
            "/v1/charges/..",
            "/v1/charges/ch_1/",
            "/v1/charges/ch_1/x",
            "/v1/%63harges",
            "/V1/charges",
            "v1/charges",
        ] {
            assert_eq!(Feature::from_path(path), Feature::Other, "{path:?}");
            assert_eq!(ApiPath::parse(path), None, "{path:?}");
        }
    }
}

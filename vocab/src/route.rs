//! The orchestration path that serves a request: the sidecar chooses it and
//! sends it to the app in `x-paymesh-route`; both read it with this type.

crate::labels! {
    /// Which path serves a request. [`Route::None`] is the sidecar's label for
    /// a request it answered itself before choosing (401, 429, ...), so its
    /// metrics stay honest; it never goes on the wire.
    pub enum Route {
        /// The header value `legacy`.
        Legacy = "legacy",
        /// The header value `orchestration`.
        Orchestration = "orchestration",
        /// A label only.
        None = "none",
    }
}

impl Route {
    /// An `x-paymesh-route` value: `legacy` or `orchestration`, exactly.
    /// `none` is a label, not a route a request can be sent down.
    pub fn from_header(value: &[u8]) -> Option<Route> {
        match value {
            b"legacy" => Some(Route::Legacy),
            b"orchestration" => Some(Route::Orchestration),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_trip_and_nothing_else_parses() {
        for r in [Route::Legacy, Route::Orchestration] {
            assert_eq!(Route::from_header(r.as_str().as_bytes()), Some(r));
        }
        for bad in
            [&b"none"[..], b"", b"Legacy", b"legacy ", b"orchestration\0", "l\u{e9}gacy".as_bytes(), &[0xff; 4096]]
        {
            assert_eq!(Route::from_header(bad), None, "{bad:?}");
        }
        assert!(Route::ALL.iter().enumerate().all(|(i, r)| r.index() == i));
    }
}

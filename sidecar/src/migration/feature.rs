//! The bounded labels a request carries: its feature and its route.

/// The payments feature a request belongs to: the app's own reading of the
/// path (one parser for both, so a path cannot pick its route).
pub use paymesh_vocab::Feature;

/// The path that serves a request, as the app reads it from
/// `x-paymesh-route`; `Route::None` labels a request the sidecar answered
/// itself before choosing (401, 429, ...), so metrics stay honest.
pub use paymesh_vocab::Route;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_reads_paths_as_the_app_does() {
        // The parser's own cases live in paymesh-vocab; what matters here is
        // that the sidecar's Feature is that parser.
        assert_eq!(Feature::from_path("/v1/refunds/re_1"), Feature::Refund);
        assert_eq!(Feature::from_path("//v1/charges"), Feature::Other);
    }
}

//! Header names between the sidecar and the app (DESIGN.md, "Headers").

/// One id per request, kept if the client sent a sane one.
pub const REQUEST_ID: &str = "x-request-id";
/// The authenticated client id; set by the sidecar only.
pub const CLIENT: &str = "x-paymesh-client";
/// `legacy` or `orchestration`: the sidecar's choice, echoed by the app.
pub const ROUTE: &str = "x-paymesh-route";
/// Set by the sidecar on its shadow reads (see DESIGN.md "Shadow reads"); only the sidecar can send it.
pub const SHADOW: &str = "x-paymesh-shadow";
/// Every header with this prefix is the sidecar's to set: it strips any a
/// client sent.
pub const PAYMESH_PREFIX: &str = "x-paymesh-";

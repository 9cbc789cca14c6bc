//! The public error shape and the business refusals, defined once in
//! `paymesh-vocab` (the sidecar's own refusals use the same encoder).
//!
//! Both orchestration paths translate their backend's vocabulary into a
//! [`Failure`] or a transport error, and the text a client reads comes from
//! there, so the same mistake reads the same on either path. Backend
//! details go to the log, never into a response.

pub use paymesh_vocab::{ApiError, ErrorType, Failure};

//! The identity-verification service: the customer-service stage of a case, as a
//! process of its own.
//!
//! Owns: its internal HTTP API (`/internal/v1/cases/{id}/otp`,
//! `/internal/v1/cases/{id}/verifications`, each behind a bearer token of
//! `REACTIVATION_INTERNAL_TOKENS`: [`auth`]), called by the gateway's HTTP
//! implementation of `case_workflows::identity::IdentityPort`. The logic (sending
//! one-time codes to a contact on file, checking codes, service passwords and call
//! records, counting attempts, moving the case on) is the use cases in
//! [`case_workflows::identity`]; this crate parses, calls them and renders.
//!
//! Must not: tell the requester which part of a proof was wrong or whether the
//! number/ID pair exists; log personal data.

pub mod api;
pub mod auth;
mod http;

pub use case_workflows::identity::{IdentityCases as IdentityService, IdentityError, SERVICE};
pub use http::router;

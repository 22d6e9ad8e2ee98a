//! The identity-verification service: the customer-service stage of a case.
//!
//! Owns: sending one-time codes through the carrier to a contact **on file** (never
//! to one the requester typed), checking codes, service passwords (asked of the
//! carrier, never stored) and call records, asking the carrier whether the name and
//! ID number match the number's subscriber, counting attempts, and moving the case
//! on (`proofs_accepted` → risk assessment, `identity_escalated` → a CS agent). Its
//! internal HTTP API is called by the gateway; [`client::IdentityClient`] is that caller.
//!
//! Must not: tell the requester which part of a proof was wrong or whether the
//! number/ID pair exists; keep a code or password in clear; log personal data.

pub mod api;
pub mod client;
mod http;
mod service;

pub use http::router;
pub use service::{IdentityService, VerifyError};

/// The actor id this service writes in case events.
pub const SERVICE: &str = "identity-verification";

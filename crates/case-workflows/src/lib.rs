//! The use cases of the reactivation product.
//!
//! One typed function per operation on a case on behalf of someone: the subscriber
//! (open a case, ask for a code, prove identity, explain, add evidence, appeal,
//! complain, cancel, read the status), an agent (claim, release, decide, note,
//! unmask, read the shared view, assemble the dossier), a worker (grade the risk,
//! finish an order, tell a subscriber about a suspension) or the carrier.
//!
//! Layering: the edges (the gateway's JSON API and console, the workers' loops)
//! parse their input into domain types, call one function here, and render what
//! it returns. Functions here decide nothing that is policy (that is
//! `case_domain`'s, as data or pure functions) and write nothing except through
//! `case_store`. They know no HTTP: inputs and outputs are domain types and
//! [`WorkflowError`].
//!
//! Must not: depend on axum or any service crate, return `serde_json::Value`, or
//! read the environment (configuration is passed in by the caller).

pub mod accounts;
pub mod agent;
pub mod assisted;
pub mod audit_appender;
pub mod complaints;
pub mod customer;
pub mod dossier;
mod error;
pub mod eta;
pub mod gauges;
pub mod identity;
pub mod material;
pub mod notices;
pub mod orders;
pub mod progress;
pub mod reports;
pub mod retention;
pub mod risk;
pub mod risk_rules;
pub mod store_visit;
pub mod supervision;

pub use error::{FieldError, WorkflowError};

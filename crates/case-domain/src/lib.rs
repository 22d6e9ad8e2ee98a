//! The pure domain of phone-number reactivation cases.
//!
//! Owns: the validated personal-data types that travel inward from the edges
//! ([`Msisdn`], [`ResidentId`], [`PersonName`], all masked when printed), the case
//! lifecycle ([`CaseState`], [`CaseEvent`], [`Role`], [`Department`], [`Actor`]) and
//! **the transition table as data** ([`TRANSITIONS`]), which every other crate asks
//! before a case may move.
//!
//! Must not: do any I/O (no clock, no database, no network, no logging). The optional
//! `sqlx` feature only maps the domain types to columns so the store can bind and read
//! them (a stored value that does not parse is a decode error).

mod lifecycle;
mod personal;
mod values;

pub use lifecycle::{
    Actor, CaseEvent, CaseState, Department, Role, TRANSITIONS, Transition, TransitionError,
    decide, events_for, may_act, mermaid_state_diagram, transition_for,
};
pub use personal::{InvalidInput, Msisdn, PersonName, ResidentId};
pub use values::{CaseId, Channel, Locale, Restoration, UnknownValue, hex};

pub mod account;
pub mod agent_policy;
pub mod assisted;
pub mod complaint;
pub mod complaint_notice;
pub mod decision;
pub mod eta;
pub mod identity;
pub mod ladder;

pub mod material;
pub mod notice;
pub mod progress;
pub mod reports;
pub mod retention;
pub mod risk;
pub mod risk_rules;
pub mod route;
pub mod sla;
pub mod sms;
pub mod subscriber_policy;
pub mod supervision;

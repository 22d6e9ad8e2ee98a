//! The store's queues as sources for the runtime's worker loops.
//!
//! Owns: [`CaseClaims`], the runtime's [`ClaimSource`](service_runtime::worker::ClaimSource)
//! over the case table (claim, renew, release and next-due of cases in some states,
//! with the claim's fencing token), and [`OutboxTopics`], its
//! [`OutboxSource`](service_runtime::worker::OutboxSource) over the outbox (messages of
//! some topics on the store's one leased queue). Every worker crate that moves cases
//! or delivers outbox messages builds its loop on these instead of its own glue.
//!
//! Must not: hold business rules, serve HTTP, or write SQL (the store does).

mod cases;
mod outbox;

pub use cases::CaseClaims;
pub use outbox::OutboxTopics;

//! The load bench of the reactivation product.
//!
//! Owns: driving the clean-case journey (`POST /v1/cases` → service-password proof →
//! poll until `reactivated`) over HTTP against a running stack, at a fixed concurrency;
//! open-loop stages at a fixed arrival rate (case creation, and verify → reactivated
//! with the one-time code already sent), timed from the event log; seeding finished
//! cases as history (`--history`); counting the product's transactions from
//! `pg_stat_database`; reading the hand-off times per stage from `case_events`; reading
//! the workers' `handoff_latency_seconds` histograms; and a raw-SQL baseline (a case row
//! and an event row per transaction) in a scratch database it creates, migrates and drops.
//!
//! Must not: change the product's data other than through its public HTTP API, except
//! the finished cases `--history` / `goals` insert on purpose (it otherwise only *reads*
//! the stack's `case_events`, case states and statistics); write to any other database
//! but the scratch ones it created itself; send traffic anywhere but the URLs it is given
//! (loopback in practice); or run unbounded: every phase is a fixed number of cases or a
//! fixed duration, with a cap on requests in flight and a timeout per journey. It is a
//! tool, not a test: it prints a report and exits non-zero when a journey failed.

pub mod baseline;
pub mod cpu;
pub mod events;
pub mod fixtures;
pub mod goals;
pub mod history;
pub mod journey;
pub mod promtext;
pub mod rated;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod txcount;

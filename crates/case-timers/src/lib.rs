//! The `timers` service: subscriber notifications, SLA clocks and the ETA.
//!
//! Owns:
//! - **the follower** ([`follow`]): reads `case_events` in commit-safe order with a
//!   durable cursor and, in one transaction with the cursor update, enqueues one
//!   subscriber message per customer-relevant transition (outbox, deduplicated by the
//!   event id) and writes the durable timers of the state the case entered;
//! - **the timers** ([`fire::fire_due`]): reminders at 24 h and 48 h while the case
//!   waits on the subscriber, expiry (7 days) and closing of unappealed refusals
//!   (15 days), and escalation of a stage past its SLA to the supervisors; the clock
//!   is a parameter, so tests never sleep;
//! - **overdue complaints**: an open complaint past its answer clock is escalated and
//!   the subscriber told that 12300 is the next avenue (the use case
//!   `case_workflows::complaints::escalate_overdue`, called from the service loop);
//! - **delivery** ([`deliver::NotificationHandler`]): sends the messages through the
//!   carrier to a contact on file, with a stable idempotency key;
//! - **the ETA** (`case_workflows::eta::case_eta`) from the stage SLAs and cached live statistics;
//! - delivering the carrier's **suspension notice**, which the webhooks worker enqueues
//!   through the use case `case_workflows::notices` (re-exported here as
//!   [`notify_suspension`] for old callers).
//!
//! - **housekeeping** ([`housekeeping`]): creates the monthly partitions of the history
//!   ahead and prunes finished operational rows after their retention.
//!
//! Configuration ([`TimersConfig`]) is read once at start by the binary and passed
//! down; nothing here reads the environment at first use.
//!
//! Must not: move a case other than through `case_store::transition_in`, keep timers
//! in memory (a restart loses none: they are rows), read the wall clock inside the
//! timer step, or put a name, an ID number or an unmasked number in a log line or a
//! message.

pub mod config;
pub mod deliver;
pub mod fire;
pub mod follow;
pub mod housekeeping;
pub mod service;

pub use config::TimersConfig;
pub use deliver::{NOTIFICATION_TOPIC, NotificationHandler, SuspensionNotice, notify_suspension};
pub use fire::fire_due;
pub use follow::follow;

/// The actor id this service writes in case events and the audit log.
pub const SERVICE: &str = "case-timers";

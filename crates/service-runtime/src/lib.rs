//! Process plumbing shared by every reactivation service.
//!
//! Owns: configuration from `REACTIVATION_*` environment variables (validated at
//! start, errors name the variable), tracing set-up (human or JSON, no personal
//! data), graceful shutdown on SIGTERM/Ctrl-C, the Postgres pool, the operational
//! HTTP routes every service serves (`/healthz`, `/readyz`, `/metrics`), the
//! common HTTP middleware stack, RFC 9457 problem responses, and the generic worker
//! loop (claim → process → transition, woken by `LISTEN/NOTIFY`, with a slow
//! fallback poll and lease renewal) over claim sources the workers implement.
//!
//! Must not: contain business rules (they live in `case-domain`), know any table
//! (it does not depend on `case-store`: migrations, claim sources and case gauges
//! are handed in by the caller), or run SQL beyond the health check.

pub mod config;
pub mod db;
pub mod http;
pub mod metrics;
pub mod problem;
pub mod shutdown;
pub mod telemetry;
pub mod wake;
pub mod worker;

pub use config::{ConfigError, Settings};
pub use problem::Problem;
pub use shutdown::Shutdown;

//! The carrier simulator: a test and demo double of the carrier, run as its own process.
//!
//! Owns: the carrier's side of the wire protocol that `carrier-adapter` speaks
//! (`/carrier/v1/*`: subscriber match, service-password check, contacts on file,
//! messages, call-record check, risk signals, TMF641-style service orders with
//! configurable latency and injected failures), the simulator calls fixed by the API
//! contract (`/sim/subscribers`, `/sim/outbox`, `/sim/provisioning-requests`,
//! `/sim/faults`), its data in its own Postgres schema `carrier_sim` (created at start,
//! outside the product's migrations), the four [`demo`] subscribers, and its signed
//! webhooks to the product (`subscriber.suspended`, `subscriber.signals`,
//! `provisioning.completed`; extra calls `/sim/subscribers/{msisdn}/suspend`,
//! `/sim/subscribers/{msisdn}/signals`, `/sim/webhooks`).
//!
//! Must not: depend on or touch the product's tables or crates beyond the shared
//! plumbing (`service-runtime`), validated types (`case-domain`) and webhook signing
//! (`webhooks`, used only to sign: the bodies are built here); share wire types
//! with `carrier-adapter` (the contract tests between the two would test nothing);
//! return or log password hashes, ID numbers or full numbers (logs carry masked forms).

mod db;
pub mod demo;
mod extract;
mod model;
mod sim_api;
mod state;
mod subscribers;
mod webhooks;
mod wire;

use std::time::Duration;

use axum::Router;
use service_runtime::Shutdown;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use model::{BackupContact, ContactKind, NewSubscriber, Signals, SubscriberStatus};
pub use state::{Faults, MAX_LATENCY_MS};
pub use webhooks::WebhookTarget;

/// Time limit of one request to the simulator.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates the `carrier_sim` schema and its tables when missing (safe to call from
/// several processes at once).
pub async fn prepare(pool: &PgPool) -> anyhow::Result<()> {
    db::prepare(pool)
        .await
        .map_err(|e| anyhow::anyhow!("cannot prepare the carrier_sim schema: {e}"))
}

/// The simulator's HTTP API with the standard middleware and `/healthz`, `/readyz`,
/// `/metrics`. Faults start off (no failures, no latency). Call [`prepare`] first.
pub fn router(pool: PgPool) -> Router {
    router_with(pool, webhooks::Sender::new(None))
}

fn router_with(pool: PgPool, sender: webhooks::Sender) -> Router {
    let api = wire::routes()
        .merge(sim_api::routes())
        .merge(webhooks::routes())
        .with_state(state::AppState::new(pool.clone(), sender))
        .merge(service_runtime::http::ops_routes(pool));
    service_runtime::http::with_standard_layers(api, REQUEST_TIMEOUT)
}

/// Prepares the schema and serves the simulator on `listener` until `shutdown`,
/// without webhooks.
pub async fn run(listener: TcpListener, pool: PgPool, shutdown: Shutdown) -> anyhow::Result<()> {
    run_with(listener, pool, shutdown, None).await
}

/// Like [`run`]; with a `target`, the simulator also sends its signed webhooks there
/// and completes orders by time (reporting each with `provisioning.completed`).
pub async fn run_with(
    listener: TcpListener,
    pool: PgPool,
    shutdown: Shutdown,
    target: Option<WebhookTarget>,
) -> anyhow::Result<()> {
    prepare(&pool).await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, webhooks = target.is_some(), "carrier simulator listening");
    }
    let sender = webhooks::Sender::new(target);
    if sender.enabled() {
        tokio::spawn(webhooks::sweep(
            pool.clone(),
            sender.clone(),
            shutdown.clone(),
        ));
    }
    service_runtime::http::serve(listener, router_with(pool, sender), shutdown).await
}

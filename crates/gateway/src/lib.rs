//! The gateway: the only public HTTP entry point of the product.
//!
//! Owns: the customer REST API (`/v1/cases…`), the OpenAPI document generated from
//! the handlers (`/openapi.json`), request validation at the edge (unknown fields
//! refused, personal data parsed into the domain's masked types, body size limits),
//! RFC 9457 problem answers for every error, case-token authentication (only the
//! token's hash is stored; a wrong token looks exactly like a missing case),
//! Idempotency-Key handling on case creation, and the agent web console
//! (`/console`, server-rendered; see [`console`]).
//!
//! Must not: decide identity or risk (it passes proofs to the identity port,
//! [`identity_client::HttpIdentity`] in production, and reads what the workers decided), put personal data in answers beyond masked
//! forms, or change a case except through `case_store::transition`.

pub mod access;
mod accounts;
pub mod agent;
pub mod agent_auth;
pub mod assisted;
pub mod audit;
mod complaints;
pub mod console;
mod customer;
mod dead_letters;
mod dossier;
mod error;
mod escalations;
mod extract;
pub mod identity_client;
pub mod live;
mod material;
mod openapi;
mod progress;
pub mod rate_limit;
pub mod reports;
mod risk_rules;
mod state;
mod store_visits;
mod supervision;
pub mod webhooks;

use std::time::Duration;

use axum::Router;
pub use openapi::api_doc;
pub use rate_limit::{RateLimitConfig, RateLimits};
use service_runtime::{Shutdown, http};
pub use state::AppState;
use tokio::net::TcpListener;

/// The whole public HTTP surface (without the operational routes).
pub fn app(state: AppState) -> Router {
    let (router, _) = openapi::routes(state.clone());
    // The agent console: HTML pages, not API routes (not in the OpenAPI document).
    router
        .merge(console::router(state))
        .layer(axum::middleware::from_fn(extract::refuse_nul))
}

/// The gateway with operational routes and the standard middleware; the anonymous
/// routes and agent login draw on the per-client budgets of `limits`.
pub fn service(state: AppState, timeout: Duration, limits: RateLimits) -> Router {
    let ops = http::ops_routes(state.pool.clone());
    let app = app(state).route_layer(axum::middleware::from_fn_with_state(
        limits,
        rate_limit::enforce,
    ));
    http::with_standard_layers(app.merge(ops), timeout)
}

/// Serves the gateway on `listener` until `shutdown`, with the rate limits and live
/// stream limits of the environment ([`RateLimitConfig::from_env`],
/// [`live::StreamLimits::from_env`]).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    timeout: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let limits = RateLimitConfig::from_env()?;
    state.live.set_limits(live::StreamLimits::from_env()?);
    run_with(listener, state, timeout, &limits, shutdown).await
}

/// Serves the gateway on `listener` until `shutdown`, with `limits`.
pub async fn run_with(
    listener: TcpListener,
    state: AppState,
    timeout: Duration,
    limits: &RateLimitConfig,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    tracing::info!(
        addr = %listener.local_addr()?,
        rate_limits = limits.enabled,
        trusted_proxies = limits.trusted_proxies.len(),
        "gateway listening"
    );
    let limits = RateLimits::new(limits);
    tokio::spawn(prune_idempotency_keys(state.pool.clone(), shutdown.clone()));
    tokio::spawn(forget_idle_clients(limits.clone(), shutdown.clone()));
    tokio::spawn(audit::publish_chain_head(
        state.pool.clone(),
        audit::HEAD_EVERY,
        shutdown.clone(),
    ));
    state.live.start(state.pool.clone(), shutdown.clone());
    http::serve(listener, service(state, timeout, limits), shutdown).await
}

/// Drops the rate-limit state of clients back at a full budget, every minute.
async fn forget_idle_clients(limits: RateLimits, shutdown: Shutdown) {
    if !limits.enabled() {
        return;
    }
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = every.tick() => limits.forget_idle(),
        }
    }
}

/// Deletes Idempotency-Key records past their published 24-hour life, hourly.
async fn prune_idempotency_keys(pool: sqlx::PgPool, shutdown: Shutdown) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = every.tick() => match case_store::prune_idempotency(&pool).await {
                Ok(n) if n > 0 => tracing::info!(pruned = n, "expired idempotency keys deleted"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error.message = %e, "cannot prune idempotency keys"),
            },
        }
    }
}

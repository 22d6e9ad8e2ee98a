//! The gateway: the only public HTTP entry point of the product.
//!
//! Owns: the customer REST API (`/v1/cases…`), the OpenAPI document generated from
//! the handlers (`/openapi.json`), request validation at the edge (unknown fields
//! refused, personal data parsed into the domain's masked types, body size limits),
//! RFC 9457 problem answers for every error, case-token authentication (only the
//! token's hash is stored; a wrong token looks exactly like a missing case), and
//! Idempotency-Key handling on case creation.
//!
//! Must not: decide identity or risk (it relays proofs to the identity service and
//! reads what the workers decided), put personal data in answers beyond masked
//! forms, or change a case except through `case_store::transition`.

mod customer;
mod error;
mod extract;
mod openapi;
mod state;

use std::time::Duration;

use axum::Router;
pub use openapi::api_doc;
use service_runtime::{Shutdown, http};
pub use state::AppState;
use tokio::net::TcpListener;

/// The whole public HTTP surface (without the operational routes).
pub fn app(state: AppState) -> Router {
    let (router, _) = openapi::routes(state.clone());
    router
}

/// The gateway with operational routes and the standard middleware.
pub fn service(state: AppState, timeout: Duration) -> Router {
    let ops = http::ops_routes(state.pool.clone());
    http::with_standard_layers(app(state).merge(ops), timeout)
}

/// Serves the gateway on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    timeout: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    http::serve(listener, service(state, timeout), shutdown).await
}

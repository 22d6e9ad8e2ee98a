use std::sync::Arc;

use case_domain::sla::SlaConfig;
use data_protection::Keys;
use identity_verification::client::IdentityClient;
use sqlx::PgPool;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The shared Postgres.
    pub pool: PgPool,
    /// Keys for personal data at rest.
    pub keys: Arc<Keys>,
    /// The identity-verification service.
    pub identity: IdentityClient,
    /// Carrier webhook secrets and the outbound destination policy.
    pub webhooks: crate::webhooks::WebhookConfig,
    /// Stage SLAs (queue due times, the ETA), read once at start.
    pub sla: Arc<SlaConfig>,
    /// The fan-out of case changes to live status streams (started by `gateway::run`).
    pub live: crate::live::LiveHub,
}

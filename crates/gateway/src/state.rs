use std::sync::Arc;

use case_domain::sla::SlaConfig;
use case_workflows::identity::IdentityPort;
use data_protection::Keys;
use sqlx::PgPool;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The shared Postgres.
    pub pool: PgPool,
    /// Keys for personal data at rest.
    pub keys: Arc<Keys>,
    /// Sends codes and judges identity proofs: the identity service over HTTP
    /// ([`crate::identity_client::HttpIdentity`]) or the use cases in-process.
    pub identity: Arc<dyn IdentityPort>,
    /// Carrier webhook secrets and the outbound destination policy.
    pub webhooks: crate::webhooks::WebhookConfig,
    /// Stage SLAs (queue due times, the ETA), read once at start.
    pub sla: Arc<SlaConfig>,
    /// The console's settings.
    pub console: crate::console::ConsoleConfig,
    /// The fan-out of case changes to live status streams (started by `gateway::run`).
    pub live: crate::live::LiveHub,
}

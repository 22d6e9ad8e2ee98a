use std::sync::Arc;

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
}

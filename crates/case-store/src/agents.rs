//! Agent accounts.

use case_domain::Role;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

/// An agent account.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    /// Agent id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Disabled, if so.
    pub disabled_at: Option<DateTime<Utc>>,
}

/// Creates an agent; `Conflict` if the username is taken.
pub async fn create_agent(
    db: impl PgExecutor<'_>,
    username: &str,
    password_hash: &str,
    roles: &[Role],
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO agents (id, username, password_hash, roles) VALUES ($1, $2, $3, $4)",
        id,
        username,
        password_hash,
        roles as &[Role],
    )
    .execute(db)
    .await
    .map_err(|e| {
        StoreError::on_unique(
            e,
            "agents_username_key",
            StoreError::Conflict("username is taken".into()),
        )
    })?;
    Ok(id)
}

/// Finds an active agent by username.
pub async fn find_agent(
    db: impl PgExecutor<'_>,
    username: &str,
) -> Result<Option<AgentRow>, StoreError> {
    Ok(sqlx::query_as!(
        AgentRow,
        r#"SELECT id, username, password_hash, roles AS "roles: Vec<Role>", created_at, disabled_at
           FROM agents WHERE username = $1 AND disabled_at IS NULL"#,
        username
    )
    .fetch_optional(db)
    .await?)
}

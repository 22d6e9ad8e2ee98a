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
    .map_err(|e| StoreError::on_unique(e, "agents_username_key", StoreError::UsernameTaken))?;
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

/// Consecutive failed logins that lock an account.
pub const MAX_FAILED_LOGINS: i32 = 5;

/// Records a failed login; locks the account for `lock_secs` at the limit. A lock
/// that has ended starts a fresh count.
pub async fn record_failed_login(
    db: impl PgExecutor<'_>,
    agent_id: Uuid,
    lock_secs: f64,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"UPDATE agents
           SET failed_logins = CASE WHEN locked_until <= now() THEN 1 ELSE failed_logins + 1 END,
               locked_until = CASE
                   WHEN locked_until <= now() THEN NULL
                   WHEN failed_logins + 1 >= $2 THEN now() + make_interval(secs => $3)
                   ELSE locked_until END
           WHERE id = $1"#,
        agent_id,
        MAX_FAILED_LOGINS,
        lock_secs,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Whether the account is locked now.
pub async fn is_locked(db: impl PgExecutor<'_>, agent_id: Uuid) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT coalesce(locked_until > now(), false) AS "locked!" FROM agents WHERE id = $1"#,
        agent_id
    )
    .fetch_optional(db)
    .await?
    .unwrap_or(false))
}

/// Starts a session after a successful login (and clears the failure count).
pub async fn start_session(
    db: &sqlx::PgPool,
    agent_id: Uuid,
    token_hash: &[u8; 32],
    ttl_secs: f64,
) -> Result<DateTime<Utc>, StoreError> {
    let mut tx = db.begin().await?;
    sqlx::query!(
        "UPDATE agents SET failed_logins = 0, locked_until = NULL WHERE id = $1",
        agent_id
    )
    .execute(&mut *tx)
    .await?;
    let expires = sqlx::query_scalar!(
        r#"INSERT INTO agent_sessions (token_hash, agent_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
           RETURNING expires_at"#,
        &token_hash[..],
        agent_id,
        ttl_secs,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(expires)
}

/// The agent of a live session.
pub async fn session_agent(
    db: impl PgExecutor<'_>,
    token_hash: &[u8; 32],
) -> Result<Option<AgentRow>, StoreError> {
    Ok(sqlx::query_as!(
        AgentRow,
        r#"SELECT a.id, a.username, a.password_hash, a.roles AS "roles: Vec<Role>", a.created_at, a.disabled_at
           FROM agent_sessions s JOIN agents a ON a.id = s.agent_id
           WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND a.disabled_at IS NULL"#,
        &token_hash[..],
    )
    .fetch_optional(db)
    .await?)
}

/// Ends a session.
pub async fn end_session(db: impl PgExecutor<'_>, token_hash: &[u8; 32]) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE agent_sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
        &token_hash[..]
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Loads an agent by id.
pub async fn load_agent(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<AgentRow>, StoreError> {
    Ok(sqlx::query_as!(
        AgentRow,
        r#"SELECT id, username, password_hash, roles AS "roles: Vec<Role>", created_at, disabled_at FROM agents WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?)
}

/// The usernames of the agents among `ids` (ids that are not agents are left out).
pub async fn usernames(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, StoreError> {
    Ok(sqlx::query!(
        "SELECT id, username FROM agents WHERE id = ANY($1::uuid[]) ORDER BY username",
        ids
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| (r.id, r.username))
    .collect())
}

/// Every agent account (enabled and disabled), by username.
pub async fn list_agents(db: impl PgExecutor<'_>) -> Result<Vec<AgentRow>, StoreError> {
    Ok(sqlx::query_as!(
        AgentRow,
        r#"SELECT id, username, password_hash, roles AS "roles: Vec<Role>", created_at, disabled_at
           FROM agents ORDER BY username"#
    )
    .fetch_all(db)
    .await?)
}

/// Locks the agent's row for the rest of the transaction and returns it.
pub async fn lock_agent(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<AgentRow>, StoreError> {
    Ok(sqlx::query_as!(
        AgentRow,
        r#"SELECT id, username, password_hash, roles AS "roles: Vec<Role>", created_at, disabled_at
           FROM agents WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(db)
    .await?)
}

/// Locks every enabled admin account for the rest of the transaction and returns
/// their ids, so two admins cannot each disable (or demote) the other at once and
/// leave no admin: the second waits, then sees the first's change.
pub async fn lock_enabled_admins(db: impl PgExecutor<'_>) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT id FROM agents
           WHERE 'admin'::actor_role = ANY(roles) AND disabled_at IS NULL
           ORDER BY id FOR UPDATE"#
    )
    .fetch_all(db)
    .await?)
}

/// Disables (from now; an earlier time is kept) or enables the account.
pub async fn set_disabled(
    db: impl PgExecutor<'_>,
    id: Uuid,
    disabled: bool,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"UPDATE agents
           SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) ELSE NULL END
           WHERE id = $1"#,
        id,
        disabled,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Replaces the account's roles.
pub async fn set_roles(
    db: impl PgExecutor<'_>,
    id: Uuid,
    roles: &[Role],
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE agents SET roles = $2 WHERE id = $1",
        id,
        roles as &[Role],
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Sets a new password hash and clears the failure count and any lock.
pub async fn set_password(
    db: impl PgExecutor<'_>,
    id: Uuid,
    password_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE agents SET password_hash = $2, failed_logins = 0, locked_until = NULL WHERE id = $1",
        id,
        password_hash,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Ends every live session of the agent; returns how many.
pub async fn revoke_sessions(db: impl PgExecutor<'_>, agent_id: Uuid) -> Result<u64, StoreError> {
    Ok(sqlx::query!(
        "UPDATE agent_sessions SET revoked_at = now() WHERE agent_id = $1 AND revoked_at IS NULL",
        agent_id
    )
    .execute(db)
    .await?
    .rows_affected())
}

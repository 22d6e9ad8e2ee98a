//! Agent accounts, administered by admins (agent API) and by operators (the
//! `reactivation agent …` CLI): create with the password policy of
//! [`case_domain::account`], disable and enable, change roles, reset a password.
//! Each change commits with its audit row (`agent.create`, `agent.disable`,
//! `agent.enable`, `agent.roles`, `agent.password_reset`). Disabling an account or
//! resetting its password ends its sessions at once; the last enabled admin cannot
//! be disabled or lose the admin role (nobody could administer accounts after).

use case_domain::{
    Actor, Role,
    account::{self, USERNAME_RULE},
};
use case_store::{
    agents::{self, AgentRow},
    audit::{self, AuditEntry},
};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::WorkflowError;

/// Who may administer agent accounts through the agent API.
pub const ACCOUNT_ADMINS: &[Role] = &[Role::Admin];

fn check_password(username: &str, password: &str) -> Result<(), WorkflowError> {
    account::check_password(username, password)
        .map_err(|refusal| WorkflowError::invalid("password", refusal.to_string()))
}

async fn hash(password: &str) -> Result<String, WorkflowError> {
    data_protection::hash_password(password.to_owned())
        .await
        .map_err(|e| WorkflowError::Internal(anyhow::anyhow!("password hashing: {e}")))
}

async fn record(
    conn: &mut PgConnection,
    by: &Actor,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), WorkflowError> {
    audit::record(
        conn,
        &AuditEntry {
            actor: by,
            action,
            case_id: None,
            detail,
            reason: None,
        },
    )
    .await?;
    Ok(())
}

/// Creates an account: the username's form, the roles and the password policy are
/// checked first (a refusal changes nothing); audited (`agent.create`).
pub async fn create(
    pool: &PgPool,
    by: &Actor,
    username: &str,
    password: &str,
    roles: &[String],
) -> Result<AgentRow, WorkflowError> {
    let mut errors = Vec::new();
    if !account::username_ok(username) {
        errors.push(crate::FieldError::new("username", USERNAME_RULE));
    }
    let parsed = account::parse_roles(roles);
    if let Err(e) = &parsed {
        errors.push(crate::FieldError::new("roles", e.clone()));
    }
    if let Err(WorkflowError::Invalid(mut more)) = check_password(username, password) {
        errors.append(&mut more);
    }
    let roles = match parsed {
        Ok(roles) if errors.is_empty() => roles,
        _ => return Err(WorkflowError::Invalid(errors)),
    };
    let hash = hash(password).await?;
    let mut tx = pool.begin().await?;
    let id = agents::create_agent(&mut *tx, username, &hash, &roles).await?;
    record(
        &mut tx,
        by,
        "agent.create",
        serde_json::json!({ "agent_id": id, "username": username, "roles": roles }),
    )
    .await?;
    let row = agents::load_agent(&mut *tx, id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    tx.commit().await?;
    tracing::info!(agent_id = %id, roles = ?roles, by = %by.id, "agent account created");
    Ok(row)
}

/// Every account, enabled or not, by username.
pub async fn list(pool: &PgPool) -> Result<Vec<AgentRow>, WorkflowError> {
    Ok(agents::list_agents(pool).await?)
}

/// Finds an account by username (enabled or not), for the CLI.
pub async fn by_username(pool: &PgPool, username: &str) -> Result<AgentRow, WorkflowError> {
    agents::list_agents(pool)
        .await?
        .into_iter()
        .find(|a| a.username == username)
        .ok_or(WorkflowError::NotFound)
}

fn last_admin() -> WorkflowError {
    WorkflowError::Refused {
        code: "last_admin",
        detail: "This is the last enabled admin account; enable or appoint another admin first."
            .into(),
    }
}

/// Whether `target` is the only enabled admin (locks the admin rows until commit).
async fn is_last_admin(conn: &mut PgConnection, target: &AgentRow) -> Result<bool, WorkflowError> {
    if target.disabled_at.is_some() || !target.roles.contains(&Role::Admin) {
        return Ok(false);
    }
    let admins = agents::lock_enabled_admins(&mut *conn).await?;
    Ok(admins.iter().all(|id| *id == target.id))
}

/// Disables or enables an account; disabling ends its sessions at once. Doing what
/// is already done changes nothing and is not audited again.
pub async fn set_enabled(
    pool: &PgPool,
    by: &Actor,
    agent_id: Uuid,
    enabled: bool,
) -> Result<AgentRow, WorkflowError> {
    let mut tx = pool.begin().await?;
    // The admins first, then the target: the same lock order as a role change.
    if !enabled {
        agents::lock_enabled_admins(&mut *tx).await?;
    }
    let target = agents::lock_agent(&mut *tx, agent_id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    if target.disabled_at.is_none() == enabled {
        return Ok(target);
    }
    if !enabled && is_last_admin(&mut tx, &target).await? {
        return Err(last_admin());
    }
    agents::set_disabled(&mut *tx, agent_id, !enabled).await?;
    let ended = if enabled {
        0
    } else {
        agents::revoke_sessions(&mut *tx, agent_id).await?
    };
    record(
        &mut tx,
        by,
        if enabled {
            "agent.enable"
        } else {
            "agent.disable"
        },
        serde_json::json!({ "agent_id": agent_id, "sessions_ended": ended }),
    )
    .await?;
    let row = agents::load_agent(&mut *tx, agent_id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    tx.commit().await?;
    tracing::info!(agent_id = %agent_id, enabled, by = %by.id, "agent account {}", if enabled { "enabled" } else { "disabled" });
    Ok(row)
}

/// Replaces an account's roles (takes effect on the agent's next request); audited
/// with the roles before and after.
pub async fn set_roles(
    pool: &PgPool,
    by: &Actor,
    agent_id: Uuid,
    roles: &[String],
) -> Result<AgentRow, WorkflowError> {
    let roles = account::parse_roles(roles).map_err(|e| WorkflowError::invalid("roles", e))?;
    let mut tx = pool.begin().await?;
    agents::lock_enabled_admins(&mut *tx).await?;
    let target = agents::lock_agent(&mut *tx, agent_id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    if target.roles == roles {
        return Ok(target);
    }
    if !roles.contains(&Role::Admin) && is_last_admin(&mut tx, &target).await? {
        return Err(last_admin());
    }
    agents::set_roles(&mut *tx, agent_id, &roles).await?;
    record(
        &mut tx,
        by,
        "agent.roles",
        serde_json::json!({ "agent_id": agent_id, "from": target.roles, "to": roles }),
    )
    .await?;
    let row = agents::load_agent(&mut *tx, agent_id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    tx.commit().await?;
    tracing::info!(agent_id = %agent_id, roles = ?row.roles, by = %by.id, "agent roles changed");
    Ok(row)
}

/// Sets a new password (policy enforced), clears any lock-out and ends every
/// session of the account; audited (`agent.password_reset`, without the password).
pub async fn reset_password(
    pool: &PgPool,
    by: &Actor,
    agent_id: Uuid,
    password: &str,
) -> Result<AgentRow, WorkflowError> {
    let target = agents::load_agent(pool, agent_id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    check_password(&target.username, password)?;
    let hash = hash(password).await?;
    let mut tx = pool.begin().await?;
    agents::lock_agent(&mut *tx, agent_id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    agents::set_password(&mut *tx, agent_id, &hash).await?;
    let ended = agents::revoke_sessions(&mut *tx, agent_id).await?;
    record(
        &mut tx,
        by,
        "agent.password_reset",
        serde_json::json!({ "agent_id": agent_id, "sessions_ended": ended }),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(agent_id = %agent_id, by = %by.id, "agent password reset");
    Ok(target)
}

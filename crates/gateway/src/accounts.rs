//! The admins' API of agent accounts (`/v1/agent/admin/agents…`): list, create
//! (password policy per NIST 800-63B), disable and enable (a disabled agent's
//! sessions stop working at once), change roles, reset a password. Every change is
//! audited; the rules live in `case_workflows::accounts`.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use case_domain::Role;
use case_store::agents::AgentRow;
use case_workflows::accounts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{AppState, agent_auth::AgentSession, error::ApiError, extract::parse_json};

pub use case_workflows::accounts::ACCOUNT_ADMINS;

/// An agent account (never its password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentAccount {
    /// Agent id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// Roles: cs, store, security, technical, supervisor, admin.
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<Role>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Whether the account may log in.
    pub enabled: bool,
    /// When it was disabled, if it is.
    pub disabled_at: Option<DateTime<Utc>>,
}

impl From<AgentRow> for AgentAccount {
    fn from(a: AgentRow) -> Self {
        Self {
            id: a.id,
            username: a.username,
            roles: a.roles,
            created_at: a.created_at,
            enabled: a.disabled_at.is_none(),
            disabled_at: a.disabled_at,
        }
    }
}

/// Every agent account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentAccountList {
    /// By username.
    pub agents: Vec<AgentAccount>,
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// 2 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit.
    pub username: String,
    /// At least 12 characters; not a common or breached password, not repeated or sequential characters, not containing the username.
    pub password: String,
    /// One or more of cs, store, security, technical, supervisor, admin.
    pub roles: Vec<String>,
}

/// New roles.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRoles {
    /// One or more of cs, store, security, technical, supervisor, admin (replaces the current ones).
    pub roles: Vec<String>,
}

/// A new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// The same policy as at creation.
    pub password: String,
}

fn agent_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// Lists every agent account, enabled or not.
#[utoipa::path(
    get, path = "/v1/agent/admin/agents", tag = "agent", operation_id = "list_agents",
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The accounts", body = AgentAccountList),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    session: AgentSession,
) -> Result<Json<AgentAccountList>, ApiError> {
    session.require_any(ACCOUNT_ADMINS)?;
    let agents = accounts::list(&state.pool).await?;
    Ok(Json(AgentAccountList {
        agents: agents.into_iter().map(AgentAccount::from).collect(),
    }))
}

/// Creates an agent account. The password must have at least 12 characters and must not be a common or breached password, repeated or sequential characters, or contain the username (NIST SP 800-63B). Audited (`agent.create`).
#[utoipa::path(
    post, path = "/v1/agent/admin/agents", tag = "agent", operation_id = "create_agent",
    request_body = NewAgent,
    security(("agent_token" = [])),
    responses(
        (status = 201, description = "Created", body = AgentAccount),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The username is taken (`username_taken`)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid username, roles or password (the policy's reason is given)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    session: AgentSession,
    body: Bytes,
) -> Result<Response, ApiError> {
    session.require_any(ACCOUNT_ADMINS)?;
    let (request, _): (NewAgent, _) = parse_json(&body)?;
    let row = accounts::create(
        &state.pool,
        &session.actor(Role::Admin),
        &request.username,
        &request.password,
        &request.roles,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(AgentAccount::from(row))).into_response())
}

/// Disables an account: its sessions end at once and it cannot log in. The last enabled admin cannot be disabled (409 `last_admin`). Audited (`agent.disable`).
#[utoipa::path(
    post, path = "/v1/agent/admin/agents/{agent_id}/disable", tag = "agent",
    params(("agent_id" = Uuid, Path, description = "Agent id")),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Disabled (or already was)", body = AgentAccount),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such agent", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The last enabled admin", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn disable(
    State(state): State<AppState>,
    session: AgentSession,
    Path(raw): Path<String>,
) -> Result<Json<AgentAccount>, ApiError> {
    session.require_any(ACCOUNT_ADMINS)?;
    let id = agent_id(&raw)?;
    let row = accounts::set_enabled(&state.pool, &session.actor(Role::Admin), id, false).await?;
    Ok(Json(row.into()))
}

/// Enables a disabled account (its old sessions stay ended). Audited (`agent.enable`).
#[utoipa::path(
    post, path = "/v1/agent/admin/agents/{agent_id}/enable", tag = "agent",
    params(("agent_id" = Uuid, Path, description = "Agent id")),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Enabled (or already was)", body = AgentAccount),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such agent", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn enable(
    State(state): State<AppState>,
    session: AgentSession,
    Path(raw): Path<String>,
) -> Result<Json<AgentAccount>, ApiError> {
    session.require_any(ACCOUNT_ADMINS)?;
    let id = agent_id(&raw)?;
    let row = accounts::set_enabled(&state.pool, &session.actor(Role::Admin), id, true).await?;
    Ok(Json(row.into()))
}

/// Replaces an account's roles; effective on the agent's next request. The last enabled admin keeps the admin role (409 `last_admin`). Audited (`agent.roles`, before and after).
#[utoipa::path(
    put, path = "/v1/agent/admin/agents/{agent_id}/roles", tag = "agent",
    params(("agent_id" = Uuid, Path, description = "Agent id")),
    request_body = NewRoles,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The account with its new roles", body = AgentAccount),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such agent", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The last enabled admin", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not agent roles", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn set_roles(
    State(state): State<AppState>,
    session: AgentSession,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Json<AgentAccount>, ApiError> {
    session.require_any(ACCOUNT_ADMINS)?;
    let id = agent_id(&raw)?;
    let (request, _): (NewRoles, _) = parse_json(&body)?;
    let row =
        accounts::set_roles(&state.pool, &session.actor(Role::Admin), id, &request.roles).await?;
    Ok(Json(row.into()))
}

/// Sets a new password (the creation policy applies), clears any lock-out and ends every session of the account. Audited (`agent.password_reset`).
#[utoipa::path(
    post, path = "/v1/agent/admin/agents/{agent_id}/password", tag = "agent",
    params(("agent_id" = Uuid, Path, description = "Agent id")),
    request_body = NewPassword,
    security(("agent_token" = [])),
    responses(
        (status = 204, description = "Reset; the agent's sessions are ended"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such agent", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The password does not meet the policy", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn reset_password(
    State(state): State<AppState>,
    session: AgentSession,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    session.require_any(ACCOUNT_ADMINS)?;
    let id = agent_id(&raw)?;
    let (request, _): (NewPassword, _) = parse_json(&body)?;
    accounts::reset_password(
        &state.pool,
        &session.actor(Role::Admin),
        id,
        &request.password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

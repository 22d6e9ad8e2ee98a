//! Agent authentication: login (argon2id, same answer for unknown user and wrong
//! password, lock-out after repeated failures), session tokens (only their hash is
//! stored, with an expiry), logout, and the extractor every agent route uses.

use axum::{
    Json,
    extract::{FromRequestParts, State},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use case_domain::{Actor, Role};
use case_store::agents::{self, AgentRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_runtime::Problem;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{AppState, error::ApiError, extract::parse_json};

/// How long a session lasts.
pub const SESSION_TTL_SECS: f64 = 8.0 * 3600.0;
/// How long an account stays locked after too many failures.
pub const LOCKOUT_SECS: f64 = 15.0 * 60.0;
/// The console's session cookie.
pub const SESSION_COOKIE: &str = "reactivation_session";

/// A logged-in agent.
#[derive(Debug, Clone)]
pub struct AgentSession {
    /// The agent.
    pub agent: AgentRow,
    /// The session token's hash (for logout).
    pub token_hash: [u8; 32],
}

impl AgentSession {
    /// The agent's id.
    pub fn id(&self) -> Uuid {
        self.agent.id
    }

    /// The agent's roles.
    pub fn roles(&self) -> &[Role] {
        &self.agent.roles
    }

    /// Whether the agent holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.agent.roles.contains(&role)
    }

    /// Whether the agent holds any of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    /// 403 unless the agent holds one of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.has_any(roles) {
            Ok(())
        } else {
            Err(ApiError::Forbidden("Your role may not do this.".into()))
        }
    }

    /// The agent as the use cases know them: id, username and roles.
    pub fn as_agent(&self) -> case_workflows::agent::Agent {
        case_workflows::agent::Agent {
            id: self.agent.id,
            username: self.agent.username.clone(),
            roles: self.agent.roles.clone(),
        }
    }

    /// The agent as an actor in a role.
    pub fn actor(&self, role: Role) -> Actor {
        Actor::agent(role, self.agent.id.to_string())
    }

    /// The agent as an actor in their first role (for audit rows not tied to a decision).
    pub fn any_actor(&self) -> Actor {
        self.actor(self.agent.roles.first().copied().unwrap_or(Role::Admin))
    }
}

fn session_token(parts: &Parts) -> Option<String> {
    if let Some(bearer) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_owned());
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

impl FromRequestParts<AppState> for AgentSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = session_token(parts)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or(ApiError::Unauthenticated)?;
        let token_hash = data_protection::hash_token(&token);
        let agent = agents::session_agent(&state.pool, &token_hash)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        Ok(Self { agent, token_hash })
    }
}

/// Agent credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for the agent API (the console sets it as an HttpOnly cookie instead).
    pub token: String,
    /// The agent's roles (cs, store, security, technical, supervisor, admin).
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<Role>,
    /// Login name.
    pub username: String,
    /// Agent id.
    pub agent_id: Uuid,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

fn bad_credentials() -> ApiError {
    ApiError::Unauthenticated
}

/// Checks credentials and opens a session. Returns `None` for any refusal (unknown
/// user, wrong password, locked or disabled account), which callers answer alike.
pub async fn authenticate(
    state: &AppState,
    username: &str,
    password: &str,
) -> Result<Option<(AgentRow, LoginResponse)>, ApiError> {
    if username.len() > 64 || password.len() > 256 {
        return Ok(None);
    }
    let agent = agents::find_agent(&state.pool, username).await?;
    let stored = agent.as_ref().map(|a| a.password_hash.clone());
    // Verified even for unknown users (against a dummy hash) so timing does not tell.
    let password_ok = data_protection::verify_password(password.to_owned(), stored)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let Some(agent) = agent else { return Ok(None) };
    if agents::is_locked(&state.pool, agent.id).await? {
        tracing::warn!(agent_id = %agent.id, "login refused: account locked");
        return Ok(None);
    }
    if !password_ok {
        agents::record_failed_login(&state.pool, agent.id, LOCKOUT_SECS).await?;
        return Ok(None);
    }
    let token = data_protection::issue_token();
    let expires_at =
        agents::start_session(&state.pool, agent.id, &token.hash, SESSION_TTL_SECS).await?;
    let mut conn = state.pool.acquire().await.map_err(anyhow::Error::from)?;
    let actor = Actor::agent(
        agent.roles.first().copied().unwrap_or(Role::Admin),
        agent.id.to_string(),
    );
    case_store::audit::record(
        &mut conn,
        &case_store::audit::AuditEntry {
            actor: &actor,
            action: "agent.login",
            case_id: None,
            detail: serde_json::json!({}),
            reason: None,
        },
    )
    .await?;
    let response = LoginResponse {
        token: token.token,
        roles: agent.roles.clone(),
        username: agent.username.clone(),
        agent_id: agent.id,
        expires_at,
    };
    Ok(Some((agent, response)))
}

/// Logs an agent in.
#[utoipa::path(
    post, path = "/v1/agent/login", tag = "agent",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Session opened", body = LoginResponse),
        (status = 401, description = "Bad credentials (the same answer for an unknown user, a wrong password or a locked account)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<LoginResponse>, ApiError> {
    let (request, _): (LoginRequest, _) = parse_json(&body)?;
    match authenticate(&state, &request.username, &request.password).await? {
        Some((_, response)) => Ok(Json(response)),
        None => Err(bad_credentials()),
    }
}

/// Ends the session.
#[utoipa::path(
    post, path = "/v1/agent/logout", tag = "agent",
    security(("agent_token" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    session: AgentSession,
) -> Result<Response, ApiError> {
    agents::end_session(&state.pool, &session.token_hash).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The problem for a missing or invalid session.
pub fn unauthenticated() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Not authenticated",
        "Log in with a valid agent account.",
    )
}

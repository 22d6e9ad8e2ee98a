//! Supervisors' tools over other agents' work (reassign a case, break a claim) and
//! the manual escalation of a case into the supervisors' queue. Each calls one use
//! case of `case_workflows::supervision`; the roles are declared in
//! [`crate::access::AGENT_ROUTES`] and checked again by the use case.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    AppState, agent::case_id, agent_auth::AgentSession, error::ApiError, extract::parse_json,
};

/// Hand a case to another agent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReassignRequest {
    /// The username of the active agent who takes the case (their roles must allow
    /// working it in its state).
    pub to: String,
    /// Why (5 to 500 characters; recorded in the audit log).
    pub reason: String,
    /// The version the supervisor saw.
    pub expected_version: i32,
}

/// A supervisor's act with a reason, at a version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonedRequest {
    /// Why (5 to 500 characters; recorded in the audit log).
    pub reason: String,
    /// The version the agent saw.
    pub expected_version: i32,
}

/// A case's claim after a supervisor's act.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimChangeView {
    /// Case id.
    pub case_id: Uuid,
    /// Its state.
    pub state: String,
    /// Its version (a claim is not a transition: unchanged).
    pub version: i32,
    /// The agent who held it before (id), if anyone.
    pub previous_holder: Option<Uuid>,
    /// The agent holding it now (id), if anyone.
    pub claimed_by: Option<Uuid>,
    /// Their username.
    pub claimed_by_username: Option<String>,
    /// Until when.
    pub claimed_until: Option<DateTime<Utc>>,
}

impl From<case_workflows::supervision::ClaimChange> for ClaimChangeView {
    fn from(c: case_workflows::supervision::ClaimChange) -> Self {
        Self {
            case_id: c.case_id,
            state: c.state.as_str().into(),
            version: c.version,
            previous_holder: c.previous_holder,
            claimed_by: c.holder,
            claimed_by_username: c.holder_username,
            claimed_until: c.claimed_until,
        }
    }
}

/// A manual escalation.
#[derive(Debug, Serialize, ToSchema)]
pub struct EscalationView {
    /// Case id.
    pub case_id: Uuid,
    /// The stage escalated.
    pub state: String,
    /// The case's version.
    pub version: i32,
    /// The level set (1).
    pub escalation_level: i16,
}

/// Reassigns a case to another agent (supervisors): the named agent holds it now and
/// the previous holder's claim ends. Audited with the reason.
#[utoipa::path(
    post, path = "/v1/agent/cases/{case_id}/reassign", tag = "agent",
    params(("case_id" = Uuid, Path, description = "Case id")),
    request_body = ReassignRequest,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Reassigned", body = ClaimChangeView),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Stale version; or refused with a code: assignee_may_not_act, already_assigned, worked_automatically, waits_on_subscriber, case_finished", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "No active agent of that name, reason missing or out of bounds, unknown field", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn reassign(
    State(state): State<AppState>,
    session: AgentSession,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ClaimChangeView>, ApiError> {
    let id = case_id(&id)?;
    let (request, _): (ReassignRequest, _) = parse_json(&body)?;
    let change = case_workflows::supervision::reassign(
        &state.pool,
        &session.as_agent(),
        id,
        &request.to,
        request.expected_version,
        &request.reason,
    )
    .await?;
    Ok(Json(change.into()))
}

/// Breaks the claim an agent holds on a case (supervisors), so that anyone of the
/// department may take it. Audited with the reason.
#[utoipa::path(
    post, path = "/v1/agent/cases/{case_id}/break-claim", tag = "agent",
    params(("case_id" = Uuid, Path, description = "Case id")),
    request_body = ReasonedRequest,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The claim is broken", body = ClaimChangeView),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Stale version, or no agent holds the case (code not_claimed)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Reason missing or out of bounds, unknown field", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn break_claim(
    State(state): State<AppState>,
    session: AgentSession,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ClaimChangeView>, ApiError> {
    let id = case_id(&id)?;
    let (request, _): (ReasonedRequest, _) = parse_json(&body)?;
    let change = case_workflows::supervision::break_claim(
        &state.pool,
        &session.as_agent(),
        id,
        request.expected_version,
        &request.reason,
    )
    .await?;
    Ok(Json(change.into()))
}

/// Escalates a case by hand into the supervisors' escalation queue (any agent who
/// works cases). Audited with the reason; it ends when the case leaves the stage.
#[utoipa::path(
    post, path = "/v1/agent/cases/{case_id}/escalate", tag = "agent",
    params(("case_id" = Uuid, Path, description = "Case id")),
    request_body = ReasonedRequest,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Escalated", body = EscalationView),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins do not work cases", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Stale version; or refused with a code: already_escalated, case_finished", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Reason missing or out of bounds, unknown field", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn escalate(
    State(state): State<AppState>,
    session: AgentSession,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<EscalationView>, ApiError> {
    let id = case_id(&id)?;
    let (request, _): (ReasonedRequest, _) = parse_json(&body)?;
    let done = case_workflows::supervision::escalate(
        &state.pool,
        &session.as_agent(),
        id,
        request.expected_version,
        &request.reason,
    )
    .await?;
    Ok(Json(EscalationView {
        case_id: done.case_id,
        state: done.state.as_str().into(),
        version: done.version,
        escalation_level: done.level,
    }))
}

//! The supervisors' escalation queue: open cases whose stage ran past its SLA
//! (escalation is an attribute of the case, raised by the timers service) or that an
//! agent escalated by hand (with who and why), and open complaints left unanswered
//! past their clock.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{AppState, agent_auth::AgentSession, error::ApiError};

/// One escalated case.
#[derive(Debug, Serialize, ToSchema)]
pub struct EscalatedItem {
    /// Case id.
    pub case_id: Uuid,
    /// Current state.
    pub state: String,
    /// Version (send back as `expected_version` when acting).
    pub version: i32,
    /// Department that has the case now.
    pub department: Option<String>,
    /// 1: the stage ran past its SLA; 2: past twice its SLA.
    pub escalation_level: i16,
    /// When that level was reached.
    pub escalated_at: Option<DateTime<Utc>>,
    /// The stage that breached.
    pub escalated_state: Option<String>,
    /// When the case entered its current state.
    pub state_entered_at: DateTime<Utc>,
    /// The agent holding the case, if any.
    pub claimed_by: Option<String>,
    /// The number, masked.
    pub msisdn: String,
    /// The agent who escalated the case by hand (absent for an SLA escalation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalated_by: Option<String>,
    /// Their reason (absent for an SLA escalation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation_reason: Option<String>,
}

/// The escalation queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct EscalationsResponse {
    /// Highest level first, then the oldest escalation.
    pub cases: Vec<EscalatedItem>,
    /// Open complaints escalated because their answer is overdue, the oldest due first.
    pub complaints: Vec<crate::complaints::ComplaintListItem>,
}

/// Open cases escalated to supervisors (a stage ran past its SLA, or an agent escalated it by hand), and open complaints escalated for being overdue.
#[utoipa::path(
    get, path = "/v1/agent/escalations", tag = "agent",
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The escalated cases", body = EscalationsResponse),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn escalations(
    State(state): State<AppState>,
    session: AgentSession,
) -> Result<Json<EscalationsResponse>, ApiError> {
    let agent = session.as_agent();
    let now = Utc::now();
    let rows = case_workflows::agent::escalations(&state.pool, &agent, now).await?;
    let complaints = case_workflows::complaints::escalated(&state.pool, &agent)
        .await?
        .into_iter()
        .map(|r| crate::complaints::ComplaintListItem {
            complaint: crate::complaints::ComplaintView::for_agents(r.complaint, now),
            case_state: r.case_state.map(|s| s.as_str().into()),
            msisdn: r.msisdn.masked(),
        })
        .collect();
    Ok(Json(EscalationsResponse {
        complaints,
        cases: rows
            .into_iter()
            .map(|r| EscalatedItem {
                case_id: r.case_id,
                state: r.state.as_str().into(),
                version: r.version,
                department: r.state.department().map(|d| d.as_str().into()),
                escalation_level: r.escalation_level,
                escalated_at: r.escalated_at,
                escalated_state: r.escalated_state.map(|s| s.as_str().into()),
                state_entered_at: r.state_entered_at,
                claimed_by: r.claimed_by,
                msisdn: r.msisdn,
                escalated_by: r.escalated_by,
                escalation_reason: r.escalation_reason,
            })
            .collect(),
    }))
}

//! Complaints: the subscriber complains about a case (which starts the carrier's
//! 15-day answer clock and raises the case in the agent queues), agents answer, and
//! supervisors follow the open ones by due date.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use case_domain::{Role, complaint};
use case_store::complaints::ComplaintRow;
use case_workflows::complaints;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    AppState,
    agent::CASE_READERS,
    agent_auth::AgentSession,
    error::{ApiError, FieldError},
    extract::{CustomerCase, parse_json},
};

/// Who may list complaints across cases.
pub const COMPLAINT_SUPERVISORS: &[Role] = &[Role::Supervisor];

/// Who may log a complaint that came by hotline, in a store, on social media or as
/// a 12300 referral.
pub const COMPLAINT_LOGGERS: &[Role] = complaint::LOGGERS;

/// A complaint about the handling of a case.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplaintRequest {
    /// Where the subscriber complains: web, app, social, regulator or hotline.
    #[schema(example = "app")]
    pub channel: String,
    /// What the subscriber complains about (1 to 2000 characters).
    pub text: String,
}

/// A complaint as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComplaintView {
    /// Complaint id.
    pub complaint_id: Uuid,
    /// The case (absent for a complaint an agent logged against a number without a case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_id: Option<Uuid>,
    /// web, app, social, regulator (a 12300 referral), hotline or store.
    pub channel: String,
    /// The sender's reference (agents only): the 12300 work-order number, a post id, a ticket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The agent who logged it (agents only; absent when the subscriber made it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logged_by: Option<String>,
    /// When it was escalated to supervisors for being overdue (agents only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<DateTime<Utc>>,
    /// The subscriber's text.
    pub text: String,
    /// open or answered.
    pub status: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When the carrier must answer (15 days after it was made). If it has not by then,
    /// the subscriber may take the complaint to the regulator (12300).
    pub due_at: DateTime<Utc>,
    /// Open and past its due time.
    pub overdue: bool,
    /// Whether the subscriber may now take it to the regulator (answered, or overdue).
    pub regulator_eligible: bool,
    /// The carrier's answer, once given.
    pub answer: Option<String>,
    /// When it was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// The agent who answered (agents only; never shown to the subscriber).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
}

impl ComplaintView {
    /// The agents' view of a stored complaint at `now`.
    pub fn for_agents(row: ComplaintRow, now: DateTime<Utc>) -> Self {
        let status = row.status();
        Self {
            complaint_id: row.id,
            case_id: row.case_id,
            channel: row.channel,
            reference: row.reference,
            logged_by: row.logged_by_username,
            escalated_at: row.escalated_at,
            text: row.body,
            status: status.as_str().into(),
            created_at: row.created_at,
            due_at: row.due_at,
            overdue: complaint::overdue(status, row.due_at, now),
            regulator_eligible: complaint::may_go_to_regulator(status, row.due_at, now),
            answer: row.answer,
            answered_at: row.answered_at,
            answered_by: row.answered_by_username,
        }
    }

    /// The subscriber's view (without the answering agent).
    pub fn for_subscriber(row: ComplaintRow, now: DateTime<Utc>) -> Self {
        Self {
            answered_by: None,
            reference: None,
            logged_by: None,
            escalated_at: None,
            ..Self::for_agents(row, now)
        }
    }
}

/// A case's complaints, as the subscriber sees them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComplaintList {
    /// Oldest first.
    pub complaints: Vec<ComplaintView>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Invalid(vec![FieldError {
        field: field.into(),
        message: message.into(),
    }])
}

/// Complains about the handling of the case. Starts the carrier's 15-day answer clock
/// (`due_at`) and puts the case at the head of its agent queue until answered.
#[utoipa::path(
    post, path = "/v1/cases/{case_id}/complaints", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    request_body = ComplaintRequest,
    responses(
        (status = 201, description = "Complaint recorded; the carrier answers by due_at", body = ComplaintView),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case, or a wrong token (the same answer)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The case already has 5 unanswered complaints (code too_many_open_complaints)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Unknown channel, empty or too long text, unknown field", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    CustomerCase(case): CustomerCase,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (request, _): (ComplaintRequest, _) = parse_json(&body)?;
    let row = complaints::complain(
        &state.pool,
        case.id,
        &request.channel,
        &request.text,
        state.sla.complaint_answer_window(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(ComplaintView::for_subscriber(row, Utc::now())),
    )
        .into_response())
}

/// The case's complaints and the carrier's answers.
#[utoipa::path(
    get, path = "/v1/cases/{case_id}/complaints", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    responses(
        (status = 200, description = "The complaints, oldest first", body = ComplaintList),
        (status = 404, description = "No such case, or a wrong token (the same answer)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list_mine(
    State(state): State<AppState>,
    CustomerCase(case): CustomerCase,
) -> Result<Json<ComplaintList>, ApiError> {
    let now = Utc::now();
    let complaints = complaints::for_case(&state.pool, case.id)
        .await?
        .into_iter()
        .map(|r| ComplaintView::for_subscriber(r, now))
        .collect();
    Ok(Json(ComplaintList { complaints }))
}

/// An agent's answer to a complaint.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The answer to the subscriber (1 to 4000 characters).
    pub answer: String,
}

/// Answers a complaint and closes it (recorded in the audit log).
#[utoipa::path(
    post, path = "/v1/agent/cases/{case_id}/complaints/{complaint_id}/answer", tag = "agent",
    params(
        ("case_id" = Uuid, Path, description = "Case id"),
        ("complaint_id" = Uuid, Path, description = "Complaint id"),
    ),
    request_body = AnswerRequest,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Answered and closed", body = ComplaintView),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins do not answer complaints", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such complaint on this case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already answered (code complaint_already_answered)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Empty or too long answer, unknown field", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn answer(
    State(state): State<AppState>,
    session: AgentSession,
    Path((case_id, complaint_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ComplaintView>, ApiError> {
    session.require_any(CASE_READERS)?;
    let case_id: Uuid = case_id.parse().map_err(|_| ApiError::NotFound)?;
    let complaint_id: Uuid = complaint_id.parse().map_err(|_| ApiError::NotFound)?;
    let (request, _): (AnswerRequest, _) = parse_json(&body)?;
    let actor = session.actor(
        session
            .roles()
            .iter()
            .copied()
            .find(|r| CASE_READERS.contains(r))
            .unwrap_or(Role::Supervisor),
    );
    let row = complaints::answer(
        &state.pool,
        &actor,
        session.id(),
        Some(case_id),
        complaint_id,
        &request.answer,
    )
    .await?;
    Ok(Json(ComplaintView::for_agents(row, Utc::now())))
}

/// Answers a complaint by its id (also one logged against a number without a case)
/// and closes it; the subscriber is told, and the answer is audited.
#[utoipa::path(
    post, path = "/v1/agent/complaints/{complaint_id}/answer", tag = "agent",
    params(("complaint_id" = Uuid, Path, description = "Complaint id")),
    request_body = AnswerRequest,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Answered and closed; the subscriber is told", body = ComplaintView),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins do not answer complaints", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such complaint", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already answered (code complaint_already_answered)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Empty or too long answer, unknown field", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn answer_by_id(
    State(state): State<AppState>,
    session: AgentSession,
    Path(complaint_id): Path<String>,
    body: Bytes,
) -> Result<Json<ComplaintView>, ApiError> {
    session.require_any(CASE_READERS)?;
    let complaint_id: Uuid = complaint_id.parse().map_err(|_| ApiError::NotFound)?;
    let (request, _): (AnswerRequest, _) = parse_json(&body)?;
    let row = answer_as(&state, &session, None, complaint_id, &request.answer).await?;
    Ok(Json(ComplaintView::for_agents(row, Utc::now())))
}

/// Answers a complaint as the session's agent (the API and the console).
pub(crate) async fn answer_as(
    state: &AppState,
    session: &AgentSession,
    case_id: Option<Uuid>,
    complaint_id: Uuid,
    answer: &str,
) -> Result<ComplaintRow, ApiError> {
    session.require_any(CASE_READERS)?;
    let actor = session.actor(
        session
            .roles()
            .iter()
            .copied()
            .find(|r| CASE_READERS.contains(r))
            .unwrap_or(Role::Supervisor),
    );
    Ok(complaints::answer(
        &state.pool,
        &actor,
        session.id(),
        case_id,
        complaint_id,
        answer,
    )
    .await?)
}

/// A complaint an agent logs.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogComplaintRequest {
    /// Where it came in: hotline, store, social (e.g. Weibo) or regulator (a 12300 referral).
    #[schema(example = "regulator")]
    pub channel: String,
    /// What the subscriber complains about (1 to 2000 characters).
    pub text: String,
    /// The case it is about, if known.
    #[serde(default)]
    pub case_id: Option<Uuid>,
    /// The subscriber's number: needed without case_id (then the number's open case,
    /// if any, is linked); with case_id it must be the case's.
    #[serde(default)]
    #[schema(example = "+8613800138000")]
    pub msisdn: Option<String>,
    /// The sender's reference, up to 100 characters: required for a 12300 referral
    /// (the regulator's work-order number); a post id or ticket otherwise.
    #[serde(default)]
    pub reference: Option<String>,
    /// The subscriber's language for the messages about it (zh-CN or en); else the
    /// case's, else zh-CN.
    #[serde(default)]
    pub locale: Option<String>,
}

/// A logged complaint, as agents see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoggedComplaintView {
    /// The complaint.
    #[serde(flatten)]
    pub complaint: ComplaintView,
    /// The number, masked.
    pub msisdn: String,
}

/// Logs a complaint that came by hotline, in a store, on social media or as a 12300
/// referral (CS and supervisors), against a case or a number. Its answer clock
/// starts now (15 days); it is escalated to supervisors when overdue.
#[utoipa::path(
    post, path = "/v1/agent/complaints", tag = "agent", operation_id = "log_complaint",
    request_body = LogComplaintRequest,
    security(("agent_token" = [])),
    responses(
        (status = 201, description = "Logged; the carrier answers by due_at", body = LoggedComplaintView),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "CS agents and supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The case or number already has 5 unanswered complaints (code too_many_open_complaints)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Unknown channel, missing reference for a referral, bad number or locale, neither case nor number, empty or too long text, unknown field", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn log(
    State(state): State<AppState>,
    session: AgentSession,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (request, _): (LogComplaintRequest, _) = parse_json(&body)?;
    let row = log_as(&state, &session, request).await?;
    let msisdn = row.msisdn.masked();
    Ok((
        StatusCode::CREATED,
        Json(LoggedComplaintView {
            complaint: ComplaintView::for_agents(row, Utc::now()),
            msisdn,
        }),
    )
        .into_response())
}

/// Logs a complaint as the session's agent (the API and the console).
pub(crate) async fn log_as(
    state: &AppState,
    session: &AgentSession,
    request: LogComplaintRequest,
) -> Result<ComplaintRow, ApiError> {
    Ok(complaints::log(
        &state.pool,
        &session.as_agent(),
        &complaints::LogRequest {
            channel: request.channel,
            text: request.text,
            case_id: request.case_id,
            msisdn: request.msisdn,
            reference: request.reference,
            locale: request.locale,
        },
        state.sla.complaint_answer_window(),
    )
    .await?)
}

/// Which complaints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ComplaintQuery {
    /// open (default), answered or all.
    #[serde(default)]
    pub status: Option<String>,
}

/// A complaint in the supervisors' list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComplaintListItem {
    /// The complaint.
    #[serde(flatten)]
    pub complaint: ComplaintView,
    /// The case's state now (absent without a case).
    pub case_state: Option<String>,
    /// The case's number, masked.
    pub msisdn: String,
}

/// Complaints across cases.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComplaintQueue {
    /// Earliest due first.
    pub complaints: Vec<ComplaintListItem>,
}

/// Complaints across cases and numbers, earliest due first (open ones by default): what must be answered before the subscriber may go to the regulator.
#[utoipa::path(
    get, path = "/v1/agent/complaints", tag = "agent", operation_id = "complaint_queue",
    params(ComplaintQuery),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The complaints", body = ComplaintQueue),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Unknown status", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn queue(
    State(state): State<AppState>,
    session: AgentSession,
    query: Result<Query<ComplaintQuery>, QueryRejection>,
) -> Result<Json<ComplaintQueue>, ApiError> {
    session.require_any(COMPLAINT_SUPERVISORS)?;
    let Query(query) = query.map_err(|_| {
        invalid(
            "status",
            "the only parameter is status: open, answered or all",
        )
    })?;
    let now = Utc::now();
    let complaints = complaints::queue(&state.pool, query.status.as_deref())
        .await?
        .into_iter()
        .map(|r| ComplaintListItem {
            complaint: ComplaintView::for_agents(r.complaint, now),
            case_state: r.case_state.map(|s| s.as_str().into()),
            msisdn: r.msisdn.masked(),
        })
        .collect();
    Ok(Json(ComplaintQueue { complaints }))
}

/// A case's complaints as agents see them (for the case view and the dossier).
pub async fn for_case(state: &AppState, case_id: Uuid) -> Result<Vec<ComplaintView>, ApiError> {
    let now = Utc::now();
    Ok(complaints::for_case(&state.pool, case_id)
        .await?
        .into_iter()
        .map(|r| ComplaintView::for_agents(r, now))
        .collect())
}

//! The agent API (`/v1/agent/…`): queues, the shared case view, claims, decisions,
//! notes, unmasking and reports. Each handler parses its input, calls one use case
//! of `case_workflows::agent` (where the role checks, the four-eyes rule on
//! appeals, claims, optimistic concurrency and audit live) and renders the answer.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use case_domain::{CaseEvent, agent_policy::IdentityCheck, decision::RejectionCode, hex};
use case_store::CaseRow;
use case_workflows::agent::{self as wf, Decision};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    AppState,
    agent_auth::AgentSession,
    error::{ApiError, FieldError},
    extract::parse_json,
};

pub use case_domain::agent_policy::{
    CASE_READERS, CLAIM_TTL, UNMASKERS, queue_roles, queue_states,
};

/// A case id from the path; a malformed one is no case at all.
pub(crate) fn case_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Invalid(vec![FieldError::new(field, message)])
}

/// The department named by a queue request.
pub(crate) fn department(code: &str) -> Result<case_domain::Department, ApiError> {
    case_domain::agent_policy::parse_department(code)
        .ok_or_else(|| invalid("department", "department must be cs, security or technical"))
}

/// Which queue.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    /// cs, security or technical.
    pub department: String,
}

/// One case in a queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueItem {
    /// Case id.
    pub case_id: Uuid,
    /// State.
    pub state: String,
    /// Version.
    pub version: i32,
    /// When the stage is due.
    pub sla_due_at: Option<DateTime<Utc>>,
    /// Whether the stage is overdue.
    pub breached: bool,
    /// The agent holding the case, if any.
    pub claimed_by: Option<String>,
    /// Until when.
    pub claimed_until: Option<DateTime<Utc>>,
    /// The number, masked.
    pub msisdn: String,
    /// Latest risk tier.
    pub tier: Option<String>,
    /// The case has an unanswered complaint: it comes first in the queue.
    pub complaint: bool,
    /// The subscriber asked for expedited handling: after complaints, before the rest.
    pub expedited: bool,
    /// complaint, expedited or normal.
    pub priority: String,
}

/// A department queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueResponse {
    /// Cases with an unanswered complaint first, then expedited ones, then earliest SLA due first.
    pub cases: Vec<QueueItem>,
}

/// One event of the timeline, as agents see it (with actor ids).
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentTimelineEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// From.
    pub from: Option<String>,
    /// To.
    pub to: String,
    /// Event.
    pub event: String,
    /// Role of the actor.
    pub actor_role: String,
    /// Agent id, service name or subscriber.
    pub actor_id: String,
    /// Reason.
    pub reason: Option<String>,
}

/// The identity proofs' status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProofsView {
    /// Masked full name.
    pub full_name: String,
    /// Masked ID number (last four only).
    pub id_number: String,
    /// Codes sent.
    pub otp_sends: i32,
    /// Failed proofs.
    pub failed_attempts: i32,
    /// The proof that verified identity, if any.
    pub verified_method: Option<String>,
    /// When.
    pub verified_at: Option<DateTime<Utc>>,
    /// Whether the name and ID matched the carrier's record: matched, did_not_match or
    /// not_yet_asked. On did_not_match only a supervisor may verify identity.
    pub name_id_match: String,
    /// The proofs offered on the case, oldest first (at most 100).
    pub tried: Vec<ProofTriedView>,
    /// The verification ladder: the tier that decides which proofs the case asks
    /// (`low` … `extreme`; null until graded), the proofs given (`otp`,
    /// `service_password`, `cs_callback`, `in_person_id`) and the steps still open,
    /// each satisfied by any one of its kinds.
    pub ladder: LadderView,
}

/// A case's place on the verification ladder.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LadderView {
    /// The tier (null until graded).
    pub tier: Option<String>,
    /// The proofs given so far.
    pub given: Vec<String>,
    /// The steps still open.
    pub needed: Vec<Vec<String>>,
}

/// One proof offered on a case.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProofTriedView {
    /// otp, service_password or call_records.
    pub method: String,
    /// pending (being judged), failed, accepted or released (never judged).
    pub outcome: String,
    /// When it was offered.
    pub at: DateTime<Utc>,
}

/// One evidence file (metadata; the console shows the content).
#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceView {
    /// Evidence id.
    pub evidence_id: Uuid,
    /// Media type, as recognised by content.
    pub media_type: String,
    /// Size in bytes.
    pub size_bytes: i32,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// When it was uploaded.
    pub at: DateTime<Utc>,
}

/// The risk grading as agents see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentRiskView {
    /// Tier.
    pub tier: String,
    /// Reason codes.
    pub reason_codes: Vec<String>,
    /// What is still needed.
    pub needs: Vec<String>,
    /// The carrier signals used.
    #[schema(value_type = Object)]
    pub signals: case_domain::risk::RecordedSignals,
    /// When.
    pub assessed_at: DateTime<Utc>,
}

/// A note.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoteView {
    /// Note id.
    pub id: Uuid,
    /// Author.
    pub author: String,
    /// Text.
    pub body: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A provisioning order.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    /// Order id (idempotency key at the carrier).
    pub id: Uuid,
    /// full or inbound_only.
    pub restoration: String,
    /// Order state.
    pub state: String,
    /// Failed attempts.
    pub failures: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// The shared case view.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentCaseView {
    /// Case id.
    pub case_id: Uuid,
    /// State.
    pub state: String,
    /// Version (send it back as expected_version).
    pub version: i32,
    /// Owning department.
    pub department: Option<String>,
    /// Masked number.
    pub msisdn: String,
    /// Channel.
    pub channel: String,
    /// Subscriber's language.
    pub locale: String,
    /// Opened at.
    pub created_at: DateTime<Utc>,
    /// When the stage is due.
    pub sla_due_at: Option<DateTime<Utc>>,
    /// The agent holding the case, if any.
    pub claimed_by: Option<String>,
    /// Until when.
    pub claimed_until: Option<DateTime<Utc>>,
    /// Whether the case was appealed.
    pub appealed: bool,
    /// Agent who made the last rejection (an appeal must go to someone else).
    pub rejected_by: Option<String>,
    /// Identity proofs.
    pub proofs: Option<ProofsView>,
    /// Risk grading.
    pub risk: Option<AgentRiskView>,
    /// Provisioning orders.
    pub orders: Vec<OrderView>,
    /// Notes.
    pub notes: Vec<NoteView>,
    /// Every transition.
    pub timeline: Vec<AgentTimelineEntry>,
    /// The subscriber's complaints, oldest first, with their answers.
    pub complaints: Vec<crate::complaints::ComplaintView>,
    /// The evidence files, oldest first (metadata only).
    pub evidence: Vec<EvidenceView>,
    /// The actions this agent may take now.
    pub allowed_actions: Vec<String>,
}

impl From<wf::QueueItem> for QueueItem {
    fn from(i: wf::QueueItem) -> Self {
        Self {
            case_id: i.case_id,
            state: i.state.as_str().into(),
            version: i.version,
            sla_due_at: i.sla_due_at,
            breached: i.breached,
            claimed_by: i.claimed_by,
            claimed_until: i.claimed_until,
            msisdn: i.msisdn,
            tier: i.tier,
            complaint: i.complaint,
            expedited: i.expedited,
            priority: i.priority.as_str().into(),
        }
    }
}

impl From<wf::Note> for NoteView {
    fn from(n: wf::Note) -> Self {
        Self {
            id: n.id,
            author: n.author,
            body: n.body,
            at: n.at,
        }
    }
}

impl AgentCaseView {
    /// The shared view as the API shows it, with the subscriber's complaints.
    pub fn render(v: wf::CaseView, complaints: Vec<crate::complaints::ComplaintView>) -> Self {
        Self {
            case_id: v.case_id,
            state: v.state.as_str().into(),
            version: v.version,
            department: v.state.department().map(|d| d.as_str().into()),
            msisdn: v.msisdn,
            channel: v.channel.as_str().into(),
            locale: v.locale.as_str().into(),
            created_at: v.created_at,
            sla_due_at: v.sla_due_at,
            claimed_by: v.claimed_by,
            claimed_until: v.claimed_until,
            appealed: v.appealed,
            rejected_by: v.rejected_by,
            proofs: v.proofs.map(|p| ProofsView {
                full_name: p.full_name,
                id_number: p.id_number,
                otp_sends: p.otp_sends,
                failed_attempts: p.failed_attempts,
                verified_method: p.verified_method,
                verified_at: p.verified_at,
                name_id_match: p.name_id_match.as_str().into(),
                ladder: LadderView {
                    tier: p.ladder_tier.map(|t| t.as_str().to_owned()),
                    given: p.ladder_given.iter().map(|k| (*k).to_owned()).collect(),
                    needed: p
                        .ladder_needed
                        .iter()
                        .map(|r| r.iter().map(|k| (*k).to_owned()).collect())
                        .collect(),
                },
                tried: p
                    .tried
                    .into_iter()
                    .map(|t| ProofTriedView {
                        method: t.method,
                        outcome: t.outcome,
                        at: t.at,
                    })
                    .collect(),
            }),
            risk: v.risk.map(|a| AgentRiskView {
                tier: a.tier.as_str().into(),
                reason_codes: a.reason_codes,
                needs: a.needs,
                signals: a.signals,
                assessed_at: a.assessed_at,
            }),
            orders: v
                .orders
                .into_iter()
                .map(|o| OrderView {
                    id: o.id,
                    restoration: o.restoration.as_str().into(),
                    state: o.state,
                    failures: o.failures,
                    created_at: o.created_at,
                })
                .collect(),
            notes: v.notes.into_iter().map(NoteView::from).collect(),
            timeline: v
                .timeline
                .into_iter()
                .map(|e| AgentTimelineEntry {
                    at: e.at,
                    from: e.from_state.map(|s| s.as_str().into()),
                    to: e.to_state.as_str().into(),
                    event: e.event.as_str().into(),
                    actor_role: e.actor_role.as_str().into(),
                    actor_id: e.actor_id,
                    reason: e.reason,
                })
                .collect(),
            complaints,
            evidence: v
                .evidence
                .into_iter()
                .map(|e| EvidenceView {
                    evidence_id: e.id,
                    media_type: e.media_type,
                    size_bytes: e.size_bytes,
                    sha256: hex(&e.sha256),
                    at: e.created_at,
                })
                .collect(),
            allowed_actions: v.allowed_actions.into_iter().map(str::to_owned).collect(),
        }
    }
}

/// The view of `case` after a change, with its complaints (no audit: the change was audited).
async fn view_after(
    state: &AppState,
    session: &AgentSession,
    case: &CaseRow,
) -> Result<AgentCaseView, ApiError> {
    let view = wf::case_view(&state.pool, &state.sla, &session.as_agent(), case).await?;
    let complaints = crate::complaints::for_case(state, case.id).await?;
    Ok(AgentCaseView::render(view, complaints))
}

/// A department's queue: cases with an unanswered complaint first, then earliest SLA due first.
#[utoipa::path(
    get, path = "/v1/agent/queue", tag = "agent",
    params(QueueQuery),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The queue", body = QueueResponse),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this agent's department", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Unknown department", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn queue(
    State(state): State<AppState>,
    session: AgentSession,
    query: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<QueueResponse>, ApiError> {
    let Query(query) = query.map_err(|_| invalid("department", "department is required"))?;
    let department = department(&query.department)?;
    let cases = wf::queue(
        &state.pool,
        &state.sla,
        &session.as_agent(),
        department,
        Utc::now(),
    )
    .await?;
    Ok(Json(QueueResponse {
        cases: cases.into_iter().map(QueueItem::from).collect(),
    }))
}

/// The shared view of a case: timeline, proofs, risk, orders, notes and the actions this agent may take.
#[utoipa::path(
    get, path = "/v1/agent/cases/{case_id}", tag = "agent", operation_id = "agent_get_case",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The case", body = AgentCaseView),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins do not read cases", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn get_case(
    State(state): State<AppState>,
    session: AgentSession,
    Path(case_id): Path<String>,
) -> Result<Json<AgentCaseView>, ApiError> {
    let view = wf::view_case(
        &state.pool,
        &state.sla,
        &session.as_agent(),
        self::case_id(&case_id)?,
    )
    .await?;
    let complaints = crate::complaints::for_case(&state, view.case_id).await?;
    Ok(Json(AgentCaseView::render(view, complaints)))
}

/// An agent's decision on a case.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// verify_identity, request_info, approve, approve_partly, reject, retry_provisioning, resolve_manually, close, or cancel (supervisors: withdraw the request on the subscriber's behalf).
    pub action: String,
    /// Why (shown to the subscriber for request_info, reject and cancel). Required for request_info; 5 to 500 characters for cancel.
    #[serde(default)]
    pub reason: Option<String>,
    /// For reject: insufficient_explanation, evidence_not_verifiable, identity_not_confirmed or fraud_confirmed.
    #[serde(default)]
    pub reason_code: Option<String>,
    /// For verify_identity (required there, refused elsewhere): how identity was checked —
    /// original_id_in_person, callback_to_contact_on_file, video_call_face_match or documents_reviewed.
    #[serde(default)]
    pub identity_check: Option<String>,
    /// The version the agent saw.
    pub expected_version: i32,
}

impl ActionRequest {
    /// The typed decision (an unknown action is invalid).
    pub fn decision(&self) -> Result<Decision, ApiError> {
        let event = CaseEvent::from_agent_action(&self.action)
            .ok_or_else(|| invalid("action", "unknown action"))?;
        let identity_check = match self.identity_check.as_deref() {
            None => None,
            Some(_) if event != CaseEvent::IdentityVerified => {
                return Err(invalid(
                    "identity_check",
                    "identity_check goes only with verify_identity",
                ));
            }
            Some(code) => Some(IdentityCheck::parse(code).ok_or_else(|| {
                invalid(
                    "identity_check",
                    &format!(
                        "identity_check must be one of: {}",
                        IdentityCheck::ALL.map(IdentityCheck::as_str).join(", ")
                    ),
                )
            })?),
        };
        Ok(Decision {
            event,
            reason: self.reason.clone(),
            rejection: self.reason_code.as_deref().and_then(RejectionCode::parse),
            identity_check,
            expected_version: self.expected_version,
        })
    }
}

/// Optional version for a claim.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Claim only if the case is still at this version.
    #[serde(default)]
    pub expected_version: Option<i32>,
}

/// A claim.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimResponse {
    /// Case id.
    pub case_id: Uuid,
    /// The agent holding it.
    pub claimed_by: Uuid,
    /// Until when (renewed by every action).
    pub claimed_until: DateTime<Utc>,
}

/// A note to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// 1 to 4000 characters.
    pub body: String,
}

/// Why personal data is unmasked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnmaskRequest {
    /// 5 to 500 characters; recorded in the audit log.
    pub reason: String,
}

/// Personal data in clear.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnmaskedView {
    /// The number.
    pub msisdn: String,
    /// Full name.
    pub full_name: String,
    /// Resident ID number.
    pub id_number: String,
}

/// One reason code's feedback under one version of the risk rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct FalsePositiveLine {
    /// The version of the risk rules the cases were flagged under (see `GET /v1/agent/risk-rules`).
    pub rule_version: i32,
    /// Reason code.
    pub reason_code: String,
    /// Cases it flagged.
    pub flagged: i64,
    /// Of those, approved after review (false positives).
    pub approved: i64,
    /// approved ÷ flagged.
    pub false_positive_rate: f64,
}

/// The false-positive report.
#[derive(Debug, Serialize, ToSchema)]
pub struct FalsePositiveReport {
    /// Per rule version and reason code, by version then code.
    pub reasons: Vec<FalsePositiveLine>,
}

/// Decides on a case. The role check comes first (403), then the claim (409 while
/// another agent holds the case), then the version (409 when stale).
#[utoipa::path(
    post, path = "/v1/agent/cases/{case_id}/actions", tag = "agent",
    params(("case_id" = Uuid, Path, description = "Case id")),
    request_body = ActionRequest,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Done; the case as it now stands", body = AgentCaseView),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The agent's role may not act in this state, the analyst who rejected tries to decide the appeal, or a non-supervisor tries to verify identity on a case whose name and ID did not match the carrier's record (`supervisor_required_name_id_mismatch`)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Stale expected_version, action illegal in this state, or another agent holds the case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn act(
    State(state): State<AppState>,
    session: AgentSession,
    Path(case_id): Path<String>,
    body: Bytes,
) -> Result<Json<AgentCaseView>, ApiError> {
    let case_id = self::case_id(&case_id)?;
    let (request, _): (ActionRequest, _) = parse_json(&body)?;
    let decision = request.decision()?;
    let done = wf::decide(&state.pool, &session.as_agent(), case_id, &decision).await?;
    Ok(Json(view_after(&state, &session, &done).await?))
}

/// Claims a case (one agent at a time, with a timeout).
#[utoipa::path(
    post, path = "/v1/agent/cases/{case_id}/claim", tag = "agent",
    params(("case_id" = Uuid, Path, description = "Case id")),
    request_body(content = Option<ClaimRequest>),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Claimed (or renewed)", body = ClaimResponse),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The agent's role may not work cases in this state", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Another agent holds the case, or the version is stale", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn claim(
    State(state): State<AppState>,
    session: AgentSession,
    Path(case_id): Path<String>,
    body: Bytes,
) -> Result<Json<ClaimResponse>, ApiError> {
    let case_id = self::case_id(&case_id)?;
    let request: ClaimRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ClaimRequest::default()
    } else {
        parse_json(&body)?.0
    };
    let claim = wf::claim(
        &state.pool,
        &session.as_agent(),
        case_id,
        request.expected_version,
    )
    .await?;
    Ok(Json(ClaimResponse {
        case_id: claim.case_id,
        claimed_by: claim.claimed_by,
        claimed_until: claim.claimed_until,
    }))
}

/// Releases the agent's claim.
#[utoipa::path(
    post, path = "/v1/agent/cases/{case_id}/release", tag = "agent",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("agent_token" = [])),
    responses(
        (status = 204, description = "Released"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The agent's role may not work cases in this state", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The agent does not hold the case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn release(
    State(state): State<AppState>,
    session: AgentSession,
    Path(case_id): Path<String>,
) -> Result<Response, ApiError> {
    wf::release(&state.pool, &session.as_agent(), self::case_id(&case_id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Adds an internal note (never shown to the subscriber).
#[utoipa::path(
    post, path = "/v1/agent/cases/{case_id}/notes", tag = "agent",
    params(("case_id" = Uuid, Path, description = "Case id")),
    request_body = NoteRequest,
    security(("agent_token" = [])),
    responses(
        (status = 201, description = "Added", body = NoteView),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins do not work cases", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Empty or too long", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn add_note(
    State(state): State<AppState>,
    session: AgentSession,
    Path(case_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let case_id = self::case_id(&case_id)?;
    let (request, _): (NoteRequest, _) = parse_json(&body)?;
    let note = wf::add_note(&state.pool, &session.as_agent(), case_id, &request.body).await?;
    Ok((StatusCode::CREATED, Json(NoteView::from(note))).into_response())
}

/// Shows the subscriber's personal data unmasked; a separate permission that records who and why.
#[utoipa::path(
    post, path = "/v1/agent/cases/{case_id}/unmask", tag = "agent",
    params(("case_id" = Uuid, Path, description = "Case id")),
    request_body = UnmaskRequest,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Unmasked (and audited)", body = UnmaskedView),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Only security analysts and supervisors may unmask", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "personal-data-deleted: retention deleted the case's personal data (the detail says when); nothing to show", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "No reason given", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn unmask(
    State(state): State<AppState>,
    session: AgentSession,
    Path(case_id): Path<String>,
    body: Bytes,
) -> Result<Json<UnmaskedView>, ApiError> {
    let case_id = self::case_id(&case_id)?;
    let (request, _): (UnmaskRequest, _) = parse_json(&body)?;
    let clear = wf::unmask(
        &state.pool,
        &state.keys,
        &session.as_agent(),
        case_id,
        &request.reason,
    )
    .await?;
    Ok(Json(UnmaskedView {
        msisdn: clear.msisdn,
        full_name: clear.full_name,
        id_number: clear.id_number,
    }))
}

/// Per rule version and reason code, how many flagged cases were later approved: feedback for tuning the risk rules. A case counts once per code, under the version of the latest assessment the code flagged it in.
#[utoipa::path(
    get, path = "/v1/agent/reports/false-positives", tag = "agent",
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The report", body = FalsePositiveReport),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn false_positives(
    State(state): State<AppState>,
    session: AgentSession,
) -> Result<Json<FalsePositiveReport>, ApiError> {
    let lines = wf::false_positive_report(&state.pool, &session.as_agent()).await?;
    Ok(Json(FalsePositiveReport {
        reasons: lines
            .into_iter()
            .map(|r| FalsePositiveLine {
                rule_version: r.rule_version,
                reason_code: r.reason_code,
                flagged: r.flagged,
                approved: r.approved,
                false_positive_rate: r.false_positive_rate,
            })
            .collect(),
    }))
}

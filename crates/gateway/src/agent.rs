//! The agent API (`/v1/agent/…`): queues, the shared case view, claims, decisions,
//! notes, unmasking and reports. Every decision is checked against the domain's
//! transition table (deny by default), claims the case for the acting agent, uses
//! optimistic concurrency (`expected_version`), and is audited in the same
//! transaction as the transition.

use std::time::Duration;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use case_domain::{
    CaseEvent, CaseState, Department, Msisdn, Role,
    decision::{RejectionCode, acting_role, agent_may_act},
    events_for,
};
use case_store::{
    CaseRow, StoreError, TransitionRequest,
    agent_work::{self, ClaimRefusal},
    audit::{self, AuditEntry},
    risk as risk_store,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{AppState, agent_auth::AgentSession, error::ApiError, extract::parse_json};

/// How long an agent's claim on a case lasts.
pub const CLAIM_TTL: Duration = Duration::from_secs(30 * 60);

/// The human states each department's queue holds.
pub fn queue_states(department: Department) -> &'static [CaseState] {
    match department {
        Department::CustomerService => &[CaseState::IdentityReview],
        Department::Security => &[CaseState::SecurityReview, CaseState::PartiallyReactivated],
        Department::Technical => &[CaseState::ProvisioningFailed],
        Department::Subscriber => &[],
    }
}

/// The agents who may see a department's queue.
pub fn queue_roles(department: Department) -> &'static [Role] {
    match department {
        Department::CustomerService => &[Role::Cs, Role::Supervisor],
        Department::Security => &[Role::Security, Role::Supervisor],
        Department::Technical => &[Role::Technical, Role::Supervisor],
        Department::Subscriber => &[Role::Supervisor],
    }
}

/// Agents who work cases (everyone but admins) may read the shared case view.
pub const CASE_READERS: &[Role] = &[Role::Cs, Role::Security, Role::Technical, Role::Supervisor];
/// Agents who may see personal data unmasked (always with a recorded reason).
pub const UNMASKERS: &[Role] = &[Role::Security, Role::Supervisor];

fn mask(msisdn: &str) -> String {
    Msisdn::parse(msisdn)
        .map(|m| m.masked())
        .unwrap_or_else(|_| "***".into())
}

fn holder(case: &CaseRow) -> Option<String> {
    let live = case.lease_expires_at.is_some_and(|t| t > Utc::now());
    case.lease_owner
        .as_deref()
        .filter(|o| live && o.starts_with("agent:"))
        .map(|o| o.trim_start_matches("agent:").to_owned())
}

/// Which queue.
#[derive(Debug, Deserialize, IntoParams)]
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
    /// complaint or normal.
    pub priority: String,
}

/// A department queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueResponse {
    /// Cases with an unanswered complaint first, then earliest SLA due first.
    pub cases: Vec<QueueItem>,
}

fn parse_department(name: &str) -> Result<Department, ApiError> {
    match name {
        "cs" | "customer_service" => Ok(Department::CustomerService),
        "security" => Ok(Department::Security),
        "technical" => Ok(Department::Technical),
        _ => Err(ApiError::Invalid(vec![crate::error::FieldError {
            field: "department".into(),
            message: "department must be cs, security or technical".into(),
        }])),
    }
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
    let Query(query) = query.map_err(|_| {
        ApiError::Invalid(vec![crate::error::FieldError {
            field: "department".into(),
            message: "department is required".into(),
        }])
    })?;
    let department = parse_department(&query.department)?;
    session.require_any(queue_roles(department))?;
    let rows = agent_work::queue(&state.pool, queue_states(department), 500).await?;
    let now = Utc::now();
    let mut cases: Vec<QueueItem> = rows
        .into_iter()
        .map(|r| {
            let due = case_workflows::eta::sla_due_at(&state.sla, r.state, r.state_entered_at);
            let live = r.lease_expires_at.is_some_and(|t| t > now);
            QueueItem {
                case_id: r.id,
                state: r.state.as_str().into(),
                version: r.version,
                sla_due_at: due,
                breached: due.is_some_and(|d| d < now),
                claimed_by: r
                    .lease_owner
                    .filter(|o| live && o.starts_with("agent:"))
                    .map(|o| o.trim_start_matches("agent:").to_owned()),
                claimed_until: r.lease_expires_at.filter(|_| live),
                msisdn: mask(&r.msisdn),
                tier: r.tier,
                priority: case_domain::complaint::Priority::of(i64::from(r.complaint))
                    .as_str()
                    .into(),
                complaint: r.complaint,
            }
        })
        .collect();
    // Cases with an unanswered complaint first, then by SLA due.
    cases.sort_by_key(|c| (!c.complaint, c.sla_due_at));
    Ok(Json(QueueResponse { cases }))
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
    pub signals: serde_json::Value,
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
    /// The actions this agent may take now.
    pub allowed_actions: Vec<String>,
}

/// The actions `session` may take on a case in `state` (the same table the server enforces).
pub fn allowed_actions(session: &AgentSession, state: CaseState) -> Vec<String> {
    let mut actions: Vec<String> = Vec::new();
    for role in session.roles() {
        for event in events_for(state, *role) {
            if let Some(name) = event.agent_action()
                && !actions.iter().any(|a| a == name)
            {
                actions.push(name.to_owned());
            }
        }
    }
    actions
}

/// Builds the agent view of a case.
pub async fn case_view(
    state: &AppState,
    session: &AgentSession,
    case: &CaseRow,
) -> Result<AgentCaseView, ApiError> {
    let pool = &state.pool;
    let identity = case_store::identity::load_identity(pool, case.id).await?;
    let assessment = risk_store::latest_assessment(pool, case.id).await?;
    let orders = risk_store::orders_for_case(pool, case.id).await?;
    let notes = agent_work::notes(pool, case.id).await?;
    let timeline = case_store::timeline(pool, case.id).await?;
    let complaints = crate::complaints::for_case(state, case.id).await?;
    let appealed = timeline.iter().any(|e| e.event == CaseEvent::Appealed);
    let rejected_by = timeline
        .iter()
        .rev()
        .find(|e| e.event == CaseEvent::Rejected)
        .map(|e| e.actor_id.clone());
    let holder = holder(case);
    Ok(AgentCaseView {
        case_id: case.id,
        state: case.state.as_str().into(),
        version: case.version,
        department: case.state.department().map(|d| d.as_str().into()),
        msisdn: mask(&case.msisdn),
        channel: case.channel.clone(),
        locale: case.locale.clone(),
        created_at: case.created_at,
        sla_due_at: case_workflows::eta::sla_due_at(&state.sla, case.state, case.state_entered_at),
        claimed_until: holder.as_ref().and(case.lease_expires_at),
        claimed_by: holder,
        appealed,
        rejected_by,
        proofs: identity.map(|i| ProofsView {
            full_name: i.full_name_masked,
            id_number: format!("**************{}", i.id_number_last4),
            otp_sends: i.otp_sends,
            failed_attempts: i.failed_attempts,
            verified_method: i.verified_method,
            verified_at: i.verified_at,
        }),
        risk: assessment.map(|a| AgentRiskView {
            tier: a.tier.as_str().into(),
            reason_codes: a.reason_codes,
            needs: a.needs,
            signals: a.signals,
            assessed_at: a.assessed_at,
        }),
        orders: orders
            .into_iter()
            .map(|o| OrderView {
                id: o.id,
                restoration: o.restoration,
                state: o.state,
                failures: o.failures,
                created_at: o.created_at,
            })
            .collect(),
        notes: notes
            .into_iter()
            .map(|n| NoteView {
                id: n.id,
                author: n.username,
                body: n.body,
                at: n.created_at,
            })
            .collect(),
        timeline: timeline
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
        allowed_actions: allowed_actions(session, case.state),
    })
}

async fn load(state: &AppState, case_id: &str) -> Result<CaseRow, ApiError> {
    let id: Uuid = case_id.parse().map_err(|_| ApiError::NotFound)?;
    case_store::load_case(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound)
}

async fn audit_read(
    state: &AppState,
    session: &AgentSession,
    case_id: Uuid,
    action: &str,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let mut conn = state.pool.acquire().await.map_err(anyhow::Error::from)?;
    audit::record(
        &mut conn,
        &AuditEntry {
            actor: &session.any_actor(),
            action,
            case_id: Some(case_id),
            detail: serde_json::json!({}),
            reason,
        },
    )
    .await?;
    Ok(())
}

/// The shared view of a case: timeline, proofs, risk, orders, notes and the actions this agent may take.
#[utoipa::path(
    get, path = "/v1/agent/cases/{case_id}", tag = "agent",
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
    session.require_any(CASE_READERS)?;
    let case = load(&state, &case_id).await?;
    audit_read(&state, &session, case.id, "case.view", None).await?;
    Ok(Json(case_view(&state, &session, &case).await?))
}

/// An agent's decision on a case.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// verify_identity, request_info, approve, approve_partly, reject, retry_provisioning, resolve_manually or close.
    pub action: String,
    /// Why (shown to the subscriber for request_info and reject). Required for request_info.
    #[serde(default)]
    pub reason: Option<String>,
    /// For reject: insufficient_explanation, evidence_not_verifiable, identity_not_confirmed or fraud_confirmed.
    #[serde(default)]
    pub reason_code: Option<String>,
    /// The version the agent saw.
    pub expected_version: i32,
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Invalid(vec![crate::error::FieldError {
        field: field.into(),
        message: message.into(),
    }])
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
        (status = 403, description = "The agent's role may not act in this state, or the analyst who rejected tries to decide the appeal", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
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
    let case = load(&state, &case_id).await?;
    let (request, _): (ActionRequest, _) = parse_json(&body)?;
    let event = CaseEvent::from_agent_action(&request.action)
        .ok_or_else(|| invalid("action", "unknown action"))?;
    let done = decide_case(&state, &session, &case, event, &request).await?;
    Ok(Json(case_view(&state, &session, &done).await?))
}

/// Applies an agent decision (shared by the API and the console).
pub async fn decide_case(
    state: &AppState,
    session: &AgentSession,
    case: &CaseRow,
    event: CaseEvent,
    request: &ActionRequest,
) -> Result<CaseRow, ApiError> {
    // 1. Role (deny by default), judged on the state the agent saw (the state at
    // their expected_version), so a stale decision answers 409, not 403.
    let seen_state = if request.expected_version == case.version {
        case.state
    } else {
        agent_work::state_at_version(&state.pool, case.id, request.expected_version)
            .await?
            .unwrap_or(case.state)
    };
    let role = acting_role(session.roles(), seen_state, event).map_err(|e| match e {
        case_domain::TransitionError::Forbidden { from, .. } => {
            ApiError::Forbidden(format!("Your role may not act on a case that is {from}."))
        }
        illegal => ApiError::Conflict(format!("Not possible now: {illegal}.")),
    })?;
    // An appeal is decided by someone other than the analyst who rejected.
    let decisions = [
        CaseEvent::Approved,
        CaseEvent::PartlyApproved,
        CaseEvent::Rejected,
        CaseEvent::InfoRequested,
    ];
    if case.state == CaseState::SecurityReview
        && decisions.contains(&event)
        && agent_work::was_appealed(&state.pool, case.id).await?
    {
        let rejected_by = agent_work::last_rejected_by(&state.pool, case.id).await?;
        if rejected_by.as_deref() == Some(session.id().to_string().as_str()) {
            return Err(ApiError::Forbidden("An appeal must be decided by a different analyst than the one who rejected the case.".into()));
        }
    }
    // 2. Body rules.
    let reason = request
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > 2000) {
        return Err(invalid("reason", "reason must be at most 2000 characters"));
    }
    let rejection = match event {
        CaseEvent::Rejected => Some(
            request
                .reason_code
                .as_deref()
                .and_then(RejectionCode::parse)
                .ok_or_else(|| invalid("reason_code", "reject needs a reason_code: insufficient_explanation, evidence_not_verifiable, identity_not_confirmed or fraud_confirmed"))?,
        ),
        _ => None,
    };
    if event == CaseEvent::InfoRequested && reason.is_none() {
        return Err(invalid(
            "reason",
            "request_info needs a reason: what the subscriber must provide",
        ));
    }
    // 3. Claim for this agent (409 while another holds it), at the expected version.
    let fence = match agent_work::claim_for_agent(
        &state.pool,
        case.id,
        session.id(),
        Some(request.expected_version),
        CLAIM_TTL,
    )
    .await?
    {
        Ok((fence, _)) => fence,
        Err(ClaimRefusal::NotFound) => return Err(ApiError::NotFound),
        Err(ClaimRefusal::Stale { actual }) => {
            return Err(ApiError::Conflict(format!(
                "The case is at version {actual}, not {}; reload it.",
                request.expected_version
            )));
        }
        Err(ClaimRefusal::HeldByOther { until }) => {
            return Err(ApiError::Conflict(format!(
                "Another agent holds this case until {until}."
            )));
        }
    };
    // 4. The transition, its side effects and the audit row, in one transaction.
    let actor = session.actor(role);
    let customer_reason = rejection
        .map(|c| c.text(&case.locale).to_owned())
        .or(reason.map(str::to_owned));
    let transition = TransitionRequest {
        case_id: case.id,
        expected_version: request.expected_version,
        event,
        actor: &actor,
        reason: customer_reason.as_deref(),
        fence: Some(&fence),
        outbox: vec![],
    };
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    let moved = match event {
        CaseEvent::Approved | CaseEvent::PartlyApproved | CaseEvent::ProvisioningRetried => {
            let restoration = match event {
                CaseEvent::PartlyApproved => "inbound_only",
                CaseEvent::ProvisioningRetried => {
                    let orders = risk_store::orders_for_case(&mut *tx, case.id).await?;
                    if orders
                        .last()
                        .is_some_and(|o| o.restoration == "inbound_only")
                    {
                        "inbound_only"
                    } else {
                        "full"
                    }
                }
                _ => "full",
            };
            risk_store::transition_into_provisioning(&mut tx, transition, restoration).await
        }
        _ => case_store::transition_in(&mut tx, transition).await,
    };
    let moved = match moved {
        Ok(done) => done,
        Err(StoreError::StaleVersion { actual, .. }) => {
            return Err(ApiError::Conflict(format!(
                "The case is at version {actual}, not {}; reload it.",
                request.expected_version
            )));
        }
        Err(StoreError::LeaseLost { .. }) => {
            return Err(ApiError::Conflict(
                "Another agent took this case meanwhile.".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if matches!(event, CaseEvent::Approved | CaseEvent::PartlyApproved)
        && case.state == CaseState::SecurityReview
        && let Some(assessment) = risk_store::latest_assessment(&mut *tx, case.id).await?
    {
        agent_work::label_false_positives(
            &mut *tx,
            case.id,
            &assessment.reason_codes,
            session.id(),
        )
        .await?;
    }
    if event == CaseEvent::IdentityVerified {
        case_store::identity::mark_identity_verified(&mut *tx, case.id, "agent").await?;
    }
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &actor,
            action: "case.decision",
            case_id: Some(case.id),
            detail: serde_json::json!({
                "action": request.action,
                "from": case.state,
                "to": moved.case.state,
                "version": moved.case.version,
                "reason_code": rejection.map(|c| c.as_str()),
            }),
            reason,
        },
    )
    .await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    tracing::info!(case_id = %case.id, action = request.action, role = %role, "agent decision");
    Ok(moved.case)
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
    let case = load(&state, &case_id).await?;
    let request: ClaimRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ClaimRequest::default()
    } else {
        parse_json(&body)?.0
    };
    if !agent_may_act(session.roles(), case.state) {
        return Err(ApiError::Forbidden(format!(
            "Your role may not work cases that are {}.",
            case.state
        )));
    }
    if case.state.is_automated() {
        // A service worker holds such cases; an agent's claim would stall it.
        return Err(ApiError::Conflict(format!(
            "Cases that are {} are worked automatically and cannot be claimed.",
            case.state
        )));
    }
    match agent_work::claim_for_agent(
        &state.pool,
        case.id,
        session.id(),
        request.expected_version,
        CLAIM_TTL,
    )
    .await?
    {
        Ok((_, until)) => Ok(Json(ClaimResponse {
            case_id: case.id,
            claimed_by: session.id(),
            claimed_until: until,
        })),
        Err(ClaimRefusal::NotFound) => Err(ApiError::NotFound),
        Err(ClaimRefusal::Stale { actual }) => Err(ApiError::Conflict(format!(
            "The case is at version {actual}; reload it."
        ))),
        Err(ClaimRefusal::HeldByOther { until }) => Err(ApiError::Conflict(format!(
            "Another agent holds this case until {until}."
        ))),
    }
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
    let case = load(&state, &case_id).await?;
    if !agent_may_act(session.roles(), case.state) {
        return Err(ApiError::Forbidden(format!(
            "Your role may not work cases that are {}.",
            case.state
        )));
    }
    if agent_work::release_for_agent(&state.pool, case.id, session.id()).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::Conflict("You do not hold this case.".into()))
    }
}

/// A note to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// 1 to 4000 characters.
    pub body: String,
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
    session.require_any(CASE_READERS)?;
    let case = load(&state, &case_id).await?;
    let (request, _): (NoteRequest, _) = parse_json(&body)?;
    let text = request.body.trim();
    if text.is_empty() || text.chars().count() > 4000 {
        return Err(invalid("body", "a note has 1 to 4000 characters"));
    }
    let id = agent_work::add_note(&state.pool, case.id, session.id(), text).await?;
    let view = NoteView {
        id,
        author: session.agent.username.clone(),
        body: text.to_owned(),
        at: Utc::now(),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
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
        (status = 422, description = "No reason given", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn unmask(
    State(state): State<AppState>,
    session: AgentSession,
    Path(case_id): Path<String>,
    body: Bytes,
) -> Result<Json<UnmaskedView>, ApiError> {
    session.require_any(UNMASKERS)?;
    let case = load(&state, &case_id).await?;
    let (request, _): (UnmaskRequest, _) = parse_json(&body)?;
    let reason = request.reason.trim();
    if reason.chars().count() < 5 || reason.chars().count() > 500 {
        return Err(invalid("reason", "say why, in 5 to 500 characters"));
    }
    let identity = case_store::identity::load_identity(&state.pool, case.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let full_name = state
        .keys
        .decrypt(&identity.full_name_enc, &case.id)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let id_number = state
        .keys
        .decrypt(&identity.id_number_enc, &case.id)
        .map_err(|e| ApiError::Internal(e.into()))?;
    audit_read(&state, &session, case.id, "case.unmask", Some(reason)).await?;
    Ok(Json(UnmaskedView {
        msisdn: case.msisdn.clone(),
        full_name,
        id_number,
    }))
}

/// One reason code's feedback.
#[derive(Debug, Serialize, ToSchema)]
pub struct FalsePositiveLine {
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
    /// Per reason code.
    pub reasons: Vec<FalsePositiveLine>,
}

/// Per reason code, how many flagged cases were later approved: feedback for tuning the carrier's rules.
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
    session.require_any(&[Role::Supervisor])?;
    let rows = agent_work::false_positive_report(&state.pool).await?;
    Ok(Json(FalsePositiveReport {
        reasons: rows
            .into_iter()
            .map(|r| FalsePositiveLine {
                false_positive_rate: if r.flagged > 0 {
                    r.approved as f64 / r.flagged as f64
                } else {
                    0.0
                },
                reason_code: r.reason_code,
                flagged: r.flagged,
                approved: r.approved,
            })
            .collect(),
    }))
}

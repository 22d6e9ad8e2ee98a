//! The store-visit remedy at the agent API: a store agent (or supervisor) looks a
//! number up among the cases waiting for a store visit, and records the in-person
//! check (proof `in_person_id`), which moves the case on to risk assessment.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
};
use case_workflows::store_visit::{self as wf, StoreVisitRequest};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    AppState,
    agent::{AgentCaseView, case_id},
    agent_auth::AgentSession,
    error::{ApiError, FieldError},
    extract::parse_json,
};

/// The number to look up.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupQuery {
    /// The suspended number, E.164 (`+86` and 11 digits).
    pub msisdn: String,
}

/// A case waiting for a store visit.
#[derive(Debug, Serialize, ToSchema)]
pub struct WaitingCase {
    /// Case id.
    pub case_id: Uuid,
    /// Always `awaiting_store_visit`.
    pub state: String,
    /// Version (send back as `expected_version`).
    pub version: i32,
    /// Opened at.
    pub created_at: DateTime<Utc>,
    /// Waiting for the visit since.
    pub waiting_since: DateTime<Utc>,
}

/// The number's cases waiting for a store visit.
#[derive(Debug, Serialize, ToSchema)]
pub struct LookupResponse {
    /// The number, masked.
    pub msisdn: String,
    /// Newest first (usually one).
    pub cases: Vec<WaitingCase>,
}

/// Looks a number up among the cases waiting for a store visit (audited, `store_visit.lookup`).
#[utoipa::path(
    get, path = "/v1/agent/store-visits", tag = "agent", operation_id = "store_visit_lookup",
    params(LookupQuery),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The number's cases waiting for a store visit", body = LookupResponse),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Store agents and supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not a mainland mobile number", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn lookup(
    State(state): State<AppState>,
    session: AgentSession,
    query: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LookupResponse>, ApiError> {
    let Query(query) = query
        .map_err(|_| ApiError::Invalid(vec![FieldError::new("msisdn", "msisdn is required")]))?;
    let cases = wf::lookup(&state.pool, &session.as_agent(), &query.msisdn).await?;
    let masked = case_domain::Msisdn::parse(query.msisdn.trim())
        .map(|m| m.masked())
        .unwrap_or_default();
    Ok(Json(LookupResponse {
        msisdn: masked,
        cases: cases
            .into_iter()
            .map(|c| WaitingCase {
                case_id: c.id,
                state: c.state.as_str().into(),
                version: c.version,
                created_at: c.created_at,
                waiting_since: c.state_entered_at,
            })
            .collect(),
    }))
}

/// The in-person check a store agent records.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreVisitBody {
    /// The case version the agent saw.
    pub expected_version: i32,
    /// Original documents seen: `resident_id_card`, `temporary_id_card`,
    /// `household_register`, `police_release_letter`, `other_official_document`; an
    /// ID card among them.
    pub documents_seen: Vec<String>,
    /// The ID number printed on the card (compared with the case's; stored masked only).
    pub id_number: String,
    /// The face was compared with the card's photo (must be true).
    pub face_compared: bool,
}

/// Records the in-person check of a case waiting for a store visit (proof
/// `in_person_id`): the case goes on to risk assessment (`store_visit_verified`).
#[utoipa::path(
    post, path = "/v1/agent/cases/{case_id}/store-visit", tag = "agent",
    params(("case_id" = Uuid, Path, description = "Case id")),
    request_body = StoreVisitBody,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Recorded; the case as it now stands", body = AgentCaseView),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Store agents and supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Stale expected_version, the case does not wait for a store visit (`not_awaiting_store_visit`), or the ID card is not the case's (`id_number_mismatch`)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body (unknown document, no ID card, face not compared, malformed ID number)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn record(
    State(state): State<AppState>,
    session: AgentSession,
    Path(raw_case_id): Path<String>,
    body: Bytes,
) -> Result<Json<AgentCaseView>, ApiError> {
    let case_id = case_id(&raw_case_id)?;
    let (body, _): (StoreVisitBody, _) = parse_json(&body)?;
    let view = wf::record(
        &state.pool,
        &state.sla,
        &state.keys,
        &session.as_agent(),
        case_id,
        StoreVisitRequest {
            expected_version: body.expected_version,
            documents_seen: body.documents_seen,
            id_number: body.id_number,
            face_compared: body.face_compared,
        },
    )
    .await?;
    let complaints = crate::complaints::for_case(&state, view.case_id).await?;
    Ok(Json(AgentCaseView::render(view, complaints)))
}

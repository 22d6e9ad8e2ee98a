//! Per-department progress in the status answer, and the subscriber's request for
//! expedited handling (`POST /v1/cases/{case_id}/expedite`).

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use case_domain::{Locale, route::Step};
use case_store::expedite::ExpediteRow;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    AppState,
    error::ApiError,
    extract::{CustomerCase, parse_json},
};

/// One department stage of the case's route.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DepartmentStep {
    /// The stage's state (e.g. `security_review`).
    pub state: String,
    /// The department working it: customer_service, security or technical.
    pub department: Option<String>,
    /// What it checks, in the case's language.
    pub checks: String,
    /// done, current or ahead.
    pub status: String,
    /// Its typical duration in seconds: the median of recent cases when at least
    /// five left the stage in the last 7 days, else the stage's SLA; null when
    /// neither says (the subscriber's own proof step without data).
    pub typical_seconds: Option<i64>,
    /// Where `typical_seconds` comes from: live or sla (null with it).
    pub typical_source: Option<String>,
}

impl DepartmentStep {
    /// The step as shown, in `locale`.
    pub fn new(step: &Step, locale: Locale) -> Self {
        Self {
            state: step.state.as_str().into(),
            department: step.department.map(|d| d.as_str().into()),
            checks: case_domain::route::stage_of(step.state)
                .map(|s| s.checks(locale).to_owned())
                .unwrap_or_default(),
            status: step.status.as_str().into(),
            typical_seconds: step.typical.map(|(d, _)| d.num_seconds()),
            typical_source: step.typical.map(|(_, s)| s.as_str().into()),
        }
    }
}

/// The subscriber's request for expedited handling.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExpediteView {
    /// Why, in the subscriber's words.
    pub reason: String,
    /// The state the case was in when asked.
    pub state: String,
    /// When.
    pub requested_at: DateTime<Utc>,
}

impl From<ExpediteRow> for ExpediteView {
    fn from(r: ExpediteRow) -> Self {
        Self {
            reason: r.reason,
            state: r.state.as_str().into(),
            requested_at: r.requested_at,
        }
    }
}

/// Asks for expedited handling.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpediteRequest {
    /// Why the case is urgent (1 to 500 characters), shown to the agents.
    #[schema(example = "I need the number for my bank's confirmation codes today.")]
    pub reason: String,
}

/// Asks for expedited handling of the case, once: the case rises in its department
/// queue (after cases with an unanswered complaint) and the agents see the reason.
#[utoipa::path(
    post, path = "/v1/cases/{case_id}/expedite", tag = "customer",
    params(("case_id" = uuid::Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    request_body = ExpediteRequest,
    responses(
        (status = 201, description = "Recorded", body = ExpediteView),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case, or a wrong token (the same answer)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already requested for this case (code already_expedited), or the case is finished (code case_finished)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Empty or too long reason, unknown field", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn expedite(
    State(state): State<AppState>,
    CustomerCase(case): CustomerCase,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (request, _): (ExpediteRequest, _) = parse_json(&body)?;
    let row = case_workflows::progress::expedite(&state.pool, &case, &request.reason).await?;
    Ok((StatusCode::CREATED, Json(ExpediteView::from(row))).into_response())
}

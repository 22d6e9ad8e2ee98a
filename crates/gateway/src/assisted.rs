//! Agent-assisted channels on the agent API: look a number up
//! (`POST /v1/agent/numbers/lookup`) and open a case on a caller's behalf
//! (`POST /v1/agent/cases`). Each handler parses its input, calls one use case of
//! `case_workflows::assisted` (roles, audit, the per-agent lookup limit, the token
//! SMS) and renders the answer. The number travels in the body, never in the URL,
//! so it is in no access log.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use case_domain::Role;
use case_workflows::{
    assisted::{self as wf, AssistedOpened, Lookup},
    customer::{Opening, RetryKey},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_runtime::Problem;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{AppState, agent_auth::AgentSession, error::ApiError, extract::parse_json};

/// Who may look numbers up.
pub const LOOKUP_ROLES: &[Role] = case_domain::assisted::NUMBER_LOOKUP_ROLES;
/// Who may open cases for subscribers.
pub const OPENERS: &[Role] = case_domain::assisted::ASSISTED_OPENERS;

/// The number to look up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// The number, E.164 (+861…).
    #[schema(example = "+8613800138000")]
    pub msisdn: String,
}

/// One case of the number.
#[derive(Debug, Serialize, ToSchema)]
pub struct NumberCaseView {
    /// Case id.
    pub case_id: Uuid,
    /// State.
    pub state: String,
    /// Version.
    pub version: i32,
    /// Where it was opened: web, app, hotline or store.
    pub channel: String,
    /// Whether the case is finished (reactivated, cancelled, expired or closed).
    pub terminal: bool,
    /// Whether identity was proven on it.
    pub identity_proven: bool,
    /// The agent who opened it, when an agent did.
    pub opened_by: Option<String>,
    /// Opened at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A number's cases.
#[derive(Debug, Serialize, ToSchema)]
pub struct LookupResponse {
    /// The number, masked.
    pub msisdn: String,
    /// Open cases and those changed in the last 90 days, newest first (at most 20).
    pub cases: Vec<NumberCaseView>,
}

/// The cases of one number, for the console and the JSON route.
pub(crate) fn lookup_view(
    msisdn: String,
    cases: Vec<case_store::assisted::NumberCase>,
) -> LookupResponse {
    LookupResponse {
        msisdn,
        cases: cases
            .into_iter()
            .map(|c| NumberCaseView {
                case_id: c.case_id,
                state: c.state.as_str().into(),
                version: c.version,
                channel: c.channel.as_str().into(),
                terminal: c.state.is_terminal(),
                identity_proven: c.identity_proven_at.is_some(),
                opened_by: c.opened_by,
                created_at: c.created_at,
                updated_at: c.updated_at,
            })
            .collect(),
    }
}

/// The 429 of a spent lookup budget.
pub(crate) fn lookups_spent(retry_at: DateTime<Utc>) -> Response {
    let seconds = (retry_at - Utc::now()).num_seconds().max(1);
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "lookup-limit",
        "Too many lookups",
        format!(
            "You have made {} number lookups in the last hour; the next one is possible in {seconds} s.",
            case_domain::assisted::MAX_LOOKUPS_PER_AGENT
        ),
    )
    .with("retry_after", seconds)
    .into_response_retrying(seconds.unsigned_abs())
}

/// Looks a number up: its open cases and those of the last 90 days, masked. Every
/// lookup is audited (`number.lookup`), and an agent may make 60 an hour.
#[utoipa::path(
    post, path = "/v1/agent/numbers/lookup", tag = "agent",
    security(("agent_token" = [])),
    request_body = LookupRequest,
    responses(
        (status = 200, description = "The number's cases", body = LookupResponse),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Customer service, store agents and supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not a mainland China mobile number", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "The agent's lookups for the hour are used up (`lookup-limit`); `Retry-After` says when the next is possible", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn lookup(
    State(state): State<AppState>,
    session: AgentSession,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (request, _): (LookupRequest, _) = parse_json(&body)?;
    match wf::lookup_number(
        &state.pool,
        &state.keys,
        &session.as_agent(),
        &request.msisdn,
    )
    .await?
    {
        Lookup::Found {
            msisdn_masked,
            cases,
        } => Ok(Json(lookup_view(msisdn_masked, cases)).into_response()),
        Lookup::Limited { retry_at } => Ok(lookups_spent(retry_at)),
    }
}

/// A case opened for a subscriber by an agent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssistedCaseRequest {
    /// The suspended number, E.164 (+861…).
    #[schema(example = "+8613800138000")]
    pub msisdn: String,
    /// The subscriber's full name as on the ID card.
    pub full_name: String,
    /// The subscriber's resident ID number.
    pub id_number: String,
    /// Where the subscriber asked: `hotline`.
    #[schema(example = "hotline")]
    pub channel: String,
    /// How the agent checked identity: `hotline_call` (the caller spoke with the
    /// agent; the case still needs a code or the service password from the subscriber).
    #[schema(example = "hotline_call")]
    pub identity_check: String,
    /// The case's language: zh-CN (default) or en.
    pub locale: Option<String>,
}

/// The case opened (the token went to the subscriber's contact on file, not here).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssistedCaseCreated {
    /// Case id.
    pub case_id: Uuid,
    /// State (`awaiting_identity`).
    pub state: String,
    /// Version.
    pub version: i32,
    /// The number, masked.
    pub msisdn: String,
    /// hotline.
    pub channel: String,
    /// How the agent checked identity.
    pub identity_check: String,
    /// Whether the subscriber must still prove identity with a code or the service password.
    pub proof_still_needed: bool,
    /// Where the case token went: `contact_on_file` (by SMS).
    pub token_sent_to: String,
}

impl From<AssistedOpened> for AssistedCaseCreated {
    fn from(o: AssistedOpened) -> Self {
        Self {
            case_id: o.case_id,
            state: o.state.as_str().into(),
            version: o.version,
            msisdn: o.msisdn_masked,
            channel: o.channel.as_str().into(),
            identity_check: o.identity_check,
            proof_still_needed: o.proof_still_needed,
            token_sent_to: o.token_sent_to,
        }
    }
}

/// Opens a case on a subscriber's behalf (hotline). The same checks and
/// Idempotency-Key handling as `POST /v1/cases`; the case token goes by SMS to the
/// number's contact on file (paid from the number's daily code budget) and is never
/// shown to the agent; the opening is audited (`case.assisted_open`).
#[utoipa::path(
    post, path = "/v1/agent/cases", tag = "agent",
    security(("agent_token" = [])),
    request_body = AssistedCaseRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry key, per agent: the same key and body replay the first answer; another body gets 422; while the first runs, 409.")),
    responses(
        (status = 201, description = "Case opened; the token went to the contact on file", body = AssistedCaseCreated),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The agent's role may not open cases on this channel", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The number's messages for today are used up (`number-budget-spent`), or the key's first request is in flight", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (number, name, ID number, channel, identity check), or the key was used with another body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn open(
    State(state): State<AppState>,
    session: AgentSession,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = crate::customer::idempotency_key(&headers)?;
    let (request, canonical): (AssistedCaseRequest, _) = parse_json(&body)?;
    let retry = key.as_deref().map(|key| RetryKey {
        key,
        fingerprint: data_protection::sha256(canonical.to_string().as_bytes()),
    });
    let opening = wf::open_for_subscriber(
        &state.pool,
        &state.keys,
        &session.as_agent(),
        assisted_request(request),
        retry,
    )
    .await?;
    match opening {
        Opening::Opened(opened) => {
            crate::customer::grade_in_background(&state, opened.case_id);
            Ok((StatusCode::CREATED, Json(AssistedCaseCreated::from(opened))).into_response())
        }
        Opening::Replayed { status, answer } => Ok((
            StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED),
            Json(AssistedCaseCreated::from(answer)),
        )
            .into_response()),
        Opening::KeyReused => Err(ApiError::IdempotencyMismatch),
        Opening::KeyInFlight => Err(ApiError::IdempotencyInFlight),
    }
}

/// The use case's request from the JSON body (or the console's form).
pub(crate) fn assisted_request(r: AssistedCaseRequest) -> wf::AssistedRequest {
    wf::AssistedRequest {
        msisdn: r.msisdn,
        full_name: r.full_name,
        id_number: r.id_number,
        channel: r.channel,
        identity_check: r.identity_check,
        locale: r.locale,
    }
}

//! The customer API (`/v1/cases…`), as fixed by the API contract.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use case_store::CaseRow;
use case_workflows::{
    customer::{self, Opening, StatusView},
    identity::{CodeSent, IdentityError, Proof, RecoveryOutcome, RecoveryStarted, Verdict},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_runtime::Problem;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    AppState,
    error::ApiError,
    extract::{CaseHolder, CustomerCase, parse_json},
};

/// A subscriber asks for their number back.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCaseRequest {
    /// The suspended number, E.164 (`+8613800138000`).
    #[schema(example = "+8613800138000")]
    pub msisdn: String,
    /// Full name as on the ID card.
    pub full_name: String,
    /// 18-character resident ID number.
    pub id_number: String,
    /// Where the request comes from: web, app, hotline or store (default web).
    #[serde(default)]
    pub channel: Option<String>,
    /// zh-CN or en (default zh-CN).
    #[serde(default)]
    pub locale: Option<String>,
}

/// One step of the case's history, as the subscriber sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// State before (null for the opening).
    pub from: Option<String>,
    /// State after.
    pub to: String,
    /// What happened.
    pub event: String,
    /// Who acted: customer, system, cs, store, security, technical, supervisor.
    pub actor: String,
    /// Why, in customer-safe words.
    pub reason: Option<String>,
}

/// A customer-safe reason for the risk grading, with the remedy.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RiskReason {
    /// Reason code.
    pub code: String,
    /// Why.
    pub why: String,
    /// What the subscriber can do.
    pub remedy: String,
    /// Documents that help.
    pub documents: String,
}

/// The risk grading as shown to the subscriber.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RiskView {
    /// low, medium, high or extreme.
    pub tier: String,
    /// Reasons, most serious first.
    pub reasons: Vec<RiskReason>,
}

/// Where a case stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaseStatus {
    /// Case id.
    pub case_id: Uuid,
    /// Current state.
    pub state: String,
    /// Version (changes with every transition).
    pub version: i32,
    /// Department that has the case now (customer_service, security, technical, subscriber), or null when finished.
    pub department: Option<String>,
    /// What is needed now.
    pub needs: Vec<String>,
    /// Expected completion, when a department has the case.
    pub eta: Option<DateTime<Utc>>,
    /// The suspended number, masked.
    pub msisdn: String,
    /// The risk grading, once made.
    pub risk: Option<RiskView>,
    /// The contacts the carrier flagged (masked), each to be explained.
    pub flagged_contacts: Vec<String>,
    /// Explanations the subscriber has sent.
    pub explanations: i64,
    /// Evidence files the subscriber has uploaded.
    pub evidence: i64,
    /// Every hand-off so far, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// Opened at.
    pub created_at: DateTime<Utc>,
    /// The department stages the case passes (done, current, ahead), what each
    /// checks and its typical time.
    pub departments: Vec<crate::progress::DepartmentStep>,
    /// The subscriber's request for expedited handling, if made.
    pub expedite: Option<crate::progress::ExpediteView>,
    /// While the case waits for identity proofs: what its risk tier asks, up front
    /// (the verification ladder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_proofs: Option<IdentityProofsView>,
}

/// What the verification ladder asks of a case waiting for identity proofs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdentityProofsView {
    /// The proofs still asked: each inner list is one step, satisfied by any one of
    /// its kinds (`otp`, `service_password`, `cs_callback`, `in_person_id`).
    pub needed: Vec<Vec<String>>,
    /// The proofs given so far.
    pub given: Vec<String>,
    /// Why the case's risk tier asks this, in the case's language (no reason code or
    /// signal); absent until the carrier's signals were read.
    pub why: Option<String>,
}

/// A new case and the token to follow it. The token is shown only here.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaseCreated {
    /// Case id.
    pub case_id: Uuid,
    /// Bearer token for every later call on this case. Keep it secret.
    pub case_token: String,
    /// The case as it now stands.
    #[serde(flatten)]
    pub status: CaseStatus,
}

impl From<StatusView> for CaseStatus {
    fn from(v: StatusView) -> Self {
        let locale = v.locale;
        Self {
            case_id: v.case_id,
            state: v.state.as_str().into(),
            version: v.version,
            department: v.state.department().map(|d| d.as_str().into()),
            needs: v.needs.into_iter().map(|n| n.as_str().into()).collect(),
            eta: v.eta,
            msisdn: v.msisdn_masked,
            risk: v.risk.map(|r| RiskView {
                tier: r.tier.as_str().into(),
                reasons: r
                    .reasons
                    .into_iter()
                    .map(|r| {
                        let t = r.text(locale.as_str());
                        RiskReason {
                            code: r.as_str().into(),
                            why: t.why.into(),
                            remedy: t.remedy.into(),
                            documents: t.documents.into(),
                        }
                    })
                    .collect(),
            }),
            flagged_contacts: v.flagged_contacts,
            explanations: v.explanations,
            evidence: v.evidence,
            timeline: v
                .timeline
                .into_iter()
                .map(|e| TimelineEntry {
                    at: e.at,
                    from: e.from_state.map(|s| s.as_str().into()),
                    to: e.to_state.as_str().into(),
                    event: e.event.as_str().into(),
                    actor: e.actor_role.as_str().into(),
                    reason: e.reason,
                })
                .collect(),
            created_at: v.created_at,
            departments: v
                .route
                .iter()
                .map(|s| crate::progress::DepartmentStep::new(s, locale))
                .collect(),
            expedite: v.expedite.map(Into::into),
            identity_proofs: v.identity_proofs.map(|p| IdentityProofsView {
                needed: p
                    .needed
                    .into_iter()
                    .map(|r| r.into_iter().map(str::to_owned).collect())
                    .collect(),
                given: p.given.into_iter().map(str::to_owned).collect(),
                why: p.why.map(str::to_owned),
            }),
        }
    }
}

/// Builds the subscriber's view of a case.
pub async fn case_status(state: &AppState, case: &CaseRow) -> Result<CaseStatus, ApiError> {
    Ok(customer::read_status(&state.pool, &state.sla, case)
        .await?
        .into())
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::Malformed(
            "Send one Idempotency-Key header, not several.".into(),
        ));
    }
    let key = first
        .to_str()
        .ok()
        .map(|k| k.trim().trim_matches('"'))
        .unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::Malformed(
            "Idempotency-Key must be 1 to 255 visible ASCII characters.".into(),
        ));
    }
    Ok(Some(key.to_owned()))
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

/// Opens a reactivation case.
///
/// The answer never says whether the name and ID number match the number's
/// subscriber: that is checked later, together with a proof.
#[utoipa::path(
    post, path = "/v1/cases", tag = "customer",
    request_body = CreateCaseRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry key: the same key and body replay the first answer; another body gets 422; while the first runs, 409.")),
    responses(
        (status = 201, description = "Case opened", body = CaseCreated),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The key's first request is in flight (never because other cases are open for the number)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or the key was used with another body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn create_case(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let (request, canonical): (CreateCaseRequest, _) = parse_json(&body)?;
    let retry = key.as_deref().map(|key| customer::RetryKey {
        key,
        fingerprint: data_protection::sha256(canonical.to_string().as_bytes()),
    });
    let request = customer::OpenCaseRequest {
        msisdn: request.msisdn,
        full_name: request.full_name,
        id_number: request.id_number,
        channel: request.channel,
        locale: request.locale,
    };
    let opening = customer::open_case(&state.pool, &state.keys, request, retry, |opened| {
        CaseCreated {
            case_id: opened.status.case_id,
            case_token: opened.token.clone(),
            status: opened.status.clone().into(),
        }
    })
    .await?;
    match opening {
        Opening::Opened(created) => {
            grade_in_background(&state, created.case_id);
            let body = serde_json::to_value(created).map_err(anyhow::Error::from)?;
            Ok(json_response(StatusCode::CREATED, &body))
        }
        Opening::Replayed { status, answer } => Ok(json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED),
            &answer,
        )),
        Opening::KeyReused => Err(ApiError::IdempotencyMismatch),
        Opening::KeyInFlight => Err(ApiError::IdempotencyInFlight),
    }
}

/// Asks the identity service to grade a new case's place on the verification
/// ladder from the carrier's signals, without holding up the answer. If it cannot
/// (the identity service or the carrier down, this process gone), the case is graded
/// at its first code request or proof instead.
pub(crate) fn grade_in_background(state: &AppState, case_id: Uuid) {
    let identity = state.identity.clone();
    tokio::spawn(async move {
        if let Err(e) = identity.grade(case_id).await {
            tracing::info!(%case_id, error.message = %e, "ladder not graded at opening; it is at the first proof");
        }
    });
}

/// Where the case stands: state, department, needs, ETA and the whole timeline.
#[utoipa::path(
    get, path = "/v1/cases/{case_id}", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    responses(
        (status = 200, description = "The case", body = CaseStatus),
        (status = 404, description = "No such case, or a wrong token (the same answer)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn get_case(
    State(state): State<AppState>,
    CustomerCase(case): CustomerCase,
) -> Result<Json<CaseStatus>, ApiError> {
    Ok(Json(case_status(&state, &case).await?))
}

/// A proof of identity offered by the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerificationRequest {
    /// The six-digit code sent to a contact on file with the carrier.
    Otp {
        /// Six digits.
        code: String,
    },
    /// The number's service password (checked by the carrier, never stored).
    ServicePassword {
        /// The password.
        password: String,
    },
    /// Recent call counterparties (E.164); enough matches send the case to a CS agent.
    CallRecords {
        /// One to ten numbers.
        counterparties: Vec<String>,
    },
}

impl From<VerificationRequest> for Proof {
    fn from(r: VerificationRequest) -> Self {
        match r {
            VerificationRequest::Otp { code } => Self::Otp { code },
            VerificationRequest::ServicePassword { password } => Self::ServicePassword { password },
            VerificationRequest::CallRecords { counterparties } => {
                Self::CallRecords { counterparties }
            }
        }
    }
}

impl From<Proof> for VerificationRequest {
    fn from(p: Proof) -> Self {
        match p {
            Proof::Otp { code } => Self::Otp { code },
            Proof::ServicePassword { password } => Self::ServicePassword { password },
            Proof::CallRecords { counterparties } => Self::CallRecords { counterparties },
        }
    }
}

/// Whether a proof was accepted. Never says which part was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerificationResponse {
    /// `true` only for the request that moved the case: identity verified, or passed
    /// on to a CS agent (call records, or the call-back the high tier asks for) or to
    /// a store visit.
    pub accepted: bool,
    /// Failed attempts left before the case goes to a CS agent.
    pub remaining_attempts: i32,
    /// Present when the proof was good and counted but the case's risk tier asks for
    /// more before it moves (the verification ladder): the rungs still open, each a
    /// list of proof kinds any one of which satisfies it (`otp`, `service_password`,
    /// `cs_callback`, `in_person_id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_needed: Vec<Vec<String>>,
}

impl From<Verdict> for VerificationResponse {
    fn from(v: Verdict) -> Self {
        Self {
            accepted: v.accepted,
            remaining_attempts: v.remaining_attempts,
            still_needed: v.still_needed,
        }
    }
}

/// A code was asked for: the same answer whether or not the number has a contact on
/// file or is known to the carrier (no oracle before identity is proven).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OtpSent {
    /// Always `requested`.
    pub status: String,
    /// "If a contact is on file with the carrier for this number, a code was sent to it."
    pub detail: String,
    /// Codes that may still be requested for this case.
    pub remaining_sends: i32,
}

impl From<CodeSent> for OtpSent {
    fn from(s: CodeSent) -> Self {
        Self {
            status: "requested".into(),
            detail: case_workflows::identity::CODE_SENT_WORDS.into(),
            remaining_sends: s.remaining_sends,
        }
    }
}

/// The answer to an identity failure (the words the identity service has always used).
fn identity_failure(e: IdentityError) -> Response {
    if let Some(words) = e.wording() {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let problem = Problem::new(status, words.slug, words.title, words.detail);
        if let IdentityError::BudgetSpent { frees_at } = e {
            // When to come back: the moment the number's oldest failure leaves the window.
            let wait = (frees_at - chrono::Utc::now()).num_seconds().max(1);
            return problem
                .with(
                    "retry_at",
                    frees_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )
                .into_response_retrying(wait.unsigned_abs());
        }
        return problem.into_response();
    }
    match e {
        IdentityError::Unreachable(cause) => {
            tracing::error!(error.message = %cause, "identity service unreachable");
            ApiError::Unavailable("identity service")
        }
        IdentityError::Internal(cause) => ApiError::Internal(cause),
        _ => ApiError::NotFound,
    }
    .into_response()
}

/// Sends a one-time code to a contact on file with the carrier (never to one typed here).
#[utoipa::path(
    post, path = "/v1/cases/{case_id}/otp", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    responses(
        (status = 202, description = "Taken: if a contact is on file, a code was sent (the same answer for every number)", body = OtpSent),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The case is not waiting for identity proof", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many codes requested", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn send_otp(State(state): State<AppState>, holder: CaseHolder) -> Response {
    // The identity service checks the token in its read of the case.
    match state
        .identity
        .send_code(holder.case_id, holder.token_hash)
        .await
    {
        Ok(sent) => (StatusCode::ACCEPTED, Json(OtpSent::from(sent))).into_response(),
        Err(e) => identity_failure(e),
    }
}

/// Offers a proof of identity: a one-time code, the service password, or call records.
#[utoipa::path(
    post, path = "/v1/cases/{case_id}/verifications", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    request_body = VerificationRequest,
    responses(
        (status = 200, description = "Accepted or not (never says which part was wrong)", body = VerificationResponse),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid proof format", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not waiting for identity proof (a racing request moved the case), or another case for the number is past identity", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 423, description = "The number's failed-proof budget is spent (5 per 24 h, across its cases): not judged, the carrier is not asked; `retry_at` and Retry-After say when; a CS agent has the case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    holder: CaseHolder,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: VerificationRequest = match parse_json(&body) {
        Ok((request, _)) => request,
        Err(invalid) => {
            // A wrong token is answered as an unknown case whatever the body.
            holder.case(&state).await?;
            return Err(invalid);
        }
    };
    // The identity service checks the token in its read of the case.
    Ok(
        match state
            .identity
            .verify(holder.case_id, holder.token_hash, request.into())
            .await
        {
            Ok(verdict) => Json(VerificationResponse::from(verdict)).into_response(),
            Err(e) => identity_failure(e),
        },
    )
}

/// Withdraws the request. Not possible once provisioning has started.
#[utoipa::path(
    post, path = "/v1/cases/{case_id}/cancel", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    responses(
        (status = 200, description = "Cancelled", body = CaseStatus),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Provisioning has started, or the case is finished", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    CustomerCase(case): CustomerCase,
) -> Result<Json<CaseStatus>, ApiError> {
    Ok(Json(
        customer::cancel(&state.pool, &state.sla, &case)
            .await?
            .into(),
    ))
}

/// A subscriber who lost the case token asks for a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryRequest {
    /// The number of the request, E.164 (`+8613800138000`).
    #[schema(example = "+8613800138000")]
    pub msisdn: String,
}

/// A recovery request was taken: the same answer whatever the number (known or not,
/// with or without an open request or a contact on file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecoveryAccepted {
    /// Where to send the code: `POST /v1/cases/recovery/{recovery_id}`.
    pub recovery_id: Uuid,
    /// "If this number has an open request past identity verification and a contact on file, a code was sent to it."
    pub detail: String,
}

impl From<RecoveryStarted> for RecoveryAccepted {
    fn from(s: RecoveryStarted) -> Self {
        Self {
            recovery_id: s.recovery_id,
            detail: case_workflows::identity::RECOVERY_WORDS.into(),
        }
    }
}

/// The code received for a recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryCode {
    /// Six digits.
    #[schema(example = "123456")]
    pub code: String,
}

/// The end of a recovery attempt: a new token, or how many failed proofs the number
/// has left. A wrong, expired or used code and an unknown recovery answer alike.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecoveryResult {
    /// A new token was issued; the old one no longer works.
    pub recovered: bool,
    /// The case, when recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<Uuid>,
    /// The new bearer token, when recovered. Shown only here: keep it secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_token: Option<String>,
    /// Failed proofs the number has left (5 per 24 h across its cases), when not recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_attempts: Option<i32>,
}

impl std::fmt::Debug for RecoveryResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryResult")
            .field("recovered", &self.recovered)
            .field("case_id", &self.case_id)
            .field("remaining_attempts", &self.remaining_attempts)
            .finish_non_exhaustive()
    }
}

impl From<RecoveryOutcome> for RecoveryResult {
    fn from(o: RecoveryOutcome) -> Self {
        match o {
            RecoveryOutcome::Recovered {
                case_id,
                case_token,
            } => Self {
                recovered: true,
                case_id: Some(case_id),
                case_token: Some(case_token),
                remaining_attempts: None,
            },
            RecoveryOutcome::NotRecovered { remaining_attempts } => Self {
                recovered: false,
                case_id: None,
                case_token: None,
                remaining_attempts: Some(remaining_attempts),
            },
        }
    }
}

/// Asks for a new token for a request whose token was lost.
///
/// Only the number's one request past identity verification can be recovered (a
/// request that has not proven identity is simply opened again). When it exists and
/// the carrier has a contact on file, a one-time code is sent there; the answer is
/// the same for every number. Each request takes one of the number's 10 codes a day.
#[utoipa::path(
    post, path = "/v1/cases/recovery", tag = "customer",
    request_body = RecoveryRequest,
    responses(
        (status = 202, description = "Taken: the same answer whatever the number (a code was sent only if it has an open request past identity and a contact on file)", body = RecoveryAccepted),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not a mainland China mobile number", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "The number's codes for the day are used up (the same for every number)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn start_recovery(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (request, _): (RecoveryRequest, _) = parse_json(&body)?;
    Ok(match state.identity.start_recovery(&request.msisdn).await {
        Ok(started) => {
            (StatusCode::ACCEPTED, Json(RecoveryAccepted::from(started))).into_response()
        }
        Err(e) => identity_failure(e),
    })
}

/// Sends the code of a recovery: the right one gives the request a new token (the
/// old one stops working).
///
/// Every try with a well-formed code counts against the number's failed-proof budget
/// (5 per 24 h, shared with identity proofs on its requests); a recovery takes at
/// most 5 tries and its code expires after 10 minutes. An unknown recovery id answers
/// like a wrong code.
#[utoipa::path(
    post, path = "/v1/cases/recovery/{recovery_id}", tag = "customer",
    params(("recovery_id" = Uuid, Path, description = "Recovery id")),
    request_body = RecoveryCode,
    responses(
        (status = 200, description = "Recovered (a new token), or not (never why)", body = RecoveryResult),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Another proof for this number is being checked right now (nothing judged)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The code is not six digits (nothing counted)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 423, description = "The number's failed-proof budget is spent: not judged; `retry_at` and Retry-After say when", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn finish_recovery(
    State(state): State<AppState>,
    Path(recovery_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (request, _): (RecoveryCode, _) = parse_json(&body)?;
    // An id that is not a UUID is unknown like any other: the nil id never exists,
    // so it gets the answer of a wrong code (after the code's form is checked).
    let recovery_id = Uuid::parse_str(&recovery_id).unwrap_or(Uuid::nil());
    Ok(
        match state
            .identity
            .finish_recovery(recovery_id, &request.code)
            .await
        {
            Ok(outcome) => Json(RecoveryResult::from(outcome)).into_response(),
            Err(e) => identity_failure(e),
        },
    )
}

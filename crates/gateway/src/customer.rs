//! The customer API (`/v1/cases…`), as fixed by the API contract.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use case_domain::{
    Actor, CaseEvent, CaseState, Msisdn, PersonName, ResidentId, progress,
    risk::{ReasonCode, RiskTier},
};
use case_store::{CaseRow, IdempotencyBegin, NewCase, TransitionRequest, identity::NewIdentity};
use chrono::{DateTime, Utc};
use identity_verification::{api::VerificationRequest, client::Relayed};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    AppState,
    error::{ApiError, FieldError},
    extract::{CustomerCase, parse_json},
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

/// The validated request.
struct ValidCreate {
    msisdn: Msisdn,
    name: PersonName,
    id: ResidentId,
    channel: String,
    locale: String,
}

fn validate(req: CreateCaseRequest) -> Result<ValidCreate, ApiError> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.into(),
            message,
        })
    };
    let msisdn = Msisdn::parse(&req.msisdn)
        .map_err(|e| err("msisdn", e.to_string()))
        .ok();
    let name = PersonName::parse(&req.full_name)
        .map_err(|e| err("full_name", e.to_string()))
        .ok();
    let id = ResidentId::parse(&req.id_number)
        .map_err(|e| err("id_number", e.to_string()))
        .ok();
    let channel = req.channel.unwrap_or_else(|| "web".into());
    if !["web", "app", "hotline", "store"].contains(&channel.as_str()) {
        err(
            "channel",
            "channel must be one of web, app, hotline, store".into(),
        );
    }
    let locale = req.locale.unwrap_or_else(|| "zh-CN".into());
    if !["zh-CN", "en"].contains(&locale.as_str()) {
        err("locale", "locale must be zh-CN or en".into());
    }
    match (msisdn, name, id) {
        (Some(msisdn), Some(name), Some(id)) if errors.is_empty() => Ok(ValidCreate {
            msisdn,
            name,
            id,
            channel,
            locale,
        }),
        _ => Err(ApiError::Invalid(errors)),
    }
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
    /// Who acted: customer, system, cs, security, technical, supervisor.
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

/// Builds the subscriber's view of a case.
pub async fn case_status(state: &AppState, case: &CaseRow) -> Result<CaseStatus, ApiError> {
    let timeline = case_store::timeline(&state.pool, case.id).await?;
    let assessment = case_store::risk::latest_assessment(&state.pool, case.id).await?;
    let material = case_store::material::count_material(&state.pool, case.id).await?;
    let eta =
        case_workflows::eta::case_eta(&state.pool, &state.sla, case, &timeline, Utc::now()).await;
    Ok(status_view(case, timeline, assessment, material, eta))
}

/// The subscriber's view of a case from what was read about it (no I/O).
fn status_view(
    case: &CaseRow,
    timeline: Vec<case_store::EventRow>,
    assessment: Option<case_store::risk::AssessmentRow>,
    material: case_store::material::MaterialCounts,
    eta: Option<DateTime<Utc>>,
) -> CaseStatus {
    let tier: Option<RiskTier> = assessment.as_ref().map(|a| a.tier);
    // Re-scored as material arrives: the stored needs win over the tier's.
    let stored_needs = assessment
        .as_ref()
        .map(|a| crate::material::stored_needs(&a.needs));
    let flagged_contacts = assessment
        .as_ref()
        .map(|a| crate::material::masked_flagged_contacts(&a.signals))
        .unwrap_or_default();
    let risk = assessment.map(|a| RiskView {
        tier: a.tier.as_str().into(),
        reasons: a
            .reason_codes
            .iter()
            .filter_map(|c| ReasonCode::parse(c))
            .map(|r| {
                let t = r.text(&case.locale);
                RiskReason {
                    code: r.as_str().into(),
                    why: t.why.into(),
                    remedy: t.remedy.into(),
                    documents: t.documents.into(),
                }
            })
            .collect(),
    });
    let msisdn = Msisdn::parse(&case.msisdn)
        .map(|m| m.masked())
        .unwrap_or_default();
    CaseStatus {
        case_id: case.id,
        state: case.state.as_str().into(),
        version: case.version,
        department: case.state.department().map(|d| d.as_str().into()),
        needs: progress::needs_assessed(case.state, tier, stored_needs.as_deref())
            .into_iter()
            .map(|n| n.as_str().into())
            .collect(),
        eta,
        msisdn,
        risk,
        flagged_contacts,
        explanations: material.explanations,
        evidence: material.evidence,
        timeline: timeline
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
        created_at: case.created_at,
    }
}

const CREATE_SCOPE: &str = "POST /v1/cases";

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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
        (status = 409, description = "The number has an open case, or the key's first request is in flight", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
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
    let valid = validate(request)?;
    let fingerprint = data_protection::sha256(canonical.to_string().as_bytes());

    if let Some(key) = &key {
        match case_store::begin_idempotent(&state.pool, CREATE_SCOPE, key, &fingerprint).await? {
            IdempotencyBegin::Started => {}
            IdempotencyBegin::Replay { status, body } => {
                let body = reveal_token(&state, body)?;
                return Ok(json_response(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED),
                    &body,
                ));
            }
            IdempotencyBegin::Mismatch => return Err(ApiError::IdempotencyMismatch),
            IdempotencyBegin::InFlight => return Err(ApiError::IdempotencyInFlight),
        }
    }
    let created = open_case(&state, valid, key.as_deref()).await;
    if created.is_err()
        && let Some(key) = &key
    {
        // Nothing was done: a retry with the same key runs again.
        case_store::forget_idempotent(&state.pool, CREATE_SCOPE, key).await?;
    }
    let body = created?;
    Ok(json_response(StatusCode::CREATED, &body))
}

async fn open_case(
    state: &AppState,
    valid: ValidCreate,
    key: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let case_id = Uuid::now_v7();
    let token = data_protection::issue_token();
    let identity = NewIdentity {
        full_name_enc: state.keys.encrypt(valid.name.expose(), &case_id),
        id_number_enc: state.keys.encrypt(valid.id.expose(), &case_id),
        full_name_masked: valid.name.masked(),
        id_number_last4: valid.id.last_four().to_owned(),
        failed_attempts: 0,
    };
    let new = NewCase {
        id: case_id,
        msisdn: valid.msisdn,
        channel: valid.channel,
        locale: valid.locale,
        token_hash: token.hash,
    };
    let mut identity = identity;
    let recent = case_store::identity::number_activity(&state.pool, new.msisdn.e164()).await?;
    identity.failed_attempts = i32::try_from(recent.failures).unwrap_or(i32::MAX);
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    let case = case_store::create_case(&mut tx, &new, &Actor::customer()).await?;
    case_store::identity::save_identity(&mut *tx, case_id, &identity).await?;
    // Read inside the transaction, so the answer shows the opening row it wrote.
    let timeline = case_store::timeline(&mut *tx, case_id).await?;
    let status = status_view(&case, timeline, None, Default::default(), None);
    let body = serde_json::to_value(CaseCreated {
        case_id,
        case_token: token.token.clone(),
        status,
    })
    .map_err(anyhow::Error::from)?;
    if let Some(key) = key {
        // The stored answer is replayed to retries, but the token is kept only encrypted.
        let mut stored = body.clone();
        stored["case_token"] = serde_json::Value::Null;
        stored["case_token_enc"] =
            serde_json::json!(hex(&state.keys.encrypt(&token.token, &case_id)));
        case_store::complete_idempotent(&mut *tx, CREATE_SCOPE, key, 201, &stored).await?;
    }
    tx.commit().await.map_err(anyhow::Error::from)?;
    tracing::info!(case_id = %case_id, "case opened");
    Ok(body)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Puts the decrypted case token back into a stored creation answer.
fn reveal_token(
    state: &AppState,
    mut body: serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let Some(sealed) = body
        .get("case_token_enc")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
    else {
        return Ok(body);
    };
    let case_id: Uuid = body["case_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("stored answer without case_id"))?;
    let bytes: Option<Vec<u8>> = (0..sealed.len())
        .step_by(2)
        .map(|i| {
            sealed
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let token = state
        .keys
        .decrypt(&bytes.unwrap_or_default(), &case_id)
        .map_err(|e| ApiError::Internal(e.into()))?;
    if let Some(map) = body.as_object_mut() {
        map.remove("case_token_enc");
        map.insert("case_token".into(), serde_json::Value::String(token));
    }
    Ok(body)
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

fn relay(answer: Relayed) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, answer.body).into_response();
    if let Ok(v) = HeaderValue::from_str(&answer.content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

/// Sends a one-time code to a contact on file with the carrier (never to one typed here).
#[utoipa::path(
    post, path = "/v1/cases/{case_id}/otp", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    responses(
        (status = 202, description = "Code sent", body = identity_verification::api::OtpSent),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The case is not waiting for identity proof", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "No contact on file", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many codes requested", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn send_otp(
    State(state): State<AppState>,
    CustomerCase(case): CustomerCase,
) -> Result<Response, ApiError> {
    let answer = state.identity.send_code(case.id).await.map_err(|e| {
        tracing::error!(error.message = %e, "identity service unreachable");
        ApiError::Unavailable("identity service")
    })?;
    Ok(relay(answer))
}

/// Offers a proof of identity: a one-time code, the service password, or call records.
#[utoipa::path(
    post, path = "/v1/cases/{case_id}/verifications", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    request_body = VerificationRequest,
    responses(
        (status = 200, description = "Accepted or not (never says which part was wrong)", body = identity_verification::api::VerificationResponse),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid proof format", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 423, description = "Attempts used up; a CS agent has the case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    CustomerCase(case): CustomerCase,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (request, _): (VerificationRequest, _) = parse_json(&body)?;
    let answer = state
        .identity
        .verify(case.id, &request)
        .await
        .map_err(|e| {
            tracing::error!(error.message = %e, "identity service unreachable");
            ApiError::Unavailable("identity service")
        })?;
    Ok(relay(answer))
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
    let customer = Actor::customer();
    let moved = case_store::transition(
        &state.pool,
        TransitionRequest {
            case_id: case.id,
            expected_version: case.version,
            event: CaseEvent::Cancelled,
            actor: &customer,
            reason: Some("cancelled by the subscriber"),
            fence: None,
            outbox: vec![],
        },
    )
    .await;
    let moved = match moved {
        Ok(done) => done.case,
        Err(case_store::StoreError::Refused(_)) => {
            let why = if matches!(
                case.state,
                CaseState::Provisioning
                    | CaseState::ProvisioningFailed
                    | CaseState::PartiallyReactivated
            ) {
                "Provisioning has started; the case can no longer be cancelled."
            } else {
                "The case is finished and cannot be cancelled."
            };
            return Err(ApiError::Conflict(why.into()));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(case_status(&state, &moved).await?))
}

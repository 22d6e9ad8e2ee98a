//! The subscriber's material for a risk-graded review: explanations of flagged
//! contacts, evidence files, and the one appeal of a rejection.
//!
//! Material is accepted while a review is open (see
//! [`case_domain::material::accepts_material`]). In the transaction that stores it,
//! the case row is locked; when an agent was waiting for the subscriber
//! (`awaiting_customer_*`) the material is their answer and the case goes back to
//! the asking state (`customer_responded`); and the latest risk assessment is
//! re-scored (same tier and reasons, the needs still open), so the status shows what
//! is still needed.

use axum::{
    Json,
    body::Bytes,
    extract::{DefaultBodyLimit, Multipart, State, multipart::MultipartRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::MethodRouter,
};
use case_domain::{
    Actor, CaseEvent, CaseState, Msisdn,
    material::{self, ContentRefusal, MAX_EVIDENCE_BYTES},
    progress,
    risk::Need,
};
use case_store::{
    CaseRow, TransitionRequest,
    material::{Counterparty, EvidenceStored},
};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    AppState,
    customer::{CaseStatus, case_status},
    error::{ApiError, FieldError},
    extract::{CustomerCase, parse_json},
};

/// The body limit of the evidence route, a hard cut-off for abusive bodies. The
/// file limit itself (5 MiB) is checked while the part streams in, and nothing over
/// it is kept; up to this limit the rest of an oversize body is read and dropped, so
/// that the client reliably receives the 413 instead of a connection reset.
pub const EVIDENCE_BODY_LIMIT: usize = 2 * MAX_EVIDENCE_BYTES + 64 * 1024;

/// The body limit of the explanation and appeal routes: a statement of 4000
/// characters and 20 counterparties, even with every character `\u`-escaped, exceed
/// the 16 KiB of the other JSON routes.
pub const STATEMENT_BODY_LIMIT: usize = 128 * 1024;

/// The explanation and appeal routes' own body limit.
pub fn statement_route(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.layer(DefaultBodyLimit::max(STATEMENT_BODY_LIMIT))
}

/// The evidence route's own layers: its body limit (instead of the small JSON one),
/// and `Connection: close` on every error answer, since the client may still be
/// sending a body that will not be read.
pub fn evidence_route(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route
        .layer(DefaultBodyLimit::max(EVIDENCE_BODY_LIMIT))
        .layer(axum::middleware::map_response(close_after_error))
}

async fn close_after_error(mut response: Response) -> Response {
    if response.status().is_client_error() || response.status().is_server_error() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// One counterparty the subscriber explains.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CounterpartyInput {
    /// The counterparty's number (mainland mobile, e.g. `+8613700137001`).
    #[schema(example = "+8613700137001")]
    pub msisdn: String,
    /// Who it is to the subscriber (1 to 200 characters), e.g. "colleague".
    pub relation: String,
    /// Why they were in touch (1 to 200 characters).
    pub purpose: String,
}

/// An explanation of the flagged traffic.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplanationRequest {
    /// What the subscriber says (1 to 4000 characters).
    pub statement: String,
    /// The counterparties explained (at most 20); each flagged contact must be named
    /// in some explanation before the `explanation` need is met.
    #[serde(default)]
    pub counterparties: Vec<CounterpartyInput>,
}

/// An explanation was stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExplanationAccepted {
    /// Explanation id.
    pub explanation_id: Uuid,
    /// The counterparties it names, masked.
    pub counterparties: Vec<String>,
    /// The case's state afterwards.
    pub state: String,
    /// What the case still needs.
    pub needs: Vec<String>,
}

/// The multipart body of an evidence upload.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct EvidenceUpload {
    /// The file: JPEG, PNG or PDF (recognised by content, not by name), at most 5 MiB.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// An evidence file was stored (or the case already had it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvidenceAccepted {
    /// Evidence id.
    pub evidence_id: Uuid,
    /// image/jpeg, image/png or application/pdf, as recognised by content.
    pub media_type: String,
    /// Size in bytes.
    pub size_bytes: i32,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// True when the case already had this exact file (nothing new was stored).
    pub duplicate: bool,
    /// The case's state afterwards.
    pub state: String,
    /// What the case still needs.
    pub needs: Vec<String>,
}

/// An appeal of a rejection.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppealRequest {
    /// Why the subscriber disagrees (1 to 4000 characters).
    pub statement: String,
}

/// A counterparty's number as shown: masked.
fn mask_number(number: &str) -> String {
    Msisdn::parse(number).map_or_else(
        |_| {
            let chars: Vec<char> = number.trim().chars().collect();
            let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
            format!("*******{tail}")
        },
        |m| m.masked(),
    )
}

/// The flagged contacts recorded in an assessment's signals (older rows hold only a count).
pub(crate) fn flagged_contacts(signals: &serde_json::Value) -> Vec<String> {
    signals["flagged_contacts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The flagged contacts of an assessment, masked for the subscriber.
pub(crate) fn masked_flagged_contacts(signals: &serde_json::Value) -> Vec<String> {
    flagged_contacts(signals)
        .iter()
        .map(|n| mask_number(n))
        .collect()
}

/// The needs stored with an assessment.
pub(crate) fn stored_needs(needs: &[String]) -> Vec<Need> {
    needs.iter().filter_map(|n| Need::parse(n)).collect()
}

fn names(needs: &[Need]) -> Vec<String> {
    needs.iter().map(|n| n.as_str().to_owned()).collect()
}

fn not_accepting(state: CaseState) -> ApiError {
    ApiError::Refused {
        code: "material_not_accepted",
        detail: format!(
            "The case is {state}: explanations and evidence are accepted only while it is under review or waiting for your answer."
        ),
    }
}

#[derive(Debug)]
struct ValidExplanation {
    statement: String,
    counterparties: Vec<Counterparty>,
}

fn validate_explanation(req: ExplanationRequest) -> Result<ValidExplanation, ApiError> {
    let mut errors = Vec::new();
    let mut err = |field: String, message: String| errors.push(FieldError { field, message });
    let statement = material::check_text(&req.statement, material::MAX_STATEMENT_CHARS)
        .map_err(|m| err("statement".into(), m))
        .ok()
        .map(str::to_owned);
    if req.counterparties.len() > material::MAX_COUNTERPARTIES {
        err(
            "counterparties".into(),
            format!("at most {} counterparties", material::MAX_COUNTERPARTIES),
        );
    }
    let mut counterparties = Vec::new();
    for (i, c) in req
        .counterparties
        .iter()
        .take(material::MAX_COUNTERPARTIES)
        .enumerate()
    {
        let msisdn = Msisdn::parse(&c.msisdn)
            .map_err(|e| err(format!("counterparties[{i}].msisdn"), e.to_string()))
            .ok();
        let relation = material::check_text(&c.relation, material::MAX_LABEL_CHARS)
            .map_err(|m| err(format!("counterparties[{i}].relation"), m))
            .ok();
        let purpose = material::check_text(&c.purpose, material::MAX_LABEL_CHARS)
            .map_err(|m| err(format!("counterparties[{i}].purpose"), m))
            .ok();
        if let (Some(msisdn), Some(relation), Some(purpose)) = (msisdn, relation, purpose) {
            counterparties.push(Counterparty {
                msisdn: msisdn.e164().to_owned(),
                relation: relation.to_owned(),
                purpose: purpose.to_owned(),
            });
        }
    }
    match statement {
        Some(statement) if errors.is_empty() => Ok(ValidExplanation {
            statement,
            counterparties,
        }),
        _ => Err(ApiError::Invalid(errors)),
    }
}

/// Locks the case for new material and checks that it takes material now.
async fn lock_for_material(conn: &mut PgConnection, case_id: Uuid) -> Result<CaseRow, ApiError> {
    let case = case_store::material::lock_case(conn, case_id).await?;
    if !material::accepts_material(case.state) {
        return Err(not_accepting(case.state));
    }
    Ok(case)
}

/// What follows new material, in its transaction: the answer to an information
/// request moves the case back to the asking state, and the latest assessment is
/// re-scored. Returns the case's state and what it still needs.
async fn after_material(
    conn: &mut PgConnection,
    case: &CaseRow,
) -> Result<(CaseState, Vec<Need>), ApiError> {
    let mut state = case.state;
    if material::material_answers_request(case.state) {
        let customer = Actor::customer();
        let moved = case_store::transition_in(
            conn,
            TransitionRequest {
                case_id: case.id,
                expected_version: case.version,
                event: CaseEvent::CustomerResponded,
                actor: &customer,
                reason: Some("the subscriber sent the requested material"),
                fence: None,
                outbox: vec![],
            },
        )
        .await?;
        state = moved.case.state;
    }
    let Some(latest) = case_store::risk::latest_assessment(&mut *conn, case.id).await? else {
        // Not graded yet (identity review): nothing to re-score.
        return Ok((state, progress::needs(state, None)));
    };
    let flagged = flagged_contacts(&latest.signals);
    let explained = case_store::material::explained_contacts(&mut *conn, case.id).await?;
    let counts = case_store::material::count_material(&mut *conn, case.id).await?;
    let remaining = material::remaining_needs(
        latest.tier,
        &flagged,
        &material::Material {
            explanations: usize::try_from(counts.explanations).unwrap_or(usize::MAX),
            explained_contacts: &explained,
            evidence: usize::try_from(counts.evidence).unwrap_or(usize::MAX),
        },
    );
    case_store::material::rescore_assessment(&mut *conn, latest.id, &names(&remaining)).await?;
    Ok((
        state,
        progress::needs_assessed(state, Some(latest.tier), Some(&remaining)),
    ))
}

/// Explains the flagged traffic: a statement and the counterparties it concerns.
///
/// While the case waits for the subscriber's answer, this is the answer: the case
/// goes back to the department that asked.
#[utoipa::path(
    post, path = "/v1/cases/{case_id}/explanations", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    request_body = ExplanationRequest,
    responses(
        (status = 201, description = "Stored; the answer says what the case still needs", body = ExplanationAccepted),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case, or a wrong token (the same answer)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The case takes no material in its state", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (unknown fields, statement length, numbers, too many counterparties)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn add_explanation(
    State(state): State<AppState>,
    CustomerCase(case): CustomerCase,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (request, _): (ExplanationRequest, _) = parse_json(&body)?;
    let valid = validate_explanation(request)?;
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    let locked = lock_for_material(&mut tx, case.id).await?;
    let explanation_id = case_store::material::insert_explanation(
        &mut *tx,
        case.id,
        &valid.statement,
        &valid.counterparties,
    )
    .await?;
    let (now_in, needs) = after_material(&mut tx, &locked).await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    tracing::info!(case_id = %case.id, %explanation_id, counterparties = valid.counterparties.len(), "explanation stored");
    let body = ExplanationAccepted {
        explanation_id,
        counterparties: valid
            .counterparties
            .iter()
            .map(|c| mask_number(&c.msisdn))
            .collect(),
        state: now_in.as_str().into(),
        needs: names(&needs),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::Malformed("The body is not valid multipart/form-data.".into())
    }
}

fn too_large() -> ApiError {
    ApiError::TooLarge(ContentRefusal::TooLarge { size: 0 }.to_string())
}

/// Reads the one `file` part, refusing other parts, a second file and anything
/// over the size limit (reading stops there; nothing is kept).
async fn read_single_file(multipart: &mut Multipart) -> Result<Vec<u8>, ApiError> {
    let mut file: Option<Vec<u8>> = None;
    let mut refusal: Option<ApiError> = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(&e))?
    {
        let is_file = field.name() == Some("file");
        let mut content = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
            if refusal.is_some() {
                // Drain what the client is still sending, so it reads our answer.
                continue;
            }
            if content.len() + chunk.len() > MAX_EVIDENCE_BYTES {
                refusal = Some(too_large());
                content = Vec::new();
                continue;
            }
            content.extend_from_slice(&chunk);
        }
        if refusal.is_some() {
            continue;
        }
        if !is_file {
            refusal = Some(ApiError::Invalid(vec![FieldError {
                field: "multipart".into(),
                message: "send exactly one part, named `file`".into(),
            }]));
        } else if file.is_some() {
            refusal = Some(ApiError::Invalid(vec![FieldError {
                field: "file".into(),
                message: "send one file per upload".into(),
            }]));
        } else {
            file = Some(content);
        }
    }
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    file.ok_or_else(|| {
        ApiError::Invalid(vec![FieldError {
            field: "file".into(),
            message: "a part named `file` is required".into(),
        }])
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Uploads one evidence file (JPEG, PNG or PDF, at most 5 MiB) as the `file` part of
/// a `multipart/form-data` body.
///
/// The type is recognised from the content, never from the file name or the part's
/// declared type; programs, archives and PDFs with active content are refused. The
/// same file uploaded twice to a case is stored once (the second answer is 200 with
/// the first file's id). While the case waits for the subscriber's answer, this is
/// the answer.
#[utoipa::path(
    post, path = "/v1/cases/{case_id}/evidence", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    request_body(content = EvidenceUpload, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored", body = EvidenceAccepted),
        (status = 200, description = "The case already had this exact file; nothing new was stored", body = EvidenceAccepted),
        (status = 400, description = "Not a multipart/form-data body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case, or a wrong token (the same answer)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The case takes no material in its state", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "The file is larger than 5 MiB; nothing was stored", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "The content is not JPEG, PNG or PDF, or is a program, an archive or an active PDF; nothing was stored", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not exactly one part named `file`", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn add_evidence(
    State(state): State<AppState>,
    CustomerCase(case): CustomerCase,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    if !material::accepts_material(case.state) {
        return Err(not_accepting(case.state));
    }
    // A declared size over the limit is refused before any of the body is read
    // (a client that sent `Expect: 100-continue` then sends none of it).
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > EVIDENCE_BODY_LIMIT) {
        return Err(too_large());
    }
    let mut multipart = multipart.map_err(|_| {
        ApiError::Malformed(
            "Send the file as multipart/form-data with one part named `file`.".into(),
        )
    })?;
    let content = read_single_file(&mut multipart).await?;
    let kind = material::sniff(&content).map_err(|refusal| match refusal {
        ContentRefusal::TooLarge { .. } => too_large(),
        ContentRefusal::Empty => ApiError::Invalid(vec![FieldError {
            field: "file".into(),
            message: "the file is empty".into(),
        }]),
        other => ApiError::UnsupportedMedia(other.to_string()),
    })?;

    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    let locked = lock_for_material(&mut tx, case.id).await?;
    let stored =
        case_store::material::insert_evidence(&mut tx, case.id, kind.media_type(), &content)
            .await?;
    let (now_in, needs) = match &stored {
        EvidenceStored::New(_) => after_material(&mut tx, &locked).await?,
        // Nothing new: the case does not move and is not re-scored.
        EvidenceStored::Duplicate(_) => {
            let latest = case_store::risk::latest_assessment(&mut *tx, case.id).await?;
            let needs = progress::needs_assessed(
                locked.state,
                latest.as_ref().map(|a| a.tier),
                latest.as_ref().map(|a| stored_needs(&a.needs)).as_deref(),
            );
            (locked.state, needs)
        }
    };
    tx.commit().await.map_err(anyhow::Error::from)?;
    let meta = stored.meta();
    let duplicate = matches!(stored, EvidenceStored::Duplicate(_));
    tracing::info!(case_id = %case.id, evidence_id = %meta.id, media_type = %meta.media_type, size = meta.size_bytes, duplicate, "evidence stored");
    let body = EvidenceAccepted {
        evidence_id: meta.id,
        media_type: meta.media_type.clone(),
        size_bytes: meta.size_bytes,
        sha256: hex(&meta.sha256),
        duplicate,
        state: now_in.as_str().into(),
        needs: names(&needs),
    };
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(body)).into_response())
}

/// Appeals a rejection: once per case, within 15 days of the rejection, not when the
/// remedy is a store visit (extreme tier). The case goes back to security review.
#[utoipa::path(
    post, path = "/v1/cases/{case_id}/appeal", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("case_token" = [])),
    request_body = AppealRequest,
    responses(
        (status = 200, description = "Appealed: the case is back in security review", body = CaseStatus),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case, or a wrong token (the same answer)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not possible: the case is not rejected, was already appealed, the 15 days have passed, or the remedy is a store visit (`code` says which)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid statement", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn appeal(
    State(state): State<AppState>,
    CustomerCase(case): CustomerCase,
    body: Bytes,
) -> Result<Json<CaseStatus>, ApiError> {
    let (request, _): (AppealRequest, _) = parse_json(&body)?;
    let statement = material::check_text(&request.statement, material::MAX_STATEMENT_CHARS)
        .map_err(|message| {
            ApiError::Invalid(vec![FieldError {
                field: "statement".into(),
                message,
            }])
        })?
        .to_owned();
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    let locked = case_store::material::lock_case(&mut tx, case.id).await?;
    let already_appealed = case_store::material::load_appeal(&mut *tx, case.id)
        .await?
        .is_some();
    let refused = |r: material::AppealRefusal| ApiError::Refused {
        code: match r {
            material::AppealRefusal::AlreadyAppealed => "already_appealed",
            material::AppealRefusal::NotRejected(_) => "not_rejected",
            material::AppealRefusal::StoreVisitRequired => "store_visit_required",
            material::AppealRefusal::WindowPassed { .. } => "appeal_window_passed",
        },
        detail: r.to_string(),
    };
    if already_appealed {
        return Err(refused(material::AppealRefusal::AlreadyAppealed));
    }
    if locked.state != CaseState::Rejected {
        return Err(refused(material::AppealRefusal::NotRejected(locked.state)));
    }
    let tier = case_store::risk::latest_assessment(&mut *tx, case.id)
        .await?
        .map(|a| a.tier);
    // The rejection took effect when the case entered `rejected`.
    let rejected_at = locked.state_entered_at;
    material::may_appeal(rejected_at, Utc::now(), already_appealed, tier).map_err(refused)?;
    case_store::material::record_appeal(&mut *tx, case.id, &statement, rejected_at).await?;
    let customer = Actor::customer();
    let moved = case_store::transition_in(
        &mut tx,
        TransitionRequest {
            case_id: case.id,
            expected_version: locked.version,
            event: CaseEvent::Appealed,
            actor: &customer,
            reason: Some("appealed by the subscriber"),
            fence: None,
            outbox: vec![],
        },
    )
    .await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    tracing::info!(case_id = %case.id, "rejection appealed");
    Ok(Json(case_status(&state, &moved.case).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> Result<ValidExplanation, ApiError> {
        let (req, _) = parse_json::<ExplanationRequest>(json.to_string().as_bytes())?;
        validate_explanation(req)
    }

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Invalid(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_valid_explanation_is_normalised() {
        let valid = request(serde_json::json!({
            "statement": "  They are my colleagues. ",
            "counterparties": [{"msisdn": "137 0013 7001", "relation": "colleague", "purpose": "work"}]
        }))
        .unwrap();
        assert_eq!(valid.statement, "They are my colleagues.");
        assert_eq!(valid.counterparties[0].msisdn, "+8613700137001");
    }

    #[test]
    fn invalid_explanations_name_the_fields_and_never_echo_values() {
        let e = request(serde_json::json!({
            "statement": "",
            "counterparties": [{"msisdn": "110105194912310021", "relation": "", "purpose": "x".repeat(201)}]
        }))
        .unwrap_err();
        let detail = e.problem().detail;
        assert!(!detail.contains("110105"), "{detail}");
        assert_eq!(
            fields(e),
            [
                "statement",
                "counterparties[0].msisdn",
                "counterparties[0].relation",
                "counterparties[0].purpose"
            ]
        );
        let too_many: Vec<_> = (0..21)
            .map(|i| serde_json::json!({"msisdn": format!("+86137001370{i:02}"), "relation": "r", "purpose": "p"}))
            .collect();
        let e =
            request(serde_json::json!({"statement": "s", "counterparties": too_many})).unwrap_err();
        assert_eq!(fields(e), ["counterparties"]);
        let long = request(serde_json::json!({"statement": "字".repeat(4001)})).unwrap_err();
        assert_eq!(fields(long), ["statement"]);
        assert!(request(serde_json::json!({"statement": "字".repeat(4000)})).is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = request(serde_json::json!({"statement": "s", "extra": 1})).unwrap_err();
        assert_eq!(e.problem().status, 422);
        let e = request(serde_json::json!({"statement": "s", "counterparties": [{"msisdn": "+8613700137001", "relation": "r", "purpose": "p", "name": "x"}]})).unwrap_err();
        assert_eq!(e.problem().status, 422);
    }

    #[test]
    fn numbers_are_masked() {
        assert_eq!(mask_number("+8613700137001"), "+86*******7001");
        assert_eq!(mask_number("12345"), "*******2345");
        assert_eq!(mask_number("1"), "*******1");
        let signals = serde_json::json!({"flagged_contacts": ["+8613700137001", "+8613700137002"]});
        assert_eq!(
            masked_flagged_contacts(&signals),
            ["+86*******7001", "+86*******7002"]
        );
        // Assessments from before the numbers were kept hold a count.
        assert!(masked_flagged_contacts(&serde_json::json!({"flagged_contacts": 2})).is_empty());
    }
}

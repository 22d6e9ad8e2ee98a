//! The subscriber's material for a risk-graded review: explanations of flagged
//! contacts, evidence files, and the one appeal of a rejection. The edge: body
//! limits, multipart reading, JSON in and out; the use cases are
//! [`case_workflows::material`].
//! An evidence upload is refused before its body is read when the case takes no
//! material now or the declared size is over the limit.

use axum::{
    Json,
    body::Bytes,
    extract::{DefaultBodyLimit, Multipart, State, multipart::MultipartRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::MethodRouter,
};
use case_domain::{material::MAX_EVIDENCE_BYTES, risk::Need};
use case_workflows::material::{self, ExplanationInput};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    AppState,
    customer::CaseStatus,
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

/// The flagged contacts recorded in an assessment's signals (older rows hold only a count).
fn names(needs: &[Need]) -> Vec<String> {
    needs.iter().map(|n| n.as_str().to_owned()).collect()
}

impl From<ExplanationRequest> for ExplanationInput {
    fn from(r: ExplanationRequest) -> Self {
        Self {
            statement: r.statement,
            counterparties: r
                .counterparties
                .into_iter()
                .map(|c| material::CounterpartyInput {
                    msisdn: c.msisdn,
                    relation: c.relation,
                    purpose: c.purpose,
                })
                .collect(),
        }
    }
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
    let stored = material::explain(&state.pool, &state.keys, case.id, request.into()).await?;
    let body = ExplanationAccepted {
        explanation_id: stored.explanation_id,
        counterparties: stored.counterparties,
        state: stored.state.as_str().into(),
        needs: names(&stored.needs),
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
    material::too_large().into()
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
    material::check_accepts_material(&case)?;
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
    let added = material::add_evidence(&state.pool, &state.keys, case.id, &content).await?;
    let status = if added.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = EvidenceAccepted {
        evidence_id: added.evidence_id,
        media_type: added.media_type,
        size_bytes: added.size_bytes,
        sha256: added.sha256,
        duplicate: added.duplicate,
        state: added.state.as_str().into(),
        needs: names(&added.needs),
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
    let status = material::appeal(
        &state.pool,
        &state.keys,
        &state.sla,
        case.id,
        &request.statement,
    )
    .await?;
    Ok(Json(status.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> Result<material::ValidExplanation, ApiError> {
        let (req, _) = parse_json::<ExplanationRequest>(json.to_string().as_bytes())?;
        Ok(material::validate_explanation(req.into())?)
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
        assert_eq!(e.problem().status, 422);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = request(serde_json::json!({"statement": "s", "extra": 1})).unwrap_err();
        assert_eq!(e.problem().status, 422);
        let e = request(serde_json::json!({"statement": "s", "counterparties": [{"msisdn": "+8613700137001", "relation": "r", "purpose": "p", "name": "x"}]})).unwrap_err();
        assert_eq!(e.problem().status, 422);
    }

    #[test]
    fn flagged_contacts_are_read_from_the_signals() {
        let counts = r#""fraud_linked_contacts": 1, "sms_peak_per_hour": 0, "intl_calls_24h": 0,
            "suspension_reason": null"#;
        let signals: case_domain::risk::RecordedSignals = serde_json::from_str(&format!(
            r#"{{{counts}, "flagged_contacts": ["+8613700137001"]}}"#
        ))
        .unwrap();
        assert_eq!(signals.flagged_contacts, ["+8613700137001"]);
        let counted: case_domain::risk::RecordedSignals =
            serde_json::from_str(&format!(r#"{{{counts}, "flagged_contacts": 2}}"#)).unwrap();
        assert!(counted.flagged_contacts.is_empty());
    }
}

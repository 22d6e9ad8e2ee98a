//! The service's internal HTTP API (called by the gateway only; not exposed publicly):
//! check the caller's credential, parse, call the identity use case, render.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use case_workflows::identity::{CASE_TOKEN_HASH_HEADER, IdentityCases, IdentityError, TokenHash};
use service_runtime::{Problem, config::InternalTokens};
use uuid::Uuid;

use crate::api::{
    GradeOutcome, Graded, GradesRequest, GradesResponse, MAX_GRADES_PER_CALL, OtpSent,
    RecoveryAccepted, RecoveryCode, RecoveryRequest, RecoveryResult, VerificationRequest,
    VerificationResponse,
};

/// `POST /internal/v1/cases/{id}/otp`, `POST /internal/v1/cases/{id}/verifications`,
/// `POST /internal/v1/recoveries` and `POST /internal/v1/recoveries/{id}` (lost case
/// tokens), each refused with 401 unless the call carries one of `tokens` as its bearer token.
/// The code and proof calls also carry the hash of the subscriber's case token
/// (`case-token-hash`), checked in the read of the case: a wrong or missing one is a 404.
pub fn router(service: IdentityCases, tokens: InternalTokens) -> Router {
    crate::auth::require_internal_token(
        Router::new()
            .route("/internal/v1/cases/{case_id}/otp", post(send_code))
            .route("/internal/v1/cases/{case_id}/verifications", post(verify))
            .route("/internal/v1/cases/{case_id}/grade", post(grade))
            .route("/internal/v1/grades", post(grade_many))
            .route("/internal/v1/recoveries", post(start_recovery))
            .route(
                "/internal/v1/recoveries/{recovery_id}",
                post(finish_recovery),
            )
            .with_state(service),
        tokens,
    )
}

/// The hash of the case token the subscriber presented to the gateway; a call
/// without one (or with anything else) is answered as for an unknown case.
fn holder(headers: &HeaderMap) -> Option<TokenHash> {
    headers
        .get(CASE_TOKEN_HASH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(TokenHash::decode)
}

async fn send_code(
    State(service): State<IdentityCases>,
    Path(case_id): Path<Uuid>,
    headers: HeaderMap,
) -> Response {
    let Some(holder) = holder(&headers) else {
        return Problem::not_found().into_response();
    };
    match service.send_code(case_id, holder).await {
        Ok(sent) => (StatusCode::ACCEPTED, Json(OtpSent::from(sent))).into_response(),
        Err(e) => failure(e),
    }
}

/// Grades a new case's place on the verification ladder (the gateway asks right
/// after opening it).
async fn grade(State(service): State<IdentityCases>, Path(case_id): Path<Uuid>) -> Response {
    match service.grade(case_id).await {
        Ok(tier) => Json(Graded {
            proof_tier: tier.as_str().to_owned(),
        })
        .into_response(),
        Err(e) => failure(e),
    }
}

/// Grades several new cases in one call (the gateway gathers the openings of a
/// burst): each case's answer is what grading it alone would have answered.
async fn grade_many(State(service): State<IdentityCases>, body: Bytes) -> Response {
    let request: GradesRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return invalid("The body is not a list of case ids (`case_ids`)."),
    };
    let ids = &request.case_ids;
    if ids.is_empty() || ids.len() > MAX_GRADES_PER_CALL {
        return invalid(&format!(
            "`case_ids` names 1 to {MAX_GRADES_PER_CALL} cases."
        ));
    }
    if ids.iter().collect::<std::collections::HashSet<_>>().len() != ids.len() {
        return invalid("`case_ids` names a case twice.");
    }
    match service.grade_many(ids).await {
        Ok(graded) => Json(GradesResponse {
            grades: ids
                .iter()
                .zip(graded)
                .map(|(case_id, graded)| match graded {
                    Ok(tier) => GradeOutcome {
                        case_id: *case_id,
                        proof_tier: Some(tier.as_str().to_owned()),
                        problem: None,
                    },
                    Err(e) => GradeOutcome {
                        case_id: *case_id,
                        proof_tier: None,
                        problem: Some(failure_problem(e)),
                    },
                })
                .collect(),
        })
        .into_response(),
        Err(e) => failure(e),
    }
}

fn invalid(detail: &str) -> Response {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "Invalid request",
        detail,
    )
    .into_response()
}

async fn verify(
    State(service): State<IdentityCases>,
    Path(case_id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(holder) = holder(&headers) else {
        return Problem::not_found().into_response();
    };
    let request: VerificationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
                "The body is not a valid verification.",
            )
            .into_response();
        }
    };
    match service.verify(case_id, holder, request.into()).await {
        Ok(verdict) => Json(VerificationResponse::from(verdict)).into_response(),
        Err(e) => failure(e),
    }
}

fn invalid_body(what: &str) -> Response {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "Invalid request",
        format!("The body is not a valid {what}."),
    )
    .into_response()
}

async fn start_recovery(State(service): State<IdentityCases>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<RecoveryRequest>(&body) else {
        return invalid_body("recovery request");
    };
    match service.start_recovery(&request.msisdn).await {
        Ok(started) => {
            (StatusCode::ACCEPTED, Json(RecoveryAccepted::from(started))).into_response()
        }
        Err(e) => failure(e),
    }
}

async fn finish_recovery(
    State(service): State<IdentityCases>,
    Path(recovery_id): Path<Uuid>,
    body: Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<RecoveryCode>(&body) else {
        return invalid_body("recovery code");
    };
    match service.finish_recovery(recovery_id, &request.code).await {
        Ok(outcome) => Json(RecoveryResult::from(outcome)).into_response(),
        Err(e) => failure(e),
    }
}

/// Whether `e` is the database being out of reach (down, restarting, out of
/// connection slots): nothing changed and a retry may succeed.
fn database_unavailable(e: &IdentityError) -> bool {
    let IdentityError::Internal(cause) = e else {
        return false;
    };
    cause.chain().any(|c| {
        c.downcast_ref::<sqlx::Error>()
            .is_some_and(service_runtime::db::is_transient)
    })
}

fn failure(e: IdentityError) -> Response {
    if database_unavailable(&e) {
        // 503 with Retry-After, which the gateway answers as its own 503: never a 500
        // while the database is away.
        return failure_problem(e)
            .into_response_retrying(service_runtime::http::STARTING_RETRY_AFTER.into());
    }
    failure_problem(e).into_response()
}

/// The problem [`failure`] answers with (logged as it is).
fn failure_problem(e: IdentityError) -> Problem {
    if database_unavailable(&e) {
        tracing::warn!(error.message = %e, "identity verification: the database is unavailable");
        return Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "The database cannot be reached right now; please retry shortly.",
        );
    }
    if let IdentityError::Internal(cause) = &e {
        tracing::error!(error.message = %cause, error.cause_chain = ?cause, "identity verification failed");
    }
    let mut problem = problem(&e);
    if let IdentityError::WrongState(state) = e {
        // For the gateway's client, which renders its own answer from the typed error.
        problem = problem.with("state", state.as_str());
    }
    if let IdentityError::BudgetSpent { frees_at } = e {
        problem = problem.with("retry_at", frees_at.to_rfc3339());
    }
    problem
}

/// The problem answer of an identity failure: the same words the gateway answers with.
fn problem(e: &IdentityError) -> Problem {
    let Some(words) = e.wording() else {
        return match e {
            IdentityError::NotFound => Problem::not_found(),
            _ => Problem::internal(),
        };
    };
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Problem::new(status, words.slug, words.title, words.detail)
}

#[cfg(test)]
mod tests {
    use case_workflows::identity::IdentityError;

    use super::*;

    #[test]
    fn an_unreachable_database_answers_503_with_retry_after_not_500() {
        let down = IdentityError::Internal(anyhow::Error::from(sqlx::Error::PoolTimedOut));
        let response = failure(down);
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let bug = IdentityError::Internal(anyhow::anyhow!("a broken invariant"));
        assert_eq!(failure(bug).status(), 500);
    }

    #[test]
    fn each_refusal_keeps_its_status_and_problem_type() {
        let cases = [
            (
                IdentityError::Invalid("code must be six digits".into()),
                422,
                "validation",
            ),
            (IdentityError::Locked, 423, "identity-locked"),
            (IdentityError::TooManyCodes, 429, "too-many-codes"),
            (IdentityError::NoContactOnFile, 422, "no-contact-on-file"),
            (
                IdentityError::WrongState(case_domain_state()),
                409,
                "wrong-state",
            ),
            (
                IdentityError::CarrierUnavailable,
                503,
                "carrier-unavailable",
            ),
            (IdentityError::NotFound, 404, "not-found"),
            (IdentityError::Internal(anyhow_error()), 500, "internal"),
        ];
        for (e, status, slug) in cases {
            let p = problem(&e);
            assert_eq!(p.status, status, "{e}");
            assert_eq!(
                p.kind,
                format!("https://reactivation.example/problems/{slug}")
            );
        }
        assert_eq!(
            problem(&IdentityError::Invalid("code must be six digits".into())).detail,
            "code must be six digits"
        );
    }

    #[test]
    fn a_wrong_state_answer_names_the_state_for_the_gateway() {
        let response = failure(IdentityError::WrongState(case_domain_state()));
        assert_eq!(response.status(), StatusCode::CONFLICT);
    }

    fn case_domain_state() -> case_domain::CaseState {
        case_domain::CaseState::Cancelled
    }

    fn anyhow_error() -> anyhow::Error {
        anyhow::anyhow!("broken")
    }
}

//! The service's internal HTTP API (called by the gateway only; not exposed publicly).

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use service_runtime::Problem;
use uuid::Uuid;

use crate::{IdentityService, api::VerificationRequest};

/// `POST /internal/v1/cases/{id}/otp` and `POST /internal/v1/cases/{id}/verifications`.
pub fn router(service: IdentityService) -> Router {
    Router::new()
        .route("/internal/v1/cases/{case_id}/otp", post(send_code))
        .route("/internal/v1/cases/{case_id}/verifications", post(verify))
        .with_state(service)
}

async fn send_code(State(service): State<IdentityService>, Path(case_id): Path<Uuid>) -> Response {
    match service.send_code(case_id).await {
        Ok(sent) => (StatusCode::ACCEPTED, Json(sent)).into_response(),
        Err(e) => failure(e),
    }
}

async fn verify(
    State(service): State<IdentityService>,
    Path(case_id): Path<Uuid>,
    body: Bytes,
) -> Response {
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
    match service.verify(case_id, request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => failure(e),
    }
}

fn failure(e: crate::VerifyError) -> Response {
    if let crate::VerifyError::Internal(cause) = &e {
        tracing::error!(error.message = %cause, error.cause_chain = ?cause, "identity verification failed");
    }
    e.problem().into_response()
}

//! The service's internal HTTP API (called by the gateway only; not exposed publicly):
//! parse, call the identity use case, render.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use case_workflows::identity::{IdentityCases, IdentityError};
use service_runtime::Problem;
use uuid::Uuid;

use crate::api::{OtpSent, VerificationRequest, VerificationResponse};

/// `POST /internal/v1/cases/{id}/otp` and `POST /internal/v1/cases/{id}/verifications`.
pub fn router(service: IdentityCases) -> Router {
    Router::new()
        .route("/internal/v1/cases/{case_id}/otp", post(send_code))
        .route("/internal/v1/cases/{case_id}/verifications", post(verify))
        .with_state(service)
}

async fn send_code(State(service): State<IdentityCases>, Path(case_id): Path<Uuid>) -> Response {
    match service.send_code(case_id).await {
        Ok(sent) => (StatusCode::ACCEPTED, Json(OtpSent::from(sent))).into_response(),
        Err(e) => failure(e),
    }
}

async fn verify(
    State(service): State<IdentityCases>,
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
    match service.verify(case_id, request.into()).await {
        Ok(verdict) => Json(VerificationResponse::from(verdict)).into_response(),
        Err(e) => failure(e),
    }
}

fn failure(e: IdentityError) -> Response {
    if let IdentityError::Internal(cause) = &e {
        tracing::error!(error.message = %cause, error.cause_chain = ?cause, "identity verification failed");
    }
    let mut problem = problem(&e);
    if let IdentityError::WrongState(state) = e {
        // For the gateway's client, which renders its own answer from the typed error.
        problem = problem.with("state", state.as_str());
    }
    problem.into_response()
}

/// The problem answer of an identity failure: the same words the gateway answers with.
pub fn problem(e: &IdentityError) -> Problem {
    match e {
        IdentityError::NotFound => Problem::not_found(),
        IdentityError::Invalid(detail) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid request",
            detail.clone(),
        ),
        IdentityError::Locked => Problem::new(
            StatusCode::LOCKED,
            "identity-locked",
            "Too many failed attempts",
            "No more online attempts are possible. A customer-service agent now checks your identity and will contact you.",
        ),
        IdentityError::TooManyCodes => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-codes",
            "Too many codes requested",
            "No more codes can be sent for this case. Use your service password or call records instead.",
        ),
        IdentityError::NoContactOnFile => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no-contact-on-file",
            "No contact on file",
            "The carrier has no backup phone or e-mail on file to send a code to. Use your service password or call records instead.",
        ),
        IdentityError::WrongState(state) => Problem::new(
            StatusCode::CONFLICT,
            "wrong-state",
            "Not waiting for identity proof",
            format!("The case is {state}; identity proofs are not taken now."),
        ),
        IdentityError::CarrierUnavailable => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "carrier-unavailable",
            "Carrier unavailable",
            "The carrier cannot be reached right now. Please try again in a minute.",
        ),
        IdentityError::Unreachable(_) | IdentityError::Internal(_) => Problem::internal(),
    }
}

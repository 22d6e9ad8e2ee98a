//! The gateway's error type: one place maps every failure to its problem answer.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use case_store::StoreError;
use case_workflows::WorkflowError;
use service_runtime::Problem;

pub use case_workflows::FieldError;

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER_SECONDS: u32 = 2;

/// Everything a gateway handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or not the expected shape.
    #[error("{0}")]
    Malformed(String),
    /// The body is JSON but not of the expected shape (unknown or missing fields, wrong types).
    #[error("{0}")]
    Schema(String),
    /// The body is well-formed but fields are invalid.
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    /// No valid agent session (or bad credentials).
    #[error("not authenticated")]
    Unauthenticated,
    /// The caller's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The caller may not do this, for a reason with a stable code.
    #[error("{detail}")]
    ForbiddenOf {
        /// Machine-readable reason, e.g. `supervisor_required_name_id_mismatch`.
        code: &'static str,
        /// What the caller is told.
        detail: String,
    },
    /// No such resource, or the caller may not know it exists.
    #[error("not found")]
    NotFound,
    /// The body (or the file in it) is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The content is of a type that is not accepted.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// A rule refuses the request in the resource's current state; `code` says which.
    #[error("{detail}")]
    Refused {
        /// Machine-readable reason, e.g. `already_appealed`.
        code: &'static str,
        /// What the subscriber is told.
        detail: String,
    },
    /// The request conflicts with the resource's current state.
    #[error("{0}")]
    Conflict(String),
    /// A conflict of a known kind: `slug` is its stable problem type.
    #[error("{detail}")]
    ConflictOf {
        /// The problem type's last path segment, e.g. `stale-version`.
        slug: &'static str,
        /// What the caller is told.
        detail: String,
    },
    /// The Idempotency-Key was used with another body.
    #[error("idempotency key reused with another body")]
    IdempotencyMismatch,
    /// The first request with this Idempotency-Key is still running.
    #[error("idempotency key in flight")]
    IdempotencyInFlight,
    /// A required dependency is unreachable.
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    /// A bug or an outage; logged once, answered opaquely.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        WorkflowError::from(e).into()
    }
}

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::NotFound => Self::NotFound,
            WorkflowError::Invalid(errors) => Self::Invalid(errors),
            WorkflowError::Forbidden(detail) => Self::Forbidden(detail),
            WorkflowError::ForbiddenOf { code, detail } => Self::ForbiddenOf { code, detail },
            WorkflowError::StaleVersion => Self::ConflictOf {
                slug: "stale-version",
                detail: "The case changed meanwhile; read it again and retry.".into(),
            },
            WorkflowError::ClaimedByOther => Self::ConflictOf {
                slug: "claimed-by-another",
                detail: "Another agent holds this case.".into(),
            },
            WorkflowError::IllegalTransition(refusal) => Self::ConflictOf {
                slug: "illegal-transition",
                detail: format!("Not possible now: {refusal}."),
            },
            WorkflowError::OpenCaseExists => Self::ConflictOf {
                slug: "open-case-exists",
                detail: "This number already has an open reactivation case. Follow it with its case token, or cancel it first.".into(),
            },
            WorkflowError::Refused { code, detail } => Self::Refused { code, detail },
            WorkflowError::TooLarge(detail) => Self::TooLarge(detail),
            WorkflowError::UnsupportedMedia(detail) => Self::UnsupportedMedia(detail),
            WorkflowError::Unavailable(what) => Self::Unavailable(what),
            WorkflowError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl ApiError {
    /// The problem answer.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Malformed(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                "Malformed request",
                detail.clone(),
            ),
            Self::Schema(detail) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "schema",
                "Request does not match the schema",
                detail.clone(),
            ),
            Self::Invalid(errors) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
            .with("errors", serde_json::to_value(errors).unwrap_or_default()),
            Self::NotFound => Problem::not_found(),
            Self::TooLarge(detail) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Payload too large",
                detail.clone(),
            ),
            Self::UnsupportedMedia(detail) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                detail.clone(),
            ),
            Self::Refused { code, detail } => Problem::new(
                StatusCode::CONFLICT,
                &code.replace('_', "-"),
                "Conflict",
                detail.clone(),
            )
            .with("code", *code),
            Self::Unauthenticated => crate::agent_auth::unauthenticated(),
            Self::Forbidden(detail) => Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                detail.clone(),
            ),
            Self::ForbiddenOf { code, detail } => Problem::new(
                StatusCode::FORBIDDEN,
                &code.replace('_', "-"),
                "Forbidden",
                detail.clone(),
            )
            .with("code", *code),
            Self::Conflict(detail) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail.clone())
            }
            Self::ConflictOf { slug, detail } => {
                Problem::new(StatusCode::CONFLICT, slug, "Conflict", detail.clone())
            }
            Self::IdempotencyMismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
                "This Idempotency-Key was already used with a different request body.",
            ),
            Self::IdempotencyInFlight => Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-flight",
                "Request in progress",
                "A request with this Idempotency-Key is still being processed; retry shortly.",
            ),
            Self::Unavailable(what) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                format!("The {what} cannot be reached right now; please retry shortly."),
            ),
            Self::Internal(_) => Problem::internal(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error.message = %cause, error.cause_chain = ?cause, "request failed");
        }
        if matches!(self, Self::Unavailable(_)) {
            return self
                .problem()
                .into_response_retrying(RETRY_AFTER_SECONDS.into());
        }
        self.problem().into_response()
    }
}

//! The one error type of every use case: one variant per fact the caller can act on.

use case_store::StoreError;

/// One invalid field: its name and why (never its value).
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct FieldError {
    /// The field (JSON name at the edge).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// An invalid `field` because of `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a use case did not do what was asked. Every variant except
/// [`WorkflowError::Internal`] and [`WorkflowError::Unavailable`] means nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// No such case (or other resource), or the caller may not know it exists.
    #[error("not found")]
    NotFound,
    /// Input fields are invalid.
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    /// The actor's role (or identity) may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The actor may not do this for a reason with a stable code (e.g.
    /// `supervisor_required_name_id_mismatch`).
    #[error("{detail}")]
    ForbiddenOf {
        /// Stable machine-readable reason.
        code: &'static str,
        /// What the caller is told.
        detail: String,
    },
    /// The case moved on since the caller read it.
    #[error("the case changed meanwhile")]
    StaleVersion,
    /// Another agent (or worker) holds the case.
    #[error("another agent holds this case")]
    ClaimedByOther,
    /// The transition table does not allow this event in the case's current state.
    #[error("not possible now: {0}")]
    IllegalTransition(String),
    /// The number already has an open case.
    #[error("the number already has an open case")]
    OpenCaseExists,
    /// A rule refuses the request in the resource's current state; `code` says which.
    #[error("{detail}")]
    Refused {
        /// Stable machine-readable reason, e.g. `already_appealed`.
        code: &'static str,
        /// What the caller is told.
        detail: String,
    },
    /// The content is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The content is of a type that is not accepted.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// A dependency (the database, the identity service, the carrier) cannot be reached now.
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    /// A bug or a broken invariant; logged once by the edge, answered opaquely.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl WorkflowError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }
}

/// True when a database error means "cannot reach the database now" (pool timeout,
/// connection refused or dropped, the server shutting down or crashed, or a
/// just-demoted primary refusing writes during a failover) rather than a bug: the
/// caller may retry.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| unavailable_sqlstate(&c)),
        _ => false,
    }
}

/// SQLSTATEs of an unreachable or failing-over server: class 08 (connection
/// exception), 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
/// 25006 read-only transaction (a demoted primary).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
}

impl From<StoreError> for WorkflowError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Self::NotFound,
            StoreError::StaleVersion { .. } => Self::StaleVersion,
            StoreError::Refused(case_domain::TransitionError::Forbidden { from, .. }) => {
                Self::Forbidden(format!("Your role may not act on a case that is {from}."))
            }
            StoreError::Refused(refusal) => Self::IllegalTransition(refusal.to_string()),
            StoreError::LeaseLost { .. } => Self::ClaimedByOther,
            StoreError::OpenCaseExists => Self::OpenCaseExists,
            StoreError::AlreadyAppealed => Self::Refused {
                code: "already_appealed",
                detail: "This case was already appealed; a refusal can be appealed only once."
                    .into(),
            },
            StoreError::UsernameTaken => Self::Refused {
                code: "username_taken",
                detail: "An agent with this username exists.".into(),
            },
            StoreError::ConcurrentUpload => Self::Refused {
                code: "concurrent_upload",
                detail: "The same file is being uploaded concurrently; retry.".into(),
            },
            StoreError::Conflict(what) => Self::Refused {
                code: "conflict",
                detail: what,
            },
            StoreError::Db(db) if is_unavailable(&db) => Self::Unavailable("database"),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<sqlx::Error> for WorkflowError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_timeout_is_unavailable_not_internal() {
        let e: WorkflowError = sqlx::Error::PoolTimedOut.into();
        assert!(matches!(e, WorkflowError::Unavailable("database")));
    }

    #[test]
    fn failover_sqlstates_are_unavailable_and_others_are_not() {
        for code in ["08006", "08001", "57P01", "57P02", "57P03", "25006"] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "40001", "42P01", "57014", "22P02"] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
        assert!(is_unavailable(&sqlx::Error::WorkerCrashed));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn a_lost_lease_is_a_claim_by_another() {
        let e: WorkflowError = StoreError::LeaseLost {
            case_id: uuid::Uuid::nil(),
            attempt: 1,
        }
        .into();
        assert!(matches!(e, WorkflowError::ClaimedByOther));
    }
}

use case_domain::{CaseState, TransitionError};
use uuid::Uuid;

/// What can go wrong in the store. Every variant except [`StoreError::Db`] means
/// nothing was changed and the caller can tell the user why.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No case has this id.
    #[error("case {0} not found")]
    NotFound(Uuid),
    /// The case moved on since the caller read it (optimistic concurrency).
    #[error("case {case_id} is at version {actual}, not {expected}")]
    StaleVersion {
        /// The case.
        case_id: Uuid,
        /// The version the caller expected.
        expected: i32,
        /// The version the case is at.
        actual: i32,
    },
    /// The domain's transition table refused the event (illegal or forbidden).
    #[error(transparent)]
    Refused(#[from] TransitionError),
    /// A worker wrote with a lease it no longer holds (expired and claimed again, or released).
    #[error("lease on case {case_id} (attempt {attempt}) is no longer held")]
    LeaseLost {
        /// The case.
        case_id: Uuid,
        /// The attempt the stale worker presented.
        attempt: i32,
    },
    /// A worker wrote to a queue item (outbox message, carrier webhook, delivery) with a
    /// lease it no longer holds (expired and claimed again, or the item was settled).
    #[error("lease on {queue} item (attempt {attempt}) is no longer held")]
    QueueLeaseLost {
        /// The queue's name.
        queue: &'static str,
        /// The item's id.
        item: String,
        /// The attempt the stale worker presented.
        attempt: i32,
    },
    /// The number already has an open case past identity (a case proving identity
    /// while another proven case of the number is still open).
    #[error("the number already has an open case past identity")]
    OpenCaseExists,
    /// A carrier-webhook or delivery write with a lease that is no longer held (the
    /// message says which); kept apart from [`StoreError::QueueLeaseLost`] for the
    /// callers that match on it.
    #[error("{0}")]
    Conflict(String),
    /// The case was already appealed: a refusal can be appealed only once.
    #[error("the case was already appealed")]
    AlreadyAppealed,
    /// An agent with this username exists.
    #[error("username is taken")]
    UsernameTaken,
    /// The same file is being stored by a concurrent request; a retry finds it.
    #[error("the same file is being uploaded concurrently")]
    ConcurrentUpload,
    /// A broken internal invariant (a bug in the caller, never the user's doing):
    /// nothing was written, and the edge answers 500.
    #[error("invariant broken: {0}")]
    Invariant(&'static str),
    /// A state the database holds but the caller did not expect.
    #[error("case {case_id} is {state}")]
    UnexpectedState {
        /// The case.
        case_id: Uuid,
        /// Its state.
        state: CaseState,
    },
    /// The database failed.
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

impl StoreError {
    /// Maps a unique violation on the named constraint to `then`, anything else to `Db`.
    pub(crate) fn on_unique(err: sqlx::Error, constraint: &str, then: StoreError) -> StoreError {
        match &err {
            sqlx::Error::Database(db) if db.constraint() == Some(constraint) => then,
            _ => StoreError::Db(err),
        }
    }
}

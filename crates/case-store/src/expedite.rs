//! Expedited handling: at most one request per case (the table's primary key: of two
//! racing requests exactly one inserts).

use case_domain::CaseState;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::StoreError;

/// A case's request for expedited handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpediteRow {
    /// The case.
    pub case_id: Uuid,
    /// Why, in the subscriber's words.
    pub reason: String,
    /// The state the case was in when asked.
    pub state: CaseState,
    /// When.
    pub requested_at: DateTime<Utc>,
}

/// Records the request unless the case already has one: `None` then (the earlier
/// request stands). In the caller's transaction.
pub async fn request(
    conn: &mut PgConnection,
    case_id: Uuid,
    state: CaseState,
    reason: &str,
) -> Result<Option<ExpediteRow>, StoreError> {
    Ok(sqlx::query_as!(
        ExpediteRow,
        r#"INSERT INTO case_expedite_requests (case_id, reason, state)
           VALUES ($1, $2, $3)
           ON CONFLICT (case_id) DO NOTHING
           RETURNING case_id, reason, state AS "state: CaseState", requested_at"#,
        case_id,
        reason,
        state as CaseState,
    )
    .fetch_optional(conn)
    .await?)
}

/// The case's request, if it made one.
pub async fn of_case(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<ExpediteRow>, StoreError> {
    Ok(sqlx::query_as!(
        ExpediteRow,
        r#"SELECT case_id, reason, state AS "state: CaseState", requested_at
           FROM case_expedite_requests WHERE case_id = $1"#,
        case_id,
    )
    .fetch_optional(db)
    .await?)
}

/// Which of `case_ids` asked for expedited handling.
pub async fn expedited_among(
    db: impl PgExecutor<'_>,
    case_ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar!(
        "SELECT case_id FROM case_expedite_requests WHERE case_id = ANY($1)",
        case_ids,
    )
    .fetch_all(db)
    .await?)
}

/// The case's state now, share-locked until the end of the caller's transaction (a
/// transition waits for it); `None` if there is no such case.
pub async fn lock_state(
    conn: &mut PgConnection,
    case_id: Uuid,
) -> Result<Option<CaseState>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT state AS "state: CaseState" FROM reactivation_cases WHERE id = $1 FOR SHARE"#,
        case_id,
    )
    .fetch_optional(conn)
    .await?)
}

//! In-person identity checks at a store (the store-visit remedy, proof `in_person_id`).

use case_domain::{CaseState, Role};
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

/// A check to record.
#[derive(Debug, Clone)]
pub struct NewStoreVisit<'a> {
    /// The case.
    pub case_id: Uuid,
    /// The store agent (or supervisor).
    pub agent_id: Uuid,
    /// The role they acted in.
    pub acted_as: Role,
    /// Codes of the original documents seen.
    pub documents_seen: &'a [String],
    /// The ID number seen on the card, masked.
    pub id_number_masked: &'a str,
}

/// A recorded check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreVisitRow {
    /// Its id.
    pub id: Uuid,
    /// The agent.
    pub agent_id: Uuid,
    /// Codes of the documents seen.
    pub documents_seen: Vec<String>,
    /// The ID number seen, masked.
    pub id_number_masked: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Records a check (the face was compared: the table refuses anything else).
pub async fn insert(
    db: impl PgExecutor<'_>,
    visit: &NewStoreVisit<'_>,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO store_visits (id, case_id, agent_id, acted_as, documents_seen, face_compared, id_number_masked)
         VALUES ($1, $2, $3, $4, $5, true, $6)",
        id,
        visit.case_id,
        visit.agent_id,
        visit.acted_as as Role,
        visit.documents_seen,
        visit.id_number_masked,
    )
    .execute(db)
    .await?;
    Ok(id)
}

/// The latest check recorded for a case, if any.
pub async fn latest(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<StoreVisitRow>, StoreError> {
    Ok(sqlx::query_as!(
        StoreVisitRow,
        "SELECT id, agent_id, documents_seen, id_number_masked, at FROM store_visits
         WHERE case_id = $1 ORDER BY at DESC, id DESC LIMIT 1",
        case_id
    )
    .fetch_optional(db)
    .await?)
}

/// A case of a number, as a store agent looking the number up sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberCase {
    /// The case.
    pub id: Uuid,
    /// Its state.
    pub state: CaseState,
    /// Its version.
    pub version: i32,
    /// Opened at.
    pub created_at: DateTime<Utc>,
    /// Entered its state at.
    pub state_entered_at: DateTime<Utc>,
}

/// The number's cases waiting for a store visit, newest first (at most 20).
pub async fn awaiting_visit_for_number(
    db: impl PgExecutor<'_>,
    msisdn: &str,
) -> Result<Vec<NumberCase>, StoreError> {
    Ok(sqlx::query_as!(
        NumberCase,
        r#"SELECT id, state AS "state: CaseState", version, created_at, state_entered_at
           FROM reactivation_cases
           WHERE msisdn = $1 AND state = 'awaiting_store_visit'
           ORDER BY created_at DESC LIMIT 20"#,
        msisdn
    )
    .fetch_all(db)
    .await?)
}

//! Agent-assisted openings and number lookups: the record of who opened a case on a
//! subscriber's behalf and how they checked identity, the cases of one number as a
//! lookup lists them, and the count of an agent's recent lookups (their limit).

use case_domain::{CaseState, Channel, Msisdn, Role};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::StoreError;

/// The audit action of a number lookup; its rows are also what the per-agent limit counts.
pub const LOOKUP_ACTION: &str = "number.lookup";

/// An assisted opening to record, in the opening's transaction.
#[derive(Debug, Clone)]
pub struct NewOpening<'a> {
    /// The case just opened.
    pub case_id: Uuid,
    /// The agent.
    pub agent_id: Uuid,
    /// The role they acted in.
    pub role: Role,
    /// hotline or store.
    pub channel: Channel,
    /// How identity was checked (`hotline_call`, `in_person_id`).
    pub identity_check: &'a str,
    /// The outbox message carrying the token.
    pub token_message: Uuid,
}

/// Records an assisted opening.
pub async fn insert_opening(
    conn: &mut PgConnection,
    opening: &NewOpening<'_>,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"INSERT INTO assisted_openings (case_id, agent_id, actor_role, channel, identity_check, token_message)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
        opening.case_id,
        opening.agent_id,
        opening.role as Role,
        opening.channel.as_str(),
        opening.identity_check,
        opening.token_message,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An assisted opening as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct OpeningRow {
    /// The agent.
    pub agent_id: Uuid,
    /// Their login name.
    pub agent_username: String,
    /// The role they acted in.
    pub role: Role,
    /// hotline or store.
    pub channel: String,
    /// How identity was checked.
    pub identity_check: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// How a case was opened by an agent, if it was.
pub async fn opening_of(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<OpeningRow>, StoreError> {
    Ok(sqlx::query_as!(
        OpeningRow,
        r#"SELECT o.agent_id, a.username AS agent_username, o.actor_role AS "role: Role",
                  o.channel, o.identity_check, o.created_at
           FROM assisted_openings o JOIN agents a ON a.id = o.agent_id
           WHERE o.case_id = $1"#,
        case_id
    )
    .fetch_optional(db)
    .await?)
}

/// One case of a number, as a lookup lists it (no personal data in clear).
#[derive(Debug, Clone, PartialEq)]
pub struct NumberCase {
    /// Case id.
    pub case_id: Uuid,
    /// State.
    pub state: CaseState,
    /// Version.
    pub version: i32,
    /// Where it was opened.
    pub channel: Channel,
    /// Opened at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When identity was proven, if it was.
    pub identity_proven_at: Option<DateTime<Utc>>,
    /// The agent who opened it, when an agent did.
    pub opened_by: Option<String>,
}

/// The open cases of `msisdn` and those that changed since `recent_since`, newest
/// first, at most `limit`.
pub async fn cases_of_number(
    db: impl PgExecutor<'_>,
    msisdn: &Msisdn,
    recent_since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<NumberCase>, StoreError> {
    Ok(sqlx::query_as!(
        NumberCase,
        r#"SELECT c.id AS case_id, c.state AS "state: CaseState", c.version,
                  c.channel AS "channel: Channel", c.created_at, c.updated_at,
                  c.identity_proven_at, a.username AS "opened_by?"
           FROM reactivation_cases c
           LEFT JOIN assisted_openings o ON o.case_id = c.id
           LEFT JOIN agents a ON a.id = o.agent_id
           WHERE c.msisdn = $1
             AND (c.state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
                  OR c.updated_at >= $2)
           ORDER BY c.created_at DESC
           LIMIT $3"#,
        msisdn.e164(),
        recent_since,
        limit,
    )
    .fetch_all(db)
    .await?)
}

/// The number lookups `actor_id` made since `since`, and the oldest of them (when the
/// next one frees up). Read under the audit log's append lock by the caller, so two
/// concurrent lookups cannot both take the last one.
pub async fn lookups_since(
    db: impl PgExecutor<'_>,
    actor_id: &str,
    since: DateTime<Utc>,
) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
    let row = sqlx::query!(
        r#"SELECT count(*) AS "n!", min(at) AS oldest
           FROM audit_log
           WHERE actor_id = $1 AND action = $2 AND at >= $3"#,
        actor_id,
        LOOKUP_ACTION,
        since,
    )
    .fetch_one(db)
    .await?;
    Ok((row.n, row.oldest))
}

/// Takes the per-agent lookup lock for the rest of the caller's transaction, so the
/// count of [`lookups_since`] and the audit row of the lookup are one step.
pub async fn lock_lookups(conn: &mut PgConnection, actor_id: &str) -> Result<(), StoreError> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('number-lookup:' || $1, 0))",
        actor_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

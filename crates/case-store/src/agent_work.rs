//! What agents do with cases: queues, claims, notes and outcome labels.

use std::time::Duration;

use case_domain::CaseState;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::{Fence, StoreError};

/// The lease owner string of an agent's claim.
pub fn agent_owner(agent_id: Uuid) -> String {
    format!("agent:{agent_id}")
}

/// Why a claim was not granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRefusal {
    /// No such case.
    NotFound,
    /// The case moved on (version differs).
    Stale {
        /// Its version now.
        actual: i32,
    },
    /// Another agent holds it.
    HeldByOther {
        /// Until when.
        until: DateTime<Utc>,
    },
}

/// Claims a case for an agent (or renews their claim) when nobody else holds it,
/// optionally only at `expected_version`. Returns the fence for the agent's write.
pub async fn claim_for_agent(
    db: impl PgExecutor<'_> + Copy,
    case_id: Uuid,
    agent_id: Uuid,
    expected_version: Option<i32>,
    ttl: Duration,
) -> Result<Result<(Fence, DateTime<Utc>), ClaimRefusal>, StoreError> {
    let owner = agent_owner(agent_id);
    let claimed = sqlx::query!(
        r#"UPDATE reactivation_cases
           SET lease_owner = $2, lease_expires_at = now() + make_interval(secs => $4), attempt = attempt + 1, updated_at = now()
           WHERE id = $1 AND ($3::int IS NULL OR version = $3)
             AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at <= now())
           RETURNING attempt, lease_expires_at AS "until!""#,
        case_id,
        owner,
        expected_version,
        ttl.as_secs_f64(),
    )
    .fetch_optional(db)
    .await?;
    if let Some(r) = claimed {
        return Ok(Ok((
            Fence {
                owner,
                attempt: r.attempt,
            },
            r.until,
        )));
    }
    let Some(now) = crate::load_case(db, case_id).await? else {
        return Ok(Err(ClaimRefusal::NotFound));
    };
    if let Some(v) = expected_version
        && now.version != v
    {
        return Ok(Err(ClaimRefusal::Stale {
            actual: now.version,
        }));
    }
    Ok(Err(ClaimRefusal::HeldByOther {
        until: now.lease_expires_at.unwrap_or_else(Utc::now),
    }))
}

/// Releases an agent's claim; false if they did not hold it.
pub async fn release_for_agent(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    agent_id: Uuid,
) -> Result<bool, StoreError> {
    Ok(sqlx::query!(
        "UPDATE reactivation_cases SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE id = $1 AND lease_owner = $2",
        case_id,
        agent_owner(agent_id)
    )
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// One line of a department queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    /// Case id.
    pub id: Uuid,
    /// State.
    pub state: CaseState,
    /// Version.
    pub version: i32,
    /// The number (personal data: masked when printed).
    pub msisdn: case_domain::Msisdn,
    /// When the case entered its state.
    pub state_entered_at: DateTime<Utc>,
    /// Who holds it, if anyone (lease owner).
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Latest risk tier.
    pub tier: Option<String>,
    /// Whether the case has an unanswered complaint (raises its priority).
    pub complaint: bool,
    /// Whether the subscriber asked for expedited handling (raises it, after complaints).
    pub expedited: bool,
}

/// Open cases in `states`: those with an unanswered complaint first, then those
/// that asked for expedited handling, then oldest in state first (the caller orders
/// by SLA due within each priority).
pub async fn queue(
    db: impl PgExecutor<'_>,
    states: &[CaseState],
    limit: i64,
) -> Result<Vec<QueueRow>, StoreError> {
    Ok(sqlx::query_as!(
        QueueRow,
        r#"SELECT c.id, c.state AS "state: CaseState", c.version, c.msisdn AS "msisdn: case_domain::Msisdn", c.state_entered_at, c.lease_owner, c.lease_expires_at,
                  (SELECT r.tier::text FROM risk_assessments r WHERE r.case_id = c.id ORDER BY r.assessed_at DESC, r.id DESC LIMIT 1) AS tier,
                  EXISTS (SELECT 1 FROM case_complaints k WHERE k.case_id = c.id AND k.status = 'open') AS "complaint!",
                  EXISTS (SELECT 1 FROM case_expedite_requests x WHERE x.case_id = c.id) AS "expedited!"
           FROM reactivation_cases c
           WHERE c.state = ANY($1::case_state[])
             -- Spelled out so the planner reads open cases only (partial index).
             AND c.state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
           ORDER BY "complaint!" DESC, "expedited!" DESC, c.state_entered_at
           LIMIT $2"#,
        states as &[CaseState],
        limit,
    )
    .fetch_all(db)
    .await?)
}

/// A note.
#[derive(Debug, Clone, PartialEq)]
pub struct NoteRow {
    /// Note id.
    pub id: Uuid,
    /// Author.
    pub agent_id: Uuid,
    /// Author's username.
    pub username: String,
    /// Text.
    pub body: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Adds a note.
pub async fn add_note(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    agent_id: Uuid,
    body: &str,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO case_notes (id, case_id, agent_id, body) VALUES ($1, $2, $3, $4)",
        id,
        case_id,
        agent_id,
        body
    )
    .execute(db)
    .await?;
    Ok(id)
}

/// A case's notes, oldest first.
pub async fn notes(db: impl PgExecutor<'_>, case_id: Uuid) -> Result<Vec<NoteRow>, StoreError> {
    Ok(sqlx::query_as!(
        NoteRow,
        "SELECT n.id, n.agent_id, a.username, n.body, n.created_at FROM case_notes n JOIN agents a ON a.id = n.agent_id
         WHERE n.case_id = $1 ORDER BY n.created_at",
        case_id
    )
    .fetch_all(db)
    .await?)
}

/// Labels each reason code a false positive of the rule that flagged the case.
pub async fn label_false_positives(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    reason_codes: &[String],
    agent_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO outcome_labels (case_id, reason_code, label, decided_by)
         SELECT $1, code, 'false_positive', $3 FROM unnest($2::text[]) AS code
         ON CONFLICT (case_id, reason_code) DO NOTHING",
        case_id,
        reason_codes,
        agent_id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Per rule version and reason code: cases the code flagged (above the lowest tier)
/// under that version and how many of them were approved after review.
#[derive(Debug, Clone, PartialEq)]
pub struct FalsePositiveRow {
    /// The version of the risk rules.
    pub rule_version: i32,
    /// Reason code.
    pub reason_code: String,
    /// Cases flagged by it under that version.
    pub flagged: i64,
    /// Of those, approved after review.
    pub approved: i64,
}

/// The false-positive report: one row per (rule version, reason code). A case
/// flagged by a code counts once, under the version of the latest assessment in
/// which the code flagged it (the one its review decided on), so the totals per code
/// are those of the cases the code flagged.
pub async fn false_positive_report(
    db: impl PgExecutor<'_>,
) -> Result<Vec<FalsePositiveRow>, StoreError> {
    Ok(sqlx::query_as!(
        FalsePositiveRow,
        r#"WITH flagged AS (
               SELECT DISTINCT ON (r.case_id, code) r.case_id, code, r.rule_version
               FROM risk_assessments r, unnest(r.reason_codes) AS code WHERE r.tier <> 'low'
               ORDER BY r.case_id, code, r.assessed_at DESC, r.id DESC
           )
           SELECT f.rule_version AS "rule_version!", f.code AS "reason_code!", count(*) AS "flagged!",
                  count(l.case_id) AS "approved!"
           FROM flagged f LEFT JOIN outcome_labels l ON l.case_id = f.case_id AND l.reason_code = f.code
           GROUP BY f.rule_version, f.code ORDER BY f.rule_version, f.code"#
    )
    .fetch_all(db)
    .await?)
}

/// The agent id of the latest rejection of a case, if it was rejected by an agent.
pub async fn last_rejected_by(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar!(
        "SELECT actor_id FROM case_events WHERE case_id = $1 AND event = 'rejected'
          AND at >= (SELECT c.created_at FROM reactivation_cases c WHERE c.id = $1)
         ORDER BY version DESC LIMIT 1",
        case_id
    )
    .fetch_optional(db)
    .await?)
}

/// Whether the case was appealed.
pub async fn was_appealed(db: impl PgExecutor<'_>, case_id: Uuid) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM case_events WHERE case_id = $1 AND event = 'appealed'
                            AND at >= (SELECT c.created_at FROM reactivation_cases c WHERE c.id = $1)) AS "x!""#,
        case_id
    )
    .fetch_one(db)
    .await?)
}

/// The state a case was in at `version` (what an agent who read that version saw).
pub async fn state_at_version(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    version: i32,
) -> Result<Option<CaseState>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT to_state AS "state: CaseState" FROM case_events WHERE case_id = $1 AND version = $2
             AND at >= (SELECT c.created_at FROM reactivation_cases c WHERE c.id = $1)"#,
        case_id,
        version
    )
    .fetch_optional(db)
    .await?)
}

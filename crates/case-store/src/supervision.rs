//! Supervisors' acts on other agents' work: hand a case's claim to another agent,
//! break a claim, and escalate a case by hand. Each runs in the caller's
//! transaction on the case row locked `FOR NO KEY UPDATE` (as a transition does), at
//! the version the supervisor saw: a concurrent decision, claim or second act
//! either waits and then finds the version or the holder changed, or wins.

use std::time::Duration;

use case_domain::{CaseState, Msisdn};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{StoreError, agent_work::agent_owner, timers::ESCALATION_CHANNEL};

/// A case row as a supervisor's act sees it, locked for the caller's transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct LockedCase {
    /// Case id.
    pub id: Uuid,
    /// State.
    pub state: CaseState,
    /// Version.
    pub version: i32,
    /// The number (personal data: masked when printed).
    pub msisdn: Msisdn,
    /// Lease holder (`agent:<id>` for an agent's claim, a worker name otherwise).
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The database's clock now (to judge whether the lease is live).
    pub now: DateTime<Utc>,
    /// Escalation level (0: none).
    pub escalation_level: i16,
}

impl LockedCase {
    /// The agent holding a live claim on the case (their id), if any.
    pub fn agent_holder(&self) -> Option<Uuid> {
        let live = self.lease_expires_at.is_some_and(|t| t > self.now);
        self.lease_owner
            .as_deref()
            .filter(|_| live)
            .and_then(|o| o.strip_prefix("agent:"))
            .and_then(|id| id.parse().ok())
    }
}

/// Locks the case row for the caller's transaction (`None`: no such case).
pub async fn lock_case(
    conn: &mut PgConnection,
    case_id: Uuid,
) -> Result<Option<LockedCase>, StoreError> {
    Ok(sqlx::query_as!(
        LockedCase,
        r#"SELECT id, state AS "state: CaseState", version, msisdn AS "msisdn: Msisdn",
                  lease_owner, lease_expires_at, now() AS "now!", escalation_level
           FROM reactivation_cases WHERE id = $1 FOR NO KEY UPDATE"#,
        case_id
    )
    .fetch_optional(conn)
    .await?)
}

/// Gives the locked case's claim to agent `to` for `ttl` (a new fencing attempt, so
/// the previous holder's fence is void), or ends every claim when `to` is `None`.
/// Returns until when the new claim runs.
pub async fn set_claim(
    conn: &mut PgConnection,
    case_id: Uuid,
    to: Option<Uuid>,
    ttl: Duration,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"UPDATE reactivation_cases
           SET lease_owner = $2,
               lease_expires_at = CASE WHEN $2::text IS NULL THEN NULL
                                       ELSE now() + make_interval(secs => $3) END,
               attempt = attempt + 1, updated_at = now()
           WHERE id = $1
           RETURNING lease_expires_at"#,
        case_id,
        to.map(agent_owner),
        ttl.as_secs_f64(),
    )
    .fetch_one(conn)
    .await?)
}

/// Escalates the locked case by hand at `version` (level `level`, by `agent`, with
/// `reason`); false when it is escalated already or moved on. Supervisors' consoles
/// are told at commit.
pub async fn escalate_by_hand(
    conn: &mut PgConnection,
    case_id: Uuid,
    version: i32,
    level: i16,
    agent: Uuid,
    reason: &str,
) -> Result<bool, StoreError> {
    let raised = sqlx::query_scalar!(
        r#"UPDATE reactivation_cases
           SET escalation_level = $3, escalated_at = now(), escalated_state = state,
               escalated_version = version, escalated_by = $4, escalation_reason = $5
           WHERE id = $1 AND version = $2 AND escalation_level = 0
           RETURNING state AS "state: CaseState""#,
        case_id,
        version,
        level,
        agent,
        reason,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(state) = raised else {
        return Ok(false);
    };
    let payload =
        serde_json::json!({ "case_id": case_id, "level": level, "state": state, "manual": true })
            .to_string();
    sqlx::query!("SELECT pg_notify($1, $2)", ESCALATION_CHANNEL, payload)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// Who escalated a case by hand and why (both `None` for an SLA escalation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualEscalation {
    /// The case.
    pub case_id: Uuid,
    /// The agent's username.
    pub escalated_by: Option<String>,
    /// Their reason.
    pub reason: Option<String>,
}

/// The manual escalations among `case_ids` (cases escalated by the SLA are left out).
pub async fn manual_escalations(
    db: impl sqlx::PgExecutor<'_>,
    case_ids: &[Uuid],
) -> Result<Vec<ManualEscalation>, StoreError> {
    Ok(sqlx::query_as!(
        ManualEscalation,
        r#"SELECT c.id AS case_id, a.username AS "escalated_by?", c.escalation_reason AS reason
           FROM reactivation_cases c LEFT JOIN agents a ON a.id = c.escalated_by
           WHERE c.id = ANY($1) AND c.escalated_by IS NOT NULL"#,
        case_ids
    )
    .fetch_all(db)
    .await?)
}

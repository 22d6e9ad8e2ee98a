//! Work claiming for workers: `FOR UPDATE SKIP LOCKED` with an expiring lease and a
//! fencing token (the case's `attempt`), so that a crashed worker's case is picked
//! up again and a stale worker can never overwrite a newer outcome.

use std::time::Duration;

use case_domain::CaseState;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

/// The lease a worker presents with every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The worker id that claimed.
    pub owner: String,
    /// The attempt number the claim produced.
    pub attempt: i32,
}

/// A case claimed by a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The case.
    pub case_id: Uuid,
    /// Its state when claimed.
    pub state: CaseState,
    /// Its version when claimed (the expected version of the worker's transition).
    pub version: i32,
    /// The lease to present with writes.
    pub fence: Fence,
    /// When the lease ends unless renewed.
    pub lease_expires_at: DateTime<Utc>,
    /// How long the case had been in its state when claimed.
    pub waited: Duration,
    /// Whether this is the first claim since the case entered its state: then
    /// `waited` is the hand-off latency (commit of the transition → claim).
    pub first_in_state: bool,
    /// The case's number (read by the claim itself: no second statement).
    pub msisdn: case_domain::Msisdn,
}

fn interval(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Claims the case that has waited longest in one of `states` and is not leased.
pub async fn claim_next(
    db: impl PgExecutor<'_>,
    states: &[CaseState],
    worker: &str,
    lease: Duration,
) -> Result<Option<Claim>, StoreError> {
    Ok(claim_batch(db, states, worker, lease, 1).await?.pop())
}

/// Claims up to `max` cases of `states` that are not leased, those that have waited
/// longest first, in one statement. Each claim raises its case's attempt, so every
/// case carries its own fencing token; concurrent claimers get distinct cases.
pub async fn claim_batch(
    db: impl PgExecutor<'_>,
    states: &[CaseState],
    worker: &str,
    lease: Duration,
    max: usize,
) -> Result<Vec<Claim>, StoreError> {
    Ok(claim_batch_due(db, states, worker, lease, max).await?.0)
}

/// [`claim_batch`], and, when the claim comes back short (nothing more is claimable
/// now), what [`next_case_due`] would answer after it, from the same statement: when
/// the next case of `states` this claim did not take becomes claimable because a
/// lease or back-off ends (`None`: none is waiting on one). A claim that filled every
/// slot reads no due time.
pub async fn claim_batch_due(
    db: impl PgExecutor<'_>,
    states: &[CaseState],
    worker: &str,
    lease: Duration,
    max: usize,
) -> Result<(Vec<Claim>, Option<DateTime<Utc>>), StoreError> {
    use sqlx::Row;
    // The states and the batch size are written into the statement, not bound (as
    // the queue claims do, case_store::queue): only the worker and the lease are
    // parameters, so the generic plan costs what the custom ones do and Postgres
    // keeps it. Bound, they made the generic plan look dearer (a bound LIMIT is
    // costed as a tenth of the table) and the claim was planned on every run (1,701
    // plans for 1,694 claims at 100/s). A worker claims with one set of states and
    // asks for a power of two of its free slots (`service_runtime`'s `claim_size`),
    // so a connection prepares few variants and runs each often enough to keep it.
    let states_sql = crate::queue::array_literal(states.iter().map(|s| s.as_str()), "case_state");
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    // NO KEY UPDATE, not UPDATE: a transaction that merely inserts a row referencing
    // the case (outbox, timers, notes: a foreign-key KEY SHARE lock) must not make
    // the claim skip it, or the worker would sleep until its fallback poll.
    let sql = format!(
        r#"WITH next AS (
               SELECT id, updated_at = state_entered_at AS fresh FROM reactivation_cases
               WHERE state = ANY({states_sql})
                 -- Spelled out so that any plan, the generic one included, reads open
                 -- cases only (partial index): only open cases are ever claimed.
                 AND state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
                 AND (lease_expires_at IS NULL OR lease_expires_at <= now())
               ORDER BY state_entered_at
               LIMIT {max}
               FOR NO KEY UPDATE SKIP LOCKED
           ), claimed AS (
               UPDATE reactivation_cases c
               SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2),
                   attempt = c.attempt + 1, updated_at = now()
               -- An id list, not a join on `id`: a generic plan that guessed `next` at
               -- a tenth of the open cases hashed the whole table for it, a
               -- sequential scan of every finished case.
               FROM next WHERE c.id = ANY(ARRAY(SELECT id FROM next)) AND c.id = next.id
               RETURNING c.id, c.state, c.version, c.attempt, c.msisdn, c.lease_expires_at,
                         extract(epoch FROM now() - c.state_entered_at)::float8 AS waited,
                         next.fresh
           )
           SELECT d.next_due, k.id, k.state, k.version, k.attempt, k.msisdn,
                  k.lease_expires_at, k.waited, k.fresh
           FROM (SELECT min(t.lease_expires_at) AS next_due FROM reactivation_cases t
                  WHERE (SELECT count(*) FROM next) < {max}
                    AND t.state = ANY({states_sql}) AND t.lease_expires_at IS NOT NULL
                    AND t.state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
                    AND t.id NOT IN (SELECT id FROM next)) d
           LEFT JOIN claimed k ON true"#
    );
    let rows = sqlx::query(&sql)
        .bind(worker)
        .bind(interval(lease))
        .fetch_all(db)
        .await?;
    let next_due: Option<DateTime<Utc>> = match rows.first() {
        Some(row) => row.try_get("next_due")?,
        None => None,
    };
    let mut claims = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(case_id) = row.try_get::<Option<Uuid>, _>("id")? else {
            continue;
        };
        claims.push(Claim {
            case_id,
            state: row.try_get("state")?,
            version: row.try_get("version")?,
            fence: Fence {
                owner: worker.to_owned(),
                attempt: row.try_get("attempt")?,
            },
            lease_expires_at: row.try_get("lease_expires_at")?,
            waited: Duration::from_secs_f64(row.try_get::<f64, _>("waited")?.max(0.0)),
            first_in_state: row.try_get("fresh")?,
            msisdn: row.try_get("msisdn")?,
        });
    }
    // Longest waiting first (UPDATE ... RETURNING keeps no order).
    claims.sort_by_key(|c| std::cmp::Reverse(c.waited));
    Ok((claims, next_due))
}

/// Extends a lease the worker still holds; `LeaseLost` if it does not.
pub async fn renew_lease(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    fence: &Fence,
    lease: Duration,
) -> Result<DateTime<Utc>, StoreError> {
    let row = sqlx::query!(
        r#"UPDATE reactivation_cases SET lease_expires_at = now() + make_interval(secs => $4)
           WHERE id = $1 AND lease_owner = $2 AND attempt = $3
           RETURNING lease_expires_at AS "lease_expires_at!""#,
        case_id,
        fence.owner,
        fence.attempt,
        interval(lease),
    )
    .fetch_optional(db)
    .await?;
    row.map(|r| r.lease_expires_at)
        .ok_or(StoreError::LeaseLost {
            case_id,
            attempt: fence.attempt,
        })
}

/// Gives a claimed case back without moving it; nobody may claim it again for
/// `retry_after` (zero: at once). `LeaseLost` if the lease is no longer held.
pub async fn release(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    fence: &Fence,
    retry_after: Duration,
) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"UPDATE reactivation_cases
           SET lease_owner = NULL, updated_at = now(),
               lease_expires_at = CASE WHEN $4::float8 > 0 THEN now() + make_interval(secs => $4) END
           WHERE id = $1 AND lease_owner = $2 AND attempt = $3"#,
        case_id,
        fence.owner,
        fence.attempt,
        interval(retry_after),
    )
    .execute(db)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost {
            case_id,
            attempt: fence.attempt,
        })
    }
}

/// When the next case in `states` becomes claimable because a lease or back-off
/// ends (`None` if none is waiting on a timer). Workers sleep until then at most.
pub async fn next_case_due(
    db: impl PgExecutor<'_>,
    states: &[CaseState],
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT min(lease_expires_at) FROM reactivation_cases
           WHERE state = ANY($1::case_state[]) AND lease_expires_at IS NOT NULL
             -- Open cases only, for any plan (partial index).
             AND state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')"#,
        states as &[CaseState],
    )
    .fetch_one(db)
    .await?)
}

//! The outbox: side effects committed with a state change, delivered at least once by
//! a worker that claims rows with a lease and a fencing token (`attempts`).

use std::time::Duration;

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

/// An outbox row claimed for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxClaim {
    /// Message id: the idempotency key of the external call.
    pub id: Uuid,
    /// The case it is about.
    pub case_id: Option<Uuid>,
    /// The transition that produced it.
    pub event_id: Option<Uuid>,
    /// Its topic.
    pub topic: String,
    /// What to send.
    pub payload: serde_json::Value,
    /// Delivery attempt number, counting this one; also the fencing token.
    pub attempts: i32,
    /// The worker holding it.
    pub owner: String,
    /// How long it had waited since it was written (hand-off latency on the first attempt).
    pub waited: std::time::Duration,
}

/// The `NOTIFY` channel that wakes the deliverers of `topic`.
pub fn outbox_channel(topic: &str) -> String {
    format!("outbox_{}", topic.replace('.', "_"))
}

/// Claims the oldest due, undelivered message of one of `topics`.
pub async fn claim_outbox(
    db: impl PgExecutor<'_>,
    topics: &[String],
    worker: &str,
    lease: Duration,
) -> Result<Option<OutboxClaim>, StoreError> {
    let row = sqlx::query!(
        r#"WITH next AS (
               SELECT id FROM outbox
               WHERE topic = ANY($1) AND delivered_at IS NULL AND failed_at IS NULL
                 AND available_at <= now()
                 AND (lease_expires_at IS NULL OR lease_expires_at <= now())
               ORDER BY available_at
               LIMIT 1
               FOR UPDATE SKIP LOCKED
           )
           UPDATE outbox o
           SET lease_owner = $2, lease_expires_at = now() + make_interval(secs => $3),
               attempts = o.attempts + 1
           FROM next WHERE o.id = next.id
           RETURNING o.id, o.case_id, o.event_id, o.topic, o.payload, o.attempts,
                     extract(epoch FROM now() - o.created_at)::float8 AS "waited!""#,
        topics,
        worker,
        lease.as_secs_f64(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| OutboxClaim {
        id: r.id,
        case_id: r.case_id,
        event_id: r.event_id,
        topic: r.topic,
        payload: r.payload,
        attempts: r.attempts,
        owner: worker.to_owned(),
        waited: std::time::Duration::from_secs_f64(r.waited.max(0.0)),
    }))
}

fn lease_lost(claim: &OutboxClaim) -> StoreError {
    StoreError::LeaseLost {
        case_id: claim.case_id.unwrap_or(claim.id),
        attempt: claim.attempts,
    }
}

/// Records that the receiver confirmed the message.
pub async fn mark_delivered(
    db: impl PgExecutor<'_>,
    claim: &OutboxClaim,
) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"UPDATE outbox SET delivered_at = now(), lease_owner = NULL, lease_expires_at = NULL, last_error = NULL
           WHERE id = $1 AND lease_owner = $2 AND attempts = $3"#,
        claim.id,
        claim.owner,
        claim.attempts,
    )
    .execute(db)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(lease_lost(claim))
    }
}

/// Puts the message back to be tried again after `delay`, noting the error.
pub async fn retry_later(
    db: impl PgExecutor<'_>,
    claim: &OutboxClaim,
    delay: Duration,
    error: &str,
) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"UPDATE outbox SET available_at = now() + make_interval(secs => $4), lease_owner = NULL,
                             lease_expires_at = NULL, last_error = left($5, 500)
           WHERE id = $1 AND lease_owner = $2 AND attempts = $3"#,
        claim.id,
        claim.owner,
        claim.attempts,
        delay.as_secs_f64(),
        error,
    )
    .execute(db)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(lease_lost(claim))
    }
}

/// Gives up on the message after its last attempt.
pub async fn mark_failed(
    db: impl PgExecutor<'_>,
    claim: &OutboxClaim,
    error: &str,
) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"UPDATE outbox SET failed_at = now(), lease_owner = NULL, lease_expires_at = NULL, last_error = left($4, 500)
           WHERE id = $1 AND lease_owner = $2 AND attempts = $3"#,
        claim.id,
        claim.owner,
        claim.attempts,
        error,
    )
    .execute(db)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(lease_lost(claim))
    }
}

/// When the next pending message of `topics` becomes due (retry back-off or an
/// expired lease); `None` if none is pending. Deliverers sleep until then at most.
pub async fn next_outbox_due(
    db: impl PgExecutor<'_>,
    topics: &[String],
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT min(greatest(available_at, coalesce(lease_expires_at, available_at))) FROM outbox
           WHERE topic = ANY($1) AND delivered_at IS NULL AND failed_at IS NULL"#,
        topics,
    )
    .fetch_one(db)
    .await?)
}

/// Extends the lease on a message being delivered; `LeaseLost` if it is no longer held.
pub async fn renew_outbox_lease(
    db: impl PgExecutor<'_>,
    claim: &OutboxClaim,
    lease: Duration,
) -> Result<(), StoreError> {
    let done = sqlx::query!(
        "UPDATE outbox SET lease_expires_at = now() + make_interval(secs => $4)
         WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND delivered_at IS NULL",
        claim.id,
        claim.owner,
        claim.attempts,
        lease.as_secs_f64(),
    )
    .execute(db)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(lease_lost(claim))
    }
}

//! The outbox: side effects committed with a state change, delivered at least once by
//! a worker that claims rows with a lease and a fencing token (`attempts`).

use std::time::Duration;

use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use crate::{
    StoreError,
    queue::{self, Lease, OUTBOX},
};

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

impl OutboxClaim {
    /// The queue lease this claim holds.
    pub fn lease(&self) -> Lease {
        Lease {
            queue: OUTBOX.name,
            item: self.id.to_string(),
            owner: self.owner.clone(),
            attempt: self.attempts,
        }
    }

    /// The outbox's lease-lost error names the case (or the message when it has none).
    fn lost(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::QueueLeaseLost { .. } => StoreError::LeaseLost {
                case_id: self.case_id.unwrap_or(self.id),
                attempt: self.attempts,
            },
            other => other,
        }
    }
}

/// Claims the oldest due, undelivered message of one of `topics` (see [`queue::claim`]).
pub async fn claim_outbox(
    db: impl PgExecutor<'_>,
    topics: &[String],
    worker: &str,
    lease: Duration,
) -> Result<Option<OutboxClaim>, StoreError> {
    Ok(claim_outbox_batch(db, topics, worker, lease, 1)
        .await?
        .pop())
}

/// Claims up to `max` due, undelivered messages of `topics`, oldest first, in one
/// statement; each carries its own attempt as its fence (see [`queue::claim_batch`]).
pub async fn claim_outbox_batch(
    db: impl PgExecutor<'_>,
    topics: &[String],
    worker: &str,
    lease: Duration,
    max: usize,
) -> Result<Vec<OutboxClaim>, StoreError> {
    Ok(claim_outbox_batch_due(db, topics, worker, lease, max)
        .await?
        .0)
}

/// [`claim_outbox_batch`], with [`next_outbox_due`]'s answer after a short claim,
/// from the same statement (see [`queue::claim_batch_due`]).
pub async fn claim_outbox_batch_due(
    db: impl PgExecutor<'_>,
    topics: &[String],
    worker: &str,
    lease: Duration,
    max: usize,
) -> Result<(Vec<OutboxClaim>, Option<chrono::DateTime<chrono::Utc>>), StoreError> {
    let (claimed, next_due) =
        queue::claim_batch_due(db, &OUTBOX, topics, worker, lease, max).await?;
    let claims = claimed
        .into_iter()
        .map(|claimed| {
            let row = &claimed.row;
            let waited: f64 = row.try_get("waited")?;
            Ok(OutboxClaim {
                id: row.try_get("id")?,
                case_id: row.try_get("case_id")?,
                event_id: row.try_get("event_id")?,
                topic: row.try_get("topic")?,
                payload: row.try_get("payload")?,
                attempts: claimed.lease.attempt,
                owner: claimed.lease.owner,
                waited: std::time::Duration::from_secs_f64(waited.max(0.0)),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((claims, next_due))
}

/// Records that the receiver confirmed the message.
pub async fn mark_delivered(
    db: impl PgExecutor<'_>,
    claim: &OutboxClaim,
) -> Result<(), StoreError> {
    queue::done(db, &OUTBOX, &claim.lease(), None)
        .await
        .map_err(|e| claim.lost(e))
}

/// Puts the message back to be tried again after `delay`, noting the error; the
/// attempt that reaches the outbox's ceiling makes it dead instead.
pub async fn retry_later(
    db: impl PgExecutor<'_>,
    claim: &OutboxClaim,
    delay: Duration,
    error: &str,
) -> Result<(), StoreError> {
    queue::retry(db, &OUTBOX, &claim.lease(), delay, error)
        .await
        .map(|_| ())
        .map_err(|e| claim.lost(e))
}

/// Gives up on the message after its last attempt (it is dead: an admin may retry it).
pub async fn mark_failed(
    db: impl PgExecutor<'_>,
    claim: &OutboxClaim,
    error: &str,
) -> Result<(), StoreError> {
    queue::fail(db, &OUTBOX, &claim.lease(), error)
        .await
        .map_err(|e| claim.lost(e))
}

/// When the next pending message of `topics` becomes due (retry back-off or an
/// expired lease); `None` if none is pending. Deliverers sleep until then at most.
pub async fn next_outbox_due(
    db: impl PgExecutor<'_>,
    topics: &[String],
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    queue::next_due(db, &OUTBOX, topics).await
}

/// Extends the lease on a message being delivered; `LeaseLost` if it is no longer held.
pub async fn renew_outbox_lease(
    db: impl PgExecutor<'_>,
    claim: &OutboxClaim,
    lease: Duration,
) -> Result<(), StoreError> {
    queue::renew(db, &OUTBOX, &claim.lease(), lease)
        .await
        .map_err(|e| claim.lost(e))
}

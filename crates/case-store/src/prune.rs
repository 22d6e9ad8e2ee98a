//! Pruning of finished operational rows after their retention: delivered outbox
//! messages, fired timers, ended agent sessions, finished outbound webhook deliveries
//! (with their attempt log) and processed inbound carrier webhooks.
//!
//! Each call of [`prune_batch`] is one statement, so one transaction: it deletes at
//! most `limit` of the oldest rows past the cutoff, read through an index on the
//! finishing time, locked with `FOR UPDATE SKIP LOCKED` so that two runners (two timers
//! services) delete disjoint batches and never wait on each other. The history
//! (case_events, audit_log) and dead letters (failed items waiting for an admin) are
//! never pruned here.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::StoreError;

/// A kind of row that is pruned after its retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prunable {
    /// Outbox messages delivered before the cutoff.
    DeliveredOutbox,
    /// Timers fired before the cutoff, once their case has moved on (a later version or
    /// a final state): the sweep re-arms an open case without a timer for its version.
    FiredTimers,
    /// Agent sessions that ended (expired or logged out) before the cutoff.
    EndedSessions,
    /// Outbound webhook deliveries delivered or cancelled before the cutoff, with their
    /// attempt log (failed ones are dead letters and stay until an admin acts).
    FinishedDeliveries,
    /// Inbound carrier webhooks processed before the cutoff.
    ProcessedCarrierWebhooks,
}

impl Prunable {
    /// Every kind, in pruning order.
    pub const ALL: [Prunable; 5] = [
        Prunable::DeliveredOutbox,
        Prunable::FiredTimers,
        Prunable::EndedSessions,
        Prunable::FinishedDeliveries,
        Prunable::ProcessedCarrierWebhooks,
    ];

    /// The table it deletes from (the `table` label in `/metrics`).
    pub fn table(self) -> &'static str {
        match self {
            Prunable::DeliveredOutbox => "outbox",
            Prunable::FiredTimers => "case_timers",
            Prunable::EndedSessions => "agent_sessions",
            Prunable::FinishedDeliveries => "webhook_deliveries",
            Prunable::ProcessedCarrierWebhooks => "carrier_webhooks",
        }
    }
}

/// Deletes at most `limit` rows of `kind` that finished before `cutoff`, oldest first;
/// returns how many.
pub async fn prune_batch(
    pool: &PgPool,
    kind: Prunable,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<u64, StoreError> {
    // A range over finished rows (the history): planned for the cutoff.
    let mut tx = crate::begin_planned(pool).await?;
    let db = &mut *tx;
    let done = match kind {
        Prunable::DeliveredOutbox => {
            sqlx::query!(
                r#"DELETE FROM outbox WHERE id IN (
                       SELECT id FROM outbox
                       WHERE delivered_at IS NOT NULL AND delivered_at < $1
                       ORDER BY delivered_at
                       LIMIT $2
                       FOR UPDATE SKIP LOCKED)"#,
                cutoff,
                limit
            )
            .execute(db)
            .await?
        }
        Prunable::FiredTimers => {
            sqlx::query!(
                r#"DELETE FROM case_timers WHERE id IN (
                       SELECT t.id FROM case_timers t
                       JOIN reactivation_cases c ON c.id = t.case_id
                       WHERE t.fired_at IS NOT NULL AND t.fired_at < $1
                         AND (t.case_version < c.version
                              OR c.state IN ('reactivated', 'cancelled', 'expired', 'closed'))
                       ORDER BY t.fired_at
                       LIMIT $2
                       FOR UPDATE OF t SKIP LOCKED)"#,
                cutoff,
                limit
            )
            .execute(db)
            .await?
        }
        Prunable::EndedSessions => {
            sqlx::query!(
                r#"DELETE FROM agent_sessions WHERE token_hash IN (
                       SELECT token_hash FROM agent_sessions
                       WHERE least(expires_at, revoked_at) < $1
                       ORDER BY least(expires_at, revoked_at)
                       LIMIT $2
                       FOR UPDATE SKIP LOCKED)"#,
                cutoff,
                limit
            )
            .execute(db)
            .await?
        }
        Prunable::FinishedDeliveries => {
            sqlx::query!(
                r#"WITH batch AS (
                       SELECT id FROM webhook_deliveries
                       WHERE status IN ('delivered', 'cancelled') AND finished_at < $1
                       ORDER BY finished_at
                       LIMIT $2
                       FOR UPDATE SKIP LOCKED),
                   attempts AS (
                       DELETE FROM webhook_delivery_attempts
                       WHERE delivery_id IN (SELECT id FROM batch))
                   DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM batch)"#,
                cutoff,
                limit
            )
            .execute(db)
            .await?
        }
        Prunable::ProcessedCarrierWebhooks => {
            sqlx::query!(
                r#"DELETE FROM carrier_webhooks WHERE id IN (
                       SELECT id FROM carrier_webhooks
                       WHERE processed_at IS NOT NULL AND processed_at < $1
                       ORDER BY processed_at
                       LIMIT $2
                       FOR UPDATE SKIP LOCKED)"#,
                cutoff,
                limit
            )
            .execute(db)
            .await?
        }
    };
    tx.commit().await?;
    Ok(done.rows_affected())
}

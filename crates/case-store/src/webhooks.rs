//! Webhooks both ways: the inbound carrier webhooks (stored once per webhook-id,
//! processed from the same table), the suspension notices they record, and the
//! outbound side (endpoints, the event feed a trigger fills, deliveries and their log).

use std::time::Duration;

use case_domain::{CaseEvent, CaseState, risk::RiskTier};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{CaseRow, StoreError, risk::OrderRow};

/// The channel that wakes the processor of inbound carrier webhooks.
pub const CARRIER_WEBHOOK_CHANNEL: &str = "carrier_webhook_received";
/// The channel the `case_events` trigger notifies when it queues an event for fan-out.
pub const EVENT_FEED_CHANNEL: &str = "webhook_event_feed";
/// The channel that wakes the deliverer of outbound webhooks.
pub const DELIVERY_CHANNEL: &str = "webhook_delivery";

// ---------------------------------------------------------------- inbound

/// Stores a verified carrier webhook unless its id was seen before, and wakes the
/// processor. Returns whether it was new. Concurrent deliveries of the same id
/// store exactly one row (the primary key decides).
pub async fn receive_carrier_webhook(
    db: impl PgExecutor<'_>,
    id: &str,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<bool, StoreError> {
    let stored = sqlx::query_scalar!(
        r#"WITH stored AS (
               INSERT INTO carrier_webhooks (id, type, payload) VALUES ($1, $2, $3)
               ON CONFLICT (id) DO NOTHING
               RETURNING id
           )
           SELECT pg_notify($4, id)::text AS "notified" FROM stored"#,
        id,
        kind,
        payload,
        CARRIER_WEBHOOK_CHANNEL,
    )
    .fetch_optional(db)
    .await?;
    Ok(stored.is_some())
}

/// A stored carrier webhook as the processor sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CarrierWebhookRow {
    /// The webhook-id.
    pub id: String,
    /// Event type.
    pub kind: String,
    /// The body.
    pub payload: serde_json::Value,
    /// When it was stored.
    pub received_at: DateTime<Utc>,
    /// When it was processed.
    pub processed_at: Option<DateTime<Utc>>,
    /// Why it was ignored, or the last error.
    pub error: Option<String>,
    /// Processing attempts.
    pub attempts: i32,
    /// When processing was given up.
    pub failed_at: Option<DateTime<Utc>>,
}

/// A carrier webhook claimed for processing.
#[derive(Debug, Clone, PartialEq)]
pub struct CarrierWebhookClaim {
    /// The webhook-id.
    pub id: String,
    /// Event type.
    pub kind: String,
    /// The body.
    pub payload: serde_json::Value,
    /// Attempt number, counting this one; also the fencing token.
    pub attempts: i32,
    /// The worker holding it.
    pub owner: String,
}

/// Claims the oldest queued carrier webhook whose back-off and lease are over.
pub async fn claim_carrier_webhook(
    db: impl PgExecutor<'_>,
    worker: &str,
    lease: Duration,
) -> Result<Option<CarrierWebhookClaim>, StoreError> {
    let row = sqlx::query!(
        r#"WITH next AS (
               SELECT id FROM carrier_webhooks
               WHERE processed_at IS NULL AND failed_at IS NULL AND available_at <= now()
                 AND (lease_expires_at IS NULL OR lease_expires_at <= now())
               ORDER BY available_at
               LIMIT 1
               FOR UPDATE SKIP LOCKED
           )
           UPDATE carrier_webhooks w
           SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2),
               attempts = w.attempts + 1
           FROM next WHERE w.id = next.id
           RETURNING w.id, w.type, w.payload, w.attempts"#,
        worker,
        lease.as_secs_f64(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| CarrierWebhookClaim {
        id: r.id,
        kind: r.r#type,
        payload: r.payload,
        attempts: r.attempts,
        owner: worker.to_owned(),
    }))
}

fn carrier_lease_lost(claim: &CarrierWebhookClaim) -> StoreError {
    StoreError::Conflict(format!(
        "carrier webhook lease (attempt {}) is no longer held",
        claim.attempts
    ))
}

/// Marks a claimed webhook processed; `note` says why it was ignored, if it was.
pub async fn mark_carrier_webhook_processed(
    db: impl PgExecutor<'_>,
    claim: &CarrierWebhookClaim,
    note: Option<&str>,
) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"UPDATE carrier_webhooks
           SET processed_at = now(), error = left($4, 500), lease_owner = NULL, lease_expires_at = NULL
           WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND processed_at IS NULL"#,
        claim.id,
        claim.owner,
        claim.attempts,
        note,
    )
    .execute(db)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(carrier_lease_lost(claim))
    }
}

/// Puts a claimed webhook back to be processed again after `delay`.
pub async fn retry_carrier_webhook(
    db: impl PgExecutor<'_>,
    claim: &CarrierWebhookClaim,
    delay: Duration,
    error: &str,
) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"UPDATE carrier_webhooks
           SET available_at = now() + make_interval(secs => $4), error = left($5, 500),
               lease_owner = NULL, lease_expires_at = NULL
           WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND processed_at IS NULL"#,
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
        Err(carrier_lease_lost(claim))
    }
}

/// Gives up on a claimed webhook.
pub async fn fail_carrier_webhook(
    db: impl PgExecutor<'_>,
    claim: &CarrierWebhookClaim,
    error: &str,
) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"UPDATE carrier_webhooks
           SET failed_at = now(), error = left($4, 500), lease_owner = NULL, lease_expires_at = NULL
           WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND processed_at IS NULL"#,
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
        Err(carrier_lease_lost(claim))
    }
}

/// When the next queued webhook becomes claimable (back-off or lease end), if any.
pub async fn next_carrier_webhook_due(
    db: impl PgExecutor<'_>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT min(greatest(available_at, coalesce(lease_expires_at, available_at)))
           FROM carrier_webhooks WHERE processed_at IS NULL AND failed_at IS NULL"#
    )
    .fetch_one(db)
    .await?)
}

/// One stored carrier webhook (for checks and operations).
pub async fn load_carrier_webhook(
    db: impl PgExecutor<'_>,
    id: &str,
) -> Result<Option<CarrierWebhookRow>, StoreError> {
    Ok(sqlx::query_as!(
        CarrierWebhookRow,
        r#"SELECT id, type AS kind, payload, received_at, processed_at, error, attempts, failed_at
           FROM carrier_webhooks WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?)
}

/// Records a suspension the carrier announced (once per webhook). Returns the notice id.
pub async fn record_suspension_notice(
    db: impl PgExecutor<'_>,
    webhook_id: &str,
    msisdn: &str,
    reason: &str,
    suspended_at: DateTime<Utc>,
) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"INSERT INTO carrier_suspension_notices (id, webhook_id, msisdn, reason, suspended_at)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (webhook_id) DO NOTHING
           RETURNING id"#,
        Uuid::now_v7(),
        webhook_id,
        msisdn,
        reason,
        suspended_at,
    )
    .fetch_optional(db)
    .await?)
}

/// The number's open (non-terminal) case, locked until the transaction ends, if any.
pub async fn lock_open_case_for_msisdn(
    conn: &mut PgConnection,
    msisdn: &str,
) -> Result<Option<CaseRow>, StoreError> {
    Ok(sqlx::query_as!(
        CaseRow,
        r#"SELECT id, msisdn, state AS "state: CaseState", version, channel, locale, created_at,
                  updated_at, state_entered_at, lease_owner, lease_expires_at, attempt
           FROM reactivation_cases
           WHERE msisdn = $1 AND state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
           FOR UPDATE"#,
        msisdn
    )
    .fetch_optional(&mut *conn)
    .await?)
}

/// Loads a provisioning order and locks it until the transaction ends, so that the
/// provisioning worker and a carrier confirmation finish it one after the other.
pub async fn lock_order(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<OrderRow>, StoreError> {
    Ok(sqlx::query_as!(
        OrderRow,
        "SELECT id, case_id, restoration, state, carrier_ref, failures, created_at, updated_at
         FROM provisioning_orders WHERE id = $1 FOR UPDATE",
        order_id
    )
    .fetch_optional(&mut *conn)
    .await?)
}

/// Marks an order's outbox row delivered because the carrier confirmed the order
/// itself. Unfenced on purpose: a deliverer still holding the row keeps its lease
/// and may record its own (identical) outcome.
pub async fn confirm_order_outbox(
    db: impl PgExecutor<'_>,
    order_id: Uuid,
) -> Result<bool, StoreError> {
    let done = sqlx::query!(
        r#"UPDATE outbox SET delivered_at = now(), last_error = NULL
           WHERE id = $1 AND delivered_at IS NULL AND failed_at IS NULL"#,
        order_id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores a re-score of a case from new carrier signals: a new assessment, stamped
/// with the clock and never earlier than the case's latest, so it becomes the latest.
pub async fn save_rescored_assessment(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    tier: RiskTier,
    reason_codes: &[String],
    needs: &[String],
    signals: &serde_json::Value,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        r#"INSERT INTO risk_assessments (id, case_id, tier, reason_codes, needs, signals, assessed_at)
           VALUES ($1, $2, $3, $4, $5, $6,
                   greatest(clock_timestamp(),
                            (SELECT max(assessed_at) FROM risk_assessments WHERE case_id = $2)))"#,
        id,
        case_id,
        tier as RiskTier,
        reason_codes,
        needs,
        signals,
    )
    .execute(db)
    .await?;
    Ok(id)
}

// ---------------------------------------------------------------- outbound

/// A registered outbound endpoint (without its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRow {
    /// Endpoint id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// Subscribed event types.
    pub event_types: Vec<String>,
    /// The admin who registered it.
    pub created_by: Option<Uuid>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When a 410 disabled it.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
}

/// Registers an endpoint with its sealed secret.
pub async fn create_endpoint(
    db: impl PgExecutor<'_>,
    id: Uuid,
    url: &str,
    event_types: &[String],
    secret_sealed: &[u8],
    created_by: Option<Uuid>,
) -> Result<EndpointRow, StoreError> {
    Ok(sqlx::query_as!(
        EndpointRow,
        r#"INSERT INTO webhook_endpoints (id, url, event_types, secret_sealed, created_by)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id, url, event_types, created_by, created_at, disabled_at, disabled_reason"#,
        id,
        url,
        event_types,
        secret_sealed,
        created_by,
    )
    .fetch_one(db)
    .await?)
}

/// Every registered (not deleted) endpoint, oldest first.
pub async fn list_endpoints(db: impl PgExecutor<'_>) -> Result<Vec<EndpointRow>, StoreError> {
    Ok(sqlx::query_as!(
        EndpointRow,
        r#"SELECT id, url, event_types, created_by, created_at, disabled_at, disabled_reason
           FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY created_at, id"#
    )
    .fetch_all(db)
    .await?)
}

/// One registered (not deleted) endpoint.
pub async fn load_endpoint(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<EndpointRow>, StoreError> {
    Ok(sqlx::query_as!(
        EndpointRow,
        r#"SELECT id, url, event_types, created_by, created_at, disabled_at, disabled_reason
           FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL"#,
        id
    )
    .fetch_optional(db)
    .await?)
}

/// Deletes an endpoint: its secret is destroyed, its pending deliveries cancelled,
/// its delivery log kept. Returns whether there was such an endpoint.
pub async fn delete_endpoint(conn: &mut PgConnection, id: Uuid) -> Result<bool, StoreError> {
    let done = sqlx::query!(
        r#"UPDATE webhook_endpoints SET deleted_at = now(), secret_sealed = NULL
           WHERE id = $1 AND deleted_at IS NULL"#,
        id
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    cancel_pending(conn, id, "the endpoint was deleted").await?;
    Ok(true)
}

/// Disables an endpoint (its receiver answered 410 Gone) and cancels its pending deliveries.
pub async fn disable_endpoint(
    conn: &mut PgConnection,
    id: Uuid,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = left($2, 500)
           WHERE id = $1 AND disabled_at IS NULL"#,
        id,
        reason,
    )
    .execute(&mut *conn)
    .await?;
    cancel_pending(conn, id, "the endpoint was disabled").await
}

async fn cancel_pending(
    conn: &mut PgConnection,
    endpoint_id: Uuid,
    why: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"UPDATE webhook_deliveries
           SET status = 'cancelled', finished_at = now(), last_error = $2,
               lease_owner = NULL, lease_expires_at = NULL
           WHERE endpoint_id = $1 AND status = 'pending'"#,
        endpoint_id,
        why,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A case event waiting to be fanned out.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// The case_events row id.
    pub event_id: Uuid,
    /// Its position in the log.
    pub seq: i64,
    /// The case.
    pub case_id: Uuid,
    /// The version it produced.
    pub version: i32,
    /// State before (None for opened).
    pub from_state: Option<CaseState>,
    /// State after.
    pub to_state: CaseState,
    /// What happened.
    pub event: CaseEvent,
    /// When.
    pub at: DateTime<Utc>,
}

/// Takes up to `limit` queued events off the feed (oldest first), skipping rows
/// another fan-out holds. Deleted when the caller's transaction commits; back in the
/// feed if it rolls back.
pub async fn take_feed_batch(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<FeedEvent>, StoreError> {
    Ok(sqlx::query_as!(
        FeedEvent,
        r#"WITH taken AS (
               DELETE FROM webhook_event_feed
               WHERE event_id IN (SELECT event_id FROM webhook_event_feed ORDER BY seq
                                  LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING event_id
           )
           SELECT e.id AS event_id, e.seq, e.case_id, e.version,
                  e.from_state AS "from_state: CaseState", e.to_state AS "to_state: CaseState",
                  e.event AS "event: CaseEvent", e.at
           FROM taken JOIN case_events e ON e.id = taken.event_id
           ORDER BY e.seq"#,
        limit
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// Whether events wait in the feed.
pub async fn feed_pending(db: impl PgExecutor<'_>) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM webhook_event_feed) AS "some!""#)
            .fetch_one(db)
            .await?,
    )
}

/// Enabled endpoints and their event types (for fan-out).
pub async fn active_endpoints(
    db: impl PgExecutor<'_>,
) -> Result<Vec<(Uuid, Vec<String>)>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT id, event_types FROM webhook_endpoints
           WHERE disabled_at IS NULL AND deleted_at IS NULL"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.event_types)).collect())
}

/// Creates a delivery of an event to an endpoint (once per pair) and wakes the deliverer.
pub async fn insert_delivery(
    conn: &mut PgConnection,
    endpoint_id: Uuid,
    event_id: Uuid,
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<bool, StoreError> {
    let id = Uuid::now_v7();
    let done = sqlx::query!(
        r#"INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (endpoint_id, event_id) DO NOTHING"#,
        id,
        endpoint_id,
        event_id,
        event_type,
        payload,
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        sqlx::query!("SELECT pg_notify($1, $2)", DELIVERY_CHANNEL, id.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(done.rows_affected() == 1)
}

/// A delivery claimed for sending, with what is needed to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryClaim {
    /// Delivery id (the webhook-id).
    pub id: Uuid,
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// Its URL.
    pub url: String,
    /// Its sealed secret (None once deleted).
    pub secret_sealed: Option<Vec<u8>>,
    /// Whether the endpoint still takes deliveries.
    pub endpoint_active: bool,
    /// Event type.
    pub event_type: String,
    /// The body.
    pub payload: serde_json::Value,
    /// Attempt number, counting this one; also the fencing token.
    pub attempts: i32,
    /// The worker holding it.
    pub owner: String,
}

/// Claims the delivery that has been due longest.
pub async fn claim_delivery(
    db: impl PgExecutor<'_>,
    worker: &str,
    lease: Duration,
) -> Result<Option<DeliveryClaim>, StoreError> {
    let row = sqlx::query!(
        r#"WITH next AS (
               SELECT id FROM webhook_deliveries
               WHERE status = 'pending' AND next_attempt_at <= now()
                 AND (lease_expires_at IS NULL OR lease_expires_at <= now())
               ORDER BY next_attempt_at
               LIMIT 1
               FOR UPDATE SKIP LOCKED
           ), claimed AS (
               UPDATE webhook_deliveries d
               SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2),
                   attempts = d.attempts + 1
               FROM next WHERE d.id = next.id
               RETURNING d.id, d.endpoint_id, d.event_type, d.payload, d.attempts
           )
           SELECT c.id, c.endpoint_id, c.event_type, c.payload, c.attempts, e.url, e.secret_sealed,
                  (e.disabled_at IS NULL AND e.deleted_at IS NULL) AS "endpoint_active!"
           FROM claimed c JOIN webhook_endpoints e ON e.id = c.endpoint_id"#,
        worker,
        lease.as_secs_f64(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| DeliveryClaim {
        id: r.id,
        endpoint_id: r.endpoint_id,
        url: r.url,
        secret_sealed: r.secret_sealed,
        endpoint_active: r.endpoint_active,
        event_type: r.event_type,
        payload: r.payload,
        attempts: r.attempts,
        owner: worker.to_owned(),
    }))
}

/// When the next pending delivery becomes claimable, if any.
pub async fn next_delivery_due(
    db: impl PgExecutor<'_>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT min(greatest(next_attempt_at, coalesce(lease_expires_at, next_attempt_at)))
           FROM webhook_deliveries WHERE status = 'pending'"#
    )
    .fetch_one(db)
    .await?)
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A 2xx answer.
    Delivered,
    /// Try again after this long.
    RetryAfter(Duration),
    /// No more attempts (schedule used up, or 410).
    Failed,
    /// Not sent: the endpoint no longer takes deliveries.
    Cancelled,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome<'a> {
    /// The receiver's status, if it answered.
    pub status_code: Option<u16>,
    /// What went wrong, if anything.
    pub error: Option<&'a str>,
    /// How long it took.
    pub duration: Duration,
    /// What happens next.
    pub disposition: Disposition,
}

/// Logs an attempt and settles the delivery, fenced by the claim.
pub async fn record_attempt(
    conn: &mut PgConnection,
    claim: &DeliveryClaim,
    outcome: &AttemptOutcome<'_>,
) -> Result<(), StoreError> {
    let (status, delay) = match outcome.disposition {
        Disposition::Delivered => ("delivered", None),
        Disposition::RetryAfter(after) => ("pending", Some(after.as_secs_f64())),
        Disposition::Failed => ("failed", None),
        Disposition::Cancelled => ("cancelled", None),
    };
    let status_code = outcome.status_code.map(i32::from);
    let done = sqlx::query!(
        r#"UPDATE webhook_deliveries
           SET status = $4,
               next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at
                                      ELSE now() + make_interval(secs => $5::float8) END,
               finished_at = CASE WHEN $4 = 'pending' THEN NULL ELSE now() END,
               last_status = coalesce($6, last_status), last_error = left($7, 500),
               lease_owner = NULL, lease_expires_at = NULL
           WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND status = 'pending'"#,
        claim.id,
        claim.owner,
        claim.attempts,
        status,
        delay,
        status_code,
        outcome.error,
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "delivery lease (attempt {}) is no longer held",
            claim.attempts
        )));
    }
    if outcome.disposition != Disposition::Cancelled {
        sqlx::query!(
            r#"INSERT INTO webhook_delivery_attempts (delivery_id, attempt, status_code, error, duration_ms)
               VALUES ($1, $2, $3, left($4, 500), $5)
               ON CONFLICT (delivery_id, attempt) DO NOTHING"#,
            claim.id,
            claim.attempts,
            status_code,
            outcome.error,
            i32::try_from(outcome.duration.as_millis()).unwrap_or(i32::MAX),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A delivery as listed in the delivery log.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    /// Delivery id (the webhook-id).
    pub id: Uuid,
    /// The case event.
    pub event_id: Uuid,
    /// Event type.
    pub event_type: String,
    /// The body.
    pub payload: serde_json::Value,
    /// pending, delivered, failed or cancelled.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: DateTime<Utc>,
    /// Last HTTP status.
    pub last_status: Option<i32>,
    /// Last error.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Settled.
    pub finished_at: Option<DateTime<Utc>>,
}

/// One logged attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    /// The delivery.
    pub delivery_id: Uuid,
    /// Attempt number.
    pub attempt: i32,
    /// When it ended.
    pub attempted_at: DateTime<Utc>,
    /// The receiver's status.
    pub status_code: Option<i32>,
    /// What went wrong.
    pub error: Option<String>,
    /// How long it took (ms).
    pub duration_ms: i32,
}

/// The endpoint's newest deliveries (at most `limit`), newest first, with their attempts.
pub async fn delivery_log(
    conn: &mut PgConnection,
    endpoint_id: Uuid,
    limit: i64,
) -> Result<Vec<(DeliveryRow, Vec<AttemptRow>)>, StoreError> {
    let deliveries = sqlx::query_as!(
        DeliveryRow,
        r#"SELECT id, event_id, event_type, payload, status, attempts, next_attempt_at,
                  last_status, last_error, created_at, finished_at
           FROM webhook_deliveries WHERE endpoint_id = $1
           ORDER BY created_at DESC, id DESC LIMIT $2"#,
        endpoint_id,
        limit,
    )
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = deliveries.iter().map(|d| d.id).collect();
    let attempts = sqlx::query_as!(
        AttemptRow,
        r#"SELECT delivery_id, attempt, attempted_at, status_code, error, duration_ms
           FROM webhook_delivery_attempts WHERE delivery_id = ANY($1)
           ORDER BY delivery_id, attempt"#,
        &ids,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(deliveries
        .into_iter()
        .map(|d| {
            let mine = attempts
                .iter()
                .filter(|a| a.delivery_id == d.id)
                .cloned()
                .collect();
            (d, mine)
        })
        .collect())
}

//! Webhooks both ways: the inbound carrier webhooks (stored once per webhook-id,
//! processed from the same table), the suspension notices they record, and the
//! outbound side (endpoints, the event feed a trigger fills, deliveries and their log).

use std::time::Duration;

use case_domain::{
    CaseEvent, CaseState, Channel, Locale, Msisdn, Restoration,
    risk::{RecordedSignals, RiskTier},
};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Row};
use uuid::Uuid;

use crate::{
    CaseRow, StoreError,
    queue::{self, CARRIER_WEBHOOKS, Lease, WEBHOOK_DELIVERIES},
    risk::OrderRow,
};

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

impl CarrierWebhookClaim {
    /// The queue lease this claim holds.
    pub fn lease(&self) -> Lease {
        Lease {
            queue: CARRIER_WEBHOOKS.name,
            item: self.id.clone(),
            owner: self.owner.clone(),
            attempt: self.attempts,
        }
    }
}

/// Carrier webhook writes with a lost lease have always answered `Conflict`.
fn lease_conflict(what: &str) -> impl Fn(StoreError) -> StoreError + '_ {
    move |e| match e {
        StoreError::QueueLeaseLost { attempt, .. } => StoreError::Conflict(format!(
            "{what} lease (attempt {attempt}) is no longer held"
        )),
        other => other,
    }
}

/// Claims the oldest queued carrier webhook whose back-off and lease are over (see
/// [`queue::claim`]).
pub async fn claim_carrier_webhook(
    db: impl PgExecutor<'_>,
    worker: &str,
    lease: Duration,
) -> Result<Option<CarrierWebhookClaim>, StoreError> {
    Ok(claim_carrier_webhook_due(db, worker, lease).await?.0)
}

/// [`claim_carrier_webhook`]; when there is none to claim, also what
/// [`next_carrier_webhook_due`] would answer, from the same statement.
pub async fn claim_carrier_webhook_due(
    db: impl PgExecutor<'_>,
    worker: &str,
    lease: Duration,
) -> Result<(Option<CarrierWebhookClaim>, Option<DateTime<Utc>>), StoreError> {
    let (mut claimed, next_due) =
        queue::claim_batch_due(db, &CARRIER_WEBHOOKS, &[], worker, lease, 1).await?;
    let Some(claimed) = claimed.pop() else {
        return Ok((None, next_due));
    };
    Ok((
        Some(CarrierWebhookClaim {
            kind: claimed.row.try_get("type")?,
            payload: claimed.row.try_get("payload")?,
            id: claimed.lease.item,
            attempts: claimed.lease.attempt,
            owner: claimed.lease.owner,
        }),
        None,
    ))
}

/// Marks a claimed webhook processed; `note` says why it was ignored, if it was.
pub async fn mark_carrier_webhook_processed(
    db: impl PgExecutor<'_>,
    claim: &CarrierWebhookClaim,
    note: Option<&str>,
) -> Result<(), StoreError> {
    queue::done(db, &CARRIER_WEBHOOKS, &claim.lease(), note)
        .await
        .map_err(lease_conflict("carrier webhook"))
}

/// Puts a claimed webhook back to be processed again after `delay`; the attempt that
/// reaches the queue's ceiling makes it dead instead.
pub async fn retry_carrier_webhook(
    db: impl PgExecutor<'_>,
    claim: &CarrierWebhookClaim,
    delay: Duration,
    error: &str,
) -> Result<(), StoreError> {
    queue::retry(db, &CARRIER_WEBHOOKS, &claim.lease(), delay, error)
        .await
        .map(|_| ())
        .map_err(lease_conflict("carrier webhook"))
}

/// Gives up on a claimed webhook (it is dead: an admin may retry it).
pub async fn fail_carrier_webhook(
    db: impl PgExecutor<'_>,
    claim: &CarrierWebhookClaim,
    error: &str,
) -> Result<(), StoreError> {
    queue::fail(db, &CARRIER_WEBHOOKS, &claim.lease(), error)
        .await
        .map_err(lease_conflict("carrier webhook"))
}

/// When the next queued webhook becomes claimable (back-off or lease end), if any.
pub async fn next_carrier_webhook_due(
    db: impl PgExecutor<'_>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    queue::next_due(db, &CARRIER_WEBHOOKS, &[]).await
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

/// The number's open (non-terminal) case, locked until the transaction ends, if any:
/// the one past identity when there is one (at most one is), else the newest.
pub async fn lock_open_case_for_msisdn(
    conn: &mut PgConnection,
    msisdn: &str,
) -> Result<Option<CaseRow>, StoreError> {
    Ok(sqlx::query_as!(
        CaseRow,
        r#"SELECT id, msisdn AS "msisdn: Msisdn", state AS "state: CaseState", version,
                     channel AS "channel: Channel", locale AS "locale: Locale", created_at,
                  updated_at, state_entered_at, lease_owner, lease_expires_at, attempt
           FROM reactivation_cases
           WHERE msisdn = $1 AND state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
           ORDER BY identity_proven_at IS NULL, id DESC
           LIMIT 1
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
        r#"SELECT id, case_id, restoration AS "restoration: Restoration", state, carrier_ref,
         failures, created_at, updated_at
         FROM provisioning_orders WHERE id = $1 FOR UPDATE"#,
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
    signals: &RecordedSignals,
    rule_version: i32,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        r#"INSERT INTO risk_assessments (id, case_id, tier, reason_codes, needs, signals, rule_version, assessed_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7,
                   greatest(clock_timestamp(),
                            (SELECT max(assessed_at) FROM risk_assessments WHERE case_id = $2)))"#,
        id,
        case_id,
        tier as RiskTier,
        reason_codes,
        needs,
        sqlx::types::Json(signals) as _,
        rule_version,
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

/// Rotates an endpoint's secret: `new_sealed` becomes current, the current one stays
/// valid for signing until `overlap_until`. False when there is no such live endpoint.
pub async fn rotate_endpoint_secret(
    db: impl PgExecutor<'_>,
    id: Uuid,
    new_sealed: &[u8],
    overlap_until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query!(
        r#"UPDATE webhook_endpoints
           SET previous_secret_sealed = secret_sealed, previous_secret_until = $3,
               secret_sealed = $2
           WHERE id = $1 AND deleted_at IS NULL"#,
        id,
        new_sealed,
        overlap_until,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes an endpoint: its secret is destroyed, its pending deliveries cancelled,
/// its delivery log kept. Returns whether there was such an endpoint.
pub async fn delete_endpoint(conn: &mut PgConnection, id: Uuid) -> Result<bool, StoreError> {
    let done = sqlx::query!(
        r#"UPDATE webhook_endpoints SET deleted_at = now(), secret_sealed = NULL,
               previous_secret_sealed = NULL, previous_secret_until = NULL
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
           FROM case_events e
           -- An id list, not a join: the planner looks each event up by its key
           -- instead of hashing the whole log against a feed it thinks is large.
           WHERE e.id = ANY(ARRAY(SELECT event_id FROM taken))
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
        // Payload-free: a fan-out writes one delivery per endpoint in one
        // transaction, and Postgres folds identical notifications into one.
        sqlx::query!("SELECT pg_notify($1, '')", DELIVERY_CHANNEL)
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
    /// The secret a rotation replaced, while its overlap window lasts.
    pub previous_secret_sealed: Option<Vec<u8>>,
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

impl DeliveryClaim {
    /// The queue lease this claim holds.
    pub fn lease(&self) -> Lease {
        Lease {
            queue: WEBHOOK_DELIVERIES.name,
            item: self.id.to_string(),
            owner: self.owner.clone(),
            attempt: self.attempts,
        }
    }
}

/// Claims the delivery that has been due longest (see [`queue::claim`]).
pub async fn claim_delivery(
    db: impl PgExecutor<'_>,
    worker: &str,
    lease: Duration,
) -> Result<Option<DeliveryClaim>, StoreError> {
    let Some(claimed) = queue::claim(db, &WEBHOOK_DELIVERIES, &[], worker, lease).await? else {
        return Ok(None);
    };
    let row = &claimed.row;
    Ok(Some(DeliveryClaim {
        id: row.try_get("id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        url: row.try_get("url")?,
        secret_sealed: row.try_get("secret_sealed")?,
        previous_secret_sealed: row.try_get("previous_secret_sealed")?,
        endpoint_active: row.try_get("endpoint_active")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get("payload")?,
        attempts: claimed.lease.attempt,
        owner: claimed.lease.owner,
    }))
}

/// When the next pending delivery becomes claimable, if any.
pub async fn next_delivery_due(
    db: impl PgExecutor<'_>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    queue::next_due(db, &WEBHOOK_DELIVERIES, &[]).await
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
    let lease = claim.lease();
    let error = outcome.error.unwrap_or_default();
    let settled = match outcome.disposition {
        Disposition::Delivered => {
            queue::done(&mut *conn, &WEBHOOK_DELIVERIES, &lease, outcome.error).await
        }
        Disposition::RetryAfter(after) => {
            queue::retry(&mut *conn, &WEBHOOK_DELIVERIES, &lease, after, error)
                .await
                .map(|_| ())
        }
        Disposition::Failed => queue::fail(&mut *conn, &WEBHOOK_DELIVERIES, &lease, error).await,
        Disposition::Cancelled => {
            queue::cancel(&mut *conn, &WEBHOOK_DELIVERIES, &lease, error).await
        }
    };
    settled.map_err(lease_conflict("delivery"))?;
    let status_code = outcome.status_code.map(i32::from);
    if status_code.is_some() {
        sqlx::query!(
            "UPDATE webhook_deliveries SET last_status = $2 WHERE id = $1",
            claim.id,
            status_code,
        )
        .execute(&mut *conn)
        .await?;
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

//! All of the simulator's SQL. The simulator lives outside the product's migrations:
//! [`prepare`] creates its schema `carrier_sim` idempotently at start.
//!
//! Order effects are applied by [`settle`], called whenever an order or a subscriber is
//! read: an order whose latency has passed is marked `completed` (or `failed` when the
//! number is unknown) and its resume applied to the subscriber, in one statement that
//! only touches orders not yet settled, so each order takes effect exactly once.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use crate::model::{BackupContact, ValidSubscriber};

/// Serialises concurrent `prepare` calls (several processes starting at once).
const PREPARE_LOCK: i64 = 0x00ca_7713_5100;
/// First half of the two-part advisory lock key that serialises settling per number.
const SETTLE_LOCK_CLASS: i32 = 0x7713_5101;

const SCHEMA: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS carrier_sim",
    r"CREATE TABLE IF NOT EXISTS carrier_sim.subscribers (
        msisdn                text PRIMARY KEY,
        full_name             text NOT NULL,
        id_number             text NOT NULL,
        password_hash         text,
        backup_contacts       jsonb NOT NULL DEFAULT '[]',
        recent_contacts       text[] NOT NULL DEFAULT '{}',
        fraud_linked_contacts bigint NOT NULL DEFAULT 0,
        sms_peak_per_hour     bigint NOT NULL DEFAULT 0,
        intl_calls_24h        bigint NOT NULL DEFAULT 0,
        flagged_contacts      text[] NOT NULL DEFAULT '{}',
        status                text NOT NULL CHECK (status IN ('active', 'suspended')),
        restoration           text CHECK (restoration IN ('full', 'inbound_only')),
        suspension_reason     text,
        resume_count          bigint NOT NULL DEFAULT 0,
        updated_at            timestamptz NOT NULL DEFAULT now()
    )",
    r"CREATE TABLE IF NOT EXISTS carrier_sim.messages (
        seq             bigint GENERATED ALWAYS AS IDENTITY,
        message_id      text PRIMARY KEY,
        idempotency_key text NOT NULL UNIQUE,
        msisdn          text NOT NULL,
        kind            text NOT NULL CHECK (kind IN ('sms', 'email')),
        to_address      text NOT NULL,
        sent_to_masked  text NOT NULL,
        body            text NOT NULL,
        sent_at         timestamptz NOT NULL DEFAULT now()
    )",
    "CREATE INDEX IF NOT EXISTS messages_to_address ON carrier_sim.messages (to_address, seq)",
    r"CREATE TABLE IF NOT EXISTS carrier_sim.orders (
        external_id  uuid PRIMARY KEY,
        carrier_ref  text NOT NULL UNIQUE,
        msisdn       text NOT NULL,
        action       text NOT NULL,
        restoration  text NOT NULL CHECK (restoration IN ('full', 'inbound_only')),
        latency_ms   bigint NOT NULL CHECK (latency_ms >= 0),
        created_at   timestamptz NOT NULL DEFAULT now(),
        result       text CHECK (result IN ('completed', 'failed')),
        completed_at timestamptz
    )",
    "CREATE INDEX IF NOT EXISTS orders_unsettled ON carrier_sim.orders (msisdn) WHERE result IS NULL",
    // When the order's `provisioning.completed` webhook was sent (NULL: not yet).
    "ALTER TABLE carrier_sim.orders ADD COLUMN IF NOT EXISTS reported_at timestamptz",
    // Orders can be cancelled before they take effect (TMF641 cancelServiceOrder). The
    // check is widened once, on a schema created before; no table lock when it already is.
    r"DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                        WHERE conrelid = 'carrier_sim.orders'::regclass
                          AND conname = 'orders_result_check'
                          AND pg_get_constraintdef(oid) LIKE '%cancelled%') THEN
            ALTER TABLE carrier_sim.orders DROP CONSTRAINT IF EXISTS orders_result_check;
            ALTER TABLE carrier_sim.orders ADD CONSTRAINT orders_result_check
                CHECK (result IN ('completed', 'failed', 'cancelled'));
        END IF;
    END $$",
    r"CREATE TABLE IF NOT EXISTS carrier_sim.provisioning_requests (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        msisdn          text NOT NULL,
        action          text NOT NULL,
        idempotency_key text NOT NULL,
        restoration     text NOT NULL,
        received_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
        outcome         text NOT NULL,
        status          integer NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS provisioning_requests_msisdn ON carrier_sim.provisioning_requests (msisdn, id)",
];

/// Creates the schema and its tables when missing.
pub(crate) async fn prepare(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PREPARE_LOCK)
        .execute(&mut *tx)
        .await?;
    for statement in SCHEMA {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// A stored subscriber. Holds the ID number and password hash: never serialised as is.
#[derive(sqlx::FromRow)]
pub(crate) struct SubscriberRow {
    pub msisdn: String,
    pub full_name: String,
    pub id_number: String,
    pub password_hash: Option<String>,
    pub backup_contacts: Json<Vec<BackupContact>>,
    pub recent_contacts: Vec<String>,
    pub fraud_linked_contacts: i64,
    pub sms_peak_per_hour: i64,
    pub intl_calls_24h: i64,
    pub flagged_contacts: Vec<String>,
    pub status: String,
    pub restoration: Option<String>,
    pub suspension_reason: Option<String>,
    pub resume_count: i64,
    pub updated_at: DateTime<Utc>,
}

const SUBSCRIBER_COLUMNS: &str = "msisdn, full_name, id_number, password_hash, backup_contacts, \
     recent_contacts, fraud_linked_contacts, sms_peak_per_hour, intl_calls_24h, flagged_contacts, \
     status, restoration, suspension_reason, resume_count, updated_at";

/// Whether an existing record with the same number is replaced or kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnExisting {
    Replace,
    Keep,
}

/// Stores a subscriber (the resume count starts again at 0 on replace). Returns whether
/// anything was written.
pub(crate) async fn put_subscriber(
    pool: &PgPool,
    s: &ValidSubscriber,
    password_hash: Option<String>,
    on_existing: OnExisting,
) -> Result<bool, sqlx::Error> {
    let conflict = match on_existing {
        OnExisting::Keep => "DO NOTHING",
        OnExisting::Replace => {
            "DO UPDATE SET full_name = EXCLUDED.full_name, id_number = EXCLUDED.id_number, \
             password_hash = EXCLUDED.password_hash, backup_contacts = EXCLUDED.backup_contacts, \
             recent_contacts = EXCLUDED.recent_contacts, \
             fraud_linked_contacts = EXCLUDED.fraud_linked_contacts, \
             sms_peak_per_hour = EXCLUDED.sms_peak_per_hour, intl_calls_24h = EXCLUDED.intl_calls_24h, \
             flagged_contacts = EXCLUDED.flagged_contacts, status = EXCLUDED.status, \
             restoration = EXCLUDED.restoration, suspension_reason = EXCLUDED.suspension_reason, \
             resume_count = 0, updated_at = now()"
        }
    };
    let sql = format!(
        "INSERT INTO carrier_sim.subscribers (msisdn, full_name, id_number, password_hash, \
         backup_contacts, recent_contacts, fraud_linked_contacts, sms_peak_per_hour, intl_calls_24h, \
         flagged_contacts, status, restoration, suspension_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (msisdn) {conflict}"
    );
    let restoration = match s.status {
        crate::model::SubscriberStatus::Active => Some("full"),
        crate::model::SubscriberStatus::Suspended => None,
    };
    let done = sqlx::query(&sql)
        .bind(s.msisdn.e164())
        .bind(s.full_name.expose())
        .bind(s.id_number.expose())
        .bind(password_hash)
        .bind(Json(&s.backup_contacts))
        .bind(&s.recent_contacts)
        .bind(i64::from(s.signals.fraud_linked_contacts))
        .bind(i64::from(s.signals.sms_peak_per_hour))
        .bind(i64::from(s.signals.intl_calls_24h))
        .bind(&s.signals.flagged_contacts)
        .bind(s.status.as_str())
        .bind(restoration)
        .bind(&s.suspension_reason)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The subscriber as stored, without settling orders (for the lookups).
pub(crate) async fn subscriber(
    pool: &PgPool,
    msisdn: &str,
) -> Result<Option<SubscriberRow>, sqlx::Error> {
    let sql = format!("SELECT {SUBSCRIBER_COLUMNS} FROM carrier_sim.subscribers WHERE msisdn = $1");
    sqlx::query_as(&sql).bind(msisdn).fetch_optional(pool).await
}

/// The subscriber after applying every order of theirs that is due.
pub(crate) async fn settled_subscriber(
    pool: &PgPool,
    msisdn: &str,
) -> Result<Option<SubscriberRow>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    settle(&mut tx, msisdn).await?;
    let sql = format!("SELECT {SUBSCRIBER_COLUMNS} FROM carrier_sim.subscribers WHERE msisdn = $1");
    let row = sqlx::query_as(&sql)
        .bind(msisdn)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
}

/// A message sent through the simulator.
#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub message_id: String,
    pub msisdn: String,
    pub kind: String,
    pub to_address: String,
    pub sent_to_masked: String,
    pub body: String,
    pub sent_at: DateTime<Utc>,
}

const MESSAGE_COLUMNS: &str = "message_id, msisdn, kind, to_address, sent_to_masked, body, sent_at";

/// The message sent earlier under `key`, if any.
pub(crate) async fn message_by_key(
    pool: &PgPool,
    key: &str,
) -> Result<Option<MessageRow>, sqlx::Error> {
    let sql =
        format!("SELECT {MESSAGE_COLUMNS} FROM carrier_sim.messages WHERE idempotency_key = $1");
    sqlx::query_as(&sql).bind(key).fetch_optional(pool).await
}

/// A message about to be sent.
pub(crate) struct NewMessage<'a> {
    pub key: &'a str,
    pub msisdn: &'a str,
    pub kind: &'a str,
    pub to_address: &'a str,
    pub sent_to_masked: &'a str,
    pub body: &'a str,
}

/// Records a message; when another call with the same key won the race, its message.
pub(crate) async fn insert_message(
    pool: &PgPool,
    m: &NewMessage<'_>,
) -> Result<MessageRow, sqlx::Error> {
    let sql = format!(
        "INSERT INTO carrier_sim.messages (message_id, idempotency_key, msisdn, kind, to_address, \
         sent_to_masked, body) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING {MESSAGE_COLUMNS}"
    );
    let message_id = format!("msg_{}", Uuid::now_v7().simple());
    let inserted: Option<MessageRow> = sqlx::query_as(&sql)
        .bind(message_id)
        .bind(m.key)
        .bind(m.msisdn)
        .bind(m.kind)
        .bind(m.to_address)
        .bind(m.sent_to_masked)
        .bind(m.body)
        .fetch_optional(pool)
        .await?;
    match inserted {
        Some(row) => Ok(row),
        None => message_by_key(pool, m.key)
            .await?
            .ok_or(sqlx::Error::RowNotFound),
    }
}

/// Every message, oldest first, optionally only those sent to `to`.
pub(crate) async fn outbox(
    pool: &PgPool,
    to: Option<&str>,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM carrier_sim.messages \
         WHERE $1::text IS NULL OR to_address = $1 ORDER BY seq"
    );
    sqlx::query_as(&sql).bind(to).fetch_all(pool).await
}

/// A service order, with the database's clock at the time it was read.
#[derive(sqlx::FromRow)]
pub(crate) struct OrderRow {
    pub external_id: Uuid,
    pub carrier_ref: String,
    pub msisdn: String,
    pub action: String,
    pub restoration: String,
    pub latency_ms: i64,
    pub created_at: DateTime<Utc>,
    pub result: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    pub read_at: DateTime<Utc>,
}

impl OrderRow {
    /// The TMF641 state: settled orders are `completed` or `failed`; before that the
    /// order is `inProgress` from half its latency on, `acknowledged` until then.
    pub(crate) fn state(&self) -> &'static str {
        match self.result.as_deref() {
            Some("completed") => "completed",
            Some("cancelled") => "cancelled",
            Some(_) => "failed",
            None => {
                let elapsed = (self.read_at - self.created_at).num_milliseconds();
                if elapsed.saturating_mul(2) >= self.latency_ms {
                    "inProgress"
                } else {
                    "acknowledged"
                }
            }
        }
    }
}

const ORDER_COLUMNS: &str = "external_id, carrier_ref, msisdn, action, restoration, latency_ms, \
     created_at, result, completed_at, now() AS read_at";

/// Applies every order of `msisdn` whose latency has passed, exactly once each: the order
/// becomes `completed` (or `failed` for an unknown number) and the subscriber `active`
/// with the newest order's restoration, `resume_count` counting the completed orders.
pub(crate) async fn settle(conn: &mut PgConnection, msisdn: &str) -> Result<(), sqlx::Error> {
    // One settler per number at a time, so concurrent readers never lock the same
    // orders in different sequences (no deadlocks); released at commit.
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(SETTLE_LOCK_CLASS)
        .bind(msisdn)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        r"WITH due AS (
            UPDATE carrier_sim.orders o
               SET result = CASE WHEN EXISTS (SELECT 1 FROM carrier_sim.subscribers s
                                               WHERE s.msisdn = o.msisdn)
                                 THEN 'completed' ELSE 'failed' END,
                   completed_at = now()
             WHERE o.msisdn = $1
               AND o.result IS NULL
               AND o.created_at + o.latency_ms * interval '1 millisecond' <= now()
         RETURNING o.msisdn, o.restoration, o.created_at, o.result
        ), effective AS (
            SELECT msisdn, count(*) AS n,
                   (array_agg(restoration ORDER BY created_at DESC))[1] AS restoration
              FROM due WHERE result = 'completed' GROUP BY msisdn
        )
        UPDATE carrier_sim.subscribers s
           SET status = 'active',
               restoration = e.restoration,
               resume_count = s.resume_count + e.n,
               suspension_reason = CASE WHEN e.restoration = 'full' THEN NULL
                                        ELSE s.suspension_reason END,
               updated_at = now()
          FROM effective e
         WHERE s.msisdn = e.msisdn",
    )
    .bind(msisdn)
    .execute(conn)
    .await?;
    Ok(())
}

/// An order as asked for by the product.
pub(crate) struct NewOrder<'a> {
    pub external_id: Uuid,
    pub msisdn: &'a str,
    pub action: &'a str,
    pub restoration: &'a str,
    pub latency_ms: i64,
}

/// What `submit_order` did.
pub(crate) enum Submitted {
    /// A new order.
    Created(OrderRow),
    /// The same order again: nothing new happened.
    Duplicate(OrderRow),
    /// The key is taken by an order with another number, action or restoration.
    Conflict,
}

/// Records a provisioning call that was answered before anything was done.
pub(crate) async fn record_unprocessed_request(
    pool: &PgPool,
    order: &NewOrder<'_>,
    status: u16,
) -> Result<(), sqlx::Error> {
    insert_request(pool, order, "not_processed", status).await?;
    Ok(())
}

async fn insert_request<'c, E: sqlx::PgExecutor<'c>>(
    executor: E,
    order: &NewOrder<'_>,
    outcome: &str,
    status: u16,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO carrier_sim.provisioning_requests \
         (msisdn, action, idempotency_key, restoration, outcome, status) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(order.msisdn)
    .bind(order.action)
    .bind(order.external_id.to_string())
    .bind(order.restoration)
    .bind(outcome)
    .bind(i32::from(status))
    .fetch_one(executor)
    .await
}

/// Records the call and creates the order unless it exists (deduplicated on the
/// external id), then applies what is due, in one transaction. `answer_override` is the
/// status recorded instead of 201/200 when the answer will be "lost" (an injected 503).
pub(crate) async fn submit_order(
    pool: &PgPool,
    order: &NewOrder<'_>,
    answer_override: Option<u16>,
) -> Result<Submitted, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let request_id = insert_request(&mut *tx, order, "received", 0).await?;
    let carrier_ref = format!(
        "SO-{}",
        &Uuid::new_v4().simple().to_string()[..12].to_uppercase()
    );
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO carrier_sim.orders (external_id, carrier_ref, msisdn, action, restoration, latency_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (external_id) DO NOTHING RETURNING external_id",
    )
    .bind(order.external_id)
    .bind(carrier_ref)
    .bind(order.msisdn)
    .bind(order.action)
    .bind(order.restoration)
    .bind(order.latency_ms)
    .fetch_optional(&mut *tx)
    .await?;
    let sql = format!("SELECT {ORDER_COLUMNS} FROM carrier_sim.orders WHERE external_id = $1");
    let existing: OrderRow = sqlx::query_as(&sql)
        .bind(order.external_id)
        .fetch_one(&mut *tx)
        .await?;
    let same = existing.msisdn == order.msisdn
        && existing.action == order.action
        && existing.restoration == order.restoration;
    let (outcome, status) = if !same {
        ("conflict", 422)
    } else if inserted.is_some() {
        ("created", 201)
    } else {
        ("duplicate", 200)
    };
    let mut result = Submitted::Conflict;
    if same {
        settle(&mut tx, order.msisdn).await?;
        let row: OrderRow = sqlx::query_as(&sql)
            .bind(order.external_id)
            .fetch_one(&mut *tx)
            .await?;
        result = if inserted.is_some() {
            Submitted::Created(row)
        } else {
            Submitted::Duplicate(row)
        };
    }
    sqlx::query(
        "UPDATE carrier_sim.provisioning_requests SET outcome = $2, status = $3 WHERE id = $1",
    )
    .bind(request_id)
    .bind(outcome)
    .bind(i32::from(
        answer_override.filter(|_| same).unwrap_or(status),
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(result)
}

/// What `cancel_order` did.
pub(crate) enum Cancellation {
    /// The order will never take effect: cancelled now (`true`) or before (`false`).
    /// An order never received is recorded as cancelled, so a late copy of it is
    /// answered as cancelled and does nothing.
    Cancelled(OrderRow, bool),
    /// Too late: the order had already completed or failed.
    TooLate(OrderRow),
    /// The key belongs to an order for another number or restoration.
    Conflict,
}

/// Records the cancellation call and cancels the order unless it already took effect
/// (due orders are settled first, so an order whose time has come completes rather
/// than being cancelled), in one transaction. `order.action` is `cancel` (what the
/// request log shows); an order first known through its cancellation is stored as a
/// cancelled `resume` order.
pub(crate) async fn cancel_order(
    pool: &PgPool,
    order: &NewOrder<'_>,
) -> Result<Cancellation, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let request_id = insert_request(&mut *tx, order, "received", 0).await?;
    settle(&mut tx, order.msisdn).await?;
    let sql =
        format!("SELECT {ORDER_COLUMNS} FROM carrier_sim.orders WHERE external_id = $1 FOR UPDATE");
    let existing: Option<OrderRow> = sqlx::query_as(&sql)
        .bind(order.external_id)
        .fetch_optional(&mut *tx)
        .await?;
    let (result, outcome, status) = match existing {
        None => {
            let carrier_ref = format!(
                "SO-{}",
                &Uuid::new_v4().simple().to_string()[..12].to_uppercase()
            );
            let insert = format!(
                "INSERT INTO carrier_sim.orders (external_id, carrier_ref, msisdn, action, restoration, \
                 latency_ms, result, completed_at) VALUES ($1, $2, $3, 'resume', $4, 0, 'cancelled', now()) \
                 RETURNING {ORDER_COLUMNS}"
            );
            let row: OrderRow = sqlx::query_as(&insert)
                .bind(order.external_id)
                .bind(carrier_ref)
                .bind(order.msisdn)
                .bind(order.restoration)
                .fetch_one(&mut *tx)
                .await?;
            (Cancellation::Cancelled(row, true), "cancelled_unknown", 201)
        }
        Some(row) if row.msisdn != order.msisdn || row.restoration != order.restoration => {
            (Cancellation::Conflict, "conflict", 422)
        }
        Some(row) if row.result.is_none() => {
            let update = format!(
                "UPDATE carrier_sim.orders SET result = 'cancelled', completed_at = now() \
                 WHERE external_id = $1 RETURNING {ORDER_COLUMNS}"
            );
            let row: OrderRow = sqlx::query_as(&update)
                .bind(order.external_id)
                .fetch_one(&mut *tx)
                .await?;
            (Cancellation::Cancelled(row, true), "cancelled", 201)
        }
        Some(row) if row.result.as_deref() == Some("cancelled") => (
            Cancellation::Cancelled(row, false),
            "already_cancelled",
            200,
        ),
        Some(row) => (Cancellation::TooLate(row), "too_late", 200),
    };
    sqlx::query(
        "UPDATE carrier_sim.provisioning_requests SET outcome = $2, status = $3 WHERE id = $1",
    )
    .bind(request_id)
    .bind(outcome)
    .bind(status)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(result)
}

/// An order after applying what is due, or `None` when unknown.
pub(crate) async fn order(
    pool: &PgPool,
    external_id: Uuid,
) -> Result<Option<OrderRow>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let msisdn: Option<String> =
        sqlx::query_scalar("SELECT msisdn FROM carrier_sim.orders WHERE external_id = $1")
            .bind(external_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(msisdn) = msisdn else {
        return Ok(None);
    };
    settle(&mut tx, &msisdn).await?;
    let sql = format!("SELECT {ORDER_COLUMNS} FROM carrier_sim.orders WHERE external_id = $1");
    let row = sqlx::query_as(&sql)
        .bind(external_id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
}

/// A provisioning call as received.
#[derive(sqlx::FromRow)]
pub(crate) struct RequestRow {
    pub msisdn: String,
    pub action: String,
    pub idempotency_key: String,
    pub restoration: String,
    pub received_at: DateTime<Utc>,
    pub outcome: String,
    pub status: i32,
}

/// Every provisioning call received, oldest first, optionally for one number.
pub(crate) async fn provisioning_requests(
    pool: &PgPool,
    msisdn: Option<&str>,
) -> Result<Vec<RequestRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT msisdn, action, idempotency_key, restoration, received_at, outcome, status \
         FROM carrier_sim.provisioning_requests WHERE $1::text IS NULL OR msisdn = $1 ORDER BY id",
    )
    .bind(msisdn)
    .fetch_all(pool)
    .await
}

/// Suspends a subscriber with a reason (a new suspension: no restoration left).
/// `None` when the number is unknown.
pub(crate) async fn suspend(
    pool: &PgPool,
    msisdn: &str,
    reason: &str,
) -> Result<Option<SubscriberRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE carrier_sim.subscribers SET status = 'suspended', suspension_reason = $2, \
         restoration = NULL, updated_at = now() WHERE msisdn = $1 RETURNING {SUBSCRIBER_COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(msisdn)
        .bind(reason)
        .fetch_optional(pool)
        .await
}

/// Replaces a subscriber's risk signals. Returns whether the number is known.
pub(crate) async fn set_signals(
    pool: &PgPool,
    msisdn: &str,
    signals: &crate::model::Signals,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE carrier_sim.subscribers SET fraud_linked_contacts = $2, sms_peak_per_hour = $3, \
         intl_calls_24h = $4, flagged_contacts = $5, updated_at = now() WHERE msisdn = $1",
    )
    .bind(msisdn)
    .bind(i64::from(signals.fraud_linked_contacts))
    .bind(i64::from(signals.sms_peak_per_hour))
    .bind(i64::from(signals.intl_calls_24h))
    .bind(&signals.flagged_contacts)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Numbers with an unsettled order whose latency has passed.
pub(crate) async fn numbers_with_due_orders(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT msisdn FROM carrier_sim.orders \
         WHERE result IS NULL AND created_at + latency_ms * interval '1 millisecond' <= now()",
    )
    .fetch_all(pool)
    .await
}

/// Applies what is due for one number (see [`settle`]).
pub(crate) async fn settle_number(pool: &PgPool, msisdn: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    settle(&mut tx, msisdn).await?;
    tx.commit().await
}

/// A completed order to report.
#[derive(sqlx::FromRow)]
pub(crate) struct Completion {
    pub external_id: Uuid,
    pub msisdn: String,
    pub restoration: String,
    pub carrier_ref: String,
}

/// Takes the completed orders not reported yet (each exactly once; orders completed
/// more than an hour ago are left alone, so an upgraded database does not replay
/// history).
pub(crate) async fn take_unreported_completions(
    pool: &PgPool,
) -> Result<Vec<Completion>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE carrier_sim.orders SET reported_at = now() \
         WHERE external_id IN (SELECT external_id FROM carrier_sim.orders \
                               WHERE result = 'completed' AND reported_at IS NULL \
                                 AND completed_at > now() - interval '1 hour' \
                               ORDER BY completed_at LIMIT 100 FOR UPDATE SKIP LOCKED) \
         RETURNING external_id, msisdn, restoration, carrier_ref",
    )
    .fetch_all(pool)
    .await
}

//! Subscriber messages that collapse: a message about where a case stands is held
//! for a short window and replaced by a later one with the same key, so a case that
//! moves through several states within seconds puts one message on the phone, about
//! the latest state. See `docs/operations.md` (`REACTIVATION_MESSAGE_WINDOW_SECONDS`).
//!
//! Race-safe and durable: all of it is rows of the outbox. A held message is pending
//! with `available_at` at the end of its window; a later message replaces it only if
//! it was never handed to a deliverer (`attempts = 0`, which a claim raises in the
//! same statement that leases it: a claim in flight holds the row lock, and the
//! replacing update re-reads the row after it and leaves it alone). A replaced row is
//! finished, never sent, and names its replacement. The outbox's per-case order is
//! kept: a held message blocks the case's later messages of its topic until it is
//! sent or replaced.

use case_domain::Locale;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{StoreError, timers::NewMessage};

/// What [`enqueue_superseding`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enqueued {
    /// The new message's id; `None` when its dedupe key was already used.
    pub id: Option<Uuid>,
    /// Held messages of the key that it replaced.
    pub superseded: u64,
}

/// Enqueues `message` under `key`, held until `hold_until` (its cause's time plus
/// the window), after replacing the pending messages of the same case and key (a
/// key belongs to one topic) that were never attempted and whose window had not
/// ended when this message's cause happened (`caused_at`): those are finished unsent
/// (a message without a case replaces none). In the caller's transaction.
///
/// The window is counted from the first message it holds: a replacement keeps the
/// replaced message's due time when that is earlier, so a case that keeps moving is
/// told within one window of its first move, never starved by a sliding one. Only
/// a message that replaced nothing wakes the deliverers: a replacement is due when
/// the message it replaced was, and the deliverers already know that time (they
/// read it when the first message woke them).
pub async fn enqueue_superseding(
    conn: &mut PgConnection,
    message: &NewMessage<'_>,
    key: &str,
    caused_at: DateTime<Utc>,
    hold_until: DateTime<Utc>,
) -> Result<Enqueued, StoreError> {
    // One statement: the replacement of the held messages and the insert of this one
    // with its final due time (an insert then an update of the new row left a dead
    // version and its index entries in the queue's indexes for every message).
    // Nothing is replaced when the dedupe key is already used (a replay of the same
    // cause); a concurrent writer of the same key that commits between this
    // statement's snapshot and its insert is caught below.
    let id = Uuid::now_v7();
    let done = sqlx::query!(
        r#"WITH fresh AS (
               SELECT NOT EXISTS (SELECT 1 FROM outbox WHERE dedupe_key = $5) AS yes
           ),
           replaced AS (
               -- The case's own held messages of the key, through outbox_held, the
               -- one index whose predicate these conditions imply (the pending state
               -- is spelled as in it, not as `delivered_at IS NULL AND failed_at IS
               -- NULL`): a plan cached while the outbox was young, when every
               -- pending index looked free, read every held message of the topic
               -- through another one (2,625 rows for one message at 100/s). No
               -- condition on the topic: a key is one topic's. A claim in flight
               -- holds the row: the update waits, re-reads it and leaves it alone
               -- once attempted.
               UPDATE outbox SET delivered_at = now(), superseded_by = $1,
                      last_error = 'superseded by a later message about the case'
               WHERE (SELECT yes FROM fresh)
                 AND case_id = $2 AND supersede_key = $7
                 AND coalesce(delivered_at, failed_at) IS NULL AND attempts = 0
                 AND supersede_until > $8
               RETURNING available_at
           ),
           inserted AS (
               INSERT INTO outbox (id, case_id, event_id, topic, dedupe_key, payload,
                                   supersede_key, supersede_until, available_at)
               SELECT $1, $2, $3, $4, $5, $6, $7, $9,
                      -- held until the window's end, or the earliest replaced
                      -- message's due time (least ignores NULL)
                      greatest(clock_timestamp(), least($9, (SELECT min(available_at) FROM replaced)))
               WHERE (SELECT yes FROM fresh)
               ON CONFLICT (dedupe_key) DO NOTHING
               RETURNING id
           )
           SELECT (SELECT id FROM inserted) AS "id?",
                  (SELECT count(*) FROM replaced) AS "superseded!""#,
        id,
        message.case_id,
        message.event_id,
        message.topic,
        message.dedupe_key,
        message.payload,
        key,
        caused_at,
        hold_until,
    )
    .fetch_one(&mut *conn)
    .await?;
    let superseded = u64::try_from(done.superseded).unwrap_or(0);
    let Some(id) = done.id else {
        if superseded > 0 {
            // The replaced rows name a message that was not written: undo by failing
            // the caller's transaction; its retry finds the key used and does nothing.
            return Err(StoreError::Conflict(
                "a concurrent writer enqueued the same message".into(),
            ));
        }
        return Ok(Enqueued::default());
    };
    if superseded == 0 {
        crate::timers::wake_deliverers(&mut *conn, message.topic).await?;
    }
    Ok(Enqueued {
        id: Some(id),
        superseded,
    })
}

/// The language of the most recent case of a number (any state), if it has one:
/// what messages about the number that no case causes (a suspension notice) use.
pub async fn number_locale(
    conn: &mut PgConnection,
    msisdn: &str,
) -> Result<Option<Locale>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT locale AS "locale: Locale" FROM reactivation_cases
           WHERE msisdn = $1 ORDER BY created_at DESC LIMIT 1"#,
        msisdn
    )
    .fetch_optional(conn)
    .await?)
}

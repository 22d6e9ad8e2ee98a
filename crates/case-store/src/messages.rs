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

use crate::{
    StoreError,
    timers::{NewMessage, insert_message},
};

/// What [`enqueue_superseding`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enqueued {
    /// The new message's id; `None` when its dedupe key was already used.
    pub id: Option<Uuid>,
    /// Held messages of the key that it replaced.
    pub superseded: u64,
}

/// Enqueues `message` under `key`, held until `hold_until` (its cause's time plus
/// the window), after replacing the pending messages of the same key and topic that
/// were never attempted and whose window had not ended when this message's cause
/// happened (`caused_at`): those are finished unsent. In the caller's transaction.
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
    let Some(id) = insert_message(&mut *conn, message).await? else {
        return Ok(Enqueued::default());
    };
    let replaced = sqlx::query!(
        r#"WITH replaced AS (
               UPDATE outbox SET delivered_at = now(), superseded_by = $1,
                      last_error = 'superseded by a later message about the case'
               WHERE supersede_key = $2 AND topic = $3 AND id <> $1
                 AND delivered_at IS NULL AND failed_at IS NULL
                 AND attempts = 0 AND supersede_until > $4
               RETURNING available_at
           )
           SELECT count(*) AS "n!", min(available_at) AS due FROM replaced"#,
        id,
        key,
        message.topic,
        caused_at,
    )
    .fetch_one(&mut *conn)
    .await?;
    let superseded = u64::try_from(replaced.n).unwrap_or(0);
    let due = replaced.due.map_or(hold_until, |d| d.min(hold_until));
    sqlx::query!(
        "UPDATE outbox SET supersede_key = $2, supersede_until = $3,
                available_at = greatest(available_at, $4) WHERE id = $1",
        id,
        key,
        hold_until,
        due,
    )
    .execute(&mut *conn)
    .await?;
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

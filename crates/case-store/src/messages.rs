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
    let held = Held {
        message,
        key,
        caused_at,
        hold_until,
    };
    let done = enqueue_superseding_many(&mut *conn, std::slice::from_ref(&held))
        .await?
        .pop()
        .unwrap_or_default();
    if done.wakes() {
        crate::timers::wake_deliverers(&mut *conn, message.topic).await?;
    }
    Ok(done)
}

/// One message for [`enqueue_superseding_many`].
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// The message.
    pub message: &'a NewMessage<'a>,
    /// The key under which the case's messages replace one another.
    pub key: &'a str,
    /// When its cause happened.
    pub caused_at: DateTime<Utc>,
    /// The end of its window.
    pub hold_until: DateTime<Utc>,
}

impl Enqueued {
    /// Whether the topic's deliverers must be woken for it: it was written and
    /// replaced nothing (a replacement is due when the message it replaced was).
    pub fn wakes(&self) -> bool {
        self.id.is_some() && self.superseded == 0
    }
}

/// [`enqueue_superseding`] for several messages, answered in their order, without
/// waking the deliverers (the caller wakes each topic once, if any answer
/// [`Enqueued::wakes`]). One statement for every message of a different case and
/// key; a second message of a case and key goes in the next, so it replaces the
/// first as it would have one by one.
pub async fn enqueue_superseding_many(
    conn: &mut PgConnection,
    messages: &[Held<'_>],
) -> Result<Vec<Enqueued>, StoreError> {
    let mut done = vec![Enqueued::default(); messages.len()];
    for round in crate::rounds(messages, |h| (h.message.case_id, h.key)) {
        let mine: Vec<&Held<'_>> = round.iter().map(|&i| &messages[i]).collect();
        for (i, enqueued) in round.into_iter().zip(enqueue_round(conn, &mine).await?) {
            done[i] = enqueued;
        }
    }
    Ok(done)
}

/// One round of [`enqueue_superseding_many`]: messages of different cases or keys.
async fn enqueue_round(
    conn: &mut PgConnection,
    held: &[&Held<'_>],
) -> Result<Vec<Enqueued>, StoreError> {
    // One statement: the replacement of the held messages and the insert of each new
    // one with its final due time (an insert then an update of the new row left a
    // dead version and its index entries in the queue's indexes for every message).
    // Nothing is replaced for a dedupe key already used (a replay of the same cause);
    // a concurrent writer of the same key that commits between this statement's
    // snapshot and its insert is caught below.
    let ids: Vec<Uuid> = held.iter().map(|_| Uuid::now_v7()).collect();
    let case_ids: Vec<Option<Uuid>> = held.iter().map(|h| h.message.case_id).collect();
    let event_ids: Vec<Option<Uuid>> = held.iter().map(|h| h.message.event_id).collect();
    let topics: Vec<&str> = held.iter().map(|h| h.message.topic).collect();
    let dedupe_keys: Vec<&str> = held.iter().map(|h| h.message.dedupe_key).collect();
    let payloads: Vec<&serde_json::Value> = held.iter().map(|h| &h.message.payload).collect();
    let keys: Vec<&str> = held.iter().map(|h| h.key).collect();
    let caused: Vec<DateTime<Utc>> = held.iter().map(|h| h.caused_at).collect();
    let until: Vec<DateTime<Utc>> = held.iter().map(|h| h.hold_until).collect();
    let rows = sqlx::query!(
        r#"WITH m AS (
               -- Whether each key is unused, by a lookup in its unique index for each
               -- message (as a subquery the planner may hash the whole outbox instead,
               -- on the statistics of a young one).
               SELECT m.*, used.id IS NULL AS fresh
               FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                           $6::jsonb[], $7::text[], $8::timestamptz[], $9::timestamptz[])
                    WITH ORDINALITY AS m(id, case_id, event_id, topic, dedupe_key, payload,
                                         supersede_key, caused_at, hold_until, n)
               LEFT JOIN LATERAL (
                   SELECT o.id FROM outbox o WHERE o.dedupe_key = m.dedupe_key OFFSET 0
               ) used ON true
           ),
           held AS (
               -- Each case's own held messages of the key, read for each message
               -- (the lateral read cannot be flattened into a join the planner
               -- could turn around) through outbox_held, the one index whose
               -- predicate these conditions imply (the pending state is spelled as in
               -- it, not as `delivered_at IS NULL AND failed_at IS NULL`). A plan
               -- cached while the outbox was young, when every pending index looked
               -- free, read every held message of the topic through another one
               -- (2,625 rows for one message at 100/s); joined the other way round,
               -- every held message once per message of the call. No condition on
               -- the topic: a key is one topic's.
               SELECT m.id AS by, h.id, h.ctid
               FROM m CROSS JOIN LATERAL (
                   SELECT o.id, o.ctid FROM outbox o
                   WHERE o.case_id = m.case_id AND o.supersede_key = m.supersede_key
                     AND coalesce(o.delivered_at, o.failed_at) IS NULL AND o.attempts = 0
                     AND o.supersede_until > m.caused_at
                   OFFSET 0
               ) h
               WHERE m.fresh
           ),
           replaced AS (
               -- Each row found, by its address (a join on the id could be planned
               -- as a scan of the outbox on the statistics of a young one). A claim
               -- in flight holds the row: the update waits, re-reads it and leaves
               -- it alone once attempted (the conditions below are checked again on
               -- the row as it is then).
               UPDATE outbox o SET delivered_at = now(), superseded_by = held.by,
                      last_error = 'superseded by a later message about the case'
               FROM held
               WHERE o.ctid = held.ctid AND o.id = held.id
                 AND coalesce(o.delivered_at, o.failed_at) IS NULL AND o.attempts = 0
               RETURNING held.by, o.available_at
           ),
           inserted AS (
               INSERT INTO outbox (id, case_id, event_id, topic, dedupe_key, payload,
                                   supersede_key, supersede_until, available_at)
               SELECT m.id, m.case_id, m.event_id, m.topic, m.dedupe_key, m.payload,
                      m.supersede_key, m.hold_until,
                      -- held until the window's end, or the earliest replaced
                      -- message's due time (least ignores NULL)
                      greatest(clock_timestamp(),
                               least(m.hold_until, (SELECT min(r.available_at) FROM replaced r
                                                    WHERE r.by = m.id)))
               FROM m WHERE m.fresh ORDER BY m.n
               ON CONFLICT (dedupe_key) DO NOTHING
               RETURNING id
           )
           SELECT EXISTS (SELECT 1 FROM inserted i WHERE i.id = m.id) AS "written!",
                  (SELECT count(*) FROM replaced r WHERE r.by = m.id) AS "superseded!"
           FROM m ORDER BY m.n"#,
        &ids,
        &case_ids as &[Option<Uuid>],
        &event_ids as &[Option<Uuid>],
        &topics as &[&str],
        &dedupe_keys as &[&str],
        &payloads as &[&serde_json::Value],
        &keys as &[&str],
        &caused,
        &until,
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .zip(ids)
        .map(|(row, id)| {
            let superseded = u64::try_from(row.superseded).unwrap_or(0);
            if !row.written && superseded > 0 {
                // The replaced rows name a message that was not written: undo by
                // failing the caller's transaction; its retry finds the key used and
                // does nothing.
                return Err(StoreError::Conflict(
                    "a concurrent writer enqueued the same message".into(),
                ));
            }
            Ok(Enqueued {
                id: row.written.then_some(id),
                superseded,
            })
        })
        .collect()
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

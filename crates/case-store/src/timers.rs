//! Following the event log, durable case timers, escalations and subscriber
//! messages in the outbox.
//!
//! - **The follower's cursor.** [`next_pass`] reads `case_events` in
//!   `(tx_id, seq)` order, only below the oldest running transaction, so an event
//!   that commits late is never skipped; [`advance_cursor`] moves the consumer's
//!   position in the caller's transaction, with whatever the follower wrote.
//! - **Timers** are rows ([`insert_timer_plans`]), claimed one at a time when due with
//!   `FOR UPDATE SKIP LOCKED` ([`claim_due_timer`]) in the caller's transaction and
//!   marked fired in it ([`finish_timer`]).
//! - **Escalation** is an attribute of the case ([`escalate`], [`clear_escalation`],
//!   [`escalated_cases`]).
//! - **Messages** go to the outbox under a unique dedupe key ([`enqueue_message`]),
//!   so the same transition or timer never enqueues twice.

use std::collections::HashMap;

use case_domain::{CaseEvent, CaseState, Role, sla::PlannedTimer};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::StoreError;

/// The `NOTIFY` channel that tells supervisors' consoles about a new escalation
/// (payload: JSON with case_id, level, state).
pub const ESCALATION_CHANNEL: &str = "case_escalated";

/// A follower's position in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// `tx_id` of the last event read.
    pub tx_id: i64,
    /// `seq` of the last event read.
    pub seq: i64,
}

/// Locks the consumer's cursor for this transaction; `None` when another
/// follower holds it (it is doing the work) or the consumer does not exist.
pub async fn lock_cursor(
    conn: &mut PgConnection,
    consumer: &str,
) -> Result<Option<Cursor>, StoreError> {
    Ok(sqlx::query_as!(
        Cursor,
        "SELECT tx_id, seq FROM event_cursors WHERE consumer = $1 FOR UPDATE SKIP LOCKED",
        consumer
    )
    .fetch_optional(conn)
    .await?)
}

/// Moves the consumer's cursor (in the caller's transaction).
pub async fn advance_cursor(
    conn: &mut PgConnection,
    consumer: &str,
    to: Cursor,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE event_cursors SET tx_id = $2, seq = $3, updated_at = now() WHERE consumer = $1",
        consumer,
        to.tx_id,
        to.seq,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An event as a follower reads it, with the case's language and number.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowedEvent {
    /// Transition id.
    pub id: Uuid,
    /// Its position.
    pub cursor: Cursor,
    /// The case.
    pub case_id: Uuid,
    /// The version it produced.
    pub version: i32,
    /// State before (None for `opened`).
    pub from_state: Option<CaseState>,
    /// State after.
    pub to_state: CaseState,
    /// The event.
    pub event: CaseEvent,
    /// Role of the actor.
    pub actor_role: Role,
    /// Customer-safe reason.
    pub reason: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// The case's number (personal data: masked when printed).
    pub msisdn: case_domain::Msisdn,
    /// The case's language.
    pub locale: case_domain::Locale,
    /// When the case proved identity, if it has (now, not at the event).
    pub identity_proven_at: Option<DateTime<Utc>>,
    /// The case's escalation level (now, not at the event): 0 none.
    pub escalation_level: i16,
    /// The stage whose breach raised it, if any (now).
    pub escalated_state: Option<CaseState>,
}

/// What a pass of the follower reads before it handles its events: the events
/// and, for their cases, what handling them needs, in three statements on cached
/// generic plans whatever the number of events ([`next_pass`]).
#[derive(Debug)]
pub struct Pass {
    /// The events, oldest first.
    pub events: Vec<FollowedEvent>,
    /// The logs and latest assessments of the cases of the events not skipped; an
    /// error (a row that does not decode, say) is the caller's to judge: the events
    /// can still be handled one by one.
    pub cases: Result<PassCases, StoreError>,
}

/// The logs and latest assessments of a pass's cases.
#[derive(Debug, Default)]
pub struct PassCases {
    /// Each case's log, oldest first.
    pub timelines: HashMap<Uuid, Vec<crate::EventRow>>,
    /// Each case's latest assessment, for the cases that have one.
    pub assessments: HashMap<Uuid, crate::risk::AssessmentRow>,
}

/// Reads a pass: the next events after `cursor` whose transactions, and every older
/// one, have ended (oldest first, at most `limit`), and the logs and latest
/// assessments of their cases, but those of the events in `skip`. On cached generic
/// plans ([`crate::plan_generic`]): the cursor read takes the follow index of each
/// partition from the cursor on, merged and limited (a custom plan per run cost ten
/// times the read); the logs, read across the cases at once, were planned on every
/// run over every partition (1 ms a run at 100 journeys/s) and are read per case
/// from its own month on, pruned at run time. The statements after it in the
/// caller's transaction are planned as usual ([`crate::plan_as_usual`]).
pub async fn next_pass(
    conn: &mut PgConnection,
    cursor: Cursor,
    limit: i64,
    skip: &[Uuid],
) -> Result<Pass, StoreError> {
    crate::plan_generic(&mut *conn).await?;
    let events = read_events(&mut *conn, cursor, limit).await?;
    let mut ids: Vec<Uuid> = events
        .iter()
        .filter(|e| !skip.contains(&e.id))
        .map(|e| e.case_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let cases = pass_cases(&mut *conn, &ids).await;
    crate::plan_as_usual(&mut *conn).await?;
    Ok(Pass { events, cases })
}

async fn pass_cases(conn: &mut PgConnection, ids: &[Uuid]) -> Result<PassCases, StoreError> {
    let mut read = PassCases::default();
    if ids.is_empty() {
        return Ok(read);
    }
    for (case_id, row) in crate::timelines(&mut *conn, ids).await? {
        read.timelines.entry(case_id).or_default().push(row);
    }
    read.assessments = crate::risk::latest_assessments(&mut *conn, ids)
        .await?
        .into_iter()
        .map(|a| (a.case_id, a))
        .collect();
    Ok(read)
}

async fn read_events(
    conn: &mut PgConnection,
    cursor: Cursor,
    limit: i64,
) -> Result<Vec<FollowedEvent>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT e.id AS "id!", e.tx_id AS "tx_id!", e.seq AS "seq!", e.case_id AS "case_id!",
                  e.version AS "version!", e.from_state AS "from_state: CaseState",
                  e.to_state AS "to_state!: CaseState", e.event AS "event!: CaseEvent",
                  e.actor_role AS "actor_role!: Role", e.reason, e.at AS "at!",
                  c.msisdn AS "msisdn!: case_domain::Msisdn", c.locale AS "locale!: case_domain::Locale",
                  c.identity_proven_at, c.escalation_level AS "escalation_level!",
                  c.escalated_state AS "escalated_state: CaseState"
           FROM (SELECT * FROM case_events e
                 WHERE e.tx_id IS NOT NULL AND (e.tx_id, e.seq) > ($1, $2)
                   -- Implied by the row comparison, but the planner estimates a plain
                   -- bound well: it reads case_events_follow from the cursor on.
                   AND e.tx_id >= $1
                   AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                 ORDER BY e.tx_id, e.seq
                 LIMIT $3) e
           -- One primary-key probe per event, whatever the estimate of the events
           -- after the cursor: a LIMIT keeps the planner from turning this into a
           -- hash join over every case (a sequential scan of the history).
           CROSS JOIN LATERAL (SELECT c.msisdn, c.locale, c.identity_proven_at,
                                      c.escalation_level, c.escalated_state
                               FROM reactivation_cases c WHERE c.id = e.case_id LIMIT 1) c
           ORDER BY e.tx_id, e.seq"#,
        cursor.tx_id,
        cursor.seq,
        limit,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| FollowedEvent {
            id: r.id,
            cursor: Cursor {
                tx_id: r.tx_id,
                seq: r.seq,
            },
            case_id: r.case_id,
            version: r.version,
            from_state: r.from_state,
            to_state: r.to_state,
            event: r.event,
            actor_role: r.actor_role,
            reason: r.reason,
            at: r.at,
            msisdn: r.msisdn,
            locale: r.locale,
            identity_proven_at: r.identity_proven_at,
            escalation_level: r.escalation_level,
            escalated_state: r.escalated_state,
        })
        .collect())
}

/// Whether any event after `cursor` exists at all, followable yet or not (a writer
/// that started earlier may still be running): the follower looks again soon.
/// On its generic plan, like [`next_pass`]: call it last in the caller's
/// transaction.
pub async fn events_pending(conn: &mut PgConnection, cursor: Cursor) -> Result<bool, StoreError> {
    crate::plan_generic(&mut *conn).await?;
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM case_events
                          WHERE tx_id IS NOT NULL AND (tx_id, seq) > ($1, $2)
                            -- Implied, but estimated well: an index read from the cursor on.
                            AND tx_id >= $1) AS "pending!""#,
        cursor.tx_id,
        cursor.seq,
    )
    .fetch_one(conn)
    .await?)
}

/// A message to enqueue in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage<'a> {
    /// Which worker delivers it.
    pub topic: &'a str,
    /// The case, if any.
    pub case_id: Option<Uuid>,
    /// The transition, if any.
    pub event_id: Option<Uuid>,
    /// Unique key: the same key again enqueues nothing.
    pub dedupe_key: &'a str,
    /// What to send.
    pub payload: serde_json::Value,
}

/// Enqueues a message unless one with the same dedupe key exists; returns its id
/// when it was written. Wakes the topic's deliverers at commit. Messages enqueued
/// in one transaction become available in the order they were written (a single
/// deliverer sends them in that order).
pub async fn enqueue_message(
    conn: &mut PgConnection,
    message: &NewMessage<'_>,
) -> Result<Option<Uuid>, StoreError> {
    let id = insert_message(&mut *conn, message).await?;
    if id.is_some() {
        wake_deliverers(&mut *conn, message.topic).await?;
    }
    Ok(id)
}

/// Wakes the deliverers of `topic` at commit. Payload-free: the deliverers claim
/// whatever is due, and Postgres folds the identical wake-ups of one transaction
/// into one notification.
pub async fn wake_deliverers(conn: &mut PgConnection, topic: &str) -> Result<(), StoreError> {
    sqlx::query!("SELECT pg_notify($1, '')", crate::outbox_channel(topic))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// [`enqueue_message`] without waking the deliverers (the caller decides).
pub(crate) async fn insert_message(
    conn: &mut PgConnection,
    message: &NewMessage<'_>,
) -> Result<Option<Uuid>, StoreError> {
    let id = sqlx::query_scalar!(
        r#"INSERT INTO outbox (id, case_id, event_id, topic, dedupe_key, payload, available_at)
           VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())
           ON CONFLICT (dedupe_key) DO NOTHING
           RETURNING id"#,
        Uuid::now_v7(),
        message.case_id,
        message.event_id,
        message.topic,
        message.dedupe_key,
        message.payload,
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id)
}

/// The timers planned for a case that entered `state` at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerPlan {
    /// The case.
    pub case_id: Uuid,
    /// The version that entered the state.
    pub version: i32,
    /// The state entered.
    pub state: CaseState,
    /// Its timers (possibly none).
    pub timers: Vec<PlannedTimer>,
}

/// Writes the timers of several cases (a follower pass's, a sweep's) in one
/// statement. A timer already written for its case version (same kind and ordinal)
/// is kept. Returns how many were new; nothing is sent when no plan has a timer.
pub async fn insert_timer_plans(
    conn: &mut PgConnection,
    plans: &[TimerPlan],
) -> Result<u64, StoreError> {
    let n: usize = plans.iter().map(|p| p.timers.len()).sum();
    if n == 0 {
        return Ok(0);
    }
    let (mut ids, mut cases, mut versions, mut states, mut kinds, mut ordinals, mut due) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for plan in plans {
        for t in &plan.timers {
            ids.push(Uuid::now_v7());
            cases.push(plan.case_id);
            versions.push(plan.version);
            states.push(plan.state.as_str());
            kinds.push(t.kind.name());
            ordinals.push(t.kind.ordinal());
            due.push(t.due_at);
        }
    }
    Ok(sqlx::query!(
        r#"INSERT INTO case_timers (id, case_id, case_version, state, kind, ordinal, due_at)
           SELECT t.id, t.case_id, t.version, t.state::case_state, t.kind, t.ordinal, t.due_at
           FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::text[],
                       $6::smallint[], $7::timestamptz[])
                AS t(id, case_id, version, state, kind, ordinal, due_at)
           ON CONFLICT (case_id, case_version, kind, ordinal) DO NOTHING"#,
        &ids,
        &cases,
        &versions,
        &states as &[&str],
        &kinds as &[&str],
        &ordinals,
        &due,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// A stored timer.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerRow {
    /// Timer id.
    pub id: Uuid,
    /// The case.
    pub case_id: Uuid,
    /// The case version it belongs to.
    pub case_version: i32,
    /// The state the case entered at that version.
    pub state: CaseState,
    /// reminder, escalation or deadline.
    pub kind: String,
    /// Reminder number or escalation level.
    pub ordinal: i16,
    /// When it is due.
    pub due_at: DateTime<Utc>,
    /// When it fired.
    pub fired_at: Option<DateTime<Utc>>,
    /// What firing did.
    pub outcome: Option<String>,
}

/// Claims the earliest timer due at `now` for the caller's transaction (skipping
/// those another firer holds). The caller acts, then [`finish_timer`]s it, and
/// commits: a crash in between leaves it pending.
pub async fn claim_due_timer(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> Result<Option<TimerRow>, StoreError> {
    Ok(sqlx::query_as!(
        TimerRow,
        r#"SELECT id, case_id, case_version, state AS "state: CaseState", kind, ordinal, due_at,
                  fired_at, outcome
           FROM case_timers
           WHERE fired_at IS NULL AND due_at <= $1
           ORDER BY due_at, id
           LIMIT 1
           FOR UPDATE SKIP LOCKED"#,
        now
    )
    .fetch_optional(conn)
    .await?)
}

/// Marks a claimed timer fired with what it did.
pub async fn finish_timer(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
    outcome: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE case_timers SET fired_at = $2, outcome = $3 WHERE id = $1 AND fired_at IS NULL",
        id,
        now,
        outcome,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The earliest pending timer's due time; firers sleep until then at most.
pub async fn next_timer_due(db: impl PgExecutor<'_>) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(
        sqlx::query_scalar!("SELECT min(due_at) FROM case_timers WHERE fired_at IS NULL")
            .fetch_one(db)
            .await?,
    )
}

/// A case's timers, oldest first (for tests and the agent view).
pub async fn timers_of(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Vec<TimerRow>, StoreError> {
    Ok(sqlx::query_as!(
        TimerRow,
        r#"SELECT id, case_id, case_version, state AS "state: CaseState", kind, ordinal, due_at,
                  fired_at, outcome
           FROM case_timers WHERE case_id = $1 ORDER BY case_version, due_at, kind, ordinal"#,
        case_id
    )
    .fetch_all(db)
    .await?)
}

/// A case that is open but has no timer for its current version (opened before the
/// follower existed, or whose follow-up was lost): the sweep arms it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnarmedCase {
    /// The case.
    pub case_id: Uuid,
    /// Its version.
    pub version: i32,
    /// Its state.
    pub state: CaseState,
    /// When it entered the state.
    pub state_entered_at: DateTime<Utc>,
}

/// Open cases without a timer for their current version whose last event is older
/// than `settled_before` (younger ones are the follower's), at most `limit`.
pub async fn unarmed_cases(
    pool: &sqlx::PgPool,
    settled_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<UnarmedCase>, StoreError> {
    // A time bound: planned for its value.
    let mut tx = crate::begin_planned(pool).await?;
    let cases = sqlx::query_as!(
        UnarmedCase,
        r#"SELECT c.id AS case_id, c.version, c.state AS "state: CaseState", c.state_entered_at
           FROM reactivation_cases c
           WHERE c.state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
             AND c.state_entered_at < $1
             AND NOT EXISTS (SELECT 1 FROM case_timers t
                             WHERE t.case_id = c.id AND t.case_version = c.version)
           ORDER BY c.state_entered_at
           LIMIT $2"#,
        settled_before,
        limit,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(cases)
}

/// A case's escalation.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    /// 0 none, 1 the SLA ran out, 2 twice the SLA.
    pub level: i16,
    /// When the level was reached.
    pub at: Option<DateTime<Utc>>,
    /// The stage that breached.
    pub state: Option<CaseState>,
    /// The case version at which the level was reached.
    pub version: Option<i32>,
}

/// The case's escalation.
pub async fn escalation_of(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<Escalation>, StoreError> {
    Ok(sqlx::query_as!(
        Escalation,
        r#"SELECT escalation_level AS level, escalated_at AS at,
                  escalated_state AS "state: CaseState", escalated_version AS version
           FROM reactivation_cases WHERE id = $1"#,
        case_id
    )
    .fetch_optional(db)
    .await?)
}

/// Raises the escalation of a case that is still at `version` in `state` to
/// `level`; does nothing (and returns false) when it is already there or higher,
/// or the case moved on. On a raise, supervisors' consoles are notified at commit.
pub async fn escalate(
    conn: &mut PgConnection,
    case_id: Uuid,
    version: i32,
    state: CaseState,
    level: i16,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let raised = sqlx::query!(
        r#"UPDATE reactivation_cases
           SET escalation_level = $4, escalated_at = $5, escalated_state = $3, escalated_version = $2,
               escalated_by = NULL, escalation_reason = NULL
           WHERE id = $1 AND version = $2 AND state = $3 AND escalation_level < $4"#,
        case_id,
        version,
        state as CaseState,
        level,
        now,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if raised {
        let payload =
            serde_json::json!({ "case_id": case_id, "level": level, "state": state }).to_string();
        sqlx::query!("SELECT pg_notify($1, $2)", ESCALATION_CHANNEL, payload)
            .execute(&mut *conn)
            .await?;
    }
    Ok(raised)
}

/// Ends a case's escalation raised before `version` (its breached stage is over);
/// one raised at `version` or later stays.
pub async fn clear_escalation(
    conn: &mut PgConnection,
    case_id: Uuid,
    version: i32,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"UPDATE reactivation_cases
           SET escalation_level = 0, escalated_at = NULL, escalated_state = NULL, escalated_version = NULL,
               escalated_by = NULL, escalation_reason = NULL
           WHERE id = $1 AND escalation_level > 0 AND escalated_version < $2"#,
        case_id,
        version,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An escalated case, as supervisors list it.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalatedCase {
    /// The case.
    pub case_id: Uuid,
    /// Its state.
    pub state: CaseState,
    /// Its version.
    pub version: i32,
    /// The number (personal data: masked when printed).
    pub msisdn: case_domain::Msisdn,
    /// 1 or 2.
    pub level: i16,
    /// When the level was reached.
    pub escalated_at: Option<DateTime<Utc>>,
    /// The stage that breached.
    pub escalated_state: Option<CaseState>,
    /// When the case entered its state.
    pub state_entered_at: DateTime<Utc>,
    /// The agent or worker holding it, if any.
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// Open escalated cases, highest level first, then oldest escalation first.
pub async fn escalated_cases(
    db: impl PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<EscalatedCase>, StoreError> {
    Ok(sqlx::query_as!(
        EscalatedCase,
        r#"SELECT id AS case_id, state AS "state: CaseState", version,
                  msisdn AS "msisdn: case_domain::Msisdn", escalation_level AS level, escalated_at,
                  escalated_state AS "escalated_state: CaseState", state_entered_at,
                  lease_owner, lease_expires_at
           FROM reactivation_cases
           WHERE escalation_level > 0
             AND state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
           ORDER BY escalation_level DESC, escalated_at, id
           LIMIT $1"#,
        limit
    )
    .fetch_all(db)
    .await?)
}

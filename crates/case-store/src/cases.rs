//! Cases and their event log; the one door for state changes.

use case_domain::{
    Actor, CaseEvent, CaseState, Channel, Locale, Msisdn, Role, TransitionError, decide, may_act,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::{CASE_CHANGED_CHANNEL, StoreError, claims::Fence};

/// A case as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRow {
    /// Case id.
    pub id: Uuid,
    /// The suspended number (personal data: masked when printed).
    pub msisdn: Msisdn,
    /// Current state.
    pub state: CaseState,
    /// Optimistic-concurrency version.
    pub version: i32,
    /// Where the case was opened.
    pub channel: Channel,
    /// The subscriber's language.
    pub locale: Locale,
    /// When the case was opened.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it entered its current state.
    pub state_entered_at: DateTime<Utc>,
    /// Lease holder, if any.
    pub lease_owner: Option<String>,
    /// Lease end, if any.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Fencing token of the latest claim.
    pub attempt: i32,
}

/// One row of a case's event log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Transition id.
    pub id: Uuid,
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
    /// Actor id.
    pub actor_id: String,
    /// Customer-safe reason.
    pub reason: Option<String>,
    /// Commit time.
    pub at: DateTime<Utc>,
}

/// What is needed to open a case.
#[derive(Debug, Clone)]
pub struct NewCase {
    /// Case id (UUIDv7).
    pub id: Uuid,
    /// The suspended number.
    pub msisdn: Msisdn,
    /// Where the case was opened.
    pub channel: Channel,
    /// The subscriber's language.
    pub locale: Locale,
    /// SHA-256 of the case token.
    pub token_hash: [u8; 32],
}

/// A side effect to enqueue in the same transaction as a state change.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// Which worker delivers it (`provisioning.order`, `notification.sms`, ...).
    pub topic: String,
    /// What to send.
    pub payload: serde_json::Value,
    /// Suffix of the dedupe key (the transition id is prepended), e.g. the recipient.
    pub dedupe_suffix: String,
}

/// A request to move a case: the only way any code changes a case's state.
#[derive(Debug, Clone)]
pub struct TransitionRequest<'a> {
    /// The case.
    pub case_id: Uuid,
    /// The version the caller read; a different current version is refused.
    pub expected_version: i32,
    /// What happened.
    pub event: CaseEvent,
    /// Who caused it; their role is checked against the transition table.
    pub actor: &'a Actor,
    /// Customer-safe reason recorded in the event log.
    pub reason: Option<&'a str>,
    /// For workers: the lease they hold. Their write is refused if it is no longer theirs.
    pub fence: Option<&'a Fence>,
    /// Side effects committed with the change.
    pub outbox: Vec<OutboxMessage>,
}

/// The outcome of a committed transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Transitioned {
    /// The case after the change.
    pub case: CaseRow,
    /// The event row written.
    pub event_id: Uuid,
    /// State before.
    pub from: CaseState,
    /// Ids of the outbox rows written, in request order.
    pub outbox_ids: Vec<Uuid>,
}

/// Opens a case in [`CaseState::INITIAL`] and writes its `opened` event, in the
/// caller's transaction. A second open case for the same number is refused.
pub async fn create_case(
    conn: &mut PgConnection,
    new: &NewCase,
    actor: &Actor,
) -> Result<CaseRow, StoreError> {
    let case = sqlx::query_as!(
        CaseRow,
        r#"INSERT INTO reactivation_cases (id, msisdn, state, channel, locale, token_hash)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id, msisdn AS "msisdn: Msisdn", state AS "state: CaseState", version,
                     channel AS "channel: Channel", locale AS "locale: Locale", created_at,
                     updated_at, state_entered_at, lease_owner, lease_expires_at, attempt"#,
        new.id,
        new.msisdn.e164(),
        CaseState::INITIAL as CaseState,
        new.channel.as_str(),
        new.locale.as_str(),
        &new.token_hash[..],
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        StoreError::on_unique(
            e,
            "reactivation_cases_one_open_per_msisdn",
            StoreError::OpenCaseExists,
        )
    })?;

    sqlx::query!(
        r#"INSERT INTO case_events (id, case_id, version, from_state, to_state, event, actor_role, actor_id)
           VALUES ($1, $2, 1, NULL, $3, 'opened', $4, $5)"#,
        Uuid::now_v7(),
        case.id,
        case.state as CaseState,
        actor.role as Role,
        actor.id,
    )
    .execute(&mut *conn)
    .await?;
    notify(conn, &case).await?;
    Ok(case)
}

/// Loads a case by id.
pub async fn load_case(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<CaseRow>, StoreError> {
    Ok(sqlx::query_as!(
        CaseRow,
        r#"SELECT id, msisdn AS "msisdn: Msisdn", state AS "state: CaseState", version,
                     channel AS "channel: Channel", locale AS "locale: Locale", created_at,
                  updated_at, state_entered_at, lease_owner, lease_expires_at, attempt
           FROM reactivation_cases WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?)
}

/// Loads a case only when `token_hash` is its token's hash: a wrong token and a
/// missing case look the same to the caller.
pub async fn load_case_by_token(
    db: impl PgExecutor<'_>,
    id: Uuid,
    token_hash: &[u8; 32],
) -> Result<Option<CaseRow>, StoreError> {
    Ok(sqlx::query_as!(
        CaseRow,
        r#"SELECT id, msisdn AS "msisdn: Msisdn", state AS "state: CaseState", version,
                     channel AS "channel: Channel", locale AS "locale: Locale", created_at,
                  updated_at, state_entered_at, lease_owner, lease_expires_at, attempt
           FROM reactivation_cases WHERE id = $1 AND token_hash = $2"#,
        id,
        &token_hash[..],
    )
    .fetch_optional(db)
    .await?)
}

/// The case's event log, oldest first.
pub async fn timeline(db: impl PgExecutor<'_>, case_id: Uuid) -> Result<Vec<EventRow>, StoreError> {
    Ok(sqlx::query_as!(
        EventRow,
        r#"SELECT id, version, from_state AS "from_state: CaseState", to_state AS "to_state: CaseState",
                  event AS "event: CaseEvent", actor_role AS "actor_role: Role", actor_id, reason, at
           FROM case_events WHERE case_id = $1 ORDER BY version"#,
        case_id
    )
    .fetch_all(db)
    .await?)
}

/// How many cases are in each state (for metrics and dashboards).
pub async fn cases_per_state(db: impl PgExecutor<'_>) -> Result<Vec<(CaseState, i64)>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT state AS "state: CaseState", count(*) AS "count!" FROM reactivation_cases GROUP BY state"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.state, r.count)).collect())
}

/// Applies one event to a case in its own transaction. See [`transition_in`].
pub async fn transition(
    pool: &PgPool,
    req: TransitionRequest<'_>,
) -> Result<Transitioned, StoreError> {
    let mut tx = pool.begin().await?;
    let done = transition_in(&mut tx, req).await?;
    tx.commit().await?;
    Ok(done)
}

/// Applies one event to a case inside the caller's transaction, so that the caller
/// can commit its own writes with it.
///
/// In order: the actor's role must be allowed to act in the current state at all
/// (else `Forbidden`); the expected version must be the current one (else
/// `StaleVersion`); the domain table must allow the event for that role (else
/// `Illegal` or `Forbidden`); a compare-and-set `UPDATE … WHERE id AND state AND version` (and,
/// for workers, `AND lease_owner AND attempt`) moves the case and clears its lease;
/// the event row and outbox rows are appended; the next owner's channel and
/// [`CASE_CHANGED_CHANNEL`] are notified (delivered at commit). Any refusal returns
/// before anything is written.
pub async fn transition_in(
    conn: &mut PgConnection,
    req: TransitionRequest<'_>,
) -> Result<Transitioned, StoreError> {
    let current = load_case(&mut *conn, req.case_id)
        .await?
        .ok_or(StoreError::NotFound(req.case_id))?;
    if !may_act(current.state, req.actor.role) {
        return Err(TransitionError::Forbidden {
            from: current.state,
            event: req.event,
            role: req.actor.role,
        }
        .into());
    }
    if current.version != req.expected_version {
        return Err(StoreError::StaleVersion {
            case_id: req.case_id,
            expected: req.expected_version,
            actual: current.version,
        });
    }
    let to = decide(current.state, req.event, req.actor.role)?;
    if to == CaseState::Provisioning
        && !req
            .outbox
            .iter()
            .any(|m| m.topic == crate::risk::PROVISIONING_TOPIC)
    {
        // Every way into provisioning goes through risk::transition_into_provisioning.
        return Err(StoreError::Invariant(
            "a move into provisioning must carry its service order",
        ));
    }
    let (fence_owner, fence_attempt) = match req.fence {
        Some(f) => (Some(f.owner.as_str()), Some(f.attempt)),
        None => (None, None),
    };
    let updated = sqlx::query_as!(
        CaseRow,
        r#"UPDATE reactivation_cases
           SET state = $4, version = version + 1, updated_at = now(), state_entered_at = now(),
               lease_owner = NULL, lease_expires_at = NULL
           WHERE id = $1 AND state = $2 AND version = $3
             AND ($5::text IS NULL OR (lease_owner = $5 AND attempt = $6))
           RETURNING id, msisdn AS "msisdn: Msisdn", state AS "state: CaseState", version,
                     channel AS "channel: Channel", locale AS "locale: Locale", created_at,
                     updated_at, state_entered_at, lease_owner, lease_expires_at, attempt"#,
        req.case_id,
        current.state as CaseState,
        req.expected_version,
        to as CaseState,
        fence_owner,
        fence_attempt,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(case) = updated else {
        // Someone else won between our read and our write: say who.
        let now = load_case(&mut *conn, req.case_id)
            .await?
            .ok_or(StoreError::NotFound(req.case_id))?;
        return Err(match req.fence {
            Some(f) if now.version == req.expected_version => StoreError::LeaseLost {
                case_id: req.case_id,
                attempt: f.attempt,
            },
            _ => StoreError::StaleVersion {
                case_id: req.case_id,
                expected: req.expected_version,
                actual: now.version,
            },
        });
    };

    let event_id = Uuid::now_v7();
    sqlx::query!(
        r#"INSERT INTO case_events (id, case_id, version, from_state, to_state, event, actor_role, actor_id, reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"#,
        event_id,
        case.id,
        case.version,
        current.state as CaseState,
        case.state as CaseState,
        req.event as CaseEvent,
        req.actor.role as Role,
        req.actor.id,
        req.reason,
    )
    .execute(&mut *conn)
    .await?;

    let mut outbox_ids = Vec::with_capacity(req.outbox.len());
    for message in &req.outbox {
        let id = Uuid::now_v7();
        sqlx::query!(
            r#"INSERT INTO outbox (id, case_id, event_id, topic, dedupe_key, payload)
               VALUES ($1, $2, $3, $4, $5, $6)"#,
            id,
            case.id,
            event_id,
            message.topic,
            format!("{event_id}:{}:{}", message.topic, message.dedupe_suffix),
            message.payload,
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query!(
            "SELECT pg_notify($1, $2)",
            crate::outbox_channel(&message.topic),
            id.to_string()
        )
        .execute(&mut *conn)
        .await?;
        outbox_ids.push(id);
    }
    notify(conn, &case).await?;
    tracing::debug!(case_id = %case.id, from = %current.state, to = %case.state, event = %req.event, actor = %req.actor, "case transition");
    Ok(Transitioned {
        case,
        event_id,
        from: current.state,
        outbox_ids,
    })
}

/// Wakes the owner of the case's new state and everyone following case changes.
async fn notify(conn: &mut PgConnection, case: &CaseRow) -> Result<(), StoreError> {
    let change =
        json!({ "case_id": case.id, "version": case.version, "state": case.state, "at": case.state_entered_at }).to_string();
    sqlx::query!(
        "SELECT pg_notify($1, $2), pg_notify($3, $4)",
        case.state.work_channel(),
        case.id.to_string(),
        CASE_CHANGED_CHANNEL,
        change,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

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

/// The personal data a case opens with: its data key (wrapped by the master
/// secret) and the identity sealed under that key.
#[derive(Debug, Clone, Copy)]
pub struct Sealed<'a> {
    /// The case's data key, wrapped.
    pub wrapped_key: &'a [u8],
    /// The name and ID number, sealed.
    pub identity: &'a crate::identity::NewIdentity,
}

/// Opens a case in [`CaseState::INITIAL`] and writes its `opened` event, in one
/// statement: in the caller's transaction, or committed on its own when `conn` is
/// not in one. Never refused for other open cases of the number: only a
/// case that proves identity becomes the number's one case (see [`transition_in`]).
pub async fn create_case(
    conn: &mut PgConnection,
    new: &NewCase,
    actor: &Actor,
) -> Result<CaseRow, StoreError> {
    open_case_row(conn, new, actor, None, Uuid::now_v7()).await
}

/// [`create_case`] with the case's sealed personal data, written by the same
/// statement. Returns the case and its log as it now stands (the `opened` event),
/// without reading it back.
pub async fn create_sealed_case(
    conn: &mut PgConnection,
    new: &NewCase,
    actor: &Actor,
    sealed: Sealed<'_>,
) -> Result<(CaseRow, EventRow), StoreError> {
    let event_id = Uuid::now_v7();
    let case = open_case_row(conn, new, actor, Some(sealed), event_id).await?;
    let opened = EventRow {
        id: event_id,
        version: case.version,
        from_state: None,
        to_state: case.state,
        event: CaseEvent::Opened,
        actor_role: actor.role,
        actor_id: actor.id.clone(),
        reason: None,
        // The event's `at` defaults to now(), the transaction's start, as the
        // case's `created_at` does.
        at: case.created_at,
    };
    Ok((case, opened))
}

/// The case row, its `opened` event, when given its data key and identity, and the
/// one notification (delivered at commit), in one statement: one round trip, so an
/// opening needs no transaction of its own. The notification is the one
/// [`change_notice`] builds for a case with no other wake-ups, built here from the
/// row as written (its `at` is the row's `state_entered_at`).
async fn open_case_row(
    conn: &mut PgConnection,
    new: &NewCase,
    actor: &Actor,
    sealed: Option<Sealed<'_>>,
    event_id: Uuid,
) -> Result<CaseRow, StoreError> {
    let identity = sealed.map(|s| s.identity);
    let case = sqlx::query_as!(
        CaseRow,
        r#"WITH c AS (
               INSERT INTO reactivation_cases (id, msisdn, state, channel, locale, token_hash)
               VALUES ($1, $2, $3, $4, $5, $6)
               RETURNING *
           ), opened AS (
               INSERT INTO case_events (id, case_id, version, from_state, to_state, event, actor_role, actor_id)
               SELECT $7, c.id, 1, NULL, c.state, 'opened', $8, $9 FROM c
           ), data_key AS (
               INSERT INTO case_data_keys (case_id, wrapped_key)
               SELECT c.id, $10 FROM c WHERE $10::bytea IS NOT NULL
           ), sealed AS (
               INSERT INTO case_identities (case_id, full_name_enc, id_number_enc, full_name_masked, id_number_last4)
               SELECT c.id, $11, $12, $13, $14 FROM c WHERE $10::bytea IS NOT NULL
           ), change AS (
               SELECT jsonb_build_object('case_id', c.id, 'version', c.version,
                                         'state', c.state, 'at', c.state_entered_at,
                                         'wake', jsonb_build_array($16::text)) AS payload
               FROM c
           ), notified AS (
               -- Volatile, so evaluated once, when the select below reads it. The
               -- feed's wake-up rides on it as on a transition's.
               SELECT pg_notify($15, CASE
                   WHEN EXISTS (SELECT 1 FROM webhook_endpoints
                                WHERE disabled_at IS NULL AND deleted_at IS NULL)
                   THEN jsonb_set(change.payload, '{wake}',
                                  (change.payload -> 'wake') || to_jsonb($17::text))::text
                   ELSE change.payload::text END)
               FROM change
           )
           SELECT id AS "id!", msisdn AS "msisdn!: Msisdn", state AS "state!: CaseState",
                  version AS "version!", channel AS "channel!: Channel", locale AS "locale!: Locale",
                  created_at AS "created_at!", updated_at AS "updated_at!",
                  state_entered_at AS "state_entered_at!", lease_owner, lease_expires_at,
                  attempt AS "attempt!"
           FROM c, notified"#,
        new.id,
        new.msisdn.e164(),
        CaseState::INITIAL as CaseState,
        new.channel.as_str(),
        new.locale.as_str(),
        &new.token_hash[..],
        event_id,
        actor.role as Role,
        actor.id,
        sealed.map(|s| s.wrapped_key),
        identity.map(|i| &i.full_name_enc[..]),
        identity.map(|i| &i.id_number_enc[..]),
        identity.map(|i| i.full_name_masked.as_str()),
        identity.map(|i| i.id_number_last4.as_str()),
        CASE_CHANGED_CHANNEL,
        CaseState::INITIAL.work_channel(),
        crate::webhooks::EVENT_FEED_CHANNEL,
    )
    .fetch_one(&mut *conn)
    .await?;
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

/// Loads the cases among `ids` (at most 1000 asked at once; more is an error), in no
/// particular order: one query, for the live streams' catch-up after a reconnect.
pub async fn load_cases(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<Vec<CaseRow>, StoreError> {
    if ids.len() > 1000 {
        return Err(StoreError::Invariant(
            "load_cases asked for more than 1000 cases",
        ));
    }
    Ok(sqlx::query_as!(
        CaseRow,
        r#"SELECT id, msisdn AS "msisdn: Msisdn", state AS "state: CaseState", version,
                     channel AS "channel: Channel", locale AS "locale: Locale", created_at,
                  updated_at, state_entered_at, lease_owner, lease_expires_at, attempt
           FROM reactivation_cases WHERE id = ANY($1::uuid[])"#,
        ids
    )
    .fetch_all(db)
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

/// When the case proved identity (`None`: not yet, or no such case).
pub async fn identity_proven_at(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar!(
        "SELECT identity_proven_at FROM reactivation_cases WHERE id = $1",
        case_id
    )
    .fetch_optional(db)
    .await?
    .flatten())
}

/// The case's event log, oldest first.
pub async fn timeline(db: impl PgExecutor<'_>, case_id: Uuid) -> Result<Vec<EventRow>, StoreError> {
    Ok(sqlx::query_as!(
        EventRow,
        r#"SELECT id, version, from_state AS "from_state: CaseState", to_state AS "to_state: CaseState",
                  event AS "event: CaseEvent", actor_role AS "actor_role: Role", actor_id, reason, at
           FROM case_events
           WHERE case_id = $1
             -- No event of a case is older than the case (`append_event`): the log's
             -- months before it are pruned, so a read probes the partitions of the
             -- case's own months, not one index per month of the whole history.
             AND at >= (SELECT c.created_at FROM reactivation_cases c WHERE c.id = $1)
           ORDER BY version"#,
        case_id
    )
    .fetch_all(db)
    .await?)
}

/// The event logs of `case_ids` (at most 1000 asked at once; more is an error) in one
/// read: each event with its case, ordered by case, then version. For a reader that
/// handles several cases' events in one pass.
pub async fn timelines(
    db: impl PgExecutor<'_>,
    case_ids: &[Uuid],
) -> Result<Vec<(Uuid, EventRow)>, StoreError> {
    if case_ids.len() > 1000 {
        return Err(StoreError::Invariant(
            "timelines asked for more than 1000 cases",
        ));
    }
    let rows = sqlx::query!(
        r#"SELECT c.id AS "case_id!", e.id AS "id!", e.version AS "version!",
                  e.from_state AS "from_state: CaseState", e.to_state AS "to_state!: CaseState",
                  e.event AS "event!: CaseEvent", e.actor_role AS "actor_role!: Role",
                  e.actor_id AS "actor_id!", e.reason, e.at AS "at!"
           FROM reactivation_cases c
           -- Per case, as `timeline` reads one: its log through the (case, version)
           -- index of the partitions from its own creation on, pruned at run time
           -- on each case's `created_at`. A bound of the oldest case's creation across
           -- the batch was planned as a read of the current month by time, every
           -- case's events since then (525 buffers a pass at 100 journeys/s).
           CROSS JOIN LATERAL (
               SELECT * FROM case_events e
               WHERE e.case_id = c.id AND e.at >= c.created_at
               ORDER BY e.version) e
           WHERE c.id = ANY($1)
           ORDER BY c.id, e.version"#,
        case_ids
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.case_id,
                EventRow {
                    id: r.id,
                    version: r.version,
                    from_state: r.from_state,
                    to_state: r.to_state,
                    event: r.event,
                    actor_role: r.actor_role,
                    actor_id: r.actor_id,
                    reason: r.reason,
                    at: r.at,
                },
            )
        })
        .collect())
}

/// How many cases are in each open state (for metrics, dashboards and the ETA's
/// queue depth). Terminal states are left out: counting them would read the whole
/// history, while the open states are counted through the partial index on open work.
pub async fn cases_per_state(db: impl PgExecutor<'_>) -> Result<Vec<(CaseState, i64)>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT state AS "state: CaseState", count(*) AS "count!" FROM reactivation_cases
           -- Spelled out so the planner reads reactivation_cases_claimable (open cases only).
           WHERE state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
           GROUP BY state"#
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
/// for workers, `AND lease_owner AND attempt`) moves the case and clears its lease.
/// The write itself checks the state against every state the table lets the event
/// leave for this role, so the case is not read first (but for a proof of identity,
/// whose number is locked before the write); a write that matched nothing reads the
/// case to say which of these refusals applies;
/// the event row and outbox rows are appended; one notification on
/// [`CASE_CHANGED_CHANNEL`] (delivered at commit) carries the change and wakes the
/// next owner and the deliverers of the outbox messages. Any refusal returns
/// before anything is written.
pub async fn transition_in(
    conn: &mut PgConnection,
    req: TransitionRequest<'_>,
) -> Result<Transitioned, StoreError> {
    let carries_order = req
        .outbox
        .iter()
        .any(|m| m.topic == crate::risk::PROVISIONING_TOPIC);
    // Proving identity makes this the number's one case past identity: the number's
    // other cases are read and closed under a lock, so two proofs cannot interleave.
    // The lock needs the number before the write, so this event reads the case first.
    let proving = case_domain::identity::proves_identity(req.event);
    let moved = if proving {
        let current = load_case(&mut *conn, req.case_id)
            .await?
            .ok_or(StoreError::NotFound(req.case_id))?;
        let to = check_transition(&current, &req, carries_order)?;
        lock_number(conn, &current.msisdn).await?;
        update_case(conn, &req, &[(current.state, to)], true).await?
    } else {
        // Every state the event may leave for this role, with where it goes there:
        // the case is read and moved by one statement, and read apart only to say
        // why it was refused.
        let moves: Vec<(CaseState, CaseState)> = CaseState::ALL
            .iter()
            .filter_map(|&from| {
                decide(from, req.event, req.actor.role)
                    .ok()
                    .filter(|&to| to != CaseState::Provisioning || carries_order)
                    .map(|to| (from, to))
            })
            .collect();
        if moves.is_empty() {
            None
        } else {
            update_case(conn, &req, &moves, false).await?
        }
    };
    let Some(Moved {
        case,
        from,
        from_since,
    }) = moved
    else {
        return Err(refusal(conn, &req, carries_order).await);
    };

    let mut wake: Vec<String> = req
        .outbox
        .iter()
        .map(|m| crate::outbox_channel(&m.topic))
        .collect();
    wake.sort();
    wake.dedup();
    let event_id = Uuid::now_v7();
    let outbox_ids: Vec<Uuid> = req.outbox.iter().map(|_| Uuid::now_v7()).collect();
    let row = NewEvent {
        id: event_id,
        case: &case,
        from: (from, from_since),
        event: req.event,
        actor: req.actor,
        reason: req.reason,
    };
    let unproven = if proving {
        unproven_others(conn, &case).await?
    } else {
        Vec::new()
    };
    if !unproven.is_empty() {
        // The superseded cases ride on the winner's one notification, so it is sent
        // once they are closed.
        append_event(conn, &row, &req.outbox, &outbox_ids, None).await?;
        let superseded = supersede_unproven(conn, &case, unproven).await?;
        notify(conn, &case, &wake, &superseded).await?;
    } else {
        append_event(conn, &row, &req.outbox, &outbox_ids, Some(&wake)).await?;
    }
    tracing::debug!(case_id = %case.id, from = %from, to = %case.state, event = %req.event, actor = %req.actor, "case transition");
    Ok(Transitioned {
        case,
        event_id,
        from,
        outbox_ids,
    })
}

/// A case as one transition left it, with the state it left and since when it had
/// been in that state.
struct Moved {
    case: CaseRow,
    from: CaseState,
    from_since: DateTime<Utc>,
}

/// Where `req` takes `current`, or why it may not, in the order the refusals are
/// promised: the role first, then the version, then the transition table, then the
/// service order a move into provisioning must carry.
fn check_transition(
    current: &CaseRow,
    req: &TransitionRequest<'_>,
    carries_order: bool,
) -> Result<CaseState, StoreError> {
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
    if to == CaseState::Provisioning && !carries_order {
        // Every way into provisioning goes through risk::transition_into_provisioning.
        return Err(StoreError::Invariant(
            "a move into provisioning must carry its service order",
        ));
    }
    Ok(to)
}

/// The compare-and-set write of a transition: the case moves when it is in one of
/// the `moves`' from-states (to that move's state), at the expected version, and,
/// for workers, still under the caller's lease. Its lease is cleared. `None` when
/// nothing matched.
async fn update_case(
    conn: &mut PgConnection,
    req: &TransitionRequest<'_>,
    moves: &[(CaseState, CaseState)],
    proving: bool,
) -> Result<Option<Moved>, StoreError> {
    let (fence_owner, fence_attempt) = match req.fence {
        Some(f) => (Some(f.owner.as_str()), Some(f.attempt)),
        None => (None, None),
    };
    let froms: Vec<&str> = moves.iter().map(|(f, _)| f.as_str()).collect();
    let tos: Vec<&str> = moves.iter().map(|(_, t)| t.as_str()).collect();
    // The CTE reads the row as the statement's snapshot saw it, for the state left
    // and since when; a concurrent writer that changed it also changed its version,
    // which the re-checked condition then refuses.
    let row = sqlx::query!(
        r#"WITH cur AS (
               SELECT id, state, state_entered_at FROM reactivation_cases WHERE id = $1
           )
           UPDATE reactivation_cases c
           SET state = m.to_state::case_state, version = c.version + 1, updated_at = now(),
               state_entered_at = now(), lease_owner = NULL, lease_expires_at = NULL,
               identity_proven_at = CASE WHEN $7 THEN now() ELSE c.identity_proven_at END
           FROM cur
           JOIN unnest($2::text[], $3::text[]) AS m(from_state, to_state)
             ON m.from_state = cur.state::text
           WHERE c.id = cur.id AND c.state = cur.state AND c.version = $4
             AND ($5::text IS NULL OR (c.lease_owner = $5 AND c.attempt = $6))
           RETURNING c.id, c.msisdn AS "msisdn: Msisdn", c.state AS "state: CaseState",
                     c.version, c.channel AS "channel: Channel", c.locale AS "locale: Locale",
                     c.created_at, c.updated_at, c.state_entered_at, c.lease_owner,
                     c.lease_expires_at, c.attempt, cur.state AS "from: CaseState",
                     cur.state_entered_at AS from_since"#,
        req.case_id,
        &froms as &[&str],
        &tos as &[&str],
        req.expected_version,
        fence_owner,
        fence_attempt,
        proving,
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| {
        StoreError::on_unique(
            e,
            "reactivation_cases_one_proven_open_per_msisdn",
            StoreError::OpenCaseExists,
        )
    })?;
    Ok(row.map(|r| Moved {
        case: case_row_of!(r),
        from: r.from,
        from_since: r.from_since,
    }))
}

/// Why a transition wrote nothing, from the case as it is now: the checks of
/// [`check_transition`] in their order; when they all pass, someone else moved the
/// case or took its lease between the caller's read and its write.
async fn refusal(
    conn: &mut PgConnection,
    req: &TransitionRequest<'_>,
    carries_order: bool,
) -> StoreError {
    let now = match load_case(&mut *conn, req.case_id).await {
        Ok(Some(now)) => now,
        Ok(None) => return StoreError::NotFound(req.case_id),
        Err(e) => return e,
    };
    if let Err(e) = check_transition(&now, req, carries_order) {
        return e;
    }
    match req.fence {
        Some(f) => StoreError::LeaseLost {
            case_id: req.case_id,
            attempt: f.attempt,
        },
        None => StoreError::StaleVersion {
            case_id: req.case_id,
            expected: req.expected_version,
            actual: now.version,
        },
    }
}

/// The event row of a transition that produced `case` from `from`.
struct NewEvent<'a> {
    id: Uuid,
    case: &'a CaseRow,
    /// The state left, and since when the case was in it.
    from: (CaseState, DateTime<Utc>),
    event: CaseEvent,
    actor: &'a Actor,
    reason: Option<&'a str>,
}

/// Writes `row`, the outbox messages of the transition (with ids `outbox_ids`) and,
/// with `wake`, the transaction's one notification ([`notify`], with no other
/// cases), in one statement.
async fn append_event(
    conn: &mut PgConnection,
    row: &NewEvent<'_>,
    outbox: &[OutboxMessage],
    outbox_ids: &[Uuid],
    wake: Option<&[String]>,
) -> Result<(), StoreError> {
    let topics: Vec<&str> = outbox.iter().map(|m| m.topic.as_str()).collect();
    let dedupe_keys: Vec<String> = outbox
        .iter()
        .map(|m| format!("{}:{}:{}", row.id, m.topic, m.dedupe_suffix))
        .collect();
    let payloads: Vec<&serde_json::Value> = outbox.iter().map(|m| &m.payload).collect();
    let notice = wake.map(|wake| change_notice(row.case, wake, &[]).to_string());
    // The notification is `notify`'s first one (the same payload and the same
    // webhook-feed condition), sent by this statement instead of one of its own.
    // `at` is never before the case's creation, even for a transaction that began
    // before the case was committed (its now() is its start): the case's reads of
    // the log prune the months before `created_at` on that promise. `from_since`
    // (when the case entered `from`) lets the stage statistics time the stage from
    // this row alone.
    sqlx::query!(
        r#"WITH event AS (
               INSERT INTO case_events (id, case_id, version, from_state, to_state, event, actor_role, actor_id, reason, at, from_state_since)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, greatest(now(), $10), $11)
           ), queued AS (
               INSERT INTO outbox (id, case_id, event_id, topic, dedupe_key, payload)
               SELECT m.id, $2, $1, m.topic, m.dedupe_key, m.payload
               FROM unnest($12::uuid[], $13::text[], $14::text[], $15::jsonb[])
                    AS m(id, topic, dedupe_key, payload)
           )
           SELECT pg_notify($16, CASE
               WHEN EXISTS (SELECT 1 FROM webhook_endpoints
                            WHERE disabled_at IS NULL AND deleted_at IS NULL)
               THEN jsonb_set($17::text::jsonb, '{wake}',
                              ($17::text::jsonb -> 'wake') || to_jsonb($18::text))::text
               ELSE $17::text END)
           WHERE $17::text IS NOT NULL"#,
        row.id,
        row.case.id,
        row.case.version,
        row.from.0 as CaseState,
        row.case.state as CaseState,
        row.event as CaseEvent,
        row.actor.role as Role,
        row.actor.id,
        row.reason,
        row.case.created_at,
        row.from.1,
        outbox_ids,
        &topics as &[&str],
        &dedupe_keys,
        &payloads as &[&serde_json::Value],
        CASE_CHANGED_CHANNEL,
        notice,
        crate::webhooks::EVENT_FEED_CHANNEL,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Serialises, until the transaction ends, everything that decides which of a
/// number's cases is the one past identity.
async fn lock_number(conn: &mut PgConnection, msisdn: &Msisdn) -> Result<(), StoreError> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('number-cases:' || $1, 0))",
        msisdn.e164()
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The actor id written on `superseded` events.
pub const SUPERSEDER: &str = "identity";

/// A case of the winner's number that has not proven identity, as it was read
/// (and locked) before it is superseded.
struct Unproven {
    id: Uuid,
    state: CaseState,
    state_entered_at: DateTime<Utc>,
}

/// The number's other open cases that have not proven identity, now that `winner`
/// has, locked until the caller's transaction ends. Read before the winner's event
/// is written, so that when there are none (nearly always) that event's statement
/// sends the transaction's one notification.
async fn unproven_others(
    conn: &mut PgConnection,
    winner: &CaseRow,
) -> Result<Vec<Unproven>, StoreError> {
    let states: Vec<String> = case_domain::identity::SUPERSEDABLE
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    Ok(sqlx::query_as!(
        Unproven,
        r#"SELECT id, state AS "state: CaseState", state_entered_at FROM reactivation_cases
           WHERE msisdn = $1 AND id <> $2 AND identity_proven_at IS NULL
             AND state::text = ANY($3)
             -- Spelled out so the planner uses reactivation_cases_open_by_msisdn
             -- (open cases only) instead of scanning the history.
             AND state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
           ORDER BY id
           FOR UPDATE"#,
        winner.msisdn.e164(),
        winner.id,
        &states,
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// Closes `others` (read by [`unproven_others`]) now that `winner` has proven
/// identity (`superseded`, in the caller's transaction). Their token hashes are
/// replaced by random ones, so their tokens stop working. Returns them as they are
/// now, for the winner's one notification.
async fn supersede_unproven(
    conn: &mut PgConnection,
    winner: &CaseRow,
    others: Vec<Unproven>,
) -> Result<Vec<CaseRow>, StoreError> {
    let system = Actor::system(SUPERSEDER);
    let mut superseded = Vec::with_capacity(others.len());
    for other in others {
        let to = decide(other.state, CaseEvent::Superseded, system.role)?;
        let case = sqlx::query_as!(
            CaseRow,
            r#"UPDATE reactivation_cases
               SET state = $2, version = version + 1, updated_at = now(), state_entered_at = now(),
                   lease_owner = NULL, lease_expires_at = NULL,
                   token_hash = sha256(convert_to(gen_random_uuid()::text || id::text, 'UTF8'))
               WHERE id = $1
               RETURNING id, msisdn AS "msisdn: Msisdn", state AS "state: CaseState", version,
                         channel AS "channel: Channel", locale AS "locale: Locale", created_at,
                         updated_at, state_entered_at, lease_owner, lease_expires_at, attempt"#,
            other.id,
            to as CaseState,
        )
        .fetch_one(&mut *conn)
        .await?;
        let row = NewEvent {
            id: Uuid::now_v7(),
            case: &case,
            from: (other.state, other.state_entered_at),
            event: CaseEvent::Superseded,
            actor: &system,
            reason: Some("another request for this number proved the subscriber's identity"),
        };
        append_event(conn, &row, &[], &[], None).await?;
        tracing::info!(case_id = %case.id, winner = %winner.id, "unproven case superseded");
        superseded.push(case);
    }
    Ok(superseded)
}

/// Other cases changed by the same transaction that one notification carries
/// (`"also"`); more go out in further notifications, so a payload stays well under
/// PostgreSQL's 8000-byte limit.
const ALSO_PER_NOTIFICATION: usize = 32;

/// Announces the transaction's case changes with one `NOTIFY` on
/// [`CASE_CHANGED_CHANNEL`]: the live views and the timers read the change from its
/// payload (`case_id`, `version`, `state`, `at`, and `also`: the other cases the
/// same transaction changed, e.g. the unproven cases a proof superseded), and its
/// `wake` list wakes the workers of those channels through their process's routed
/// listener (`service_runtime::wake`): the work channel of the new state, the
/// outbox channels of `wake` (the topics of the messages the transition wrote) and,
/// while any outbound webhook endpoint is registered, the webhook fan-out (the
/// `case_events` trigger queued the event for it). One notification per
/// transaction instead of one per channel or per case: every notifying commit
/// serialises on PostgreSQL's notification queue, and every listener reads every
/// notification.
async fn notify(
    conn: &mut PgConnection,
    case: &CaseRow,
    wake: &[String],
    also: &[CaseRow],
) -> Result<(), StoreError> {
    let mut chunks = also.chunks(ALSO_PER_NOTIFICATION);
    let payload = change_notice(case, wake, chunks.next().unwrap_or_default());
    // The feed's wake-up rides on the case change (the trigger that queues the
    // event checks the same condition): no second notification.
    sqlx::query!(
        r#"SELECT pg_notify($1, CASE
               WHEN EXISTS (SELECT 1 FROM webhook_endpoints
                            WHERE disabled_at IS NULL AND deleted_at IS NULL)
               THEN jsonb_set($2::text::jsonb, '{wake}',
                              ($2::text::jsonb -> 'wake') || to_jsonb($3::text))::text
               ELSE $2::text END)"#,
        CASE_CHANGED_CHANNEL,
        payload.to_string(),
        crate::webhooks::EVENT_FEED_CHANNEL,
    )
    .execute(&mut *conn)
    .await?;
    for rest in chunks {
        let mut payload = case_change(&rest[0]);
        payload["wake"] = json!([]);
        payload["also"] = rest[1..].iter().map(case_change).collect();
        sqlx::query!(
            "SELECT pg_notify($1, $2)",
            CASE_CHANGED_CHANNEL,
            payload.to_string()
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// One case's change, as the notification carries it.
fn case_change(c: &CaseRow) -> serde_json::Value {
    json!({
        "case_id": c.id,
        "version": c.version,
        "state": c.state,
        "at": c.state_entered_at,
    })
}

/// The payload of the transaction's first notification: `case`'s change, the
/// channels to wake (the new state's work channel first) and the first other cases.
fn change_notice(case: &CaseRow, wake: &[String], also: &[CaseRow]) -> serde_json::Value {
    let mut channels = vec![case.state.work_channel()];
    channels.extend(wake.iter().cloned());
    let mut payload = case_change(case);
    payload["wake"] = json!(channels);
    if !also.is_empty() {
        payload["also"] = also.iter().map(case_change).collect();
    }
    payload
}

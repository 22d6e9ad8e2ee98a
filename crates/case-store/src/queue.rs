//! The one leased-queue mechanism behind the outbox, the inbound carrier webhooks
//! and the outbound webhook deliveries.
//!
//! A worker claims the item that has been due longest (`FOR UPDATE SKIP LOCKED`, so
//! concurrent claimers get distinct items) with a lease that expires; the item's
//! attempt counter, raised by every claim, is the fencing token: every later write
//! (renew, done, retry, dead) names the owner and the attempt it claimed, and is
//! refused with [`StoreError::QueueLeaseLost`] once another claim took over.
//!
//! Each queue has an attempt ceiling ([`Queue::max_attempts`]): a retry asked for by
//! the attempt that reached it, or a claim of an item whose last lease expired at it
//! (its worker crashed mid-work every time), puts the item in its dead state instead.
//! Dead items are counted ([`dead_counts`], the `queue_dead_items` gauge), listed
//! ([`list_dead`]) and can be put back by an admin ([`requeue`]).
//!
//! The three tables differ in names and columns, so each queue is described as data
//! ([`Queue`]) and the SQL is built from it. Table and column names come only from the
//! constants in this module, never from input; every value is a bind.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Row, postgres::PgRow};

use crate::StoreError;

/// How one queue's table spells the queue's concepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    /// The queue's name (metrics label, admin API path segment).
    pub name: &'static str,
    /// Its table.
    pub table: &'static str,
    /// The id column.
    pub id: &'static str,
    /// The id's SQL type (`uuid` or `text`); ids travel as text and are cast.
    pub id_type: &'static str,
    /// The column holding when the item is (next) due.
    pub due: &'static str,
    /// The column holding what kind of item it is (topic or event type).
    pub kind: &'static str,
    /// The column claims may filter on (`topic = ANY(..)`), if the queue has topics.
    pub topic: Option<&'static str>,
    /// The column holding the last error or note.
    pub error: &'static str,
    /// Predicate: the item is still to be worked on (neither done nor dead).
    pub pending: &'static str,
    /// Predicate: the item is dead (given up).
    pub dead: &'static str,
    /// The column (or expression) saying when it died.
    pub died_at: &'static str,
    /// SET list that marks the item done.
    pub set_done: &'static str,
    /// SET list that marks the item dead.
    pub set_dead: &'static str,
    /// SET list that marks the item cancelled (not worked on, not failed), if the queue knows it.
    pub set_cancelled: Option<&'static str>,
    /// SET list that puts a dead item back to pending.
    pub set_pending: &'static str,
    /// The `NOTIFY` channel that wakes the queue's workers, as an expression over the row `t`.
    pub wake: &'static str,
    /// Extra expressions a claim returns beside the id and attempt (over the row `q`).
    pub claim_returning: &'static str,
    /// Attempts at most; the attempt that reaches it is the last.
    pub max_attempts: i32,
    /// Items with the same value in this column (and the same topic) are handed out
    /// one at a time, in the order they were written: only the oldest pending one is
    /// claimable. Keeps a case's notifications in order when workers claim batches
    /// and deliver them concurrently. `None`: no order between items.
    pub in_order_of: Option<&'static str>,
    /// [`Queue::pending`] as the in-order check's index and the lease-due index
    /// spell it (`coalesce(..) IS NULL`, columns of the row `{t}`), when the queue
    /// has such indexes: no other pending index's predicate follows from it, so
    /// those reads cannot be served by one. With the queue's statistics young (a
    /// pending index analyzed empty looks free forever after), plans read every
    /// pending item of the topic through the due-time index instead. `None`: [`Queue::pending`].
    pub pending_spelled: Option<&'static str>,
}

impl Queue {
    /// [`Queue::pending`] with each column qualified by the table alias `alias`.
    fn pending_of(&self, alias: &str) -> String {
        self.pending
            .split(" AND ")
            .map(|p| format!("{alias}.{p}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// [`Queue::pending_spelled`] (else [`Queue::pending`]) over the table alias `alias`.
    fn pending_spelled_of(&self, alias: &str) -> String {
        match self.pending_spelled {
            Some(p) => p.replace("{t}", alias),
            None => self.pending_of(alias),
        }
    }

    /// The same queue with another attempt ceiling (at least 1).
    pub const fn with_max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = if max_attempts < 1 { 1 } else { max_attempts };
        self
    }
}

/// The outbox: side effects committed with a state change. Its ceiling is above
/// the notification deliverer's 15 attempts and provisioning's 12 order failures.
pub const OUTBOX: Queue = Queue {
    name: "outbox",
    table: "outbox",
    id: "id",
    id_type: "uuid",
    due: "available_at",
    kind: "topic",
    topic: Some("topic"),
    error: "last_error",
    pending: "delivered_at IS NULL AND failed_at IS NULL",
    dead: "failed_at IS NOT NULL",
    died_at: "failed_at",
    set_done: "delivered_at = now()",
    set_dead: "failed_at = now()",
    set_cancelled: None,
    set_pending: "failed_at = NULL",
    wake: "'outbox_' || replace(t.topic, '.', '_')",
    claim_returning: "q.id, q.case_id, q.event_id, q.topic, q.payload, \
                      extract(epoch FROM now() - q.created_at)::float8 AS waited",
    max_attempts: 20,
    in_order_of: Some("case_id"),
    pending_spelled: Some("coalesce({t}.delivered_at, {t}.failed_at) IS NULL"),
};

/// Inbound carrier webhooks. Ten attempts, as the processor has always made.
pub const CARRIER_WEBHOOKS: Queue = Queue {
    name: "carrier_webhooks",
    table: "carrier_webhooks",
    id: "id",
    id_type: "text",
    due: "available_at",
    kind: "type",
    topic: None,
    error: "error",
    pending: "processed_at IS NULL AND failed_at IS NULL",
    dead: "failed_at IS NOT NULL",
    died_at: "failed_at",
    set_done: "processed_at = now()",
    set_dead: "failed_at = now()",
    set_cancelled: None,
    set_pending: "failed_at = NULL",
    wake: "'carrier_webhook_received'",
    claim_returning: "q.type, q.payload",
    max_attempts: 10,
    in_order_of: None,
    pending_spelled: None,
};

/// Outbound webhook deliveries. Eight attempts: the first and the seven retries of
/// the standard schedule (`webhooks::RetrySchedule::standard().max_attempts()`).
pub const WEBHOOK_DELIVERIES: Queue = Queue {
    name: "webhook_deliveries",
    table: "webhook_deliveries",
    id: "id",
    id_type: "uuid",
    due: "next_attempt_at",
    kind: "event_type",
    topic: None,
    error: "last_error",
    pending: "status = 'pending'",
    dead: "status = 'failed'",
    died_at: "finished_at",
    set_done: "status = 'delivered', finished_at = now()",
    set_dead: "status = 'failed', finished_at = now()",
    set_cancelled: Some("status = 'cancelled', finished_at = now()"),
    set_pending: "status = 'pending', finished_at = NULL",
    wake: "'webhook_delivery'",
    claim_returning: "q.id, q.endpoint_id, q.event_type, q.payload, \
        (SELECT e.url FROM webhook_endpoints e WHERE e.id = q.endpoint_id) AS url, \
        (SELECT e.secret_sealed FROM webhook_endpoints e WHERE e.id = q.endpoint_id) AS secret_sealed, \
        (SELECT CASE WHEN e.previous_secret_until > now() THEN e.previous_secret_sealed END \
         FROM webhook_endpoints e WHERE e.id = q.endpoint_id) AS previous_secret_sealed, \
        (SELECT e.disabled_at IS NULL AND e.deleted_at IS NULL FROM webhook_endpoints e \
         WHERE e.id = q.endpoint_id) AS endpoint_active",
    max_attempts: 8,
    in_order_of: None,
    pending_spelled: None,
};

/// Every queue, in the order they are shown.
pub const ALL: [Queue; 3] = [OUTBOX, CARRIER_WEBHOOKS, WEBHOOK_DELIVERIES];

/// The queue of this name.
pub fn by_name(name: &str) -> Option<Queue> {
    ALL.into_iter().find(|q| q.name == name)
}

/// A claimed item: which, by whom, and the fencing attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The queue's name.
    pub queue: &'static str,
    /// The item's id, as text.
    pub item: String,
    /// The worker holding it.
    pub owner: String,
    /// The attempt number, counting this one; the fencing token.
    pub attempt: i32,
}

impl Lease {
    /// The error of a write with this lease after it was lost.
    pub fn lost(&self) -> StoreError {
        StoreError::QueueLeaseLost {
            queue: self.queue,
            item: self.item.clone(),
            attempt: self.attempt,
        }
    }
}

/// What a claim found: the lease and the queue's `claim_returning` columns.
#[derive(Debug)]
pub struct Claimed {
    /// The lease.
    pub lease: Lease,
    /// The row (decode the queue's `claim_returning` columns from it).
    pub row: PgRow,
}

/// Counts an item's death in `queue_items_dead_total`.
fn count_deaths(queue: &Queue, n: u64) {
    if n > 0 {
        metrics::counter!("queue_items_dead_total", "queue" => queue.name).increment(n);
    }
}

/// The claim's candidates, locked: the `max` claimable items (of the topics `topics`, an SQL array literal,
/// if the queue has topics) due longest, each with whether its attempts already
/// reached the ceiling (`queue_doomed`: its last lease expired, its worker died, so
/// it is buried instead of handed out). Read in the order of the queue's pending
/// index, per topic, so a claim reads about `max` index entries whatever the backlog:
/// a single `topic = ANY(..)` scan would sort every due item of the topics first.
fn claim_candidates(q: &Queue, topics: &str, max: i64) -> String {
    let claimable = |t: &str| {
        format!(
            "{pending} AND {t}.{due} <= now() AND {not_leased}{in_order}",
            pending = q.pending_of(t),
            not_leased = not_leased(t),
            due = q.due,
            in_order = in_order(q, t),
        )
    };
    let (id, due, table) = (q.id, q.due, q.table);
    match q.topic {
        Some(topic) => format!(
            "SELECT x.{id}, x.queue_due, x.queue_doomed FROM unnest({topics}) AS tp(topic)
               CROSS JOIN LATERAL (
                   SELECT c.{id}, c.{due} AS queue_due, c.attempts >= {ceiling} AS queue_doomed FROM {table} c
                   WHERE c.{topic} = tp.topic AND {claimable}
                   ORDER BY c.{due}
                   LIMIT {max}
                   FOR UPDATE SKIP LOCKED) x
               ORDER BY x.queue_due
               LIMIT {max}",
            claimable = claimable("c"),
            ceiling = q.max_attempts,
        ),
        None => format!(
            "SELECT c.{id}, c.{due} AS queue_due, c.attempts >= {ceiling} AS queue_doomed FROM {table} c
               WHERE {claimable}
               ORDER BY c.{due}
               LIMIT {max}
               FOR UPDATE SKIP LOCKED",
            claimable = claimable("c"),
            ceiling = q.max_attempts,
        ),
    }
}

/// Predicate over the row `alias`: never leased, or its lease ran out (its worker
/// died), so claimable once it is due.
fn not_leased(alias: &str) -> String {
    format!("({alias}.lease_expires_at IS NULL OR {alias}.lease_expires_at <= now())")
}

/// `items` as an SQL array literal of `sql_type` (each quoted, quotes doubled): what
/// the claims write into their statements instead of binding (see
/// [`claim_batch_due`] and `claims::claim_batch_due`).
pub(crate) fn array_literal<'a>(
    items: impl IntoIterator<Item = &'a str>,
    sql_type: &str,
) -> String {
    let quoted: Vec<String> = items
        .into_iter()
        .map(|i| format!("'{}'", i.replace('\'', "''")))
        .collect();
    format!("ARRAY[{}]::{sql_type}[]", quoted.join(", "))
}

/// The claim's condition that an item is the oldest pending one of its group (see
/// [`Queue::in_order_of`]); empty when the queue keeps no order. Written as a
/// comparison with the group's first pending item in the order of the group's index
/// (`outbox_pending_in_order`, whose predicate only [`Queue::pending_spelled`]
/// implies), a read of one index entry: as a `NOT EXISTS`, a plan
/// made while the queue's statistics were young read every pending item of the
/// topic through the due-time index instead (1,680 rows for one claim at 100/s).
fn in_order(q: &Queue, alias: &str) -> String {
    let Some(column) = q.in_order_of else {
        return String::new();
    };
    let (topic, topic_order) = match q.topic {
        Some(t) => (format!(" AND e.{t} = {alias}.{t}"), format!(", e.{t}")),
        None => (String::new(), String::new()),
    };
    format!(
        " AND ({alias}.{column} IS NULL OR (({alias}.created_at, {alias}.{id}) <= (\
           SELECT e.created_at, e.{id} FROM {table} e WHERE e.{column} = {alias}.{column}{topic} \
           AND {pending_e} ORDER BY e.{column}{topic_order}, e.created_at, e.{id} LIMIT 1)) IS NOT FALSE)",
        table = q.table,
        id = q.id,
        pending_e = q.pending_spelled_of("e"),
    )
}

/// Claims the item of `queue` that has been due longest (of `topics`, if the queue has
/// topics), leasing it to `worker` for `lease`. Items whose attempts already reached
/// the ceiling and whose lease expired (their worker died) are moved to the dead state
/// on the way, never handed out again.
pub async fn claim(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    topics: &[String],
    worker: &str,
    lease: Duration,
) -> Result<Option<Claimed>, StoreError> {
    Ok(claim_batch(db, queue, topics, worker, lease, 1)
        .await?
        .pop())
}

/// Claims up to `max` items of `queue` (of `topics`, if the queue has topics), those
/// due longest first, in one statement; each gets its own attempt (fencing token).
/// Like [`claim`], buries the items whose last lease expired at the ceiling.
pub async fn claim_batch(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    topics: &[String],
    worker: &str,
    lease: Duration,
    max: usize,
) -> Result<Vec<Claimed>, StoreError> {
    Ok(claim_batch_due(db, queue, topics, worker, lease, max)
        .await?
        .0)
}

/// [`claim_batch`], and, when the claim comes back short (nothing more is claimable
/// now), what [`next_due`] would answer after it, from the same statement: when the
/// next pending item that this claim did not take becomes claimable (`None`: none
/// is pending). A claim that filled every slot reads no due time (`None`), so a
/// busy worker's claims never scan the pending items.
pub async fn claim_batch_due(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    topics: &[String],
    worker: &str,
    lease: Duration,
    max: usize,
) -> Result<(Vec<Claimed>, Option<DateTime<Utc>>), StoreError> {
    let q = queue;
    // The batch size, the topics and the attempt ceiling are written into the
    // statement, not bound: only the worker and the lease are parameters, which
    // change no estimate, so the generic plan costs what the custom ones do and
    // Postgres keeps it after five runs. With them bound, the generic plan was costed
    // higher (a bound LIMIT is taken as a tenth of the table, a bound array as ten
    // topics) and the claim was planned again on every run, 1.3 ms each, more than
    // running it. A worker claims with the same topics and asks for a power of two
    // of its free slots (`service_runtime`'s `claim_size`), so a connection prepares
    // few variants and runs each often enough to keep it.
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let topics_sql = array_literal(topics.iter().map(String::as_str), "text");
    let sql = format!(
        r#"WITH next AS (
               {candidates}
           ), buried AS (
               UPDATE {table} d SET {set_dead}, lease_owner = NULL, lease_expires_at = NULL,
                      {error} = left('given up: attempt ' || d.attempts || ' of {ceiling}'
                                     || ' did not finish (lease expired); last error: '
                                     || coalesce(d.{error}, 'none'), 500)
               FROM next WHERE d.{id} = next.{id} AND next.queue_doomed
               RETURNING d.{id}
           ), claimed AS (
               UPDATE {table} q
               SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2),
                   attempts = q.attempts + 1
               FROM next WHERE q.{id} = next.{id} AND NOT next.queue_doomed
               RETURNING next.queue_due, q.{id}::text AS queue_item, q.attempts AS queue_attempt, {returning}
           )
           SELECT b.buried, d.queue_next_due, c.* FROM (SELECT count(*) AS buried FROM buried) b
           CROSS JOIN (
               SELECT CASE WHEN (SELECT count(*) FROM next WHERE NOT next.queue_doomed) < {max}
                           THEN {next_due} END
                      AS queue_next_due
           ) d
           LEFT JOIN claimed c ON true
           ORDER BY c.queue_due"#,
        candidates = claim_candidates(q, &topics_sql, max),
        ceiling = q.max_attempts,
        id = q.id,
        table = q.table,
        set_dead = q.set_dead,
        error = q.error,
        returning = q.claim_returning,
        next_due = next_due_sql(
            q,
            &topics_sql,
            &format!(" AND t.{id} NOT IN (SELECT {id} FROM next)", id = q.id)
        ),
    );
    let rows = sqlx::query(&sql)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .fetch_all(db)
        .await?;
    let (buried, next_due): (i64, Option<DateTime<Utc>>) = match rows.first() {
        Some(row) => (row.try_get("buried")?, row.try_get("queue_next_due")?),
        None => (0, None),
    };
    count_deaths(q, u64::try_from(buried).unwrap_or(0));
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(item) = row.try_get::<Option<String>, _>("queue_item")? else {
            continue;
        };
        let attempt: i32 = row.try_get("queue_attempt")?;
        claimed.push(Claimed {
            lease: Lease {
                queue: q.name,
                item,
                owner: worker.to_owned(),
                attempt,
            },
            row,
        });
    }
    Ok((claimed, next_due))
}

type PgQuery<'a> = sqlx::query::Query<'a, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Runs a write fenced by `lease`: `set` after `SET`, extra binds from `$4`.
async fn fenced(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    lease: &Lease,
    set: &str,
    guard: &str,
    bind: impl for<'a> FnOnce(PgQuery<'a>) -> PgQuery<'a>,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE {table} SET {set} WHERE {id} = $1::{id_type} AND lease_owner = $2 AND attempts = $3{guard}",
        table = queue.table,
        id = queue.id,
        id_type = queue.id_type,
    );
    let query = sqlx::query(&sql)
        .bind(lease.item.clone())
        .bind(lease.owner.clone())
        .bind(lease.attempt);
    let done = bind(query).execute(db).await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(lease.lost())
    }
}

/// Extends the lease on a pending item; [`StoreError::QueueLeaseLost`] if it is no longer held.
pub async fn renew(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    lease: &Lease,
    extend: Duration,
) -> Result<(), StoreError> {
    let guard = format!(" AND {}", queue.pending);
    fenced(
        db,
        queue,
        lease,
        "lease_expires_at = now() + make_interval(secs => $4)",
        &guard,
        |q| q.bind(extend.as_secs_f64()),
    )
    .await
}

/// Marks the item done, with a note (why it was ignored, say) or none.
pub async fn done(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    lease: &Lease,
    note: Option<&str>,
) -> Result<(), StoreError> {
    let set = format!(
        "{}, {} = left($4, 500), lease_owner = NULL, lease_expires_at = NULL",
        queue.set_done, queue.error
    );
    let note = note.map(str::to_owned);
    fenced(db, queue, lease, &set, "", |q| q.bind(note)).await
}

/// Marks the item cancelled (the queue must know that state).
pub async fn cancel(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    lease: &Lease,
    why: &str,
) -> Result<(), StoreError> {
    let Some(cancelled) = queue.set_cancelled else {
        return Err(StoreError::Invariant("this queue has no cancelled state"));
    };
    let set = format!(
        "{cancelled}, {} = left($4, 500), lease_owner = NULL, lease_expires_at = NULL",
        queue.error
    );
    let why = why.to_owned();
    fenced(db, queue, lease, &set, "", |q| q.bind(why)).await
}

/// What became of an item that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// It will be tried again.
    Retried,
    /// That was its last attempt: it is dead.
    Dead,
}

/// Puts the item back to be tried again after `delay` (the database's clock), noting
/// the error; if this attempt reached the queue's ceiling the item dies instead.
pub async fn retry(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    lease: &Lease,
    delay: Duration,
    error: &str,
) -> Result<Failed, StoreError> {
    if lease.attempt >= queue.max_attempts {
        fail(db, queue, lease, error).await?;
        return Ok(Failed::Dead);
    }
    let set = format!(
        "{} = now() + make_interval(secs => $4), {} = left($5, 500), lease_owner = NULL, lease_expires_at = NULL",
        queue.due, queue.error
    );
    let error = error.to_owned();
    fenced(db, queue, lease, &set, "", |q| {
        q.bind(delay.as_secs_f64()).bind(error)
    })
    .await?;
    Ok(Failed::Retried)
}

/// Gives the item up: it is dead until an admin puts it back.
pub async fn fail(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    lease: &Lease,
    error: &str,
) -> Result<(), StoreError> {
    let set = format!(
        "{}, {} = left($4, 500), lease_owner = NULL, lease_expires_at = NULL",
        queue.set_dead, queue.error
    );
    let error = error.to_owned();
    fenced(db, queue, lease, &set, "", |q| q.bind(error)).await?;
    count_deaths(queue, 1);
    Ok(())
}

/// When the next pending item (of `topics`, if the queue has topics) becomes claimable
/// (its back-off or its lease ends); `None` if none is pending. Workers sleep until then at most.
pub async fn next_due(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    topics: &[String],
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let sql = format!("SELECT {}", next_due_sql(queue, "$1", ""));
    let mut query = sqlx::query_scalar(&sql);
    if queue.topic.is_some() {
        query = query.bind(topics);
    }
    Ok(query.fetch_one(db).await?)
}

/// SQL for when the next pending item of `q` (of the topics in `topics`, an array
/// parameter or literal, if the queue has topics) can be claimed, NULL when none is
/// pending: the earlier of the first item not leased (or whose lease ran out) in due
/// order (read per topic in the order of the queue's pending index, so held messages
/// due later are not read) and the first lease still running to run out among the
/// items being worked on, of any topic (the small `*_leased` index): possibly earlier
/// than an item of `topics` is due, never later.
/// `except` is a further condition on `t` (the items the same statement claimed).
fn next_due_sql(q: &Queue, topics: &str, except: &str) -> String {
    let pending_t = q.pending_of("t");
    let (due, table) = (q.due, q.table);
    let not_leased = not_leased("t");
    let unleased = match q.topic {
        Some(topic) => format!(
            "(SELECT min(x.due) FROM unnest({topics}::text[]) AS tp(topic) \
               CROSS JOIN LATERAL (SELECT t.{due} AS due FROM {table} t \
                 WHERE t.{topic} = tp.topic AND {pending_t} AND {not_leased}{except} \
                 ORDER BY t.{due} LIMIT 1) x)"
        ),
        None => format!(
            "(SELECT t.{due} FROM {table} t \
               WHERE {pending_t} AND {not_leased}{except} \
               ORDER BY t.{due} LIMIT 1)"
        ),
    };
    // The first lease to run out, of any topic, read in the order of the queue's
    // `*_leased` index (see Queue::pending_spelled), never every pending item of the
    // topics. Each claim and each delivery leaves a dead entry there (neither update
    // is HOT); an ordered index scan marks those it steps over and stops at the first
    // live one, while a bitmap scan never marks them and visits them all on every
    // claim (2,918 entries, 410 heap pages for one claim at 100/s). The planner took
    // a bitmap scan for a `min()`, and for an ordered read filtered on the topics
    // whenever the statistics made the filter look selective; with no filter, the
    // first entry answers and it has no reason to. Another topic's lease may wake
    // the worker early, which costs one claim. Leases that ran out are left out here:
    // those of the worker's topics are read above, with the items not leased, and
    // another topic's (its workers gone) would wake the worker at once, for ever. A
    // claim leases only due items, so a lease never ends before its item's due time.
    format!(
        "least({unleased}, \
           (SELECT greatest(t.{due}, t.lease_expires_at) FROM {table} t \
             WHERE {leased_pending} AND t.lease_expires_at IS NOT NULL \
               AND t.lease_expires_at > now(){except} \
             ORDER BY t.lease_expires_at LIMIT 1))",
        leased_pending = q.pending_spelled_of("t"),
    )
}

/// How many items each queue holds dead, in the order of [`ALL`].
pub async fn dead_counts(db: impl PgExecutor<'_>) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let sql = ALL
        .iter()
        .map(|q| {
            format!(
                "SELECT '{name}'::text AS queue, count(*) AS dead FROM {table} WHERE {dead}",
                name = q.name,
                table = q.table,
                dead = q.dead,
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows: Vec<(String, i64)> = sqlx::query_as(&sql).fetch_all(db).await?;
    Ok(ALL
        .iter()
        .map(|q| {
            let n = rows
                .iter()
                .find(|(name, _)| name == q.name)
                .map_or(0, |(_, n)| *n);
            (q.name, n)
        })
        .collect())
}

/// A dead item as an operator sees it: no payload, no personal data.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeadItem {
    /// The queue's name.
    pub queue: String,
    /// The item's id.
    pub id: String,
    /// Its topic or event type.
    pub kind: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last error (without personal data).
    pub last_error: Option<String>,
    /// When it died.
    pub died_at: Option<DateTime<Utc>>,
}

/// The newest dead items of `queue` (at most `limit`), newest first.
pub async fn list_dead(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    limit: i64,
) -> Result<Vec<DeadItem>, StoreError> {
    let sql = format!(
        "SELECT $1::text AS queue, {id}::text AS id, {kind} AS kind, attempts, {error} AS last_error,
                {died_at} AS died_at
         FROM {table} WHERE {dead}
         ORDER BY {died_at} DESC NULLS LAST, {id} DESC LIMIT $2",
        id = queue.id,
        kind = queue.kind,
        error = queue.error,
        died_at = queue.died_at,
        table = queue.table,
        dead = queue.dead,
    );
    Ok(sqlx::query_as(&sql)
        .bind(queue.name)
        .bind(limit)
        .fetch_all(db)
        .await?)
}

/// Puts a dead item back (admin retry): pending, due now, attempts from zero, no
/// lease, and wakes the queue's workers. Returns the item as it was when dead, or `None` if no dead item has that id.
pub async fn requeue(
    db: impl PgExecutor<'_>,
    queue: &Queue,
    id: &str,
) -> Result<Option<DeadItem>, StoreError> {
    if queue.id_type == "uuid" && uuid::Uuid::parse_str(id).is_err() {
        return Ok(None);
    }
    let sql = format!(
        "WITH old AS (
             SELECT {id}, {kind} AS kind, attempts, {error} AS last_error, {died_at} AS died_at
             FROM {table} WHERE {id} = $1::{id_type} AND {dead}
             FOR UPDATE
         ), requeued AS (
             UPDATE {table} t SET {set_pending}, {due} = now(), attempts = 0,
                    lease_owner = NULL, lease_expires_at = NULL
             FROM old WHERE t.{id} = old.{id}
             RETURNING $2::text AS queue, t.{id}::text AS id, old.kind, old.attempts,
                       old.last_error, old.died_at, {wake} AS channel
         )
         SELECT r.*, pg_notify(r.channel, r.id)::text AS notified FROM requeued r",
        id = queue.id,
        kind = queue.kind,
        error = queue.error,
        died_at = queue.died_at,
        table = queue.table,
        dead = queue.dead,
        set_pending = queue.set_pending,
        due = queue.due,
        id_type = queue.id_type,
        wake = queue.wake,
    );
    Ok(sqlx::query_as(&sql)
        .bind(id)
        .bind(queue.name)
        .fetch_optional(db)
        .await?)
}

/// Sets the `queue_dead_items{queue}` gauge from [`dead_counts`] and returns the counts.
pub async fn publish_dead_gauges(
    db: impl PgExecutor<'_>,
) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let counts = dead_counts(db).await?;
    for (queue, n) in &counts {
        metrics::gauge!("queue_dead_items", "queue" => *queue).set(*n as f64);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_written_as_quoted_text_literals() {
        assert_eq!(
            array_literal(["sms", "it's; DROP TABLE outbox"], "text"),
            "ARRAY['sms', 'it''s; DROP TABLE outbox']::text[]"
        );
        assert_eq!(array_literal([], "text"), "ARRAY[]::text[]");
    }

    #[test]
    fn the_spelled_pending_state_is_qualified_by_the_alias() {
        assert_eq!(
            OUTBOX.pending_spelled_of("e"),
            "coalesce(e.delivered_at, e.failed_at) IS NULL"
        );
        assert_eq!(
            CARRIER_WEBHOOKS.pending_spelled_of("t"),
            "t.processed_at IS NULL AND t.failed_at IS NULL"
        );
    }
}

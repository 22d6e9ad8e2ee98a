//! Budgets per phone number over a rolling window: failed proofs judged, codes sent,
//! messages caused by anonymous actions. One row per use in `number_budget_uses`;
//! a slot is reserved under a transaction-scoped advisory lock on (number, kind), so
//! concurrent requests for one number queue up for the count and can never
//! overshoot, while other numbers are not held up. Every count reads the rows of one
//! number through `number_budget_uses_window`, so the cost follows the number asked
//! about, not the history.

use chrono::{DateTime, Duration, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::StoreError;

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetKind {
    /// A proof of identity judged (pending and failed ones count; accepted ones do not).
    Proof,
    /// A one-time code sent.
    Code,
    /// A message caused before identity was proven.
    Notice,
}

impl BudgetKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Proof => "proof",
            Self::Code => "code",
            Self::Notice => "notice",
        }
    }

    /// The outcome a new slot gets: a proof is pending until judged, the others are used.
    fn reserved_outcome(self) -> &'static str {
        match self {
            Self::Proof => "pending",
            Self::Code | Self::Notice => "used",
        }
    }
}

/// A slot to reserve.
#[derive(Debug, Clone, Copy)]
pub struct Reserve<'a> {
    /// The number whose budget pays.
    pub msisdn: &'a str,
    /// What is counted.
    pub kind: BudgetKind,
    /// The case on whose behalf.
    pub case_id: Option<Uuid>,
    /// For proofs: `otp`, `service_password` or `call_records`.
    pub method: Option<&'a str>,
    /// What caused it, when it must count once (a message's dedupe key).
    pub cause: Option<&'a str>,
    /// Uses allowed in the window.
    pub limit: i64,
    /// The rolling window.
    pub window: Duration,
}

/// The outcome of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A slot was reserved; `used` counts it and the others in the window.
    Granted {
        /// The slot's id (to settle a proof).
        id: Uuid,
        /// Uses in the window, this one included.
        used: i64,
    },
    /// The same cause was already paid for: nothing new reserved.
    AlreadyPaid,
    /// The budget is spent until `frees_at`.
    Spent {
        /// When the oldest counted use leaves the window.
        frees_at: DateTime<Utc>,
    },
    /// Not spent, but every slot left is reserved by a proof being judged right now:
    /// try again in a moment (the answer may free a slot, or spend the budget).
    Busy,
}

/// How a reserved proof ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofOutcome {
    /// Judged and refused: keeps counting for the window.
    Failed,
    /// Judged and accepted: does not count.
    Accepted,
    /// Never judged (the carrier was unreachable, a racing request won): does not count.
    Released,
}

impl ProofOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Accepted => "accepted",
            Self::Released => "released",
        }
    }
}

/// Reserves a slot in the caller's transaction (the advisory lock is held until it
/// ends). Use [`reserve`] to reserve in a transaction of its own.
pub async fn reserve_in(
    conn: &mut PgConnection,
    r: &Reserve<'_>,
) -> Result<Reservation, StoreError> {
    let mut done = reserve_many_in(conn, std::slice::from_ref(r)).await?;
    Ok(done.pop().unwrap_or(Reservation::Busy))
}

/// [`reserve_in`] for several slots at once, answered in their order: as if each
/// were reserved in turn, in two statements for every slot of a different budget
/// (number and kind). Slots of a budget already in the round go in the next one, so
/// the second sees the first.
pub async fn reserve_many_in(
    conn: &mut PgConnection,
    slots: &[Reserve<'_>],
) -> Result<Vec<Reservation>, StoreError> {
    let mut done = vec![Reservation::Busy; slots.len()];
    for round in crate::rounds(slots, |r| (r.msisdn, r.kind)) {
        let mine: Vec<&Reserve<'_>> = round.iter().map(|&i| &slots[i]).collect();
        for (i, reservation) in round.into_iter().zip(reserve_round(conn, &mine).await?) {
            done[i] = reservation;
        }
    }
    Ok(done)
}

/// One round of [`reserve_many_in`]: slots of different budgets.
async fn reserve_round(
    conn: &mut PgConnection,
    slots: &[&Reserve<'_>],
) -> Result<Vec<Reservation>, StoreError> {
    let msisdns: Vec<&str> = slots.iter().map(|r| r.msisdn).collect();
    let kinds: Vec<&str> = slots.iter().map(|r| r.kind.as_str()).collect();
    // The budgets' locks, always taken in the order of their keys, so two
    // transactions locking several never wait for each other in a cycle.
    sqlx::query!(
        r#"SELECT pg_advisory_xact_lock(k.key) FROM (
               SELECT DISTINCT hashtextextended('number-budget:' || m || ':' || kind, 0) AS key
               FROM unnest($1::text[], $2::text[]) AS b(m, kind)
               ORDER BY 1
           ) k"#,
        &msisdns as &[&str],
        &kinds as &[&str],
    )
    .execute(&mut *conn)
    .await?;
    // After the locks, one statement (its snapshot taken once they are held, so it
    // sees every use committed by the holders before): per slot, whether the cause
    // was paid, the window's counts, and the slot written only when the cause is new
    // and the window has room. The decision below reads the same counts the write
    // was conditioned on.
    let ids: Vec<Uuid> = slots.iter().map(|_| Uuid::now_v7()).collect();
    let case_ids: Vec<Option<Uuid>> = slots.iter().map(|r| r.case_id).collect();
    let methods: Vec<Option<&str>> = slots.iter().map(|r| r.method).collect();
    let outcomes: Vec<&str> = slots.iter().map(|r| r.kind.reserved_outcome()).collect();
    let causes: Vec<Option<&str>> = slots.iter().map(|r| r.cause).collect();
    let now = Utc::now();
    let since: Vec<DateTime<Utc>> = slots.iter().map(|r| now - r.window).collect();
    let limits: Vec<i64> = slots.iter().map(|r| r.limit).collect();
    let rows = sqlx::query!(
        r#"WITH slot AS (
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[],
                                    $6::text[], $7::text[], $8::timestamptz[], $9::int8[])
                      WITH ORDINALITY AS s(id, msisdn, kind, case_id, method, outcome, ref,
                                           since, lim, n)
           ), seen AS (
               SELECT slot.*,
                      (SELECT count(*) FROM number_budget_uses u WHERE u.ref = slot.ref) AS paid,
                      counted.spent, counted.pending, counted.oldest
               FROM slot CROSS JOIN LATERAL (
                   SELECT count(*) FILTER (WHERE outcome IN ('failed', 'used')) AS spent,
                          count(*) FILTER (WHERE outcome = 'pending') AS pending,
                          min(at) FILTER (WHERE outcome IN ('failed', 'used')) AS oldest
                   FROM number_budget_uses u
                   WHERE u.msisdn = slot.msisdn AND u.kind = slot.kind AND u.at > slot.since
                     AND u.outcome IN ('pending', 'failed', 'used')
               ) counted
           ), granted AS (
               INSERT INTO number_budget_uses (id, msisdn, kind, case_id, method, outcome, ref)
               SELECT id, msisdn, kind, case_id, method, outcome, ref FROM seen
               WHERE paid = 0 AND spent + pending < lim
               RETURNING id
           )
           SELECT seen.id AS "id!", seen.paid AS "paid!", seen.spent AS "spent!",
                  seen.pending AS "pending!", seen.oldest, seen.lim AS "limit!",
                  EXISTS (SELECT 1 FROM granted g WHERE g.id = seen.id) AS "granted!"
           FROM seen ORDER BY seen.n"#,
        &ids,
        &msisdns as &[&str],
        &kinds as &[&str],
        &case_ids as &[Option<Uuid>],
        &methods as &[Option<&str>],
        &outcomes as &[&str],
        &causes as &[Option<&str>],
        &since,
        &limits,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .zip(slots)
        .map(|(row, r)| {
            if row.paid > 0 {
                Reservation::AlreadyPaid
            } else if row.spent >= row.limit {
                let oldest = row.oldest.unwrap_or_else(Utc::now);
                Reservation::Spent {
                    frees_at: oldest + r.window,
                }
            } else if !row.granted {
                Reservation::Busy
            } else {
                Reservation::Granted {
                    id: row.id,
                    used: row.spent + row.pending + 1,
                }
            }
        })
        .collect())
}

/// Reserves a slot in a transaction of its own, committed before this returns (so a
/// concurrent request sees it at once).
pub async fn reserve(pool: &PgPool, r: &Reserve<'_>) -> Result<Reservation, StoreError> {
    let mut tx = pool.begin().await?;
    let outcome = reserve_in(&mut tx, r).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Settles a reserved proof; only a pending slot changes (settling twice does nothing).
pub async fn settle_proof(
    db: impl PgExecutor<'_>,
    id: Uuid,
    outcome: ProofOutcome,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE number_budget_uses SET outcome = $2, settled_at = now()
         WHERE id = $1 AND outcome = 'pending'",
        id,
        outcome.as_str(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Settled uses of a number's budget in the window, and when the oldest leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUse {
    /// Settled uses (failed proofs; codes or messages), not proofs still being judged.
    pub used: i64,
    /// When the oldest counted use leaves the window.
    pub frees_at: Option<DateTime<Utc>>,
}

/// How much of a number's budget of `kind` is spent in `window` (settled uses only).
pub async fn window_use(
    db: impl PgExecutor<'_>,
    msisdn: &str,
    kind: BudgetKind,
    window: Duration,
) -> Result<WindowUse, StoreError> {
    let since = Utc::now() - window;
    let row = sqlx::query!(
        r#"SELECT count(*) AS "used!", min(at) AS oldest
           FROM number_budget_uses
           WHERE msisdn = $1 AND kind = $2 AND at > $3
             AND outcome IN ('failed', 'used')"#,
        msisdn,
        kind.as_str(),
        since,
    )
    .fetch_one(db)
    .await?;
    Ok(WindowUse {
        used: row.used,
        frees_at: row.oldest.map(|o| o + window),
    })
}

/// One proof judged on a case, as the CS agent reviewing it sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProofTried {
    /// `otp`, `service_password` or `call_records`.
    pub method: String,
    /// `pending`, `failed`, `accepted` or `released`.
    pub outcome: String,
    /// When it was offered.
    pub at: DateTime<Utc>,
}

/// The proofs offered on a case, oldest first (at most 100).
pub async fn proofs_tried(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Vec<ProofTried>, StoreError> {
    Ok(sqlx::query_as!(
        ProofTried,
        r#"SELECT method AS "method!", outcome, at FROM number_budget_uses
           WHERE case_id = $1 AND kind = 'proof' AND method IS NOT NULL
           ORDER BY at LIMIT 100"#,
        case_id
    )
    .fetch_all(db)
    .await?)
}

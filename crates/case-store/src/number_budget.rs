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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('number-budget:' || $1 || ':' || $2, 0))",
        r.msisdn,
        r.kind.as_str(),
    )
    .execute(&mut *conn)
    .await?;
    // After the lock, one statement (its snapshot taken once the lock is held, so it
    // sees every use committed by the holders before): whether the cause was paid,
    // the window's counts, and the slot written only when the cause is new and the
    // window has room. The decision below reads the same counts the write was
    // conditioned on.
    let id = Uuid::now_v7();
    let since = Utc::now() - r.window;
    let row = sqlx::query!(
        r#"WITH paid AS (
               SELECT count(*) AS n FROM number_budget_uses WHERE ref = $7
           ), counted AS (
               SELECT count(*) FILTER (WHERE outcome IN ('failed', 'used')) AS spent,
                      count(*) FILTER (WHERE outcome = 'pending') AS pending,
                      min(at) FILTER (WHERE outcome IN ('failed', 'used')) AS oldest
               FROM number_budget_uses
               WHERE msisdn = $2 AND kind = $3 AND at > $8
                 AND outcome IN ('pending', 'failed', 'used')
           ), granted AS (
               INSERT INTO number_budget_uses (id, msisdn, kind, case_id, method, outcome, ref)
               SELECT $1, $2, $3, $4, $5, $6, $7 FROM paid, counted
               WHERE paid.n = 0 AND counted.spent + counted.pending < $9
               RETURNING id
           )
           SELECT paid.n AS "paid!", counted.spent AS "spent!", counted.pending AS "pending!",
                  counted.oldest, EXISTS (SELECT 1 FROM granted) AS "granted!"
           FROM paid, counted"#,
        id,
        r.msisdn,
        r.kind.as_str(),
        r.case_id,
        r.method,
        r.kind.reserved_outcome(),
        r.cause,
        since,
        r.limit,
    )
    .fetch_one(&mut *conn)
    .await?;
    if row.paid > 0 {
        return Ok(Reservation::AlreadyPaid);
    }
    if row.spent >= r.limit {
        let oldest = row.oldest.unwrap_or_else(Utc::now);
        return Ok(Reservation::Spent {
            frees_at: oldest + r.window,
        });
    }
    if !row.granted {
        return Ok(Reservation::Busy);
    }
    Ok(Reservation::Granted {
        id,
        used: row.spent + row.pending + 1,
    })
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

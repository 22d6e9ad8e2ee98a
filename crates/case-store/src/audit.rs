//! The audit log: append-only and hash-chained. Each row's hash is
//! SHA-256(prev_hash || canonical JSON of the row), appends are serialised by a
//! transaction-scoped advisory lock so the chain never forks, and [`verify_chain`]
//! walks it and names the first row that does not match.
//!
//! **Serialisation.** [`record`] always runs inside a transaction: it opens one on a
//! bare connection (`BEGIN … COMMIT`), or a savepoint inside the caller's
//! transaction. The advisory lock it takes is held until that transaction ends, so
//! the next append reads the head only after this row is committed (or rolled
//! back): `seq` never repeats and has no gaps. Taken on a bare connection in
//! autocommit, the lock would be released at once and two writers could read the
//! same head. Callers that record inside their own transaction should record last
//! (after their row locks), so the audit lock is held briefly and lock order is
//! always "rows, then audit".

use case_domain::{Actor, Role};
use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};
use sqlx::{Acquire, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::StoreError;

/// Advisory-lock key that serialises appends.
const AUDIT_LOCK: i64 = 0x000a_0d17_c4a1;

/// Something to record.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// Who.
    pub actor: &'a Actor,
    /// What (`case.view`, `case.unmask`, `case.decision`, ...).
    pub action: &'a str,
    /// Which case.
    pub case_id: Option<Uuid>,
    /// Structured detail, without personal data.
    pub detail: serde_json::Value,
    /// Why.
    pub reason: Option<&'a str>,
}

/// The fields of a row that its hash covers.
struct Canonical<'a> {
    seq: i64,
    at: DateTime<Utc>,
    role: Role,
    actor_id: &'a str,
    action: &'a str,
    case_id: Option<Uuid>,
    detail: &'a serde_json::Value,
    reason: Option<&'a str>,
}

impl Canonical<'_> {
    fn text(&self) -> String {
        // serde_json maps keep keys sorted, so this is stable.
        serde_json::json!({
            "seq": self.seq,
            "at": self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "actor_role": self.role.as_str(),
            "actor_id": self.actor_id,
            "action": self.action,
            "case_id": self.case_id,
            "detail": self.detail,
            "reason": self.reason,
        })
        .to_string()
    }
}

fn chain_hash(prev: &[u8], canonical: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical.as_bytes());
    h.finalize().into()
}

/// Appends one entry. Given a connection inside a transaction, the row commits with
/// that transaction (so a decision and its audit row commit together; the chain is
/// locked until then); given a bare connection, it commits at once. Either way the
/// append is serialised (see the module docs). Returns its sequence number.
pub async fn record(conn: &mut PgConnection, entry: &AuditEntry<'_>) -> Result<i64, StoreError> {
    // A transaction of its own, or a savepoint in the caller's: the advisory lock
    // must outlive the INSERT.
    let mut tx = conn.begin().await?;
    let seq = append(&mut tx, entry).await?;
    tx.commit().await?;
    Ok(seq)
}

async fn append(conn: &mut PgConnection, entry: &AuditEntry<'_>) -> Result<i64, StoreError> {
    append_at(conn, entry, Utc::now()).await
}

/// Appends one entry stamped `at` (the wall clock for every product write; tests
/// back-date rows through `testing::record_audit_at`). Must run inside a transaction.
pub(crate) async fn append_at(
    conn: &mut PgConnection,
    entry: &AuditEntry<'_>,
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let head = lock_head(conn).await?;
    Ok(insert_after(conn, head, entry, at).await?.0)
}

/// The chain's head after taking its lock (held until the transaction ends):
/// the last `seq` (0 for an empty chain) and its hash.
async fn lock_head(conn: &mut PgConnection) -> Result<(i64, Vec<u8>), StoreError> {
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK)
        .execute(&mut *conn)
        .await?;
    let last = sqlx::query!("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(last.map_or((0, vec![0u8; 32]), |r| (r.seq, r.hash)))
}

/// Inserts `entry` after the row `(seq, hash)`; returns the new head.
async fn insert_after(
    conn: &mut PgConnection,
    (last, prev): (i64, Vec<u8>),
    entry: &AuditEntry<'_>,
    at: DateTime<Utc>,
) -> Result<(i64, Vec<u8>), StoreError> {
    let seq = last + 1;
    let at = at.trunc_subsecs(6);
    let text = Canonical {
        seq,
        at,
        role: entry.actor.role,
        actor_id: &entry.actor.id,
        action: entry.action,
        case_id: entry.case_id,
        detail: &entry.detail,
        reason: entry.reason,
    }
    .text();
    let hash = chain_hash(&prev, &text);
    sqlx::query!(
        r#"INSERT INTO audit_log (seq, at, actor_role, actor_id, action, case_id, detail, reason, prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#,
        seq,
        at,
        entry.actor.role as Role,
        entry.actor.id,
        entry.action,
        entry.case_id,
        entry.detail,
        entry.reason,
        prev,
        &hash[..],
    )
    .execute(&mut *conn)
    .await?;
    Ok((seq, hash.to_vec()))
}

/// Appends `entries` in one transaction, under one take of the chain's lock and one
/// commit, in order. Returns their sequence numbers.
pub async fn record_many(
    pool: &sqlx::PgPool,
    entries: &[AuditEntry<'_>],
) -> Result<Vec<i64>, StoreError> {
    let mut tx = pool.begin().await?;
    let mut head = lock_head(&mut tx).await?;
    let mut seqs = Vec::with_capacity(entries.len());
    let at = Utc::now();
    for entry in entries {
        head = insert_after(&mut tx, head, entry, at).await?;
        seqs.push(head.0);
    }
    tx.commit().await?;
    Ok(seqs)
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainReport {
    /// Every row matches; this many rows.
    Intact(i64),
    /// The first row that does not match, and why.
    Broken {
        /// Its sequence number.
        seq: i64,
        /// What is wrong.
        problem: String,
    },
}

/// Rows read per round trip while walking the chain (memory stays flat).
const VERIFY_PAGE: i64 = 5_000;

/// Walks the whole chain in order from its first row, recomputing every hash.
pub async fn verify_chain(conn: &mut PgConnection) -> Result<ChainReport, StoreError> {
    verify_chain_from(conn, 0, &[0u8; 32], None).await
}

/// Walks the chain after position `after_seq`, whose hash is `after_hash` (an anchor:
/// 0 and 32 zero bytes for the start of the chain, or an audit checkpoint), up to
/// `upto` (inclusive; the head when `None`), recomputing every hash. The rows are read
/// page by page. The count in [`ChainReport::Intact`] is the rows walked.
pub async fn verify_chain_from(
    conn: &mut PgConnection,
    after_seq: i64,
    after_hash: &[u8],
    upto: Option<i64>,
) -> Result<ChainReport, StoreError> {
    let upto = upto.unwrap_or(i64::MAX);
    let mut prev = after_hash.to_vec();
    let mut expected_seq = after_seq + 1;
    let mut walked = 0i64;
    loop {
        let rows = sqlx::query!(
            r#"SELECT seq, at, actor_role AS "actor_role: Role", actor_id, action, case_id, detail, reason, prev_hash, hash
               FROM audit_log WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3"#,
            expected_seq,
            upto,
            VERIFY_PAGE,
        )
        .fetch_all(&mut *conn)
        .await?;
        let page = rows.len() as i64;
        for r in rows {
            if r.seq != expected_seq {
                return Ok(ChainReport::Broken {
                    seq: r.seq,
                    problem: format!("expected seq {expected_seq}: a row is missing"),
                });
            }
            if r.prev_hash != prev {
                return Ok(ChainReport::Broken {
                    seq: r.seq,
                    problem: "prev_hash does not match the previous row's hash".into(),
                });
            }
            let text = Canonical {
                seq: r.seq,
                at: r.at,
                role: r.actor_role,
                actor_id: &r.actor_id,
                action: &r.action,
                case_id: r.case_id,
                detail: &r.detail,
                reason: r.reason.as_deref(),
            }
            .text();
            if chain_hash(&prev, &text)[..] != r.hash[..] {
                return Ok(ChainReport::Broken {
                    seq: r.seq,
                    problem: "the row's content does not match its hash".into(),
                });
            }
            prev = r.hash;
            expected_seq += 1;
            walked += 1;
        }
        if page < VERIFY_PAGE {
            return Ok(ChainReport::Intact(walked));
        }
    }
}

/// The newest row's position and hash: the chain head. Written out periodically
/// (log and `/metrics`) so that a rewrite of the whole table, which [`verify_chain`]
/// alone cannot see, shows as a head that went backwards or changed.
pub async fn head(db: impl PgExecutor<'_>) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    Ok(
        sqlx::query!("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(db)
            .await?
            .map(|r| (r.seq, r.hash)),
    )
}

/// One row as supervisors read it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Position in the chain.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The role the actor used.
    pub actor_role: Role,
    /// Agent id or service name.
    pub actor_id: String,
    /// What.
    pub action: String,
    /// Which case.
    pub case_id: Option<Uuid>,
    /// Structured detail (no personal data).
    pub detail: serde_json::Value,
    /// Why, as the actor gave it.
    pub reason: Option<String>,
    /// The row's hash.
    pub hash: Vec<u8>,
}

/// Which rows to read; every filter is optional and they combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Rows about this case.
    pub case_id: Option<Uuid>,
    /// Rows by this actor (an agent's id, or a service's name).
    pub actor_id: Option<String>,
    /// Rows of this action (`case.view`, ...).
    pub action: Option<String>,
    /// Rows at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Rows before this time.
    pub to: Option<DateTime<Utc>>,
}

/// The rows matching `filter` after position `after_seq`, oldest first, at most
/// `limit` (keyset pagination on `seq`: pass the last row's `seq` to read on).
pub async fn query(
    db: impl PgExecutor<'_>,
    filter: &AuditFilter,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    Ok(sqlx::query_as!(
        AuditRow,
        r#"SELECT seq, at, actor_role AS "actor_role: Role", actor_id, action, case_id, detail, reason, hash
           FROM audit_log
           WHERE seq > $1
             AND ($2::uuid IS NULL OR case_id = $2)
             AND ($3::text IS NULL OR actor_id = $3)
             AND ($4::text IS NULL OR action = $4)
             AND ($5::timestamptz IS NULL OR at >= $5)
             AND ($6::timestamptz IS NULL OR at < $6)
           ORDER BY seq
           LIMIT $7"#,
        after_seq,
        filter.case_id,
        filter.actor_id,
        filter.action,
        filter.from,
        filter.to,
        limit,
    )
    .fetch_all(db)
    .await?)
}

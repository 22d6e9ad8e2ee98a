//! Partitioned history: the monthly partitions of `case_events` and `audit_log`, the
//! detaching of old months, and audit verification from an anchored checkpoint.
//!
//! - **Partitions** are created ahead ([`ensure_partitions`], the SQL function
//!   `history_ensure_partitions`): one per UTC month in the schema `history`, and a
//!   DEFAULT partition each, so an insert never fails.
//! - **Detaching** ([`detach_before`]) first verifies the audit chain of the range to
//!   detach, records a checkpoint (the range's last `seq` and `hash`), attests it by a
//!   `history.detach` row of the chain itself, then detaches the partitions and moves
//!   them to `history_archive` (append-only still), all in one transaction.
//! - **Verifying** ([`verify`]) starts from the newest checkpoint whose range is no
//!   longer attached (or a named one), instead of from the first row.

use case_domain::Actor;
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use sqlx::{Acquire, PgConnection, PgExecutor, PgPool};

use crate::{
    StoreError,
    audit::{self, AuditEntry, ChainReport},
};

/// How long a detach waits for the tables' locks before giving up (it takes an
/// exclusive lock on `case_events` and `audit_log` for the moment of the detach).
const LOCK_TIMEOUT: &str = "10s";

/// The tables partitioned by month.
pub const PARTITIONED: [&str; 2] = ["case_events", "audit_log"];

/// A refusal or a failure of a history operation.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Nothing was changed; the message says why (for the operator).
    #[error("{0}")]
    Refused(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for HistoryError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

/// The first day of the month of `day`.
pub fn month_of(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// Midnight UTC at the start of `day`.
fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// Creates the missing monthly partitions of both tables for `months` months from the
/// month of `from` (and the DEFAULT partitions); returns how many tables were created.
/// Safe with two callers (serialised by an advisory lock in the function).
pub async fn ensure_partitions(
    db: impl PgExecutor<'_>,
    from: NaiveDate,
    months: i32,
) -> Result<i32, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT history_ensure_partitions($1, $2) AS "created!""#,
        from,
        months
    )
    .fetch_one(db)
    .await?)
}

/// One attached partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// `case_events` or `audit_log`.
    pub table: String,
    /// Its name in the schema `history`.
    pub name: String,
    /// The first day of its month; `None` for the DEFAULT partition.
    pub month: Option<NaiveDate>,
}

/// The month of a monthly partition's name (`<table>_pYYYYMM`).
fn month_in_name(name: &str) -> Option<NaiveDate> {
    let digits = name.rsplit_once("_p")?.1;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = digits[..4].parse().ok()?;
    let month = digits[4..].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, 1)
}

/// The partitions attached to `case_events` and `audit_log`, by table and month.
pub async fn partitions(db: impl PgExecutor<'_>) -> Result<Vec<Partition>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT p.relname::text AS "table!", c.relname::text AS "name!"
           FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent
           WHERE p.relnamespace = 'public'::regnamespace
             AND c.relnamespace = 'history'::regnamespace
             AND p.relname IN ('case_events', 'audit_log')
           ORDER BY 1, 2"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Partition {
            month: month_in_name(&r.name),
            table: r.table,
            name: r.name,
        })
        .collect())
}

/// An anchor of the audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its number.
    pub id: i64,
    /// The last row of the anchored range.
    pub seq: i64,
    /// That row's hash.
    pub hash: Vec<u8>,
    /// The range: rows with `at` before this.
    pub before: DateTime<Utc>,
    /// Rows of the range verified when it was recorded.
    pub rows: i64,
    /// The partitions detached with it.
    pub partitions: Vec<String>,
    /// The `history.detach` audit row that attests it.
    pub attested_by: i64,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// Every checkpoint, oldest first.
pub async fn checkpoints(db: impl PgExecutor<'_>) -> Result<Vec<Checkpoint>, StoreError> {
    Ok(sqlx::query_as!(
        Checkpoint,
        r#"SELECT id, seq, hash, before, rows, partitions, attested_by, created_at
           FROM audit_checkpoints ORDER BY seq"#
    )
    .fetch_all(db)
    .await?)
}

/// The newest checkpoint whose range is no longer attached (no attached audit row at
/// or before its `seq`): where verification starts. `None`: from the first row.
pub async fn current_anchor(db: impl PgExecutor<'_>) -> Result<Option<Checkpoint>, StoreError> {
    Ok(sqlx::query_as!(
        Checkpoint,
        r#"SELECT c.id, c.seq, c.hash, c.before, c.rows, c.partitions, c.attested_by, c.created_at
           FROM audit_checkpoints c
           WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.seq <= c.seq)
           ORDER BY c.seq DESC
           LIMIT 1"#
    )
    .fetch_optional(db)
    .await?)
}

/// What [`verify`] walked from, and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The checkpoint it started after; `None`: the first row of the chain.
    pub anchor: Option<Checkpoint>,
    /// The outcome.
    pub report: ChainReport,
}

/// Verifies the attached chain: from checkpoint `from_checkpoint` when given, else
/// from the newest checkpoint whose range is detached, else from the first row. A
/// checkpoint counts only when the chain attests it (its `history.detach` row names
/// the same `seq` and `hash`), so a rewritten checkpoint shows as a broken chain.
pub async fn verify(
    conn: &mut PgConnection,
    from_checkpoint: Option<i64>,
) -> Result<Verification, HistoryError> {
    let anchor = match from_checkpoint {
        Some(id) => Some(
            sqlx::query_as!(
                Checkpoint,
                r#"SELECT id, seq, hash, before, rows, partitions, attested_by, created_at
                   FROM audit_checkpoints WHERE id = $1"#,
                id
            )
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| HistoryError::Refused(format!("there is no checkpoint {id}")))?,
        ),
        None => current_anchor(&mut *conn).await?,
    };
    let Some(cp) = anchor else {
        let report = audit::verify_chain(conn).await?;
        return Ok(Verification {
            anchor: None,
            report,
        });
    };
    let report = audit::verify_chain_from(conn, cp.seq, &cp.hash, None).await?;
    if !matches!(report, ChainReport::Intact(_)) {
        return Ok(Verification {
            anchor: Some(cp),
            report,
        });
    }
    let attestation = sqlx::query!(
        r#"SELECT action, detail->>'checkpoint_seq' AS seq, detail->>'checkpoint_hash' AS hash
           FROM audit_log WHERE seq = $1"#,
        cp.attested_by
    )
    .fetch_optional(&mut *conn)
    .await?;
    let attested = attestation.is_some_and(|a| {
        a.action == "history.detach"
            && a.seq.as_deref() == Some(cp.seq.to_string().as_str())
            && a.hash.as_deref() == Some(hex(&cp.hash).as_str())
    });
    let report = if attested {
        report
    } else {
        ChainReport::Broken {
            seq: cp.attested_by,
            problem: format!(
                "checkpoint {} (seq {}) is not attested by the history.detach row {} of the chain",
                cp.id, cp.seq, cp.attested_by
            ),
        }
    };
    Ok(Verification {
        anchor: Some(cp),
        report,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`detach_before`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    /// The partitions detached (now in `history_archive`).
    pub partitions: Vec<String>,
    /// The checkpoint recorded; `None` when the range held no audit row.
    pub checkpoint: Option<Checkpoint>,
}

/// Detaches every monthly partition of `case_events` and `audit_log` whose month ends
/// at or before `before` (the first day of a month, not later than the current month
/// of `today`), after verifying the audit rows of that range and recording their
/// checkpoint. One transaction: either all of it happens, or nothing.
pub async fn detach_before(
    pool: &PgPool,
    before: NaiveDate,
    today: NaiveDate,
    actor: &Actor,
) -> Result<Detached, HistoryError> {
    if before.day() != 1 {
        return Err(HistoryError::Refused(format!(
            "--before must be the first day of a month, got {before}"
        )));
    }
    if before > month_of(today) {
        return Err(HistoryError::Refused(format!(
            "--before {} is after the start of the current month ({}): only past months can be detached",
            before.format("%Y-%m"),
            month_of(today).format("%Y-%m")
        )));
    }
    let boundary = start_of(before);
    let selected: Vec<Partition> = partitions(pool)
        .await?
        .into_iter()
        .filter(|p| {
            p.month
                .and_then(|m| m.checked_add_months(Months::new(1)))
                .is_some_and(|end| end <= before)
        })
        .collect();
    if selected.is_empty() {
        return Err(HistoryError::Refused(format!(
            "no attached partition ends at or before {}",
            before.format("%Y-%m")
        )));
    }
    let stranded = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM history.case_events_default WHERE at < $1)
               OR EXISTS (SELECT 1 FROM history.audit_log_default WHERE at < $1) AS "x!""#,
        boundary
    )
    .fetch_one(pool)
    .await?;
    if stranded {
        return Err(HistoryError::Refused(format!(
            "the DEFAULT partition holds rows before {}: they would stay attached while their \
             months are archived; see docs/operations.md (\"Partitioned history\")",
            before.format("%Y-%m")
        )));
    }

    // The range's audit rows: verified before anything changes (they are in closed
    // months, so they cannot change meanwhile; the transaction checks the range again).
    let mut conn = pool.acquire().await?;
    let range = audit_range(&mut conn, boundary).await?;
    let verified = match range {
        Some(last) => {
            let anchor = current_anchor(&mut *conn).await?;
            let (after_seq, after_hash) = anchor
                .as_ref()
                .map_or((0, vec![0u8; 32]), |c| (c.seq, c.hash.clone()));
            match audit::verify_chain_from(&mut conn, after_seq, &after_hash, Some(last)).await? {
                ChainReport::Intact(rows) => Some((last, rows)),
                ChainReport::Broken { seq, problem } => {
                    return Err(HistoryError::Refused(format!(
                        "the audit chain of the range is broken at seq {seq}: {problem}; nothing was detached"
                    )));
                }
            }
        }
        None => None,
    };

    let mut tx = conn.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await?;
    // The product's lock order: case_events (a transition), then the audit lock, then
    // audit_log. Taking them in that order here cannot deadlock with it.
    sqlx::query("LOCK TABLE case_events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    if audit_range(&mut tx, boundary).await? != range {
        return Err(HistoryError::Refused(
            "the audit rows of the range changed while they were verified; nothing was detached"
                .into(),
        ));
    }
    let names: Vec<String> = selected.iter().map(|p| p.name.clone()).collect();
    let checkpoint = match verified {
        Some((last, rows)) => {
            let hash = sqlx::query_scalar!("SELECT hash FROM audit_log WHERE seq = $1", last)
                .fetch_one(&mut *tx)
                .await?;
            let entry = AuditEntry {
                actor,
                action: "history.detach",
                case_id: None,
                detail: serde_json::json!({
                    "before": before.format("%Y-%m").to_string(),
                    "checkpoint_seq": last.to_string(),
                    "checkpoint_hash": hex(&hash),
                    "rows": rows,
                    "partitions": names,
                }),
                reason: None,
            };
            let attested_by = audit::record(&mut tx, &entry).await?;
            Some(
                sqlx::query_as!(
                    Checkpoint,
                    r#"INSERT INTO audit_checkpoints (seq, hash, before, rows, partitions, attested_by, created_by)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)
                       RETURNING id, seq, hash, before, rows, partitions, attested_by, created_at"#,
                    last,
                    hash,
                    boundary,
                    rows,
                    &names,
                    attested_by,
                    actor.id,
                )
                .fetch_one(&mut *tx)
                .await?,
            )
        }
        None => {
            let entry = AuditEntry {
                actor,
                action: "history.detach",
                case_id: None,
                detail: serde_json::json!({
                    "before": before.format("%Y-%m").to_string(),
                    "rows": 0,
                    "partitions": names,
                }),
                reason: None,
            };
            audit::record(&mut tx, &entry).await?;
            None
        }
    };
    for p in &selected {
        // Names come from the catalog and match `<table>_pYYYYMM`; quoted anyway.
        let (table, name) = (quote(&p.table), quote(&p.name));
        for statement in [
            format!("ALTER TABLE public.{table} DETACH PARTITION history.{name}"),
            format!("ALTER TABLE history.{name} SET SCHEMA history_archive"),
            // Detaching drops the row triggers cloned from the parent: the archived
            // table stays append-only until it is dumped and dropped.
            format!(
                "CREATE TRIGGER {} BEFORE UPDATE OR DELETE ON history_archive.{name} \
                 FOR EACH ROW EXECUTE FUNCTION refuse_change()",
                quote(&format!("{}_no_update_or_delete", p.name))
            ),
        ] {
            sqlx::query(&statement).execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(Detached {
        partitions: names,
        checkpoint,
    })
}

/// The last audit row before `boundary`; refuses when a later row comes before it in
/// the chain (clocks of two writers disagreeing across the boundary).
async fn audit_range(
    conn: &mut PgConnection,
    boundary: DateTime<Utc>,
) -> Result<Option<i64>, HistoryError> {
    let r = sqlx::query!(
        r#"SELECT (SELECT max(seq) FROM audit_log WHERE at < $1) AS last,
                  (SELECT min(seq) FROM audit_log WHERE at >= $1) AS first_after"#,
        boundary
    )
    .fetch_one(&mut *conn)
    .await?;
    if let (Some(last), Some(first_after)) = (r.last, r.first_after)
        && first_after < last
    {
        return Err(HistoryError::Refused(format!(
            "audit row {first_after} is after the boundary but comes before row {last} in the chain; \
             choose another month"
        )));
    }
    Ok(r.last)
}

/// An identifier in double quotes.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_read_from_partition_names() {
        assert_eq!(
            month_in_name("case_events_p202501"),
            NaiveDate::from_ymd_opt(2025, 1, 1)
        );
        assert_eq!(
            month_in_name("audit_log_p202612"),
            NaiveDate::from_ymd_opt(2026, 12, 1)
        );
        assert_eq!(month_in_name("audit_log_default"), None);
        assert_eq!(month_in_name("audit_log_p2025"), None);
        assert_eq!(month_in_name("audit_log_p202513"), None);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}

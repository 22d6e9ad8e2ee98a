//! The audit log: append-only and hash-chained. Each row's hash is
//! SHA-256(prev_hash || canonical JSON of the row), appends are serialised by a
//! transaction-scoped advisory lock so the chain never forks, and [`verify_chain`]
//! walks it and names the first row that does not match.

use case_domain::{Actor, Role};
use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

/// Advisory-lock key that serialises appends.
const AUDIT_LOCK: i64 = 0x0a0d_17_c4a1;

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

fn canonical(
    seq: i64,
    at: DateTime<Utc>,
    role: Role,
    actor_id: &str,
    action: &str,
    case_id: Option<Uuid>,
    detail: &serde_json::Value,
    reason: Option<&str>,
) -> String {
    // serde_json maps keep keys sorted, so this is stable.
    serde_json::json!({
        "seq": seq,
        "at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "actor_role": role.as_str(),
        "actor_id": actor_id,
        "action": action,
        "case_id": case_id,
        "detail": detail,
        "reason": reason,
    })
    .to_string()
}

fn chain_hash(prev: &[u8], canonical: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical.as_bytes());
    h.finalize().into()
}

/// Appends one entry inside the caller's transaction (so a decision and its audit
/// row commit together). Returns its sequence number.
pub async fn record(conn: &mut PgConnection, entry: &AuditEntry<'_>) -> Result<i64, StoreError> {
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK)
        .execute(&mut *conn)
        .await?;
    let last = sqlx::query!("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (seq, prev) = last.map_or((1, vec![0u8; 32]), |r| (r.seq + 1, r.hash));
    let at = Utc::now().trunc_subsecs(6);
    let text = canonical(
        seq,
        at,
        entry.actor.role,
        &entry.actor.id,
        entry.action,
        entry.case_id,
        &entry.detail,
        entry.reason,
    );
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
    Ok(seq)
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

/// Walks the whole chain in order, recomputing every hash.
pub async fn verify_chain(conn: &mut PgConnection) -> Result<ChainReport, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT seq, at, actor_role AS "actor_role: Role", actor_id, action, case_id, detail, reason, prev_hash, hash
           FROM audit_log ORDER BY seq"#
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut prev = vec![0u8; 32];
    let mut expected_seq = 1;
    for r in &rows {
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
        let text = canonical(
            r.seq,
            r.at,
            r.actor_role,
            &r.actor_id,
            &r.action,
            r.case_id,
            &r.detail,
            r.reason.as_deref(),
        );
        if chain_hash(&prev, &text)[..] != r.hash[..] {
            return Ok(ChainReport::Broken {
                seq: r.seq,
                problem: "the row's content does not match its hash".into(),
            });
        }
        prev = r.hash.clone();
        expected_seq += 1;
    }
    Ok(ChainReport::Intact(rows.len() as i64))
}

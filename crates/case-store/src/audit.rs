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
    for (expected_seq, r) in (1i64..).zip(rows.iter()) {
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
        prev = r.hash.clone();
    }
    Ok(ChainReport::Intact(rows.len() as i64))
}

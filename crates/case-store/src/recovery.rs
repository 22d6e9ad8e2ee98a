//! Lost case tokens: a recovery request per number (`token_recoveries`), the code
//! sent for it (its keyed hash only), its checks, and the token swap on the case.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

/// The number's one open case past identity verification (the only kind whose
/// token can be recovered).
pub async fn proven_open_case(
    db: impl PgExecutor<'_>,
    msisdn: &str,
) -> Result<Option<(Uuid, String)>, StoreError> {
    let row = sqlx::query!(
        r#"SELECT id, locale::text AS "locale!" FROM reactivation_cases
           WHERE msisdn = $1 AND identity_proven_at IS NOT NULL
             AND state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
           ORDER BY identity_proven_at DESC LIMIT 1"#,
        msisdn
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.id, r.locale)))
}

/// A recovery request to store.
#[derive(Debug, Clone)]
pub struct NewRecovery<'a> {
    /// Recovery id (UUIDv7).
    pub id: Uuid,
    /// The number asked about (E.164).
    pub msisdn: &'a str,
    /// The number's open case past identity, if it had one.
    pub case_id: Option<Uuid>,
    /// The keyed hash of the code sent, if one was.
    pub code_hash: Option<[u8; 32]>,
    /// When the code stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// Stores a recovery request.
pub async fn insert_recovery(
    db: impl PgExecutor<'_>,
    r: &NewRecovery<'_>,
) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO token_recoveries (id, msisdn, case_id, code_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        r.id,
        r.msisdn,
        r.case_id,
        r.code_hash.as_ref().map(|h| &h[..]),
        r.expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The number a recovery was asked for (to budget its tries); `None` when unknown.
pub async fn recovery_msisdn(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<(String, Option<Uuid>)>, StoreError> {
    let row = sqlx::query!(
        "SELECT msisdn, case_id FROM token_recoveries WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.msisdn, r.case_id)))
}

/// A recovery whose code may be compared: its check was counted first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryUnderCheck {
    /// The case whose token would be replaced.
    pub case_id: Uuid,
    /// The keyed hash of the code sent.
    pub code_hash: Vec<u8>,
}

/// Counts one check against the recovery if a code was sent for it and it is
/// unexpired, unused and has checks left; only then may the code be compared.
pub async fn count_recovery_check(
    db: impl PgExecutor<'_>,
    id: Uuid,
    max_checks: i32,
) -> Result<Option<RecoveryUnderCheck>, StoreError> {
    let row = sqlx::query!(
        r#"UPDATE token_recoveries SET checks = checks + 1
           WHERE id = $1 AND checks < $2 AND expires_at > now() AND consumed_at IS NULL
           RETURNING case_id, code_hash"#,
        id,
        max_checks,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|r| {
        Some(RecoveryUnderCheck {
            case_id: r.case_id?,
            code_hash: r.code_hash?,
        })
    }))
}

/// Marks a recovery used; false if it was used already (a code is accepted once).
pub async fn consume_recovery(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, StoreError> {
    Ok(sqlx::query!(
        "UPDATE token_recoveries SET consumed_at = now() WHERE id = $1 AND consumed_at IS NULL",
        id
    )
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Replaces the case's token hash (the old token stops working), only while the case
/// is open past identity verification; false otherwise (nothing changed).
pub async fn replace_token(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    token_hash: &[u8; 32],
) -> Result<bool, StoreError> {
    Ok(sqlx::query!(
        "UPDATE reactivation_cases SET token_hash = $2
         WHERE id = $1 AND identity_proven_at IS NOT NULL
           AND state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')",
        case_id,
        &token_hash[..],
    )
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

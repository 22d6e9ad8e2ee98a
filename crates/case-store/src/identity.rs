//! Identity claims and proofs: encrypted name/ID, the carrier's match answer, OTP
//! codes and the attempt counters (each limit is one atomic conditional UPDATE).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use case_domain::risk::RiskTier;

use crate::StoreError;

/// What is stored about the requester's identity claim when a case is opened.
#[derive(Debug, Clone)]
pub struct NewIdentity {
    /// Encrypted full name.
    pub full_name_enc: Vec<u8>,
    /// Encrypted ID number.
    pub id_number_enc: Vec<u8>,
    /// Masked name.
    pub full_name_masked: String,
    /// Last four characters of the ID number.
    pub id_number_last4: String,
}

/// A case's identity row.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityRow {
    /// The case.
    pub case_id: Uuid,
    /// Encrypted full name.
    pub full_name_enc: Vec<u8>,
    /// Encrypted ID number.
    pub id_number_enc: Vec<u8>,
    /// Masked name.
    pub full_name_masked: String,
    /// Last four of the ID.
    pub id_number_last4: String,
    /// The carrier's match answer, once asked.
    pub subscriber_match: Option<bool>,
    /// Codes sent so far.
    pub otp_sends: i32,
    /// Failed proofs so far.
    pub failed_attempts: i32,
    /// The proof that verified identity.
    pub verified_method: Option<String>,
    /// When identity was verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// The verification ladder's tier (None until graded).
    pub proof_tier: Option<RiskTier>,
    /// The ladder's proofs given so far.
    pub proofs_given: Vec<String>,
}

/// Stores the identity claim of a new case (in the case's creating transaction).
pub async fn save_identity(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    new: &NewIdentity,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"INSERT INTO case_identities (case_id, full_name_enc, id_number_enc, full_name_masked, id_number_last4)
           VALUES ($1, $2, $3, $4, $5)"#,
        case_id,
        new.full_name_enc,
        new.id_number_enc,
        new.full_name_masked,
        new.id_number_last4,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Loads a case's identity row.
pub async fn load_identity(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<IdentityRow>, StoreError> {
    Ok(sqlx::query_as!(
        IdentityRow,
        r#"SELECT case_id, full_name_enc, id_number_enc, full_name_masked, id_number_last4, subscriber_match,
                  otp_sends, failed_attempts, verified_method, verified_at,
                  proof_tier AS "proof_tier: RiskTier", proofs_given
           FROM case_identities WHERE case_id = $1"#,
        case_id
    )
    .fetch_optional(db)
    .await?)
}

/// Records the carrier's answer to the name/ID match question.
pub async fn record_subscriber_match(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    matched: bool,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE case_identities SET subscriber_match = $2, match_checked_at = now() WHERE case_id = $1",
        case_id,
        matched
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Takes one of the case's code sends; `None` once `max` have been used.
pub async fn take_otp_send(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    max: i32,
) -> Result<Option<i32>, StoreError> {
    Ok(sqlx::query_scalar!(
        "UPDATE case_identities SET otp_sends = otp_sends + 1 WHERE case_id = $1 AND otp_sends < $2 RETURNING otp_sends",
        case_id,
        max
    )
    .fetch_optional(db)
    .await?)
}

/// Gives back a send that did not happen (the carrier had no contact on file or failed).
pub async fn return_otp_send(db: impl PgExecutor<'_>, case_id: Uuid) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE case_identities SET otp_sends = otp_sends - 1 WHERE case_id = $1 AND otp_sends > 0",
        case_id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Stores a sent code's keyed hash.
pub async fn insert_otp(
    db: impl PgExecutor<'_>,
    id: Uuid,
    case_id: Uuid,
    code_hash: &[u8; 32],
    sent_to: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO otp_codes (id, case_id, code_hash, sent_to, expires_at) VALUES ($1, $2, $3, $4, $5)",
        id,
        case_id,
        &code_hash[..],
        sent_to,
        expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A code that may be compared: its check was counted before the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct OtpUnderCheck {
    /// The code id.
    pub id: Uuid,
    /// Its keyed hash.
    pub code_hash: Vec<u8>,
}

/// Counts one check against the case's newest code, if it is unexpired, unused and
/// has checks left; only then may it be compared. Older codes are never valid.
pub async fn count_otp_check(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    max_checks: i32,
) -> Result<Option<OtpUnderCheck>, StoreError> {
    Ok(sqlx::query_as!(
        OtpUnderCheck,
        r#"UPDATE otp_codes SET checks = checks + 1
           WHERE id = (SELECT id FROM otp_codes WHERE case_id = $1 ORDER BY created_at DESC LIMIT 1)
             AND checks < $2 AND expires_at > now() AND consumed_at IS NULL
           RETURNING id, code_hash"#,
        case_id,
        max_checks,
    )
    .fetch_optional(db)
    .await?)
}

/// Marks a code used; false if it was used already (a code is accepted once).
pub async fn consume_otp(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, StoreError> {
    Ok(sqlx::query!(
        "UPDATE otp_codes SET consumed_at = now() WHERE id = $1 AND consumed_at IS NULL",
        id
    )
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Counts a failed proof on the case (for the CS agent's view; the limit is the
/// number's budget, `crate::number_budget`); returns the case's new count.
pub async fn record_failed_attempt(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<i32, StoreError> {
    Ok(sqlx::query_scalar!(
        "UPDATE case_identities SET failed_attempts = least(failed_attempts + 1, 5)
         WHERE case_id = $1 RETURNING failed_attempts",
        case_id,
    )
    .fetch_one(db)
    .await?)
}

/// Records which proof verified identity.
pub async fn mark_identity_verified(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    method: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE case_identities SET verified_method = $2, verified_at = now() WHERE case_id = $1",
        case_id,
        method
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A case's place on the verification ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderRow {
    /// The tier that decides the proofs asked (None until graded).
    pub proof_tier: Option<RiskTier>,
    /// The proofs given so far, by name.
    pub proofs_given: Vec<String>,
}

/// The case's place on the ladder (None: no identity row, i.e. no such case).
pub async fn ladder(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<LadderRow>, StoreError> {
    Ok(sqlx::query_as!(
        LadderRow,
        r#"SELECT proof_tier AS "proof_tier: RiskTier", proofs_given FROM case_identities WHERE case_id = $1"#,
        case_id
    )
    .fetch_optional(db)
    .await?)
}

/// Sets the case's proof tier if it has none yet, or raises it to `tier` (never
/// lowers it); returns the tier it has now.
pub async fn grade_proof_tier(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    tier: RiskTier,
) -> Result<Option<RiskTier>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"UPDATE case_identities
           SET proof_tier = GREATEST(proof_tier, $2),
               tier_graded_at = COALESCE(tier_graded_at, now())
           WHERE case_id = $1
           RETURNING proof_tier AS "proof_tier!: RiskTier""#,
        case_id,
        tier as RiskTier,
    )
    .fetch_optional(db)
    .await?)
}

/// Records a ladder proof as given (once) and returns the proofs given now. The
/// row lock this takes serialises concurrent proofs of one case: the second sees
/// the first's proof once it committed.
pub async fn add_proof(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    kind: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"UPDATE case_identities
           SET proofs_given = CASE WHEN $2 = ANY (proofs_given) THEN proofs_given
                                   ELSE array_append(proofs_given, $2) END
           WHERE case_id = $1
           RETURNING proofs_given"#,
        case_id,
        kind,
    )
    .fetch_optional(db)
    .await?
    .unwrap_or_default())
}

/// What the identity service needs to judge a proof, send a code or grade a case,
/// read in one statement: the case, its identity row, its wrapped data key (none
/// for a case opened before data keys existed, or after retention destroyed it) and
/// the risk rules' current version (for grading the ladder's tier).
#[derive(Debug, Clone)]
pub struct ProofContext {
    /// The case.
    pub case: crate::CaseRow,
    /// Its identity row (every case opened online or by an agent has one).
    pub identity: Option<IdentityRow>,
    /// Its wrapped data key.
    pub wrapped_key: Option<Vec<u8>>,
    /// The risk rules' current version.
    pub rules: crate::risk_rules::CurrentRules,
}

/// Loads a case's [`ProofContext`] (one statement, by primary keys and the current
/// rules' partial unique index); `None` when there is no such case, or when
/// `token_hash` is given and is not the case token's hash (the same answer: the
/// subscriber's token is checked in this read, not in one of its own).
pub async fn load_proof_context(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    token_hash: Option<&[u8; 32]>,
) -> Result<Option<ProofContext>, StoreError> {
    Ok(load_proof_contexts(db, &[case_id], token_hash).await?.pop())
}

/// [`load_proof_context`] of several cases in one statement, in no particular
/// order; cases that do not exist (or whose token is not `token_hash`) are left out.
pub async fn load_proof_contexts(
    db: impl PgExecutor<'_>,
    case_ids: &[Uuid],
    token_hash: Option<&[u8; 32]>,
) -> Result<Vec<ProofContext>, StoreError> {
    use case_domain::{CaseState, Channel, Locale, Msisdn, risk_rules::RiskThresholds};
    use sqlx::types::Json;
    let rows = sqlx::query!(
        r#"SELECT c.id, c.msisdn AS "msisdn: Msisdn", c.state AS "state: CaseState", c.version,
                  c.channel AS "channel: Channel", c.locale AS "locale: Locale", c.created_at,
                  c.updated_at, c.state_entered_at, c.lease_owner, c.lease_expires_at, c.attempt,
                  i.case_id AS "identity_case_id?", i.full_name_enc AS "full_name_enc?",
                  i.id_number_enc AS "id_number_enc?", i.full_name_masked AS "full_name_masked?",
                  i.id_number_last4 AS "id_number_last4?", i.subscriber_match,
                  i.otp_sends AS "otp_sends?", i.failed_attempts AS "failed_attempts?",
                  i.verified_method, i.verified_at, i.proof_tier AS "proof_tier?: RiskTier",
                  i.proofs_given AS "proofs_given?", k.wrapped_key AS "wrapped_key?",
                  v.version AS "rules_version?", v.thresholds AS "thresholds?: Json<RiskThresholds>"
           FROM reactivation_cases c
           LEFT JOIN case_identities i ON i.case_id = c.id
           LEFT JOIN case_data_keys k ON k.case_id = c.id
           LEFT JOIN risk_rule_versions v ON v.activated
           WHERE c.id = ANY($1) AND ($2::bytea IS NULL OR c.token_hash = $2)"#,
        case_ids,
        token_hash.map(|h| &h[..]),
    )
    .fetch_all(db)
    .await?;
    let mut contexts = Vec::with_capacity(rows.len());
    for r in rows {
        let identity = match (
            r.identity_case_id,
            r.full_name_enc,
            r.id_number_enc,
            r.full_name_masked,
            r.id_number_last4,
            r.otp_sends,
            r.failed_attempts,
            r.proofs_given,
        ) {
            (
                Some(case_id),
                Some(full_name_enc),
                Some(id_number_enc),
                Some(full_name_masked),
                Some(id_number_last4),
                Some(otp_sends),
                Some(failed_attempts),
                Some(proofs_given),
            ) => Some(IdentityRow {
                case_id,
                full_name_enc,
                id_number_enc,
                full_name_masked,
                id_number_last4,
                subscriber_match: r.subscriber_match,
                otp_sends,
                failed_attempts,
                verified_method: r.verified_method,
                verified_at: r.verified_at,
                proof_tier: r.proof_tier,
                proofs_given,
            }),
            _ => None,
        };
        let (Some(version), Some(thresholds)) = (r.rules_version, r.thresholds) else {
            return Err(StoreError::Invariant(
                "no current version of the risk rules",
            ));
        };
        contexts.push(ProofContext {
            case: case_row_of!(r),
            identity,
            wrapped_key: r.wrapped_key,
            rules: crate::risk_rules::CurrentRules {
                version,
                thresholds: thresholds.0,
            },
        });
    }
    Ok(contexts)
}

/// Records the carrier's answer to the name/ID match question and, when the case
/// was graded with it, the ladder's tier (raise-only, as [`grade_proof_tier`]), in
/// one statement. Returns the tier stored now (`None` when no tier was given and
/// none was stored before, or there is no such row).
pub async fn record_match_and_tier(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    matched: bool,
    tier: Option<RiskTier>,
) -> Result<Option<RiskTier>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"UPDATE case_identities
           SET subscriber_match = $2, match_checked_at = now(),
               proof_tier = CASE WHEN $3::risk_tier IS NULL THEN proof_tier
                                 ELSE GREATEST(proof_tier, $3) END,
               tier_graded_at = CASE WHEN $3::risk_tier IS NULL THEN tier_graded_at
                                     ELSE COALESCE(tier_graded_at, now()) END
           WHERE case_id = $1
           RETURNING proof_tier AS "proof_tier?: RiskTier""#,
        case_id,
        matched,
        tier as Option<RiskTier>,
    )
    .fetch_optional(db)
    .await?
    .flatten())
}

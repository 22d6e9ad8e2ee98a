//! The subscriber's material for a review: explanations, evidence files and the one
//! appeal. None of these move a case; callers that also move it do so with
//! [`crate::transition_in`] in the same transaction.
//!
//! The store does no cryptography. New material is handed in sealed (under the
//! case's data key of its kind, `case_material_keys`, which the workflow layer makes
//! and opens); readers hand back the stored form, sealed or — for rows written
//! before sealing existed — in clear. The clear writers ([`insert_explanation`],
//! [`insert_evidence`], [`record_appeal`]) remain only to make such legacy rows in
//! tests.

use case_domain::{CaseState, Channel, Locale, Msisdn};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgExecutor, types::Json};
use uuid::Uuid;

use crate::{CaseRow, StoreError};

/// One counterparty the subscriber explains. `Debug` masks the number.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counterparty {
    /// The number in E.164 (third-party personal data: mask before showing, never log).
    pub msisdn: String,
    /// Who it is to the subscriber.
    pub relation: String,
    /// Why they were in touch.
    pub purpose: String,
}

impl std::fmt::Debug for Counterparty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail: String = {
            let chars: Vec<char> = self.msisdn.chars().collect();
            chars[chars.len().saturating_sub(4)..].iter().collect()
        };
        f.debug_struct("Counterparty")
            .field("msisdn", &format_args!("*******{tail}"))
            .field("relation", &self.relation)
            .field("purpose", &self.purpose)
            .finish()
    }
}

/// A stored explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplanationRow {
    /// Explanation id.
    pub id: Uuid,
    /// The case.
    pub case_id: Uuid,
    /// What the subscriber wrote, as stored.
    pub body: ExplanationBody,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
}

/// An explanation's statement and counterparties as stored.
#[derive(Clone, PartialEq)]
pub enum ExplanationBody {
    /// In clear (stored before sealing existed).
    Clear {
        /// The statement.
        statement: String,
        /// The counterparties explained.
        counterparties: Vec<Counterparty>,
    },
    /// `{statement, counterparties}` as JSON sealed under the case's explanations key.
    Sealed(Vec<u8>),
}

impl std::fmt::Debug for ExplanationBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Clear { counterparties, .. } => f
                .debug_struct("Clear")
                .field("statement", &"..")
                .field("counterparties", counterparties)
                .finish(),
            Self::Sealed(b) => write!(f, "Sealed({} bytes)", b.len()),
        }
    }
}

/// One kind of a case's material with a data key of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Evidence files.
    Evidence,
    /// Explanations and the appeal statement.
    Explanations,
}

impl KeyKind {
    /// The name stored in `case_material_keys.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evidence => "evidence",
            Self::Explanations => "explanations",
        }
    }
}

/// The case's wrapped data key for `kind`, if it has one (none yet, or destroyed by
/// retention).
pub async fn load_material_key(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    kind: KeyKind,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(sqlx::query_scalar!(
        "SELECT wrapped_key FROM case_material_keys WHERE case_id = $1 AND kind = $2",
        case_id,
        kind.as_str()
    )
    .fetch_optional(db)
    .await?)
}

/// Stores `wrapped` as the case's data key for `kind` unless it already has one, and
/// returns the key that is stored (the one given, or the one already there: the
/// caller unwraps what this returns, so two writers racing agree on one key).
pub async fn insert_material_key(
    conn: &mut PgConnection,
    case_id: Uuid,
    kind: KeyKind,
    wrap_id: Uuid,
    wrapped: &[u8],
) -> Result<Vec<u8>, StoreError> {
    sqlx::query!(
        "INSERT INTO case_material_keys (case_id, kind, wrap_id, wrapped_key) VALUES ($1, $2, $3, $4)
         ON CONFLICT (case_id, kind) DO NOTHING",
        case_id,
        kind.as_str(),
        wrap_id,
        wrapped
    )
    .execute(&mut *conn)
    .await?;
    load_material_key(&mut *conn, case_id, kind)
        .await?
        .ok_or(StoreError::Invariant(
            "material key missing right after its insert",
        ))
}

/// An evidence file's metadata (without its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceMeta {
    /// Evidence id.
    pub id: Uuid,
    /// The case.
    pub case_id: Uuid,
    /// image/jpeg, image/png or application/pdf, as recognised by content.
    pub media_type: String,
    /// Size in bytes.
    pub size_bytes: i32,
    /// SHA-256 of the content.
    pub sha256: Vec<u8>,
    /// When it was uploaded.
    pub created_at: DateTime<Utc>,
}

/// The outcome of storing an evidence file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceStored {
    /// A new row.
    New(EvidenceMeta),
    /// The case already had this exact file: nothing was written.
    Duplicate(EvidenceMeta),
}

impl EvidenceStored {
    /// The stored file's metadata, new or not.
    pub fn meta(&self) -> &EvidenceMeta {
        match self {
            Self::New(m) | Self::Duplicate(m) => m,
        }
    }
}

/// How much material a case holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaterialCounts {
    /// Explanations.
    pub explanations: i64,
    /// Evidence files.
    pub evidence: i64,
}

/// A stored appeal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppealRow {
    /// The case.
    pub case_id: Uuid,
    /// The subscriber's statement in clear: an appeal made before sealing existed
    /// (or `[deleted]` after retention); `None` when sealed.
    pub statement: Option<String>,
    /// The statement sealed under the case's explanations key.
    pub statement_sealed: Option<Vec<u8>>,
    /// When the appealed rejection took effect.
    pub rejected_at: DateTime<Utc>,
    /// When the appeal was made.
    pub appealed_at: DateTime<Utc>,
}

/// Loads the case and locks its row until the caller's transaction ends, so that
/// material, re-scores and transitions of one case are serialised. (`NO KEY`: rows
/// that merely reference the case, such as events and outbox rows, are not blocked.)
pub async fn lock_case(conn: &mut PgConnection, case_id: Uuid) -> Result<CaseRow, StoreError> {
    sqlx::query_as!(
        CaseRow,
        r#"SELECT id, msisdn AS "msisdn: Msisdn", state AS "state: CaseState", version,
                     channel AS "channel: Channel", locale AS "locale: Locale", created_at,
                  updated_at, state_entered_at, lease_owner, lease_expires_at, attempt
           FROM reactivation_cases WHERE id = $1 FOR NO KEY UPDATE"#,
        case_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound(case_id))
}

/// Stores an explanation sealed by the caller (for row `id`, under the case's
/// explanations key).
pub async fn insert_sealed_explanation(
    db: impl PgExecutor<'_>,
    id: Uuid,
    case_id: Uuid,
    sealed: &[u8],
) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO case_explanations (id, case_id, statement, counterparties, body_sealed)
         VALUES ($1, $2, NULL, NULL, $3)",
        id,
        case_id,
        sealed,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Stores an explanation in clear, as before sealing existed (legacy rows in tests);
/// returns its id.
pub async fn insert_explanation(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    statement: &str,
    counterparties: &[Counterparty],
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO case_explanations (id, case_id, statement, counterparties) VALUES ($1, $2, $3, $4)",
        id,
        case_id,
        statement,
        Json(counterparties) as _,
    )
    .execute(db)
    .await?;
    Ok(id)
}

/// The case's explanations, oldest first.
pub async fn list_explanations(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Vec<ExplanationRow>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT id, case_id, statement, counterparties AS "counterparties: Json<Vec<Counterparty>>",
                  body_sealed, created_at
           FROM case_explanations WHERE case_id = $1 ORDER BY created_at, id"#,
        case_id
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            let body = match (r.body_sealed, r.statement, r.counterparties) {
                (Some(sealed), _, _) => ExplanationBody::Sealed(sealed),
                (None, Some(statement), Some(counterparties)) => ExplanationBody::Clear {
                    statement,
                    counterparties: counterparties.0,
                },
                _ => {
                    return Err(StoreError::Invariant(
                        "an explanation is neither sealed nor in clear",
                    ));
                }
            };
            Ok(ExplanationRow {
                id: r.id,
                case_id: r.case_id,
                body,
                created_at: r.created_at,
            })
        })
        .collect()
}

/// Seals an evidence file for the row id it is given.
pub type SealEvidence<'a> = &'a (dyn Fn(&Uuid, &[u8]) -> Vec<u8> + Sync);

/// Stores an evidence file sealed with `seal` (under the case's evidence key, bound
/// to the new row's id) unless the case already has the same content (judged by its
/// SHA-256, computed here over the file in clear), in which case the existing file's
/// metadata is returned and nothing is sealed. The caller has checked the content
/// (type and size); the table checks again.
pub async fn insert_sealed_evidence(
    conn: &mut PgConnection,
    case_id: Uuid,
    media_type: &str,
    content: &[u8],
    seal: SealEvidence<'_>,
) -> Result<EvidenceStored, StoreError> {
    store_evidence(conn, case_id, media_type, content, Some(seal)).await
}

/// Stores an evidence file in clear, as before sealing existed (legacy rows in
/// tests); otherwise as [`insert_sealed_evidence`].
pub async fn insert_evidence(
    conn: &mut PgConnection,
    case_id: Uuid,
    media_type: &str,
    content: &[u8],
) -> Result<EvidenceStored, StoreError> {
    store_evidence(conn, case_id, media_type, content, None).await
}

async fn store_evidence(
    conn: &mut PgConnection,
    case_id: Uuid,
    media_type: &str,
    content: &[u8],
    seal: Option<SealEvidence<'_>>,
) -> Result<EvidenceStored, StoreError> {
    let hash = Sha256::digest(content).to_vec();
    let size = i32::try_from(content.len())
        .map_err(|_| StoreError::Invariant("evidence larger than 2 GiB reached the store"))?;
    // A concurrent upload of the same file can win between the two statements; the
    // second attempt then finds it.
    for _ in 0..2 {
        let existing = sqlx::query_as!(
            EvidenceMeta,
            r#"SELECT id, case_id, media_type, size_bytes, sha256, created_at
               FROM case_evidence WHERE case_id = $1 AND sha256 = $2"#,
            case_id,
            hash,
        )
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(meta) = existing {
            return Ok(EvidenceStored::Duplicate(meta));
        }
        let id = Uuid::now_v7();
        let sealed = seal.map(|seal| seal(&id, content));
        let inserted = sqlx::query_as!(
            EvidenceMeta,
            r#"INSERT INTO case_evidence (id, case_id, media_type, size_bytes, sha256, content, sealed)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (case_id, sha256) DO NOTHING
               RETURNING id, case_id, media_type, size_bytes, sha256, created_at"#,
            id,
            case_id,
            media_type,
            size,
            hash,
            sealed.as_deref().unwrap_or(content),
            sealed.is_some(),
        )
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(meta) = inserted {
            return Ok(EvidenceStored::New(meta));
        }
        let existing = sqlx::query_as!(
            EvidenceMeta,
            r#"SELECT id, case_id, media_type, size_bytes, sha256, created_at
               FROM case_evidence WHERE case_id = $1 AND sha256 = $2"#,
            case_id,
            hash,
        )
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(meta) = existing {
            return Ok(EvidenceStored::Duplicate(meta));
        }
    }
    Err(StoreError::ConcurrentUpload)
}

/// The case's evidence files (metadata only), oldest first.
pub async fn list_evidence(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Vec<EvidenceMeta>, StoreError> {
    Ok(sqlx::query_as!(
        EvidenceMeta,
        r#"SELECT id, case_id, media_type, size_bytes, sha256, created_at
           FROM case_evidence WHERE case_id = $1 ORDER BY created_at, id"#,
        case_id
    )
    .fetch_all(db)
    .await?)
}

/// An evidence file's content as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEvidence {
    /// The media type recognised at upload.
    pub media_type: String,
    /// The content: sealed under the case's evidence key when `sealed`, else the file.
    pub content: Vec<u8>,
    /// Whether `content` is sealed.
    pub sealed: bool,
}

impl std::fmt::Debug for StoredEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredEvidence")
            .field("media_type", &self.media_type)
            .field("bytes", &self.content.len())
            .field("sealed", &self.sealed)
            .finish()
    }
}

/// One evidence file's media type and content as stored, if it belongs to the case.
pub async fn load_evidence_content(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    evidence_id: Uuid,
) -> Result<Option<StoredEvidence>, StoreError> {
    Ok(sqlx::query_as!(
        StoredEvidence,
        "SELECT media_type, content, sealed FROM case_evidence WHERE id = $1 AND case_id = $2",
        evidence_id,
        case_id
    )
    .fetch_optional(db)
    .await?)
}

/// How many explanations and evidence files the case holds.
pub async fn count_material(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<MaterialCounts, StoreError> {
    let row = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM case_explanations WHERE case_id = $1) AS "explanations!",
                  (SELECT count(*) FROM case_evidence WHERE case_id = $1) AS "evidence!""#,
        case_id
    )
    .fetch_one(db)
    .await?;
    Ok(MaterialCounts {
        explanations: row.explanations,
        evidence: row.evidence,
    })
}

/// The case's appeal, if it was appealed.
pub async fn load_appeal(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<AppealRow>, StoreError> {
    Ok(sqlx::query_as!(
        AppealRow,
        "SELECT case_id, statement, statement_sealed, rejected_at, appealed_at FROM case_appeals WHERE case_id = $1",
        case_id
    )
    .fetch_optional(db)
    .await?)
}

/// Records the case's appeal, its statement sealed by the caller (under the case's
/// explanations key). A second appeal of the same case is refused
/// ([`StoreError::AlreadyAppealed`]): a case is appealed at most once.
pub async fn record_sealed_appeal(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    statement_sealed: &[u8],
    rejected_at: DateTime<Utc>,
) -> Result<AppealRow, StoreError> {
    sqlx::query_as!(
        AppealRow,
        r#"INSERT INTO case_appeals (case_id, statement, statement_sealed, rejected_at) VALUES ($1, NULL, $2, $3)
           RETURNING case_id, statement, statement_sealed, rejected_at, appealed_at"#,
        case_id,
        statement_sealed,
        rejected_at,
    )
    .fetch_one(db)
    .await
    .map_err(|e| StoreError::on_unique(e, "case_appeals_pkey", StoreError::AlreadyAppealed))
}

/// Records the case's appeal in clear, as before sealing existed (legacy rows in
/// tests); otherwise as [`record_sealed_appeal`].
pub async fn record_appeal(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    statement: &str,
    rejected_at: DateTime<Utc>,
) -> Result<AppealRow, StoreError> {
    sqlx::query_as!(
        AppealRow,
        r#"INSERT INTO case_appeals (case_id, statement, rejected_at) VALUES ($1, $2, $3)
           RETURNING case_id, statement, statement_sealed, rejected_at, appealed_at"#,
        case_id,
        statement,
        rejected_at,
    )
    .fetch_one(db)
    .await
    .map_err(|e| StoreError::on_unique(e, "case_appeals_pkey", StoreError::AlreadyAppealed))
}

/// Cases after `after` (in id order, at most `limit`) that hold material stored in
/// clear before sealing existed: evidence not sealed, explanations without a sealed
/// body, an appeal statement in clear (other than retention's `[deleted]`).
pub async fn cases_with_clear_material(
    db: impl PgExecutor<'_>,
    after: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT case_id AS "case_id!" FROM (
             SELECT case_id FROM case_evidence WHERE NOT sealed AND case_id > $1
             UNION SELECT case_id FROM case_explanations WHERE body_sealed IS NULL AND case_id > $1
             UNION SELECT case_id FROM case_appeals
                    WHERE statement IS NOT NULL AND statement <> '[deleted]' AND case_id > $1) c
           ORDER BY case_id LIMIT $2"#,
        after,
        limit
    )
    .fetch_all(db)
    .await?)
}

/// The case's evidence files stored in clear: (id, content).
pub async fn clear_evidence(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
    Ok(sqlx::query!(
        "SELECT id, content FROM case_evidence WHERE case_id = $1 AND NOT sealed ORDER BY id FOR UPDATE",
        case_id
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| (r.id, r.content))
    .collect())
}

/// Replaces a clear evidence file by its sealed form (same row, same size and hash).
pub async fn seal_evidence_row(
    db: impl PgExecutor<'_>,
    id: Uuid,
    sealed: &[u8],
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE case_evidence SET content = $2, sealed = true WHERE id = $1 AND NOT sealed",
        id,
        sealed
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Replaces a clear explanation by its sealed body (statement and counterparties
/// cleared).
pub async fn seal_explanation_row(
    db: impl PgExecutor<'_>,
    id: Uuid,
    sealed: &[u8],
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE case_explanations SET body_sealed = $2, statement = NULL, counterparties = NULL
          WHERE id = $1 AND body_sealed IS NULL",
        id,
        sealed
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Replaces a clear appeal statement by its sealed form.
pub async fn seal_appeal_row(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    sealed: &[u8],
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE case_appeals SET statement_sealed = $2, statement = NULL
          WHERE case_id = $1 AND statement IS NOT NULL AND statement <> '[deleted]'",
        case_id,
        sealed
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Re-scores a case after new material: a new assessment row with the tier, reasons
/// and signals of assessment `from` (graded under its rule version) and the `needs`
/// still open. Timestamped with the
/// clock (not the transaction start), so it is the latest even when an older
/// transaction commits it.
pub async fn rescore_assessment(
    db: impl PgExecutor<'_>,
    from: Uuid,
    needs: &[String],
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    let written = sqlx::query!(
        r#"INSERT INTO risk_assessments (id, case_id, tier, reason_codes, needs, signals, rule_version, assessed_at)
           SELECT $1, case_id, tier, reason_codes, $3, signals, rule_version, greatest(clock_timestamp(), assessed_at)
           FROM risk_assessments WHERE id = $2"#,
        id,
        from,
        needs,
    )
    .execute(db)
    .await?;
    if written.rows_affected() == 0 {
        return Err(StoreError::Invariant("no assessment to re-score"));
    }
    Ok(id)
}

//! Retention of finished cases' personal data (crypto-shredding).
//!
//! Per kind of data (codes, explanations, evidence, identity) a durable cursor
//! (`retention_cursors`) walks the finished cases in order of their end time on the
//! partial index `reactivation_cases_finished_by_end` (a terminal state is never
//! left, so `state_entered_at` is the end time and a case never ends behind the
//! cursor). One batch is one transaction: it locks its kind's cursor row
//! (`FOR UPDATE SKIP LOCKED`: a second runner leaves the kind alone), takes the next
//! cases that ended at or before the cutoff, deletes that kind of their data,
//! records what it deleted in `case_personal_data_deletions`, writes one audit row
//! per case (`case.retention`), and moves the cursor. Stopping anywhere loses
//! nothing; a rerun continues from the cursor; a run with nothing due changes
//! nothing.
//!
//! What is deleted: codes — the `otp_codes` rows; explanations — the
//! `case_explanations` rows, the case's explanations data key
//! (`case_material_keys`), the appeal statement (blanked, its sealed form removed)
//! and the flagged counterparties' numbers in risk assessments (replaced by their
//! count); evidence — the `case_evidence` rows and the case's evidence data key
//! (so a copy of the sealed rows taken before, without the key, opens no more);
//! identity — the case's data key (the sealed
//! name and ID number stay, unreadable; a legacy identity without a data key has
//! its sealed values emptied) and the masked name and ID tail (blanked).
//! `case_events`, `audit_log`, decisions, orders and complaints are never touched.

use case_domain::{Actor, retention::DataKind};
use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::{
    StoreError,
    audit::{self, AuditEntry},
};

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Cases handled (their data of the kind is gone now).
    pub cases: Vec<Uuid>,
    /// Rows deleted (codes, explanations, evidence files; data keys for identity).
    pub rows: i64,
}

/// How much of a kind is due and not yet deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Due {
    /// Finished cases past the cutoff and after the cursor.
    pub cases: i64,
    /// Rows of the kind those cases hold.
    pub rows: i64,
}

/// What retention deleted of one case, and when (for the dossier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionRow {
    /// The case.
    pub case_id: Uuid,
    /// When the case ended.
    pub ended_at: DateTime<Utc>,
    /// When its code rows were deleted.
    pub codes_deleted_at: Option<DateTime<Utc>>,
    /// When its explanations were deleted.
    pub explanations_deleted_at: Option<DateTime<Utc>>,
    /// When its evidence files were deleted.
    pub evidence_deleted_at: Option<DateTime<Utc>>,
    /// When its data key was destroyed.
    pub identity_deleted_at: Option<DateTime<Utc>>,
    /// Code rows deleted.
    pub codes_deleted: i32,
    /// Explanations deleted.
    pub explanations_deleted: i32,
    /// Evidence files deleted.
    pub evidence_deleted: i32,
}

/// What retention deleted of a case, if anything.
pub async fn deletions(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<DeletionRow>, StoreError> {
    Ok(sqlx::query_as!(
        DeletionRow,
        "SELECT case_id, ended_at, codes_deleted_at, explanations_deleted_at, evidence_deleted_at,
                identity_deleted_at, codes_deleted, explanations_deleted, evidence_deleted
           FROM case_personal_data_deletions WHERE case_id = $1",
        case_id
    )
    .fetch_optional(db)
    .await?)
}

fn per_case(kind: DataKind) -> Result<&'static str, StoreError> {
    match kind {
        DataKind::Codes | DataKind::Explanations | DataKind::Evidence | DataKind::Identity => {
            Ok(kind.as_str())
        }
        _ => Err(StoreError::Invariant(
            "retention per case runs only for codes, explanations, evidence and identity",
        )),
    }
}

/// How many finished cases are due for `kind` (ended at or before `cutoff`, after the
/// cursor) and how many rows of it they hold. Changes nothing (`--dry-run`).
pub async fn due(pool: &PgPool, kind: DataKind, cutoff: DateTime<Utc>) -> Result<Due, StoreError> {
    let kind = per_case(kind)?;
    // A range over the finished cases (the history): planned for the cutoff.
    let mut tx = crate::begin_planned(pool).await?;
    let row = sqlx::query!(
        r#"WITH cur AS (SELECT ended_at, case_id FROM retention_cursors WHERE kind = $1),
                due AS (
                  SELECT c.id FROM reactivation_cases c, cur
                   WHERE c.state IN ('reactivated', 'cancelled', 'expired', 'closed')
                     AND (c.state_entered_at, c.id) > (cur.ended_at, cur.case_id)
                     AND c.state_entered_at <= $2)
           SELECT (SELECT count(*) FROM due) AS "cases!",
                  CASE $1
                    WHEN 'codes' THEN (SELECT count(*) FROM otp_codes WHERE case_id IN (SELECT id FROM due))
                    WHEN 'explanations' THEN (SELECT count(*) FROM case_explanations WHERE case_id IN (SELECT id FROM due))
                    WHEN 'evidence' THEN (SELECT count(*) FROM case_evidence WHERE case_id IN (SELECT id FROM due))
                    ELSE (SELECT count(*) FROM case_data_keys WHERE case_id IN (SELECT id FROM due))
                  END AS "rows!""#,
        kind,
        cutoff
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Due {
        cases: row.cases,
        rows: row.rows,
    })
}

/// Deletes `kind` of the next at most `batch` finished cases that ended at or before
/// `cutoff`, in one transaction, recording `now` as the deletion time and `actor`
/// in the audit log. `Ok(None)`: another runner holds this kind right now.
/// `Ok(Some(outcome))` with no cases: nothing is due.
pub async fn run_batch(
    pool: &PgPool,
    kind: DataKind,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    batch: i64,
    actor: &Actor,
) -> Result<Option<BatchOutcome>, StoreError> {
    let name = per_case(kind)?;
    let batch = batch.clamp(1, 10_000);
    // A range over the finished cases (the history): planned for the cursor's values.
    let mut tx = crate::begin_planned(pool).await?;
    let Some(cursor) = sqlx::query!(
        "SELECT ended_at, case_id FROM retention_cursors WHERE kind = $1 FOR UPDATE SKIP LOCKED",
        name
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let cases = sqlx::query!(
        r#"SELECT id, state_entered_at FROM reactivation_cases
            WHERE state IN ('reactivated', 'cancelled', 'expired', 'closed')
              AND (state_entered_at, id) > ($1, $2)
              AND state_entered_at <= $3
            ORDER BY state_entered_at, id LIMIT $4"#,
        cursor.ended_at,
        cursor.case_id,
        cutoff,
        batch
    )
    .fetch_all(&mut *tx)
    .await?;
    let Some(last) = cases.last() else {
        return Ok(Some(BatchOutcome::default()));
    };
    let (last_at, last_id) = (last.state_entered_at, last.id);
    let ids: Vec<Uuid> = cases.iter().map(|c| c.id).collect();
    let ended: Vec<DateTime<Utc>> = cases.iter().map(|c| c.state_entered_at).collect();
    // (case id, rows deleted) for every case that had some.
    let deleted: Vec<(Uuid, i64)> = match kind {
        DataKind::Codes => sqlx::query!(
            r#"WITH gone AS (DELETE FROM otp_codes WHERE case_id = ANY($1) RETURNING case_id)
               SELECT case_id AS "case_id!", count(*) AS "n!" FROM gone GROUP BY case_id"#,
            &ids
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| (r.case_id, r.n))
        .collect(),
        DataKind::Explanations => {
            sqlx::query!(
                "UPDATE case_appeals SET statement = '[deleted]', statement_sealed = NULL
                  WHERE case_id = ANY($1)
                    AND (statement IS DISTINCT FROM '[deleted]' OR statement_sealed IS NOT NULL)",
                &ids
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE risk_assessments
                    SET signals = jsonb_set(signals, '{flagged_contacts}',
                                            to_jsonb(jsonb_array_length(signals->'flagged_contacts')))
                  WHERE case_id = ANY($1) AND jsonb_typeof(signals->'flagged_contacts') = 'array'",
                &ids
            )
            .execute(&mut *tx)
            .await?;
            let gone = sqlx::query!(
                r#"WITH gone AS (DELETE FROM case_explanations WHERE case_id = ANY($1) RETURNING case_id)
                   SELECT case_id AS "case_id!", count(*) AS "n!" FROM gone GROUP BY case_id"#,
                &ids
            )
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| (r.case_id, r.n))
            .collect();
            // The key last: a key committed by a writer the deletes above waited on
            // is seen (and deleted) by this statement.
            sqlx::query!(
                "DELETE FROM case_material_keys WHERE case_id = ANY($1) AND kind = 'explanations'",
                &ids
            )
            .execute(&mut *tx)
            .await?;
            gone
        }
        DataKind::Evidence => {
            let gone = sqlx::query!(
                r#"WITH gone AS (DELETE FROM case_evidence WHERE case_id = ANY($1) RETURNING case_id)
                   SELECT case_id AS "case_id!", count(*) AS "n!" FROM gone GROUP BY case_id"#,
                &ids
            )
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| (r.case_id, r.n))
            .collect();
            // The key after the rows (see explanations).
            sqlx::query!(
                "DELETE FROM case_material_keys WHERE case_id = ANY($1) AND kind = 'evidence'",
                &ids
            )
            .execute(&mut *tx)
            .await?;
            gone
        }
        _ => {
            let gone: Vec<Uuid> = sqlx::query_scalar!(
                "DELETE FROM case_data_keys WHERE case_id = ANY($1) RETURNING case_id",
                &ids
            )
            .fetch_all(&mut *tx)
            .await?;
            // The masked forms go too; a legacy identity (sealed under a master
            // secret, no data key) has its sealed values emptied instead.
            sqlx::query!(
                r#"UPDATE case_identities
                      SET full_name_masked = '', id_number_last4 = '****',
                          full_name_enc = CASE WHEN case_id = ANY($2) THEN full_name_enc ELSE '\x'::bytea END,
                          id_number_enc = CASE WHEN case_id = ANY($2) THEN id_number_enc ELSE '\x'::bytea END
                    WHERE case_id = ANY($1)"#,
                &ids,
                &gone
            )
            .execute(&mut *tx)
            .await?;
            gone.into_iter().map(|id| (id, 1)).collect()
        }
    };
    let counts: Vec<i32> = ids
        .iter()
        .map(|id| {
            deleted
                .iter()
                .find(|(d, _)| d == id)
                .map_or(0, |(_, n)| i32::try_from(*n).unwrap_or(i32::MAX))
        })
        .collect();
    sqlx::query!(
        r#"INSERT INTO case_personal_data_deletions AS d
                (case_id, ended_at, codes_deleted_at, explanations_deleted_at, evidence_deleted_at,
                 identity_deleted_at, codes_deleted, explanations_deleted, evidence_deleted)
           SELECT u.case_id, u.ended_at,
                  CASE WHEN $4 = 'codes' THEN $5::timestamptz END,
                  CASE WHEN $4 = 'explanations' THEN $5::timestamptz END,
                  CASE WHEN $4 = 'evidence' THEN $5::timestamptz END,
                  CASE WHEN $4 = 'identity' THEN $5::timestamptz END,
                  CASE WHEN $4 = 'codes' THEN u.n ELSE 0 END,
                  CASE WHEN $4 = 'explanations' THEN u.n ELSE 0 END,
                  CASE WHEN $4 = 'evidence' THEN u.n ELSE 0 END
             FROM unnest($1::uuid[], $2::timestamptz[], $3::int4[]) AS u (case_id, ended_at, n)
           ON CONFLICT (case_id) DO UPDATE SET
                  codes_deleted_at = coalesce(d.codes_deleted_at, excluded.codes_deleted_at),
                  explanations_deleted_at = coalesce(d.explanations_deleted_at, excluded.explanations_deleted_at),
                  evidence_deleted_at = coalesce(d.evidence_deleted_at, excluded.evidence_deleted_at),
                  identity_deleted_at = coalesce(d.identity_deleted_at, excluded.identity_deleted_at),
                  codes_deleted = d.codes_deleted + excluded.codes_deleted,
                  explanations_deleted = d.explanations_deleted + excluded.explanations_deleted,
                  evidence_deleted = d.evidence_deleted + excluded.evidence_deleted"#,
        &ids,
        &ended,
        &counts,
        name,
        now
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE retention_cursors SET ended_at = $2, case_id = $3 WHERE kind = $1",
        name,
        last_at,
        last_id
    )
    .execute(&mut *tx)
    .await?;
    // Last, so the audit chain's lock is held only until the commit just below.
    for (id, n) in ids.iter().zip(&counts) {
        audit::record(
            &mut tx,
            &AuditEntry {
                actor,
                action: "case.retention",
                case_id: Some(*id),
                detail: serde_json::json!({ "kind": name, "deleted": n }),
                reason: Some("retention period after the case ended has passed"),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Some(BatchOutcome {
        rows: counts.iter().map(|n| i64::from(*n)).sum(),
        cases: ids,
    }))
}

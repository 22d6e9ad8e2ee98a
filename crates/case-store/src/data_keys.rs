//! Per-case data keys (envelope encryption): the wrapped key of each case, and the
//! resumable backfill that moves identities sealed directly under a master secret
//! (written before data keys existed) to a data key of their own.
//!
//! The store does no cryptography: the caller hands in a function that, given a
//! case's two sealed identity values, returns its new wrapped key and the two values
//! sealed under that key (`data_protection::Keys::wrap_case_key`, `CaseKey`).

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::StoreError;

/// Stores a case's wrapped data key (in the case's creating transaction).
pub async fn save_data_key(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    wrapped_key: &[u8],
) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO case_data_keys (case_id, wrapped_key) VALUES ($1, $2)",
        case_id,
        wrapped_key
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A case's wrapped data key; `None` when it has none (written before data keys
/// existed and not yet backfilled, or destroyed by retention).
pub async fn load_data_key(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(sqlx::query_scalar!(
        "SELECT wrapped_key FROM case_data_keys WHERE case_id = $1",
        case_id
    )
    .fetch_optional(db)
    .await?)
}

/// Moves one identity to a data key: `(case id, sealed name, sealed ID number)` to
/// `(wrapped key, name under it, ID number under it)`, or a message (without any
/// value) when the values do not open.
pub type Envelope<'a> =
    &'a (dyn Fn(&Uuid, &[u8], &[u8]) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>), String> + Sync);

/// Where the backfill stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackfillProgress {
    /// Identities without a data key when the backfill started.
    pub to_do: i64,
    /// Identities moved to a data key so far.
    pub moved: i64,
    /// Identities whose values do not open (left as they are, logged by case id).
    pub unreadable: i64,
}

/// How many identities still have no data key (and were not deleted by retention).
pub async fn without_data_key(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM case_identities i
            WHERE NOT EXISTS (SELECT 1 FROM case_data_keys k WHERE k.case_id = i.case_id)
              AND NOT EXISTS (SELECT 1 FROM case_personal_data_deletions d
                               WHERE d.case_id = i.case_id AND d.identity_deleted_at IS NOT NULL)"#
    )
    .fetch_one(pool)
    .await?)
}

/// Gives every identity without a data key one, `batch` identities per transaction
/// in case-id order, calling `progress` after each batch. Rows another runner holds
/// are skipped (`SKIP LOCKED`) and a key that appeared meanwhile is kept (the insert
/// does nothing): two runners at once do each identity once. Safe to stop and rerun.
pub async fn backfill(
    pool: &PgPool,
    envelope: Envelope<'_>,
    batch: i64,
    mut progress: impl FnMut(&BackfillProgress),
) -> Result<BackfillProgress, StoreError> {
    let batch = batch.clamp(1, 10_000);
    let mut state = BackfillProgress {
        to_do: without_data_key(pool).await?,
        ..BackfillProgress::default()
    };
    let mut after = Uuid::nil();
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query!(
            r#"SELECT i.case_id, i.full_name_enc, i.id_number_enc FROM case_identities i
                WHERE i.case_id > $1
                  AND NOT EXISTS (SELECT 1 FROM case_data_keys k WHERE k.case_id = i.case_id)
                  AND NOT EXISTS (SELECT 1 FROM case_personal_data_deletions d
                                   WHERE d.case_id = i.case_id AND d.identity_deleted_at IS NOT NULL)
                ORDER BY i.case_id LIMIT $2 FOR UPDATE OF i SKIP LOCKED"#,
            after,
            batch
        )
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(state);
        }
        for row in &rows {
            after = row.case_id;
            match envelope(&row.case_id, &row.full_name_enc, &row.id_number_enc) {
                Ok((wrapped, name, id_number)) => {
                    let inserted = sqlx::query!(
                        "INSERT INTO case_data_keys (case_id, wrapped_key) VALUES ($1, $2)
                         ON CONFLICT (case_id) DO NOTHING",
                        row.case_id,
                        wrapped
                    )
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 1 {
                        sqlx::query!(
                            "UPDATE case_identities SET full_name_enc = $2, id_number_enc = $3
                              WHERE case_id = $1",
                            row.case_id,
                            name,
                            id_number
                        )
                        .execute(&mut *tx)
                        .await?;
                        state.moved += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(case_id = %row.case_id, error.message = %e, "identity not moved to a data key: it does not open");
                    state.unreadable += 1;
                }
            }
        }
        tx.commit().await?;
        progress(&state);
    }
}

//! Moving every sealed value to the current key (`reactivation keys rotate`).
//!
//! The sealed values: `case_identities.full_name_enc` and `.id_number_enc` (bound
//! to the case id) of identities still sealed directly under a master secret (an
//! identity with a data key is sealed under that key and is not touched: its
//! wrapped key is), `case_data_keys.wrapped_key` (bound to the case id),
//! `case_material_keys.wrapped_key` (bound to its `wrap_id`, derived from the case
//! id and the kind; the material sealed under these keys is not touched),
//! `webhook_endpoints.secret_sealed` (bound to the endpoint id), and
//! the `case_token_enc` field (hex) of stored opening answers in
//! `idempotency_keys.response_body` (bound to the `case_id` beside it; pruned after
//! 24 hours). The store does no cryptography: the caller hands in the prefix every
//! value under the current key starts with, and a function that re-encrypts one
//! value for its row (`data_protection::Keys::reseal`).
//!
//! Each table is walked in primary-key order in batches; a batch selects only rows
//! whose value does not start with the current prefix, locks them (`FOR UPDATE`),
//! rewrites them and commits. Stopping at any point loses nothing and a rerun picks
//! up the rows still to do; a value that does not open under any configured key is
//! left as it is and counted (the walk goes on past it).

use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::StoreError;

/// Re-encrypts one sealed value for its row under the current key: `Ok(None)` when
/// it already is, `Err` (a message without the value) when it does not open.
pub type Reseal<'a> = &'a (dyn Fn(&[u8], &Uuid) -> Result<Option<Vec<u8>>, String> + Sync);

/// The sealed places, in the order they are rotated.
pub const PLACES: [&str; 5] = [
    "case_identities",
    "webhook_endpoints",
    "idempotency_keys.case_token_enc",
    "case_data_keys",
    "case_material_keys",
];

/// Where a rotation stands after a batch (or at the end).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The table being rotated (one of [`PLACES`]).
    pub place: &'static str,
    /// Rows of it not under the current key when the rotation started.
    pub to_do: i64,
    /// Rows rewritten under the current key so far.
    pub moved: i64,
    /// Rows whose value does not open under any configured key (left unchanged).
    pub unreadable: i64,
}

/// How many rows of each place are not under the current key (prefix `prefix`).
pub async fn pending(pool: &PgPool, prefix: &[u8]) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let hex_prefix = hex(prefix);
    let identities: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM case_identities
          WHERE (substr(full_name_enc, 1, $2) <> $1 OR substr(id_number_enc, 1, $2) <> $1) AND NOT EXISTS (SELECT 1 FROM case_data_keys k WHERE k.case_id = case_identities.case_id)
           AND NOT EXISTS (SELECT 1 FROM case_personal_data_deletions d
                            WHERE d.case_id = case_identities.case_id AND d.identity_deleted_at IS NOT NULL)",
    )
    .bind(prefix)
    .bind(prefix.len() as i32)
    .fetch_one(pool)
    .await?;
    let data_keys: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM case_data_keys WHERE substr(wrapped_key, 1, $2) <> $1",
    )
    .bind(prefix)
    .bind(prefix.len() as i32)
    .fetch_one(pool)
    .await?;
    let material_keys: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM case_material_keys WHERE substr(wrapped_key, 1, $2) <> $1",
    )
    .bind(prefix)
    .bind(prefix.len() as i32)
    .fetch_one(pool)
    .await?;
    let endpoints: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_endpoints
          WHERE secret_sealed IS NOT NULL AND substr(secret_sealed, 1, $2) <> $1",
    )
    .bind(prefix)
    .bind(prefix.len() as i32)
    .fetch_one(pool)
    .await?;
    let answers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM idempotency_keys
          WHERE response_body ? 'case_token_enc'
            AND lower(left(response_body->>'case_token_enc', $2)) <> $1",
    )
    .bind(&hex_prefix)
    .bind(hex_prefix.len() as i32)
    .fetch_one(pool)
    .await?;
    Ok(vec![
        (PLACES[0], identities),
        (PLACES[1], endpoints),
        (PLACES[2], answers),
        (PLACES[3], data_keys),
        (PLACES[4], material_keys),
    ])
}

/// Rewrites every sealed value not under the current key (`prefix`) with `reseal`,
/// `batch` rows per transaction, calling `progress` after each batch. Returns the
/// final progress of each place. Safe to stop and to run again.
pub async fn rotate(
    pool: &PgPool,
    prefix: &[u8],
    reseal: Reseal<'_>,
    batch: i64,
    mut progress: impl FnMut(&Progress),
) -> Result<Vec<Progress>, StoreError> {
    let batch = batch.clamp(1, 10_000);
    let mut done = Vec::new();
    for (place, to_do) in pending(pool, prefix).await? {
        let mut state = Progress {
            place,
            to_do,
            ..Progress::default()
        };
        match place {
            "case_identities" => {
                rotate_identities(pool, prefix, reseal, batch, &mut state, &mut progress).await?
            }
            "case_data_keys" => {
                rotate_column(
                    pool,
                    &DATA_KEYS,
                    prefix,
                    reseal,
                    batch,
                    &mut state,
                    &mut progress,
                )
                .await?
            }
            "case_material_keys" => {
                rotate_column(
                    pool,
                    &MATERIAL_KEYS,
                    prefix,
                    reseal,
                    batch,
                    &mut state,
                    &mut progress,
                )
                .await?
            }
            "webhook_endpoints" => {
                rotate_column(
                    pool,
                    &ENDPOINT_SECRETS,
                    prefix,
                    reseal,
                    batch,
                    &mut state,
                    &mut progress,
                )
                .await?
            }
            _ => rotate_answers(pool, prefix, reseal, batch, &mut state, &mut progress).await?,
        }
        done.push(state);
    }
    Ok(done)
}

async fn rotate_identities(
    pool: &PgPool,
    prefix: &[u8],
    reseal: Reseal<'_>,
    batch: i64,
    state: &mut Progress,
    progress: &mut impl FnMut(&Progress),
) -> Result<(), StoreError> {
    let mut after = Uuid::nil();
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(
            "SELECT case_id, full_name_enc, id_number_enc FROM case_identities
              WHERE case_id > $3
                AND (substr(full_name_enc, 1, $2) <> $1 OR substr(id_number_enc, 1, $2) <> $1)
                AND NOT EXISTS (SELECT 1 FROM case_data_keys k WHERE k.case_id = case_identities.case_id)
                AND NOT EXISTS (SELECT 1 FROM case_personal_data_deletions d
                                 WHERE d.case_id = case_identities.case_id AND d.identity_deleted_at IS NOT NULL)
              ORDER BY case_id LIMIT $4 FOR UPDATE OF case_identities",
        )
        .bind(prefix)
        .bind(prefix.len() as i32)
        .bind(after)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in &rows {
            let case_id: Uuid = row.try_get("case_id")?;
            after = case_id;
            let name: Vec<u8> = row.try_get("full_name_enc")?;
            let id_number: Vec<u8> = row.try_get("id_number_enc")?;
            match (reseal(&name, &case_id), reseal(&id_number, &case_id)) {
                (Ok(new_name), Ok(new_id)) => {
                    sqlx::query(
                        "UPDATE case_identities
                            SET full_name_enc = $2, id_number_enc = $3 WHERE case_id = $1",
                    )
                    .bind(case_id)
                    .bind(new_name.unwrap_or(name))
                    .bind(new_id.unwrap_or(id_number))
                    .execute(&mut *tx)
                    .await?;
                    state.moved += 1;
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(case_id = %case_id, error.message = %e, "identity not rotated: it does not open");
                    state.unreadable += 1;
                }
            }
        }
        tx.commit().await?;
        progress(state);
    }
}

/// A table whose rows each hold one sealed value, keyed by a UUID that is also the
/// value's associated data: what [`rotate_column`] needs to re-seal it.
struct SealedColumn {
    table: &'static str,
    id: &'static str,
    column: &'static str,
    /// Rows of the table that hold no sealed value (SQL, after `AND`).
    present: &'static str,
    /// The row lock: `SKIP LOCKED` where another process may hold the row for long.
    lock: &'static str,
    /// What the warning names a value that does not open.
    what: &'static str,
}

/// Per-case data keys. SKIP LOCKED: a key the retention pass is destroying right
/// now is not waited on.
const DATA_KEYS: SealedColumn = SealedColumn {
    table: "case_data_keys",
    id: "case_id",
    column: "wrapped_key",
    present: "true",
    lock: "FOR UPDATE SKIP LOCKED",
    what: "data key not re-wrapped: it does not open",
};

/// Per-case, per-kind material keys, bound to their wrap id (derived from the case
/// id and the kind). SKIP LOCKED like the data keys.
const MATERIAL_KEYS: SealedColumn = SealedColumn {
    table: "case_material_keys",
    id: "wrap_id",
    column: "wrapped_key",
    present: "true",
    lock: "FOR UPDATE SKIP LOCKED",
    what: "material key not re-wrapped: it does not open",
};

/// Outbound webhook endpoints' signing secrets (NULL once the endpoint is deleted).
const ENDPOINT_SECRETS: SealedColumn = SealedColumn {
    table: "webhook_endpoints",
    id: "id",
    column: "secret_sealed",
    present: "secret_sealed IS NOT NULL",
    lock: "FOR UPDATE",
    what: "endpoint secret not rotated: it does not open",
};

/// Re-seals, batch by batch (one transaction each), every value of `col` not yet
/// sealed under the key whose ciphertexts start with `prefix`.
async fn rotate_column(
    pool: &PgPool,
    col: &SealedColumn,
    prefix: &[u8],
    reseal: Reseal<'_>,
    batch: i64,
    state: &mut Progress,
    progress: &mut impl FnMut(&Progress),
) -> Result<(), StoreError> {
    let select = format!(
        "SELECT {id} AS id, {column} AS sealed FROM {table}
          WHERE {id} > $3 AND {present} AND substr({column}, 1, $2) <> $1
          ORDER BY {id} LIMIT $4 {lock}",
        id = col.id,
        column = col.column,
        table = col.table,
        present = col.present,
        lock = col.lock,
    );
    let update = format!(
        "UPDATE {table} SET {column} = $2 WHERE {id} = $1",
        table = col.table,
        column = col.column,
        id = col.id,
    );
    let mut after = Uuid::nil();
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(&select)
            .bind(prefix)
            .bind(prefix.len() as i32)
            .bind(after)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in &rows {
            let id: Uuid = row.try_get("id")?;
            after = id;
            let sealed: Vec<u8> = row.try_get("sealed")?;
            match reseal(&sealed, &id) {
                Ok(Some(new)) => {
                    sqlx::query(&update)
                        .bind(id)
                        .bind(new)
                        .execute(&mut *tx)
                        .await?;
                    state.moved += 1;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(table = col.table, id = %id, error.message = %e, "{}", col.what);
                    state.unreadable += 1;
                }
            }
        }
        tx.commit().await?;
        progress(state);
    }
}

async fn rotate_answers(
    pool: &PgPool,
    prefix: &[u8],
    reseal: Reseal<'_>,
    batch: i64,
    state: &mut Progress,
    progress: &mut impl FnMut(&Progress),
) -> Result<(), StoreError> {
    let hex_prefix = hex(prefix);
    let (mut scope, mut key) = (String::new(), String::new());
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(
            "SELECT scope, key, response_body->>'case_token_enc' AS sealed,
                    response_body->>'case_id' AS case_id
               FROM idempotency_keys
              WHERE (scope, key) > ($3, $4) AND response_body ? 'case_token_enc'
                AND lower(left(response_body->>'case_token_enc', $2)) <> $1
              ORDER BY scope, key LIMIT $5 FOR UPDATE",
        )
        .bind(&hex_prefix)
        .bind(hex_prefix.len() as i32)
        .bind(&scope)
        .bind(&key)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in &rows {
            scope = row.try_get("scope")?;
            key = row.try_get("key")?;
            let sealed: Option<String> = row.try_get("sealed")?;
            let case_id: Option<String> = row.try_get("case_id")?;
            let opened = match (
                sealed.as_deref().and_then(unhex),
                case_id.and_then(|c| c.parse::<Uuid>().ok()),
            ) {
                (Some(sealed), Some(case_id)) => reseal(&sealed, &case_id),
                _ => Err("the stored answer is malformed".to_owned()),
            };
            match opened {
                Ok(Some(new)) => {
                    sqlx::query(
                        "UPDATE idempotency_keys
                            SET response_body = jsonb_set(response_body, '{case_token_enc}', to_jsonb($3::text))
                          WHERE scope = $1 AND key = $2",
                    )
                    .bind(&scope)
                    .bind(&key)
                    .bind(hex(&new))
                    .execute(&mut *tx)
                    .await?;
                    state.moved += 1;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error.message = %e, "stored opening answer not rotated: it does not open");
                    state.unreadable += 1;
                }
            }
        }
        tx.commit().await?;
        progress(state);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

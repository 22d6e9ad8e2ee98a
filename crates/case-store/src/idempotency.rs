//! Idempotency-Key records (draft-ietf-httpapi-idempotency-key-header): the first
//! request claims the key; a retry with the same body gets the stored response, a
//! different body is refused, and a retry while the first is still running is told so.

use sqlx::PgExecutor;

use crate::StoreError;

/// An in-flight claim older than this is presumed abandoned (its process died) and
/// may be taken over by a retry.
const ABANDONED_AFTER_SECS: f64 = 60.0;

/// What to do with a request that carries an Idempotency-Key.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyBegin {
    /// First time (or an abandoned attempt): process it, then call [`complete_idempotent`].
    Started,
    /// Done before with the same body: answer with this.
    Replay {
        /// Stored status.
        status: u16,
        /// Stored body.
        body: serde_json::Value,
    },
    /// The key was used with a different body.
    Mismatch,
    /// The first request with this key is still being processed.
    InFlight,
}

/// Claims `(scope, key)` for a request whose body hashes to `request_hash`.
/// Commit this on its own so concurrent retries see it.
pub async fn begin_idempotent(
    db: impl PgExecutor<'_> + Copy,
    scope: &str,
    key: &str,
    request_hash: &[u8; 32],
) -> Result<IdempotencyBegin, StoreError> {
    let inserted = sqlx::query!(
        r#"INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
           ON CONFLICT (scope, key) DO UPDATE SET created_at = now()
             WHERE idempotency_keys.completed_at IS NULL
               AND idempotency_keys.request_hash = EXCLUDED.request_hash
               AND idempotency_keys.created_at < now() - make_interval(secs => $4)
           RETURNING 1 AS "one!""#,
        scope,
        key,
        &request_hash[..],
        ABANDONED_AFTER_SECS,
    )
    .fetch_optional(db)
    .await?;
    if inserted.is_some() {
        return Ok(IdempotencyBegin::Started);
    }
    let Some(row) = sqlx::query!(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys WHERE scope = $1 AND key = $2",
        scope,
        key,
    )
    .fetch_optional(db)
    .await?
    else {
        // Pruned between our two statements: treat as new.
        return Ok(IdempotencyBegin::Started);
    };
    if row.request_hash != request_hash[..] {
        return Ok(IdempotencyBegin::Mismatch);
    }
    Ok(match (row.response_status, row.response_body) {
        (Some(status), Some(body)) => IdempotencyBegin::Replay {
            status: status as u16,
            body,
        },
        _ => IdempotencyBegin::InFlight,
    })
}

/// Stores the response of the request that claimed the key; run it in the same
/// transaction as the request's own writes.
pub async fn complete_idempotent(
    db: impl PgExecutor<'_>,
    scope: &str,
    key: &str,
    status: u16,
    body: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE idempotency_keys SET response_status = $3, response_body = $4, completed_at = now()
         WHERE scope = $1 AND key = $2",
        scope,
        key,
        status as i16,
        body,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Drops an unfinished claim so a retry runs again (the request failed before
/// doing anything worth replaying).
pub async fn forget_idempotent(
    db: impl PgExecutor<'_>,
    scope: &str,
    key: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND completed_at IS NULL",
        scope,
        key
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes keys older than a day (the published expiry). Returns how many.
pub async fn prune_idempotency(db: impl PgExecutor<'_>) -> Result<u64, StoreError> {
    Ok(
        sqlx::query!("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'")
            .execute(db)
            .await?
            .rows_affected(),
    )
}

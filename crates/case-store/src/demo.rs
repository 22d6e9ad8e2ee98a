//! Demo data that `reactivation dev` seeds, marked so that `reactivation serve` can
//! refuse a database holding it.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

/// Marks an agent account as demo data (its password is published).
pub async fn mark_demo_agent(db: impl PgExecutor<'_>, agent_id: Uuid) -> Result<(), StoreError> {
    sqlx::query!("UPDATE agents SET demo = true WHERE id = $1", agent_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Marks the accounts with these usernames as demo data; returns how many exist.
pub async fn mark_demo_agents_named(
    db: impl PgExecutor<'_>,
    usernames: &[String],
) -> Result<u64, StoreError> {
    Ok(sqlx::query!(
        "UPDATE agents SET demo = true WHERE username = ANY($1)",
        usernames
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// The usernames of the demo accounts, disabled ones included, in name order.
pub async fn demo_agents(db: impl PgExecutor<'_>) -> Result<Vec<String>, StoreError> {
    Ok(
        sqlx::query_scalar!("SELECT username FROM agents WHERE demo ORDER BY username")
            .fetch_all(db)
            .await?,
    )
}

//! The Postgres pool.

use std::time::Duration;

use anyhow::Context;
use sqlx::{PgPool, postgres::PgPoolOptions};

/// Connects a pool to `url` with bounded waits, so a database outage shows up as
/// errors (and a failing `/readyz`) instead of hung requests.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .connect(url)
        .await
        .context("cannot connect to the database named by DATABASE_URL")
}

/// Applies every pending migration of `migrator` (the binary passes the store's).
pub async fn migrate(pool: &PgPool, migrator: &sqlx::migrate::Migrator) -> anyhow::Result<()> {
    migrator.run(pool).await.context("migrations failed")
}

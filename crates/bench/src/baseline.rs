//! The raw-SQL baseline: what opening a case costs with no HTTP, no service and no
//! crypto in front of PostgreSQL.
//!
//! Per case, one transaction with a `reactivation_cases` row and its `opened` row in
//! `case_events` (issue 12's definition of the baseline: the pgbench script of "a case
//! row and an event row in one transaction"). It runs on the same number of connections as
//! the HTTP side, in a scratch database created for it on the same server, migrated with
//! `case_store::MIGRATOR` (so the same indexes and triggers), and dropped afterwards,
//! whatever happened.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{PgPool, postgres::PgPoolOptions};
use uuid::Uuid;

use crate::{
    fixtures::{BenchSubscriber, Series},
    journey::run_indexed,
};

/// What the baseline measured.
#[derive(Debug, Clone)]
pub struct BaselineResult {
    /// The scratch database used (dropped by now).
    pub database: String,
    /// Latency of each committed transaction.
    pub transactions: Vec<Duration>,
    /// From the first transaction's start to the last one's commit.
    pub window: Duration,
    /// Transactions that failed (with the first error).
    pub failures: usize,
    /// The first failure's message, if any.
    pub first_error: Option<String>,
}

async fn insert_case(pool: &PgPool, s: &BenchSubscriber) -> Result<Duration, sqlx::Error> {
    let started = Instant::now();
    let case_id = Uuid::now_v7();
    let token_hash: Vec<u8> = [Uuid::new_v4().into_bytes(), Uuid::new_v4().into_bytes()].concat();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO reactivation_cases (id, msisdn, state, channel, locale, token_hash)
         VALUES ($1, $2, 'awaiting_identity', 'app', 'en', $3)",
    )
    .bind(case_id)
    .bind(&s.msisdn)
    .bind(&token_hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO case_events (id, case_id, version, from_state, to_state, event, actor_role, actor_id)
         VALUES ($1, $2, 1, NULL, 'awaiting_identity', 'opened', 'customer', 'subscriber')",
    )
    .bind(Uuid::now_v7())
    .bind(case_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(started.elapsed())
}

async fn measure(
    url: &str,
    n: usize,
    concurrency: usize,
    run_tag: u16,
) -> anyhow::Result<(Vec<Result<Duration, String>>, Duration)> {
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX))
        .connect(url)
        .await?;
    case_store::MIGRATOR.run(&pool).await?;
    // Open every connection before the clock starts, as a running gateway's pool has.
    let mut warm = Vec::new();
    for _ in 0..concurrency.max(1) {
        warm.push(pool.acquire().await?);
    }
    drop(warm);

    let pool = Arc::new(pool);
    let started = Instant::now();
    let task_pool = pool.clone();
    let results = run_indexed(n, concurrency, move |i| {
        let pool = task_pool.clone();
        async move {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let s = BenchSubscriber::new(run_tag, Series::RawSql, index);
            insert_case(&pool, &s).await.map_err(|e| e.to_string())
        }
    })
    .await;
    let window = started.elapsed();
    pool.close().await;
    Ok((results, window))
}

/// Runs `n` case-opening transactions at `concurrency` in a scratch database created on
/// the server of `admin_url` (which must allow `CREATE DATABASE`), then drops it.
pub async fn run(
    admin_url: &str,
    n: usize,
    concurrency: usize,
    run_tag: u16,
) -> anyhow::Result<BaselineResult> {
    let database = format!("bench_raw_{}", Uuid::new_v4().simple());
    let admin = PgPool::connect(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&admin)
        .await?;
    let url = system_tests::with_database(admin_url, &database);
    let measured = measure(&url, n, concurrency, run_tag).await;
    let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .execute(&admin)
        .await;
    admin.close().await;
    let (results, window) = measured?;
    dropped?;
    let first_error = results.iter().find_map(|r| r.as_ref().err().cloned());
    let transactions: Vec<Duration> = results.iter().filter_map(|r| r.clone().ok()).collect();
    Ok(BaselineResult {
        database,
        failures: results.len() - transactions.len(),
        transactions,
        window,
        first_error,
    })
}

//! Transactions the product commits, from `pg_stat_database` of its database.
//!
//! PostgreSQL 15 backends flush their counters at most once a second while busy and
//! within [`FLUSH_WAIT`] once idle, so a reading is only complete after the stack has
//! been idle that long. The bench's own statements on the product's database (its
//! state reads while waiting for cases to settle) are counted by the caller and
//! subtracted; the carrier simulator runs on a database of its own, so its work is not
//! in the count.

use std::time::Duration;

use sqlx::PgPool;

/// How long to leave the product idle before a reading includes all its transactions.
pub const FLUSH_WAIT: Duration = Duration::from_secs(11);

/// Committed plus rolled-back transactions of the pool's database so far.
pub async fn transactions(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database
         WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await?)
}

/// Transactions per unit of work: the delta less the bench's own `own` statements and
/// the idle background (`idle_per_s` over `window`), over `units`.
pub fn per_unit(delta: i64, own: u64, idle_per_s: f64, window: Duration, units: usize) -> f64 {
    if units == 0 {
        return 0.0;
    }
    let background = idle_per_s * window.as_secs_f64();
    (delta as f64 - own as f64 - background).max(0.0) / units as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_statements_and_background_are_taken_off() {
        assert_eq!(per_unit(1_000, 0, 0.0, Duration::from_secs(10), 100), 10.0);
        assert_eq!(
            per_unit(1_000, 100, 1.0, Duration::from_secs(100), 100),
            8.0
        );
        assert_eq!(per_unit(5, 10, 0.0, Duration::ZERO, 1), 0.0);
        assert_eq!(per_unit(5, 0, 0.0, Duration::ZERO, 0), 0.0);
    }
}

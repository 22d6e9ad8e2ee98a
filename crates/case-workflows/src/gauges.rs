//! The gauges read from the store: cases per state (`reactivation_cases`) and dead
//! items per queue (`queue_dead_items`). The runtime knows no tables: the binary
//! schedules [`refresh_every`] in each process that serves `/metrics` for the case
//! services.

use std::time::Duration;

use case_domain::CaseState;
use sqlx::PgPool;

use crate::WorkflowError;

/// How often the gauges are refreshed (every process of every service serves
/// /metrics; the GROUP BY need not run more often).
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);

/// Sets the `reactivation_cases` gauge of every open state from the database, and the
/// dead-letter gauges, in one transaction (one round trip's worth of commits per tick).
/// Terminal states are not counted: that would read the whole history every tick.
pub async fn refresh_case_gauges(pool: &PgPool) -> Result<(), WorkflowError> {
    let mut tx = pool.begin().await?;
    let counts = case_store::cases_per_state(&mut *tx).await?;
    case_store::queue::publish_dead_gauges(&mut *tx).await?;
    tx.commit().await?;
    for state in CaseState::ALL.into_iter().filter(|s| !s.is_terminal()) {
        let n = counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("reactivation_cases", "state" => state.as_str()).set(n as f64);
    }
    Ok(())
}

/// Refreshes the gauges now and then every `every` until `stop` resolves. A failed
/// refresh is logged and tried again at the next tick.
pub async fn refresh_every(pool: PgPool, every: Duration, stop: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {
                if let Err(e) = refresh_case_gauges(&pool).await {
                    tracing::warn!(error.message = %e, "cannot refresh the case and dead-letter gauges");
                }
            }
        }
    }
}

//! Live statistics for the ETA: recent time spent in each state (from the event
//! log), how many cases left each state recently, and how many are in it now.

use case_domain::CaseState;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::StoreError;

/// Figures of one state.
#[derive(Debug, Clone, PartialEq)]
pub struct StateFigures {
    /// The state.
    pub state: CaseState,
    /// Median seconds spent in the state by cases that left it since `since`.
    pub median_secs: Option<f64>,
    /// How many left it since `since`.
    pub samples: i64,
    /// How many left it since `recent_since`.
    pub recent_exits: i64,
    /// Cases in the state now.
    pub depth: i64,
}

/// Per state: the median time in the state over the exits since `since`, those
/// exits, the exits since `recent_since` (throughput) and the current depth. States
/// with neither exits nor cases are left out.
pub async fn state_figures(
    pool: &PgPool,
    since: DateTime<Utc>,
    recent_since: DateTime<Utc>,
) -> Result<Vec<StateFigures>, StoreError> {
    // A time window over the event log: planned for the window's bounds.
    let mut tx = crate::begin_planned(pool).await?;
    let exits = sqlx::query!(
        r#"SELECT e.from_state AS "state!: CaseState",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.at - p.at)) AS median_secs,
                  count(*) AS "samples!",
                  count(*) FILTER (WHERE e.at >= $2) AS "recent!"
           FROM case_events e
           -- LATERAL: the entering event is looked up per exit through the
           -- (case_id, version) key, so the cost follows the exits in the window,
           -- never the whole event log (a plain join let the planner hash all of it).
           -- It lies between the case's opening (no event is older than its case:
           -- `insert_event`) and the exit, so each look-up probes only the partitions
           -- of those months, pruned per exit, not one index per retained month. The
           -- case row is read by key (a LIMIT keeps it a probe, never a hash join).
           CROSS JOIN LATERAL (SELECT c.created_at FROM reactivation_cases c
                               WHERE c.id = e.case_id LIMIT 1) c
           CROSS JOIN LATERAL (SELECT p.at FROM case_events p
                               WHERE p.case_id = e.case_id AND p.version = e.version - 1
                                 AND p.at >= c.created_at AND p.at <= e.at) p
           WHERE e.at >= $1 AND e.from_state IS NOT NULL
           GROUP BY e.from_state"#,
        since,
        recent_since,
    )
    .fetch_all(&mut *tx)
    .await?;
    let depth = crate::cases_per_state(&mut *tx).await?;
    tx.commit().await?;
    let mut figures: Vec<StateFigures> = exits
        .into_iter()
        .map(|r| StateFigures {
            state: r.state,
            median_secs: r.median_secs,
            samples: r.samples,
            recent_exits: r.recent,
            depth: depth
                .iter()
                .find(|(s, _)| *s == r.state)
                .map_or(0, |(_, n)| *n),
        })
        .collect();
    for (state, n) in depth {
        if !figures.iter().any(|f| f.state == state) {
            figures.push(StateFigures {
                state,
                median_secs: None,
                samples: 0,
                recent_exits: 0,
                depth: n,
            });
        }
    }
    Ok(figures)
}

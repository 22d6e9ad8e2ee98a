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
           -- When the case entered the state it left: written on the exit itself
           -- since 2026-12-07, so the cost is one read of each exit in the window; older
           -- exits look their entering event up (case_event_entered_at, by key, in the
           -- case's months only). OFFSET 0 evaluates it once per exit.
           CROSS JOIN LATERAL (SELECT COALESCE(e.from_state_since,
                                                   case_event_entered_at(e.case_id, e.version, e.at)) AS at
                               OFFSET 0) p
           WHERE e.at >= $1 AND e.from_state IS NOT NULL AND p.at IS NOT NULL
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

//! Read models for the agent console: the supervisor dashboard's figures per stage
//! (load, breaches, throughput and time spent, dead letters) and agent names for timelines.
//! Nothing here writes.

use std::collections::HashMap;

use case_domain::CaseState;
use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::StoreError;

/// The open load of one stage (state) right now.
#[derive(Debug, Clone, PartialEq)]
pub struct StageLoad {
    /// The state.
    pub state: CaseState,
    /// Cases in it.
    pub open: i64,
    /// When the case that has waited longest entered it.
    pub oldest_entered_at: DateTime<Utc>,
    /// Cases past the stage's SLA at `now` (0 for stages without an SLA).
    pub breached: i64,
}

/// Cases per state among `states`, with the oldest one and how many are past their
/// stage SLA at `now`. `slas` gives each clocked state's SLA in seconds; states not
/// listed there never count as breached. States without cases are left out.
pub async fn stage_load(
    db: impl PgExecutor<'_>,
    states: &[CaseState],
    slas: &[(CaseState, f64)],
    now: DateTime<Utc>,
) -> Result<Vec<StageLoad>, StoreError> {
    let (sla_states, sla_secs): (Vec<CaseState>, Vec<f64>) = slas.iter().copied().unzip();
    Ok(sqlx::query_as!(
        StageLoad,
        r#"SELECT c.state AS "state!: CaseState", count(*) AS "open!",
                  min(c.state_entered_at) AS "oldest_entered_at!",
                  count(*) FILTER (WHERE s.secs IS NOT NULL
                                     AND c.state_entered_at + make_interval(secs => s.secs) < $4) AS "breached!"
           FROM reactivation_cases c
           LEFT JOIN unnest($2::case_state[], $3::float8[]) AS s(state, secs) ON s.state = c.state
           WHERE c.state = ANY($1::case_state[])
             -- Spelled out so the planner reads open cases only (partial index).
             AND c.state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
           GROUP BY c.state
           ORDER BY c.state"#,
        states as &[CaseState],
        sla_states as Vec<CaseState>,
        &sla_secs,
        now,
    )
    .fetch_all(db)
    .await?)
}

/// How many cases left one stage since a moment, and the median time they had spent in it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageThroughput {
    /// The state left.
    pub state: CaseState,
    /// Transitions out of it since `since`.
    pub left: i64,
    /// Median seconds spent in the state by those cases.
    pub median_secs: f64,
}

/// Per state: the transitions out of it at or after `since` (from `case_events`), and
/// the median time spent in it (each leaving event minus the event that entered it).
pub async fn stage_throughput(
    pool: &PgPool,
    since: DateTime<Utc>,
) -> Result<Vec<StageThroughput>, StoreError> {
    // A time window over the event log: planned for the window's bound.
    let mut tx = crate::begin_planned(pool).await?;
    let rows = sqlx::query_as!(
        StageThroughput,
        r#"SELECT e.from_state AS "state!: CaseState", count(*) AS "left!",
                  extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY e.at - p.at))::float8 AS "median_secs!"
           FROM case_events e
           -- When the case entered the state it left: on the exit itself, or looked up
           -- for events older than that column (see stage_stats::state_figures).
           CROSS JOIN LATERAL (SELECT COALESCE(e.from_state_since,
                                                   case_event_entered_at(e.case_id, e.version, e.at)) AS at
                               OFFSET 0) p
           WHERE e.at >= $1 AND e.from_state IS NOT NULL AND p.at IS NOT NULL
           GROUP BY e.from_state
           ORDER BY e.from_state"#,
        since,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// Dead letters per queue (outbox, carrier webhooks, outbound deliveries): items given
/// up after their last attempt, waiting for an admin (see [`crate::queue`]).
pub async fn dead_letters(db: impl PgExecutor<'_>) -> Result<Vec<(&'static str, i64)>, StoreError> {
    crate::queue::dead_counts(db).await
}

/// The usernames of the agents among `ids` (unknown ids are left out).
pub async fn agent_names(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, String>, StoreError> {
    let rows = sqlx::query!(
        "SELECT id, username FROM agents WHERE id = ANY($1::uuid[])",
        ids
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.username)).collect())
}

//! The subscriber's ETA at read time: the pure formula of `case_domain::eta` over the
//! configured stage SLAs and live statistics, which are cached for a few seconds
//! (per database) so a busy status endpoint does not aggregate the log on every read.
//! See `docs/eta.md`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration as StdDuration, Instant},
};

use case_domain::{
    CaseState,
    eta::{LiveStats, StageStats, estimate},
    sla::{SlaConfig, stage_elapsed},
};
use case_store::{CaseRow, EventRow, StoreError};
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

/// How long live statistics are reused.
pub const STATS_TTL: StdDuration = StdDuration::from_secs(5);
/// The window of the time-in-stage medians.
pub fn median_window() -> Duration {
    Duration::days(7)
}
/// The window of the throughput (exits per hour).
pub fn throughput_window() -> Duration {
    Duration::hours(24)
}

type Cache = Mutex<HashMap<String, (Instant, Arc<LiveStats>)>>;

fn cache() -> &'static Cache {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Reads the live statistics from the database (no cache).
pub async fn read_live_stats(pool: &PgPool, now: DateTime<Utc>) -> Result<LiveStats, StoreError> {
    let window_hours = throughput_window().num_hours().max(1) as f64;
    let figures = case_store::stage_stats::state_figures(
        pool,
        now - median_window(),
        now - throughput_window(),
    )
    .await?;
    Ok(LiveStats {
        stages: figures
            .into_iter()
            .map(|f| {
                (
                    f.state,
                    StageStats {
                        median: f
                            .median_secs
                            .map(|s| Duration::milliseconds((s * 1000.0) as i64)),
                        samples: u32::try_from(f.samples).unwrap_or(u32::MAX),
                        depth: u32::try_from(f.depth).unwrap_or(u32::MAX),
                        exits_per_hour: f.recent_exits as f64 / window_hours,
                    },
                )
            })
            .collect(),
    })
}

/// The live statistics, from the cache when younger than [`STATS_TTL`]. On a
/// database error the last known figures (or none) are used and the error logged:
/// the ETA falls back to the SLAs rather than failing the read.
pub async fn live_stats(pool: &PgPool, now: DateTime<Utc>) -> Arc<LiveStats> {
    let key = pool
        .connect_options()
        .get_database()
        .unwrap_or_default()
        .to_owned();
    let cached = cache().lock().ok().and_then(|c| c.get(&key).cloned());
    if let Some((at, stats)) = &cached
        && at.elapsed() < STATS_TTL
    {
        return stats.clone();
    }
    match read_live_stats(pool, now).await {
        Ok(stats) => {
            let stats = Arc::new(stats);
            if let Ok(mut c) = cache().lock() {
                c.insert(key, (Instant::now(), stats.clone()));
            }
            stats
        }
        Err(e) => {
            tracing::warn!(error.message = %e, "live statistics unavailable; the ETA uses the SLAs");
            cached.map(|(_, s)| s).unwrap_or_default()
        }
    }
}

/// The history of a case as (state entered, when) pairs, up to `version`.
pub fn entries(timeline: &[EventRow], version: i32) -> Vec<(CaseState, DateTime<Utc>)> {
    timeline
        .iter()
        .filter(|e| e.version <= version)
        .map(|e| (e.to_state, e.at))
        .collect()
}

/// The ETA of a case in `state` with `timeline`, seen at `now`, under `sla`.
pub fn eta_with(
    state: CaseState,
    version: i32,
    timeline: &[EventRow],
    now: DateTime<Utc>,
    sla: &SlaConfig,
    stats: &LiveStats,
) -> Option<DateTime<Utc>> {
    let used = stage_elapsed(&entries(timeline, version), now);
    estimate(state, used, now, sla, stats)
}

/// The ETA shown in `GET /v1/cases/{id}`: `None` while the case waits on the
/// subscriber or is finished. Recomputed on every read from the latest (cached)
/// statistics, so it follows every transition.
pub async fn case_eta(
    pool: &PgPool,
    sla: &SlaConfig,
    case: &CaseRow,
    timeline: &[EventRow],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    sla.stage_sla(case.state)?;
    let stats = live_stats(pool, now).await;
    eta_with(case.state, case.version, timeline, now, sla, &stats)
}

/// When a case's stage is due under the stage SLAs, from when the stage was entered
/// (`None` for stages without an SLA).
pub fn sla_due_at(
    sla: &SlaConfig,
    state: CaseState,
    entered: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    sla.stage_sla(state).map(|limit| entered + limit)
}

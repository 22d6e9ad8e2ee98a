//! The subscriber's ETA at read time: the pure formula of `case_domain::eta` over the
//! configured stage SLAs and live statistics, which are cached for half a minute
//! (per database) and refreshed once at a time, so a busy status endpoint does not
//! aggregate the log on every read.
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

/// How long live statistics are reused. They are medians over 7 days and exits
/// per hour over 24 hours, which half a minute does not change; their aggregation
/// reads every exit of the window (about 0.1 s of the database per process at a
/// million finished cases), so it runs at most twice a minute per process.
pub const STATS_TTL: StdDuration = StdDuration::from_secs(30);
/// The window of the time-in-stage medians.
pub fn median_window() -> Duration {
    Duration::days(7)
}
/// The window of the throughput (exits per hour).
pub fn throughput_window() -> Duration {
    Duration::hours(24)
}

/// A value read now and then, kept for a while, and refreshed by one reader at a
/// time (the live statistics of one database).
struct Refreshed<T> {
    /// The last value read, and when.
    latest: Mutex<Option<(Instant, Arc<T>)>>,
    /// Held by the one refresh in flight, so that however many reads find the
    /// value expired, it is read once.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl<T> Default for Refreshed<T> {
    fn default() -> Self {
        Self {
            latest: Mutex::new(None),
            refreshing: Arc::default(),
        }
    }
}

impl<T: Default + Send + Sync + 'static> Refreshed<T> {
    fn latest(&self) -> Option<(Instant, Arc<T>)> {
        self.latest.lock().ok().and_then(|l| l.clone())
    }

    /// The value, from the cache when younger than `ttl`. An older one is still
    /// answered at once while one refresh runs in the background, so a read never
    /// waits once a value exists. Only the first reads wait, for the one read in
    /// flight. `read` gives `None` when it failed (it logs why): the last value
    /// stays, or, when there is none yet, `T::default()` is answered.
    async fn get<F, Fut>(self: &Arc<Self>, ttl: StdDuration, read: F) -> Arc<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<T>> + Send + 'static,
    {
        match self.latest() {
            Some((at, value)) if at.elapsed() < ttl => value,
            Some((_, value)) => {
                if let Ok(refreshing) = self.refreshing.clone().try_lock_owned() {
                    let (this, reading) = (self.clone(), read());
                    tokio::spawn(async move {
                        let _refreshing = refreshing;
                        this.keep(reading.await);
                    });
                }
                value
            }
            None => match self.refreshing.try_lock() {
                Ok(_refreshing) => self.keep(read().await).unwrap_or_default(),
                Err(_) => {
                    // Another read is in flight: its outcome is this one's, success or not.
                    let _done = self.refreshing.lock().await;
                    self.latest().map(|(_, value)| value).unwrap_or_default()
                }
            },
        }
    }

    fn keep(&self, read: Option<T>) -> Option<Arc<T>> {
        let value = Arc::new(read?);
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some((Instant::now(), value.clone()));
        }
        Some(value)
    }
}

type Cache = Mutex<HashMap<String, Arc<Refreshed<LiveStats>>>>;

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

/// The live statistics, from the cache when younger than [`STATS_TTL`] (per
/// database).
///
/// Expired figures are still answered at once while one refresh runs in the
/// background, so however many reads find them expired, the log is aggregated once
/// per process: at a million finished cases one aggregation takes about 0.1 s of
/// the database, and every busy reader starting its own made bursts of them. Only
/// the first reads of a process wait, for the one aggregation in flight. When it
/// fails (logged), the last figures stay in use, or none: the ETA then falls back
/// to the SLAs rather than failing the read.
pub async fn live_stats(pool: &PgPool, now: DateTime<Utc>) -> Arc<LiveStats> {
    let key = pool
        .connect_options()
        .get_database()
        .unwrap_or_default()
        .to_owned();
    let slot = cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_default()
        .clone();
    let pool = pool.clone();
    slot.get(STATS_TTL, move || async move {
        read_live_stats(&pool, now)
            .await
            .map_err(|e| {
                tracing::warn!(error.message = %e, "live statistics unavailable; the ETA uses the last figures or the SLAs");
            })
            .ok()
    })
    .await
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::task::JoinSet;

    use super::*;

    /// How long each read takes: far longer than a burst of gets, even on a busy
    /// machine, so that the whole burst sees the read in flight.
    const READ_TAKES: StdDuration = StdDuration::from_millis(300);
    /// A time to live that a test outlasts on purpose.
    const SHORT: StdDuration = StdDuration::from_millis(100);
    /// One that it does not.
    const LONG: StdDuration = StdDuration::from_secs(600);

    /// `readers` concurrent gets of `cache` with time to live `ttl`, each offering a
    /// read that takes [`READ_TAKES`], counts itself in `reads` and gives `outcome`.
    /// Returns what each get answered.
    async fn concurrent_gets(
        cache: &Arc<Refreshed<u32>>,
        ttl: StdDuration,
        readers: usize,
        reads: &Arc<AtomicU32>,
        outcome: Option<u32>,
    ) -> Vec<u32> {
        let mut gets = JoinSet::new();
        for _ in 0..readers {
            let (cache, reads) = (cache.clone(), reads.clone());
            gets.spawn(async move {
                let value = cache
                    .get(ttl, move || async move {
                        tokio::time::sleep(READ_TAKES).await;
                        reads.fetch_add(1, Ordering::SeqCst);
                        outcome
                    })
                    .await;
                *value
            });
        }
        gets.join_all().await
    }

    /// Waits until the background refresh, if any, is over.
    async fn refreshed(cache: &Refreshed<u32>) {
        let _done = cache.refreshing.lock().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_first_reads_wait_for_one_read_and_share_it() {
        let cache = Arc::new(Refreshed::<u32>::default());
        let reads = Arc::new(AtomicU32::new(0));
        let answers = concurrent_gets(&cache, LONG, 32, &reads, Some(7)).await;
        assert_eq!(answers, vec![7; 32]);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Fresh: answered from the cache, nothing read.
        let again = concurrent_gets(&cache, LONG, 8, &reads, Some(8)).await;
        assert_eq!(again, vec![7; 8]);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn expired_figures_are_answered_at_once_while_one_refresh_runs() {
        let cache = Arc::new(Refreshed::<u32>::default());
        let reads = Arc::new(AtomicU32::new(0));
        concurrent_gets(&cache, SHORT, 1, &reads, Some(1)).await;
        tokio::time::sleep(SHORT * 2).await;

        // Every reader gets the old figure at once; one refresh runs in the background.
        let started = Instant::now();
        let answers = concurrent_gets(&cache, SHORT, 32, &reads, Some(2)).await;
        assert!(
            started.elapsed() < READ_TAKES,
            "a reader waited for the refresh"
        );
        assert_eq!(answers, vec![1; 32]);
        refreshed(&cache).await;
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "one first read, one refresh"
        );
        let after = concurrent_gets(&cache, LONG, 4, &reads, Some(3)).await;
        assert_eq!(after, vec![2; 4]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_read_keeps_the_last_figures_or_answers_none() {
        // Nothing yet and the read fails: every waiting reader gets the default,
        // from the one read, and nothing is kept.
        let empty = Arc::new(Refreshed::<u32>::default());
        let reads = Arc::new(AtomicU32::new(0));
        let answers = concurrent_gets(&empty, SHORT, 16, &reads, None).await;
        assert_eq!(answers, vec![0; 16]);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(empty.latest().is_none());

        // Old figures and the refresh fails: they stay, and the next read tries again.
        let cache = Arc::new(Refreshed::<u32>::default());
        let reads = Arc::new(AtomicU32::new(0));
        concurrent_gets(&cache, SHORT, 1, &reads, Some(5)).await;
        tokio::time::sleep(SHORT * 2).await;
        assert_eq!(
            concurrent_gets(&cache, SHORT, 8, &reads, None).await,
            vec![5; 8]
        );
        refreshed(&cache).await;
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert_eq!(
            concurrent_gets(&cache, SHORT, 1, &reads, Some(6)).await,
            vec![5]
        );
        refreshed(&cache).await;
        assert_eq!(
            concurrent_gets(&cache, LONG, 1, &reads, Some(9)).await,
            vec![6]
        );
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }
}

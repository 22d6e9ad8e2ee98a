//! The service loop: follow the event log, fire due timers and escalate overdue
//! complaints, woken by every case change (`NOTIFY case_changed`), by every new
//! complaint (`NOTIFY complaint_opened`), by the earliest timer's or complaint's due
//! time, and by the fallback poll; while events stream in, passes start at least
//! `REACTIVATION_FOLLOW_GATHER_MS` apart. The wall clock is read here, once per pass, and
//! handed down.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use service_runtime::{Shutdown, worker::run_loop};
use sqlx::PgPool;

use crate::{SERVICE, TimersConfig, fire, follow};

/// How often open cases without timers are looked for (and at start).
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// A case must have been in its state this long before the sweep arms it.
pub const SWEEP_SETTLE: Duration = Duration::from_secs(60);
/// Batches per kind in one scheduled retention pass (the rest waits for the next
/// pass, so a large backlog never holds up the timers for long).
pub const RETENTION_BATCHES_PER_PASS: u32 = 10;
/// Cases per retention batch (one transaction).
pub const RETENTION_BATCH: i64 = 200;
/// How soon the follower looks again when an older writer was still running; each
/// further look at a log still held back waits twice as long, up to [`RECHECK_MAX`].
pub const RECHECK: Duration = Duration::from_millis(100);
/// The longest wait between two looks at a log held back by a long transaction.
pub const RECHECK_MAX: Duration = Duration::from_millis(1600);

/// The wait before look `n + 1` at a log still held back after `n` looks.
fn recheck_after(n: u32) -> Duration {
    RECHECK.saturating_mul(1 << n.min(4)).min(RECHECK_MAX)
}

/// How long the loop trusts what it knows of the earliest pending timer before it
/// asks the database again (timers written by another replica, or by a sweep there).
pub const NEXT_FIRE_TRUSTED_FOR: Duration = Duration::from_secs(5);

/// What the loop knows of the earliest pending timer, so that following a case
/// change costs one transaction (the follower's) instead of a fire attempt that
/// finds nothing and a `min(due_at)` query besides.
#[derive(Debug, Default, Clone, Copy)]
struct NextFire {
    /// The earliest pending due time (`None`: no timer pending) as read or
    /// planned at that instant; `None` when unknown.
    known: Option<(Option<DateTime<Utc>>, Instant)>,
}

impl NextFire {
    /// What is known and still trusted.
    fn trusted(&self) -> Option<Option<DateTime<Utc>>> {
        self.known
            .filter(|(_, at)| at.elapsed() < NEXT_FIRE_TRUSTED_FOR)
            .map(|(due, _)| due)
    }

    /// Whether a fire attempt may find a timer due at `now`.
    fn worth_firing(&self, now: DateTime<Utc>) -> bool {
        match self.trusted() {
            None => true,
            Some(due) => due.is_some_and(|d| d <= now),
        }
    }

    /// The follower planned timers due at `due` at the earliest.
    fn planned(&mut self, due: Option<DateTime<Utc>>) {
        if let (Some((known, _)), Some(due)) = (&mut self.known, due) {
            *known = Some(known.map_or(due, |k| k.min(due)));
        }
    }

    fn read(&mut self, due: Option<DateTime<Utc>>) {
        self.known = Some((due, Instant::now()));
    }

    fn forget(&mut self) {
        self.known = None;
    }
}

/// When the follower's next pass may start: passes that find events start at least
/// the gather apart, so that a stream of transitions is handled a batch per pass (one
/// transaction, one cursor read and move) rather than one pass per event. The first
/// pass after a quiet one starts at once, and so does one after a pass that left work
/// behind it: a full batch of events (a backlog is read at full speed) or a fired
/// timer (a backlog of due timers fires one per pass).
#[derive(Debug, Default, Clone, Copy)]
struct PassSpacing {
    /// When the last pass that handled events started.
    busy_since: Option<Instant>,
    /// The last pass left more to do at once.
    more: bool,
}

impl PassSpacing {
    /// How long to wait, at `now`, before the next pass.
    fn wait(&self, gather: Duration, now: Instant) -> Duration {
        match self.busy_since {
            Some(started) if !self.more => gather.saturating_sub(now.duration_since(started)),
            _ => Duration::ZERO,
        }
    }

    /// A pass that started at `started` handled `events` and left `more` to do at
    /// once (a full batch, a fired timer) or not.
    fn passed(&mut self, started: Instant, events: usize, more: bool) {
        self.busy_since = (events > 0).then_some(started);
        self.more = more;
    }
}

/// Runs the follower and the timers until shutdown.
pub async fn run(
    pool: PgPool,
    config: Arc<TimersConfig>,
    poll: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let recheck = Arc::new(AtomicBool::new(false));
    let last_sweep: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let next_fire: Arc<Mutex<NextFire>> = Arc::new(Mutex::new(NextFire::default()));
    let spacing: Arc<Mutex<PassSpacing>> = Arc::new(Mutex::new(PassSpacing::default()));
    let due_pool = pool.clone();
    let due_recheck = recheck.clone();
    // Rechecks in a row that found the log held back (reset by a pass that read).
    let rechecks = Arc::new(AtomicU32::new(0));
    let due_rechecks = rechecks.clone();
    let due_next_fire = next_fire.clone();
    tracing::info!(service = SERVICE, "timers started");
    let complaints = complaint_clock(pool.clone(), poll, shutdown.clone());
    // The retention pass runs beside the timers (its batches never delay a timer).
    let retention = config.retention_every.map(|every| {
        let (pool, config, shutdown) = (pool.clone(), config.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                // A failed pass is counted in /metrics and logged; the next pass
                // resumes from the durable cursors.
                if let Err(e) = retention_pass(&pool, &config, Utc::now()).await {
                    tracing::warn!(error.message = %e, "retention pass failed");
                }
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        })
    });
    let timers = run_loop(
        &pool,
        SERVICE,
        vec![case_store::CASE_CHANGED_CHANNEL.to_owned()],
        poll,
        shutdown,
        || {
            let (pool, config, recheck, last_sweep, next_fire, rechecks, spacing) = (
                pool.clone(),
                config.clone(),
                recheck.clone(),
                last_sweep.clone(),
                next_fire.clone(),
                rechecks.clone(),
                spacing.clone(),
            );
            async move {
                let started = {
                    let wait = lock(&spacing).wait(config.follow_gather, Instant::now());
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    Instant::now()
                };
                let now = Utc::now();
                let sweep_due = last_sweep
                    .lock()
                    .map(|t| t.is_none_or(|t| t.elapsed() >= SWEEP_EVERY))
                    .unwrap_or(true);
                if sweep_due {
                    let settle = chrono::Duration::from_std(SWEEP_SETTLE)?;
                    let armed = fire::arm_unarmed(&pool, &config, now, settle).await?;
                    if armed > 0 {
                        tracing::info!(timers = armed, "armed open cases that had no timers");
                        lock(&next_fire).forget();
                    }
                    if let Ok(mut t) = last_sweep.lock() {
                        *t = Some(Instant::now());
                    }
                }
                let followed = follow::follow(&pool, &config, now).await?;
                recheck.store(followed.pending && followed.events == 0, Ordering::Relaxed);
                if followed.events > 0 || !followed.pending {
                    rechecks.store(0, Ordering::Relaxed);
                }
                let worth_firing = {
                    let mut next = lock(&next_fire);
                    next.planned(followed.earliest_due);
                    next.worth_firing(now)
                };
                let fired = if worth_firing {
                    match fire::fire_one(&pool, &config, now).await? {
                        // Fired one (more may be due): ask again when idle.
                        fire::Fire::Fired => {
                            lock(&next_fire).forget();
                            true
                        }
                        // None due: the attempt read when the next one is, so the
                        // passes that follow (rechecks included) do not try again
                        // before then.
                        fire::Fire::NoneDue(next) => {
                            lock(&next_fire).read(next);
                            false
                        }
                    }
                } else {
                    false
                };
                // Go round again only while there is more: a full batch of events
                // (more after it) or a timer fired (another may be due). A short
                // batch drained the log; the next commit notifies again.
                let more = (followed.events > 0 && followed.pending) || fired;
                lock(&spacing).passed(started, followed.events, more);
                Ok(more)
            }
        },
        move || {
            let (pool, recheck, next_fire, rechecks) = (
                due_pool.clone(),
                due_recheck.clone(),
                due_next_fire.clone(),
                due_rechecks.clone(),
            );
            async move {
                if recheck.load(Ordering::Relaxed) {
                    // A writer that started earlier is still running (anywhere on the
                    // server: the oldest running transaction holds the log back).
                    // Look again soon, backing off while it runs on.
                    let n = rechecks.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(
                        Utc::now() + chrono::Duration::from_std(recheck_after(n))?,
                    ));
                }
                if let Some(due) = lock(&next_fire).trusted() {
                    return Ok(due);
                }
                let due = case_store::timers::next_timer_due(&pool).await?;
                lock(&next_fire).read(due);
                Ok(due)
            }
        },
    );
    let result = tokio::try_join!(timers, complaints).map(|_| ());
    if let Some(task) = retention {
        task.abort();
    }
    result
}

/// The complaints' answer clock, a loop of its own: woken when a complaint is
/// logged (`NOTIFY complaint_opened`) and at the next complaint's due time, it
/// escalates the overdue ones. Kept apart from the case timers so that a case
/// change does not cost a look at the complaints.
async fn complaint_clock(pool: PgPool, poll: Duration, shutdown: Shutdown) -> anyhow::Result<()> {
    let due_pool = pool.clone();
    run_loop(
        &pool,
        SERVICE,
        vec![case_store::complaints::COMPLAINT_CHANNEL.to_owned()],
        poll,
        shutdown,
        || {
            let pool = pool.clone();
            async move {
                Ok(case_workflows::complaints::escalate_overdue(
                    &pool,
                    &case_domain::Actor::system(SERVICE),
                    Utc::now(),
                )
                .await?)
            }
        },
        move || {
            let pool = due_pool.clone();
            async move { Ok(case_workflows::complaints::next_due(&pool).await?) }
        },
    )
    .await
}

/// One bounded retention pass (`case_workflows::retention::run`).
async fn retention_pass(
    pool: &PgPool,
    config: &TimersConfig,
    now: chrono::DateTime<Utc>,
) -> Result<(), case_workflows::WorkflowError> {
    let options = case_workflows::retention::RunOptions {
        dry_run: false,
        batch: RETENTION_BATCH,
        max_batches: RETENTION_BATCHES_PER_PASS,
    };
    case_workflows::retention::run(
        pool,
        &config.retention,
        now,
        options,
        &case_domain::Actor::system(SERVICE),
        |_| {},
    )
    .await?;
    Ok(())
}

fn lock<T>(next: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    next.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn passes_that_find_events_start_the_gather_apart() {
        let gather = Duration::from_millis(50);
        let t0 = Instant::now();
        let mut spacing = PassSpacing::default();
        // The first pass, and any after a quiet one, starts at once.
        assert_eq!(spacing.wait(gather, t0), Duration::ZERO);
        spacing.passed(t0, 3, false);
        // A pass that handled events: the next starts 50 ms after it started.
        assert_eq!(
            spacing.wait(gather, t0 + Duration::from_millis(10)),
            Duration::from_millis(40)
        );
        assert_eq!(
            spacing.wait(gather, t0 + Duration::from_millis(80)),
            Duration::ZERO
        );
        // Gather 0: never waits.
        assert_eq!(spacing.wait(Duration::ZERO, t0), Duration::ZERO);
        // A pass that found nothing ends the stream.
        spacing.passed(t0, 0, false);
        assert_eq!(spacing.wait(gather, t0), Duration::ZERO);
        // A pass that left more (a full batch, a fired timer) is followed at once.
        spacing.passed(t0, 100, true);
        assert_eq!(spacing.wait(gather, t0), Duration::ZERO);
    }

    #[test]
    fn rechecks_back_off_from_100_ms_to_1600_ms() {
        let waits: Vec<u128> = (0..7).map(|n| recheck_after(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 1600, 1600]);
        assert_eq!(recheck_after(u32::MAX), RECHECK_MAX);
    }

    #[test]
    fn an_unknown_next_fire_is_worth_a_try_and_a_known_one_only_when_due() {
        let mut next = NextFire::default();
        assert!(next.worth_firing(at(0)));
        next.read(None);
        assert!(!next.worth_firing(at(0)), "no timer pending");
        next.planned(Some(at(60)));
        assert_eq!(next.trusted(), Some(Some(at(60))));
        assert!(!next.worth_firing(at(59)));
        assert!(next.worth_firing(at(60)));
        next.planned(Some(at(30)));
        assert_eq!(next.trusted(), Some(Some(at(30))), "the earlier one wins");
        next.planned(Some(at(90)));
        assert_eq!(next.trusted(), Some(Some(at(30))));
        next.forget();
        assert_eq!(next.trusted(), None);
        next.planned(Some(at(10)));
        assert_eq!(next.trusted(), None, "a plan alone does not make it known");
    }

    #[test]
    fn what_is_known_is_trusted_only_for_a_while() {
        let mut next = NextFire {
            known: Some((Some(at(0)), Instant::now() - NEXT_FIRE_TRUSTED_FOR)),
        };
        assert_eq!(next.trusted(), None);
        assert!(next.worth_firing(at(-100)));
        next.read(Some(at(0)));
        assert_eq!(next.trusted(), Some(Some(at(0))));
    }
}

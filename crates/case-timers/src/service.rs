//! The service loop: follow the event log and fire due timers, woken by every case
//! change (`NOTIFY case_changed`), by the earliest timer's due time, and by the
//! fallback poll. The wall clock is read here, once per pass, and handed down.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use service_runtime::{Shutdown, worker::run_loop};
use sqlx::PgPool;

use crate::{SERVICE, TimersConfig, fire, follow};

/// How often open cases without timers are looked for (and at start).
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// A case must have been in its state this long before the sweep arms it.
pub const SWEEP_SETTLE: Duration = Duration::from_secs(60);
/// How soon the follower looks again when an older writer was still running.
pub const RECHECK: Duration = Duration::from_millis(100);

/// Runs the follower and the timers until shutdown.
pub async fn run(
    pool: PgPool,
    config: Arc<TimersConfig>,
    poll: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let recheck = Arc::new(AtomicBool::new(false));
    let last_sweep: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let due_pool = pool.clone();
    let due_recheck = recheck.clone();
    tracing::info!(service = SERVICE, "timers started");
    run_loop(
        &pool,
        SERVICE,
        vec![case_store::CASE_CHANGED_CHANNEL.to_owned()],
        poll,
        shutdown,
        || {
            let (pool, config, recheck, last_sweep) = (
                pool.clone(),
                config.clone(),
                recheck.clone(),
                last_sweep.clone(),
            );
            async move {
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
                    }
                    if let Ok(mut t) = last_sweep.lock() {
                        *t = Some(Instant::now());
                    }
                }
                let followed = follow::follow(&pool, &config, now).await?;
                recheck.store(followed.pending && followed.events == 0, Ordering::Relaxed);
                let fired = fire::fire_one(&pool, &config, now).await?;
                Ok(followed.events > 0 || fired)
            }
        },
        move || {
            let (pool, recheck) = (due_pool.clone(), due_recheck.clone());
            async move {
                if recheck.load(Ordering::Relaxed) {
                    return Ok(Some(Utc::now() + chrono::Duration::from_std(RECHECK)?));
                }
                Ok(case_store::timers::next_timer_due(&pool).await?)
            }
        },
    )
    .await
}

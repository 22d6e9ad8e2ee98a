//! The webhooks service (`reactivation serve webhooks`).
//!
//! Owns: processing the carrier's webhooks that the gateway verified and stored
//! (`subscriber.suspended` → a suspension notice; `subscriber.signals` → a re-score of
//! the number's case under security review; `provisioning.completed` → the order
//! finished and the case moved, through the same function the provisioning worker
//! uses), each claimed once and applied in one transaction with its "processed"
//! mark; fanning case events out into one delivery per subscribed endpoint; and
//! delivering them signed per Standard Webhooks (SSRF-checked at every attempt, no
//! redirects, retried on the standard schedule with jitter, 410 disables the
//! endpoint, every attempt logged).
//!
//! Must not: verify signatures of inbound webhooks (the gateway does, before anything
//! is stored), put personal data in outbound payloads or logs, or move a case other
//! than through the use cases of `case_workflows` (an order is finished by
//! `case_workflows::orders`, the same function the provisioning worker uses).

pub mod inbound;
pub mod outbound;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use service_runtime::{
    Shutdown,
    worker::{Wakeups, WorkerSettings, run_loop, run_loop_woken_by, worker_id},
};
use sqlx::PgPool;

pub use inbound::InboundSettings;
pub use outbound::DeliverySettings;

/// The service's name (worker ids, metrics, logs).
pub const SERVICE: &str = "webhooks";

/// Time limit of one outbound delivery attempt (Standard Webhooks: 15–30 s).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the service's three loops until shutdown: inbound processing, fan-out of
/// case events into deliveries, and outbound delivery (kept apart so that a slow receiver never
/// delays the carrier's webhooks).
pub async fn run(
    pool: PgPool,
    inbound: InboundSettings,
    delivery: DeliverySettings,
    settings: WorkerSettings,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let delivery = Arc::new(delivery);
    let lease = settings.lease;
    // A delivery's lease must outlast its attempt.
    let delivery_lease = lease.max(delivery.timeout * 2 + Duration::from_secs(5));
    let inbound_settings = Arc::new(inbound);
    // One LISTEN connection for the inbound and fan-out loops, routed through the
    // case changes: a transition's one notification names the fan-out's channel
    // while any endpoint is registered (the trigger queued its event for it).
    let wakeups = Wakeups::routed_through(case_store::CASE_CHANGED_CHANNEL);
    let inbound = {
        let (pool, worker) = (pool.clone(), worker_id("webhooks-in"));
        let due = pool.clone();
        let loop_pool = pool.clone();
        let shutdown = shutdown.clone();
        let wakeups = wakeups.clone();
        // The next due time the last empty claim read (taken by the idle loop, so it
        // does not ask again).
        let known_due: Arc<Mutex<Option<Option<chrono::DateTime<chrono::Utc>>>>> =
            Arc::new(Mutex::new(None));
        let due_known = known_due.clone();
        async move {
            tracing::info!(worker, "carrier webhook processor started");
            run_loop_woken_by(
                &wakeups,
                &loop_pool,
                SERVICE,
                vec![case_store::webhooks::CARRIER_WEBHOOK_CHANNEL.to_owned()],
                settings.poll,
                shutdown,
                || {
                    let (pool, worker, config, known_due) = (
                        pool.clone(),
                        worker.clone(),
                        inbound_settings.clone(),
                        known_due.clone(),
                    );
                    async move {
                        let tick = inbound::process_next(&pool, &config, &worker, lease).await?;
                        let mut known = known_due.lock().unwrap_or_else(|e| e.into_inner());
                        Ok(match tick {
                            inbound::Tick::Processed => {
                                *known = None;
                                true
                            }
                            inbound::Tick::Idle(next) => {
                                *known = Some(next);
                                false
                            }
                        })
                    }
                },
                move || {
                    let (pool, due_known) = (due.clone(), due_known.clone());
                    async move {
                        let known = due_known.lock().unwrap_or_else(|e| e.into_inner()).take();
                        match known {
                            Some(next) => Ok(next),
                            None => {
                                Ok(case_store::webhooks::next_carrier_webhook_due(&pool).await?)
                            }
                        }
                    }
                },
            )
            .await
        }
    };
    let fan_out = {
        let pool = pool.clone();
        let due = pool.clone();
        let loop_pool = pool.clone();
        let shutdown = shutdown.clone();
        async move {
            tracing::info!("webhook fan-out started");
            run_loop_woken_by(
                &wakeups,
                &loop_pool,
                SERVICE,
                vec![case_store::webhooks::EVENT_FEED_CHANNEL.to_owned()],
                settings.poll,
                shutdown,
                || {
                    let pool = pool.clone();
                    async move { outbound::fan_out_once(&pool).await }
                },
                move || {
                    let pool = due.clone();
                    async move {
                        // Feed rows another fan-out held (or a failed one left) are retried soon.
                        Ok(case_store::webhooks::feed_pending(&pool)
                            .await?
                            .then(|| chrono::Utc::now() + chrono::Duration::seconds(1)))
                    }
                },
            )
            .await
        }
    };
    let outbound = {
        let (pool, worker) = (pool.clone(), worker_id("webhooks-out"));
        let due = pool.clone();
        let loop_pool = pool.clone();
        let delivery = delivery.clone();
        async move {
            tracing::info!(worker, "webhook deliverer started");
            run_loop(
                &loop_pool,
                SERVICE,
                vec![case_store::webhooks::DELIVERY_CHANNEL.to_owned()],
                settings.poll,
                shutdown,
                || {
                    let (pool, worker, delivery) = (pool.clone(), worker.clone(), delivery.clone());
                    async move {
                        outbound::deliver_one(&pool, &delivery, &worker, delivery_lease).await
                    }
                },
                move || {
                    let pool = due.clone();
                    async move { Ok(case_store::webhooks::next_delivery_due(&pool).await?) }
                },
            )
            .await
        }
    };
    tokio::try_join!(inbound, fan_out, outbound)?;
    Ok(())
}

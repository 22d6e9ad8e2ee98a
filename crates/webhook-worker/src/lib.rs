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

use std::{sync::Arc, time::Duration};

use service_runtime::{
    Shutdown,
    worker::{WorkerSettings, run_loop, worker_id},
};
use sqlx::PgPool;

pub use inbound::InboundSettings;
pub use outbound::DeliverySettings;

/// The service's name (worker ids, metrics, logs).
pub const SERVICE: &str = "webhooks";

/// Time limit of one outbound delivery attempt (Standard Webhooks: 15–30 s).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the service's two loops until shutdown: inbound processing with fan-out of
/// case events, and outbound delivery (kept apart so that a slow receiver never
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
    let inbound = {
        let (pool, worker) = (pool.clone(), worker_id("webhooks-in"));
        let due = pool.clone();
        let loop_pool = pool.clone();
        let shutdown = shutdown.clone();
        async move {
            tracing::info!(worker, "carrier webhook processor started");
            run_loop(
                &loop_pool,
                SERVICE,
                vec![
                    case_store::webhooks::CARRIER_WEBHOOK_CHANNEL.to_owned(),
                    case_store::webhooks::EVENT_FEED_CHANNEL.to_owned(),
                ],
                settings.poll,
                shutdown,
                || {
                    let (pool, worker, config) =
                        (pool.clone(), worker.clone(), inbound_settings.clone());
                    async move {
                        let processed =
                            inbound::process_one(&pool, &config, &worker, lease).await?;
                        let fanned = outbound::fan_out_once(&pool).await?;
                        Ok(processed || fanned)
                    }
                },
                move || {
                    let pool = due.clone();
                    async move {
                        let next = case_store::webhooks::next_carrier_webhook_due(&pool).await?;
                        // Feed rows another fan-out held (or a failed one left) are retried soon.
                        let feed = case_store::webhooks::feed_pending(&pool)
                            .await?
                            .then(|| chrono::Utc::now() + chrono::Duration::seconds(1));
                        Ok(match (next, feed) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        })
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
    tokio::try_join!(inbound, outbound)?;
    Ok(())
}

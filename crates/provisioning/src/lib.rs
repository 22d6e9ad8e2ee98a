//! The provisioning service: the technical department's automatic stage.
//!
//! Owns: delivering `provisioning.order` outbox messages to the carrier as
//! TMF641-style service orders (order id = outbox id = idempotency key), following
//! each order to completion, retrying failures with exponential back-off and jitter,
//! and moving the case: `restored` / `partly_restored` on completion, and
//! `provisioning_failed` when the retries are used up or the carrier fails the order
//! — each in one transaction with the outbox row's outcome. A crash at any point
//! leaves the outbox row undelivered, and the retry reuses the same idempotency key,
//! so no order is lost and none is applied twice.
//!
//! Must not: send an order without its idempotency key, or write the order or move
//! its case other than through the use cases of `case_workflows::orders`.

use std::{sync::Arc, time::Duration};

use carrier_adapter::{Carrier, CarrierError, OrderState, ServiceOrder, ServiceOrderRequest};
use case_domain::CaseEvent;
use case_queues::OutboxTopics;
use case_store::OutboxClaim;
use case_workflows::orders::{self, PendingOrder};
use rand::Rng;
use service_runtime::worker::{Delivery, OutboxHandler};
use sqlx::PgPool;

// The order use cases moved to `case_workflows::orders`; kept here for callers of the old paths.
pub use case_workflows::orders::{OrderOutcome, OutboxSettlement, completion, finish_order};

/// The actor id this service writes in case events.
pub const SERVICE: &str = orders::ACTOR;

/// Retry policy of order delivery.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Failed attempts before the case goes to provisioning_failed.
    pub max_failures: i32,
    /// First back-off; doubled per failure, capped, with ±50 % jitter.
    pub base: Duration,
    /// Largest back-off.
    pub cap: Duration,
    /// How long one delivery follows an acknowledged order before letting go.
    pub follow_for: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_failures: 12,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            follow_for: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The back-off after the `failures`-th failure.
    pub fn backoff(&self, failures: i32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << failures.clamp(0, 20) as u32)
            .min(self.cap);
        let jitter = rand::rng().random_range(0.5..1.5);
        exp.mul_f64(jitter)
    }
}

/// The outbox handler for provisioning orders.
#[derive(Debug, Clone)]
pub struct ProvisioningHandler {
    carrier: Arc<dyn Carrier>,
    policy: RetryPolicy,
    source: OutboxTopics,
}

impl ProvisioningHandler {
    /// A handler sending orders to `carrier`.
    pub fn new(carrier: Arc<dyn Carrier>, policy: RetryPolicy) -> Self {
        Self {
            carrier,
            policy,
            source: OutboxTopics::new(vec![orders::TOPIC.to_owned()]),
        }
    }

    async fn follow(
        &self,
        order_id: uuid::Uuid,
        mut order: ServiceOrder,
    ) -> Result<ServiceOrder, CarrierError> {
        let started = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(50);
        while !order.state.is_final() && started.elapsed() < self.policy.follow_for {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
            order = self.carrier.get_order(order_id).await?;
        }
        Ok(order)
    }

    /// Records the order's final state and moves the case, with the outbox outcome, in one transaction.
    async fn finish(
        &self,
        pool: &PgPool,
        message: &OutboxClaim,
        case_id: uuid::Uuid,
        order: Option<&ServiceOrder>,
        event: CaseEvent,
        reason: &str,
    ) -> anyhow::Result<Delivery> {
        let state = order.map_or("failed", |o| o.state.as_str());
        orders::finish_claimed_order(
            pool,
            message,
            &OrderOutcome {
                order_id: message.id,
                case_id,
                state,
                carrier_ref: order.map(|o| o.carrier_ref.as_str()),
                event,
                reason,
            },
        )
        .await?;
        tracing::info!(%case_id, order_id = %message.id, order_state = state, "provisioning order finished");
        Ok(Delivery::Recorded)
    }

    async fn failed_attempt(
        &self,
        pool: &PgPool,
        message: &OutboxClaim,
        case_id: uuid::Uuid,
        why: String,
    ) -> anyhow::Result<Delivery> {
        let failures = orders::count_failure(pool, message.id).await?;
        if failures >= self.policy.max_failures {
            return self
                .finish(
                    pool,
                    message,
                    case_id,
                    None,
                    CaseEvent::ProvisioningFailed,
                    "the carrier did not complete the order after every retry",
                )
                .await;
        }
        Ok(Delivery::RetryAfter(self.policy.backoff(failures - 1), why))
    }
}

impl OutboxHandler for ProvisioningHandler {
    type Source = OutboxTopics;

    fn service(&self) -> &'static str {
        SERVICE
    }

    fn source(&self) -> &OutboxTopics {
        &self.source
    }

    async fn deliver(&self, pool: &PgPool, message: &OutboxClaim) -> anyhow::Result<Delivery> {
        let Some(PendingOrder {
            order_id,
            case_id,
            msisdn,
            restoration,
        }) = orders::pending_order(pool, message.id).await?
        else {
            return Ok(Delivery::GiveUp("no order row for this message".into()));
        };
        let request = ServiceOrderRequest {
            order_id,
            msisdn,
            restoration,
        };
        let order = match self.carrier.submit_order(&request).await {
            Ok(order) => self.follow(message.id, order).await,
            Err(e) => Err(e),
        };
        match order {
            Ok(order) if order.state == OrderState::Completed => {
                let (event, reason) = completion(order.restoration);
                self.finish(pool, message, case_id, Some(&order), event, reason)
                    .await
            }
            Ok(order) if order.state == OrderState::Failed => {
                self.finish(
                    pool,
                    message,
                    case_id,
                    Some(&order),
                    CaseEvent::ProvisioningFailed,
                    "the carrier failed the order",
                )
                .await
            }
            Ok(order) => {
                orders::record_progress(
                    pool,
                    message.id,
                    order.state.as_str(),
                    Some(&order.carrier_ref),
                )
                .await?;
                Ok(Delivery::RetryAfter(
                    Duration::from_secs(2),
                    format!("order {}", order.state.as_str()),
                ))
            }
            Err(e) if e.is_retryable() => {
                self.failed_attempt(pool, message, case_id, e.to_string())
                    .await
            }
            Err(e) => {
                // A refusal will not change on retry; still counted, so the limit applies.
                self.failed_attempt(pool, message, case_id, e.to_string())
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy::default();
        for _ in 0..100 {
            let first = p.backoff(0);
            assert!(
                first >= Duration::from_millis(250) && first <= Duration::from_millis(750),
                "{first:?}"
            );
            let fourth = p.backoff(3);
            assert!(
                fourth >= Duration::from_secs(2) && fourth <= Duration::from_secs(6),
                "{fourth:?}"
            );
            assert!(p.backoff(40) <= Duration::from_secs(90));
        }
    }
}

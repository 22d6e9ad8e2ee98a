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
//! Order lifecycle (see `docs/architecture.md`, "Provisioning orders"):
//! - **Current order.** Only a case's current order (its newest, not withdrawn) moves
//!   the case. A completion of any other order — found by this worker's follow-up poll
//!   or reported by the carrier's `provisioning.completed` webhook — is recorded on
//!   the order row and in the audit log (`order.stale_outcome`) and moves nothing. A
//!   message whose order was superseded before it was sent is never sent.
//! - **Cancel before retry.** `retry_provisioning` writes a new order (new key) that
//!   names the order it replaces. Before sending it, this worker cancels the previous
//!   order at the carrier (TMF641 `cancelServiceOrder`, same key as that order; the
//!   carrier also records a never-received order as cancelled, so a late copy of it
//!   does nothing). Only once the carrier answers `cancelled` (or `failed`) is the new
//!   order sent. If the previous order had completed after all (too late to cancel),
//!   the new order is withdrawn, never sent, and the case is finished by the previous
//!   order: the carrier acts once either way.
//! - **Fencing.** Every write on orders (state, failure count, outcome) carries this
//!   worker's outbox claim (owner + attempt) and is refused once the lease was lost
//!   and the message claimed again; the stale worker then writes nothing.
//!
//! Must not: send an order without its idempotency key, send a retry's order before
//! the order it replaces is settled at the carrier (cancelled or failed), send an order
//! that is no longer its case's current one, or write the order or move its case
//! other than through the (fenced) use cases of `case_workflows::orders`.

use std::{sync::Arc, time::Duration};

use carrier_adapter::{Carrier, CarrierError, OrderState, ServiceOrder, ServiceOrderRequest};
use case_domain::CaseEvent;
use case_queues::OutboxTopics;
use case_store::OutboxClaim;
use case_workflows::orders::{self, PendingOrder, SupersededOrder};
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
        let failures = orders::count_failure(pool, message, message.id).await?;
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

    /// Settles the order a retry replaces before the retry's order is sent: cancels it
    /// at the carrier. `Ok(None)`: it is cancelled (or failed), send the new order;
    /// `Ok(Some(delivery))`: what this delivery comes to instead.
    async fn settle_superseded(
        &self,
        pool: &PgPool,
        message: &OutboxClaim,
        pending: &PendingOrder,
        previous: &SupersededOrder,
    ) -> anyhow::Result<Option<Delivery>> {
        if previous.state == "cancelled" {
            return Ok(None);
        }
        let request = ServiceOrderRequest {
            order_id: previous.order_id,
            msisdn: pending.msisdn.clone(),
            restoration: previous.restoration,
        };
        let answer = match self.carrier.cancel_order(&request).await {
            Ok(answer) => answer,
            Err(e) => {
                let why = format!("cancelling the superseded order: {e}");
                return self
                    .failed_attempt(pool, message, pending.case_id, why)
                    .await
                    .map(Some);
            }
        };
        match answer.state {
            OrderState::Cancelled | OrderState::Failed => {
                orders::record_cancellation(
                    pool,
                    message,
                    previous.order_id,
                    answer.state.as_str(),
                    Some(&answer.carrier_ref),
                )
                .await?;
                Ok(None)
            }
            OrderState::Completed => {
                // Too late to cancel: that order restored the number. Sending ours would
                // make the carrier act twice; the case is finished by that order instead.
                let (event, reason) = completion(answer.restoration);
                orders::adopt_completed_previous(
                    pool,
                    message,
                    pending.order_id,
                    &OrderOutcome {
                        order_id: previous.order_id,
                        case_id: pending.case_id,
                        state: "completed",
                        carrier_ref: Some(&answer.carrier_ref),
                        event,
                        reason,
                    },
                )
                .await?;
                Ok(Some(Delivery::Recorded))
            }
            OrderState::Acknowledged | OrderState::InProgress => {
                // The carrier took the cancellation but has not confirmed it: ask again
                // later; nothing new is sent until it does.
                Ok(Some(Delivery::RetryAfter(
                    Duration::from_secs(2),
                    format!(
                        "cancellation of the superseded order pending ({})",
                        answer.state.as_str()
                    ),
                )))
            }
        }
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
        let Some(pending) = orders::pending_order(pool, message.id).await? else {
            return Ok(Delivery::GiveUp("no order row for this message".into()));
        };
        if !pending.current {
            // A retry superseded this order before it was sent: sending it now would
            // make the carrier act twice.
            orders::skip_superseded(pool, message).await?;
            return Ok(Delivery::Recorded);
        }
        let case_id = pending.case_id;
        if let Some(previous) = &pending.supersedes
            && let Some(delivery) = self
                .settle_superseded(pool, message, &pending, previous)
                .await?
        {
            return Ok(delivery);
        }
        let request = ServiceOrderRequest {
            order_id: pending.order_id,
            msisdn: pending.msisdn,
            restoration: pending.restoration,
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
            Ok(order) if order.state == OrderState::Cancelled => {
                self.finish(
                    pool,
                    message,
                    case_id,
                    Some(&order),
                    CaseEvent::ProvisioningFailed,
                    "the carrier cancelled the order",
                )
                .await
            }
            Ok(order) => {
                orders::record_progress(
                    pool,
                    message,
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
            // A refusal will not change on retry; still counted, so the limit applies.
            Err(e) => {
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

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
//! Must not: send an order without its idempotency key, or move a case any other way
//! than through `case_store`'s transition.

use std::{sync::Arc, time::Duration};

use carrier_adapter::{
    Carrier, CarrierError, OrderState, Restoration, ServiceOrder, ServiceOrderRequest,
};
use case_domain::{Actor, CaseEvent, CaseState, Msisdn};
use case_store::{OutboxClaim, TransitionRequest, risk as store};
use rand::Rng;
use service_runtime::worker::{Delivery, OutboxHandler};
use sqlx::PgPool;

/// The actor id this service writes in case events.
pub const SERVICE: &str = "provisioning";

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

/// The case event and customer-safe reason of a completed order.
pub fn completion(restoration: Restoration) -> (CaseEvent, &'static str) {
    match restoration {
        Restoration::Full => (CaseEvent::Restored, "the carrier restored full service"),
        Restoration::InboundOnly => (
            CaseEvent::PartlyRestored,
            "the carrier restored inbound service",
        ),
    }
}

/// How an order's outbox row is settled together with its outcome.
#[derive(Debug, Clone, Copy)]
pub enum OutboxSettlement<'a> {
    /// This service delivered the order and holds the row's lease: the row is marked
    /// delivered (or failed, for a failed order), fenced by the claim's attempts.
    Claimed(&'a OutboxClaim),
    /// The carrier confirmed the order on its own (a `provisioning.completed`
    /// webhook): the row is marked delivered if it is still pending, unfenced, so a
    /// deliverer that holds it can still record its identical outcome.
    Confirmed,
}

/// The final outcome of one order.
#[derive(Debug, Clone, Copy)]
pub struct OrderOutcome<'a> {
    /// The order (= outbox id).
    pub order_id: uuid::Uuid,
    /// Its case.
    pub case_id: uuid::Uuid,
    /// The order state to record (`completed` or `failed`).
    pub state: &'a str,
    /// The carrier's reference, if known.
    pub carrier_ref: Option<&'a str>,
    /// The case event: `restored`, `partly_restored` or `provisioning_failed`.
    pub event: CaseEvent,
    /// The customer-safe reason recorded with it.
    pub reason: &'a str,
}

/// Finishes an order inside the caller's transaction: records its state, settles its
/// outbox row, and moves the case out of `provisioning` (if it is still there) with
/// the provisioning service as actor. The provisioning worker and the carrier's
/// `provisioning.completed` webhook both finish orders through here. Returns the
/// transition, if the case moved.
pub async fn finish_order(
    conn: &mut sqlx::PgConnection,
    outcome: &OrderOutcome<'_>,
    settlement: OutboxSettlement<'_>,
) -> anyhow::Result<Option<case_store::Transitioned>> {
    store::update_order(
        &mut *conn,
        outcome.order_id,
        outcome.state,
        outcome.carrier_ref,
    )
    .await?;
    match settlement {
        OutboxSettlement::Claimed(message) if outcome.event == CaseEvent::ProvisioningFailed => {
            case_store::mark_failed(&mut *conn, message, outcome.reason).await?;
        }
        OutboxSettlement::Claimed(message) => {
            case_store::mark_delivered(&mut *conn, message).await?;
        }
        OutboxSettlement::Confirmed => {
            case_store::webhooks::confirm_order_outbox(&mut *conn, outcome.order_id).await?;
        }
    }
    let case = case_store::load_case(&mut *conn, outcome.case_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("order's case vanished"))?;
    if case.state != CaseState::Provisioning {
        return Ok(None);
    }
    let system = Actor::system(SERVICE);
    let moved = case_store::transition_in(
        conn,
        TransitionRequest {
            case_id: outcome.case_id,
            expected_version: case.version,
            event: outcome.event,
            actor: &system,
            reason: Some(outcome.reason),
            fence: None,
            outbox: vec![],
        },
    )
    .await?;
    Ok(Some(moved))
}

/// The outbox handler for provisioning orders.
#[derive(Debug, Clone)]
pub struct ProvisioningHandler {
    carrier: Arc<dyn Carrier>,
    policy: RetryPolicy,
}

impl ProvisioningHandler {
    /// A handler sending orders to `carrier`.
    pub fn new(carrier: Arc<dyn Carrier>, policy: RetryPolicy) -> Self {
        Self { carrier, policy }
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
        let mut tx = pool.begin().await?;
        let state = order.map_or("failed", |o| o.state.as_str());
        finish_order(
            &mut tx,
            &OrderOutcome {
                order_id: message.id,
                case_id,
                state,
                carrier_ref: order.map(|o| o.carrier_ref.as_str()),
                event,
                reason,
            },
            OutboxSettlement::Claimed(message),
        )
        .await?;
        tx.commit().await?;
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
        let failures = store::count_order_failure(pool, message.id).await?;
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
    fn service(&self) -> &'static str {
        SERVICE
    }

    fn topics(&self) -> Vec<String> {
        vec![store::PROVISIONING_TOPIC.to_owned()]
    }

    async fn deliver(&self, pool: &PgPool, message: &OutboxClaim) -> anyhow::Result<Delivery> {
        let Some(order_row) = store::load_order(pool, message.id).await? else {
            return Ok(Delivery::GiveUp("no order row for this message".into()));
        };
        let case_id = order_row.case_id;
        let case = case_store::load_case(pool, case_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("order's case vanished"))?;
        let restoration = match order_row.restoration.as_str() {
            "inbound_only" => Restoration::InboundOnly,
            _ => Restoration::Full,
        };
        let request = ServiceOrderRequest {
            order_id: message.id,
            msisdn: Msisdn::parse(&case.msisdn)?,
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
                store::update_order(
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

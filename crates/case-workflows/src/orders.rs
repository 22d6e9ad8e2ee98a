//! Provisioning orders: what the provisioning worker and the carrier's
//! `provisioning.completed` webhook do with an order. Both finish an order through
//! [`finish_order`], so an order confirmed twice (by the worker and by the carrier)
//! moves its case once.
//!
//! The carrier calls (submitting and following the order) stay in the provisioning
//! worker: they are its job. What is written about the order and the case is here.

use carrier_adapter::Restoration;
use case_domain::{Actor, CaseEvent, CaseState, Msisdn};
use case_store::{OutboxClaim, TransitionRequest, Transitioned, risk as store};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::WorkflowError;

/// The actor id written in the events of a case moved by an order's outcome.
pub const ACTOR: &str = "provisioning";

/// The outbox topic of provisioning orders.
pub const TOPIC: &str = store::PROVISIONING_TOPIC;

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
    /// The provisioning worker delivered the order and holds the row's lease: the
    /// row is marked delivered (or failed, for a failed order), fenced by the
    /// claim's attempts.
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
    pub order_id: Uuid,
    /// Its case.
    pub case_id: Uuid,
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
/// the provisioning service as actor. Returns the transition, if the case moved.
pub async fn finish_order(
    conn: &mut PgConnection,
    outcome: &OrderOutcome<'_>,
    settlement: OutboxSettlement<'_>,
) -> Result<Option<Transitioned>, WorkflowError> {
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
        .ok_or_else(|| WorkflowError::Internal(anyhow::anyhow!("order's case vanished")))?;
    if case.state != CaseState::Provisioning {
        return Ok(None);
    }
    let system = Actor::system(ACTOR);
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

/// Finishes a claimed order in its own transaction (the provisioning worker's
/// outcome: completed, or failed by the carrier or after every retry).
pub async fn finish_claimed_order(
    pool: &PgPool,
    message: &OutboxClaim,
    outcome: &OrderOutcome<'_>,
) -> Result<Option<Transitioned>, WorkflowError> {
    let mut tx = pool.begin().await?;
    let moved = finish_order(&mut tx, outcome, OutboxSettlement::Claimed(message)).await?;
    tx.commit().await?;
    Ok(moved)
}

/// An order to send to the carrier.
#[derive(Debug, Clone)]
pub struct PendingOrder {
    /// The order (= outbox id = idempotency key).
    pub order_id: Uuid,
    /// Its case.
    pub case_id: Uuid,
    /// The number to restore.
    pub msisdn: Msisdn,
    /// How much service to restore.
    pub restoration: Restoration,
}

/// The order behind a claimed `provisioning.order` message, or `None` when it has
/// no order row (the message cannot be delivered).
pub async fn pending_order(
    pool: &PgPool,
    order_id: Uuid,
) -> Result<Option<PendingOrder>, WorkflowError> {
    let Some(order) = store::load_order(pool, order_id).await? else {
        return Ok(None);
    };
    let case = case_store::load_case(pool, order.case_id)
        .await?
        .ok_or_else(|| WorkflowError::Internal(anyhow::anyhow!("order's case vanished")))?;
    let msisdn = case.msisdn;
    let restoration = order.restoration;
    Ok(Some(PendingOrder {
        order_id,
        case_id: order.case_id,
        msisdn,
        restoration,
    }))
}

/// Records the carrier's word on an order that is not final yet.
pub async fn record_progress(
    pool: &PgPool,
    order_id: Uuid,
    state: &str,
    carrier_ref: Option<&str>,
) -> Result<(), WorkflowError> {
    store::update_order(pool, order_id, state, carrier_ref).await?;
    Ok(())
}

/// Counts one failed delivery of the order; returns the failures so far.
pub async fn count_failure(pool: &PgPool, order_id: Uuid) -> Result<i32, WorkflowError> {
    Ok(store::count_order_failure(pool, order_id).await?)
}

/// What the carrier said in a `provisioning.completed` webhook.
#[derive(Debug, Clone, Copy)]
pub struct CarrierConfirmation<'a> {
    /// Our order id.
    pub order_id: Uuid,
    /// The number the carrier names (must be the order's).
    pub msisdn: &'a str,
    /// How much service it restored.
    pub restoration: Restoration,
    /// Its reference.
    pub carrier_ref: Option<&'a str>,
}

/// Confirms one of our orders from the carrier's word, in the caller's transaction:
/// if it is not completed yet, it is finished exactly as the provisioning worker
/// finishes it. Returns why nothing was done, if so.
pub async fn confirm_order(
    conn: &mut PgConnection,
    confirmation: &CarrierConfirmation<'_>,
) -> Result<Option<String>, WorkflowError> {
    let order_id = confirmation.order_id;
    let Some(order) = case_store::webhooks::lock_order(&mut *conn, order_id).await? else {
        return Ok(Some("no such order".into()));
    };
    let case = case_store::load_case(&mut *conn, order.case_id)
        .await?
        .ok_or_else(|| WorkflowError::Internal(anyhow::anyhow!("order's case vanished")))?;
    if case.msisdn.e164() != confirmation.msisdn {
        return Ok(Some("the number does not match the order".into()));
    }
    if order.state == "completed" {
        return Ok(Some("the order was already completed".into()));
    }
    let (event, reason) = completion(confirmation.restoration);
    let moved = finish_order(
        conn,
        &OrderOutcome {
            order_id,
            case_id: order.case_id,
            state: "completed",
            carrier_ref: confirmation.carrier_ref,
            event,
            reason,
        },
        OutboxSettlement::Confirmed,
    )
    .await?;
    tracing::info!(case_id = %order.case_id, %order_id, moved = moved.is_some(), "order confirmed by the carrier");
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_order_restores_what_the_carrier_restored() {
        assert_eq!(completion(Restoration::Full).0, CaseEvent::Restored);
        assert_eq!(
            completion(Restoration::InboundOnly).0,
            CaseEvent::PartlyRestored
        );
    }
}

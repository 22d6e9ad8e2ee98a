//! Provisioning orders: what the provisioning worker and the carrier's
//! `provisioning.completed` webhook do with an order. Both finish an order through
//! [`finish_order`], so an order confirmed twice (by the worker and by the carrier)
//! moves its case once.
//!
//! The carrier calls (cancelling, submitting and following orders) stay in the
//! provisioning worker: they are its job. What is written about the order and the case
//! is here.
//!
//! **Current order.** A case's current order is its newest order that was not
//! withdrawn ([`case_store::risk::current_order`]). Only the current order's outcome
//! moves the case: the outcome of any other order (a completion polled by a worker or
//! reported by the carrier) is recorded on its row and in the audit log (action
//! [`STALE_AUDIT_ACTION`], reason [`STALE_REASON`]) and moves nothing.
//!
//! **Fencing.** Every write a provisioning worker makes on orders (state, failure
//! count, the outcome) names the worker's outbox claim and is refused
//! ([`WorkflowError::ClaimedByOther`], nothing written) once another claim took the
//! message over.

use carrier_adapter::Restoration;
use case_domain::{Actor, CaseEvent, CaseState, Msisdn};
use case_store::{
    OutboxClaim, TransitionRequest, Transitioned,
    audit::{self, AuditEntry},
    risk as store,
};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::WorkflowError;

/// The actor id written in the events of a case moved by an order's outcome.
pub const ACTOR: &str = "provisioning";

/// The outbox topic of provisioning orders.
pub const TOPIC: &str = store::PROVISIONING_TOPIC;

/// The audit action of an order outcome that moved nothing because the order is not
/// its case's current one.
pub const STALE_AUDIT_ACTION: &str = "order.stale_outcome";

/// The reason recorded with a stale order outcome.
pub const STALE_REASON: &str =
    "stale_order: the order is not the case's current order; recorded, nothing moved";

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

/// Finishes an order inside the caller's transaction: records its state (fenced by
/// the claim for [`OutboxSettlement::Claimed`]), settles the outbox row, and — if the
/// order is its case's current one — moves the case out of `provisioning` (if it is
/// still there) with the provisioning service as actor. The outcome of an order that
/// is not current is recorded (row state, audit entry [`STALE_AUDIT_ACTION`]) and
/// moves nothing. Returns the transition, if the case moved.
pub async fn finish_order(
    conn: &mut PgConnection,
    outcome: &OrderOutcome<'_>,
    settlement: OutboxSettlement<'_>,
) -> Result<Option<Transitioned>, WorkflowError> {
    match settlement {
        OutboxSettlement::Claimed(message) => {
            store::update_order(
                &mut *conn,
                message,
                outcome.order_id,
                outcome.state,
                outcome.carrier_ref,
            )
            .await?;
        }
        OutboxSettlement::Confirmed => {
            store::record_order_state(
                &mut *conn,
                outcome.order_id,
                outcome.state,
                outcome.carrier_ref,
            )
            .await?;
        }
    }
    let current = store::current_order(&mut *conn, outcome.case_id).await?;
    let stale = current != Some(outcome.order_id);
    match settlement {
        // A stale order's failure is no delivery problem: its message is settled, not dead.
        OutboxSettlement::Claimed(message)
            if outcome.event == CaseEvent::ProvisioningFailed && !stale =>
        {
            case_store::mark_failed(&mut *conn, message, outcome.reason).await?;
        }
        OutboxSettlement::Claimed(message) => {
            case_store::mark_delivered(&mut *conn, message).await?;
        }
        OutboxSettlement::Confirmed => {
            case_store::webhooks::confirm_order_outbox(&mut *conn, outcome.order_id).await?;
        }
    }
    if stale {
        let via = match settlement {
            OutboxSettlement::Claimed(_) => "provisioning_worker",
            OutboxSettlement::Confirmed => "carrier_webhook",
        };
        record_stale_outcome(conn, outcome, current, via).await?;
        return Ok(None);
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

/// Records that an order's outcome arrived while another order is its case's current
/// one: an audit entry (last, after the row locks) and a warning. Nothing moves.
async fn record_stale_outcome(
    conn: &mut PgConnection,
    outcome: &OrderOutcome<'_>,
    current: Option<Uuid>,
    via: &str,
) -> Result<(), WorkflowError> {
    ::metrics::counter!("provisioning_stale_outcomes_total", "via" => via.to_owned()).increment(1);
    tracing::warn!(
        case_id = %outcome.case_id,
        order_id = %outcome.order_id,
        current_order_id = ?current,
        order_state = outcome.state,
        via,
        reason = STALE_REASON,
        "stale order outcome recorded; the case does not move"
    );
    audit::record(
        conn,
        &AuditEntry {
            actor: &Actor::system(ACTOR),
            action: STALE_AUDIT_ACTION,
            case_id: Some(outcome.case_id),
            detail: serde_json::json!({
                "order_id": outcome.order_id,
                "current_order_id": current,
                "state": outcome.state,
                "via": via,
            }),
            reason: Some(STALE_REASON),
        },
    )
    .await?;
    Ok(())
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

/// The order a retry's order replaces.
#[derive(Debug, Clone)]
pub struct SupersededOrder {
    /// Its id (= its idempotency key at the carrier).
    pub order_id: Uuid,
    /// How much service it restores.
    pub restoration: Restoration,
    /// Its last known state.
    pub state: String,
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
    /// Whether it is its case's current order (a superseded order is never sent).
    pub current: bool,
    /// The order it replaces (a retry's), to cancel at the carrier before sending.
    pub supersedes: Option<SupersededOrder>,
}

/// The order behind a claimed `provisioning.order` message, or `None` when it has
/// no order row (the message cannot be delivered).
pub async fn pending_order(
    pool: &PgPool,
    order_id: Uuid,
) -> Result<Option<PendingOrder>, WorkflowError> {
    // One statement: the order, its number, whether it is current, what it replaces.
    let Some(order) = store::order_to_send(pool, order_id).await? else {
        return Ok(None);
    };
    Ok(Some(PendingOrder {
        order_id,
        case_id: order.case_id,
        msisdn: order.msisdn,
        restoration: order.restoration,
        current: order.current,
        supersedes: order
            .supersedes
            .map(|(order_id, restoration, state)| SupersededOrder {
                order_id,
                restoration,
                state,
            }),
    }))
}

/// Records the carrier's word on an order that is not final yet, fenced by the
/// worker's claim.
pub async fn record_progress(
    pool: &PgPool,
    message: &OutboxClaim,
    order_id: Uuid,
    state: &str,
    carrier_ref: Option<&str>,
) -> Result<(), WorkflowError> {
    let mut tx = pool.begin().await?;
    store::update_order(&mut tx, message, order_id, state, carrier_ref).await?;
    tx.commit().await?;
    Ok(())
}

/// Counts one failed delivery of the order, fenced by the worker's claim; returns the
/// failures so far.
pub async fn count_failure(
    pool: &PgPool,
    message: &OutboxClaim,
    order_id: Uuid,
) -> Result<i32, WorkflowError> {
    let mut tx = pool.begin().await?;
    let failures = store::count_order_failure(&mut tx, message, order_id).await?;
    tx.commit().await?;
    Ok(failures)
}

/// Records what the carrier answered to the cancellation of the order a retry
/// replaces (`cancelled`, or `failed` when it had failed anyway), fenced by the
/// retry's claim. Only after this is the retry's own order sent.
pub async fn record_cancellation(
    pool: &PgPool,
    message: &OutboxClaim,
    previous: Uuid,
    state: &str,
    carrier_ref: Option<&str>,
) -> Result<(), WorkflowError> {
    let mut tx = pool.begin().await?;
    store::update_order(&mut tx, message, previous, state, carrier_ref).await?;
    tx.commit().await?;
    tracing::info!(order_id = %previous, order_state = state, "superseded order settled at the carrier");
    Ok(())
}

/// The order a retry replaces turned out to have completed at the carrier (too late
/// to cancel): the retry's order is withdrawn, never sent, which makes the completed
/// order current again, and it is finished as completed — the number is restored by
/// the one order the carrier carried out. One transaction, fenced by the retry's claim.
pub async fn adopt_completed_previous(
    pool: &PgPool,
    message: &OutboxClaim,
    withdrawn: Uuid,
    completed: &OrderOutcome<'_>,
) -> Result<Option<Transitioned>, WorkflowError> {
    let mut tx = pool.begin().await?;
    store::update_order(&mut tx, message, withdrawn, "withdrawn", None).await?;
    let moved = finish_order(&mut tx, completed, OutboxSettlement::Claimed(message)).await?;
    tx.commit().await?;
    tracing::info!(case_id = %completed.case_id, order_id = %completed.order_id, %withdrawn, "the superseded order had completed; the retry's order was withdrawn");
    Ok(moved)
}

/// Settles the message of an order that is no longer its case's current one (a
/// retry superseded it before it was sent): it is never sent (the retry's worker
/// cancels it at the carrier), and nothing moves. Fenced by the claim.
pub async fn skip_superseded(pool: &PgPool, message: &OutboxClaim) -> Result<(), WorkflowError> {
    case_store::queue::done(
        pool,
        &case_store::queue::OUTBOX,
        &message.lease(),
        Some("superseded by a newer order of the case: not sent"),
    )
    .await?;
    tracing::info!(order_id = %message.id, "superseded order not sent");
    Ok(())
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
/// finishes it; if it is not its case's current order, the completion is recorded
/// and nothing moves ([`STALE_REASON`]). Returns why nothing was done, if so.
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
    let outcome = OrderOutcome {
        order_id,
        case_id: order.case_id,
        state: "completed",
        carrier_ref: confirmation.carrier_ref,
        event,
        reason,
    };
    let current = store::current_order(&mut *conn, order.case_id).await?;
    if current != Some(order_id) {
        // The carrier's word is recorded; its outbox row is left alone (a superseded
        // order's message is never sent) and the case does not move.
        store::record_order_state(&mut *conn, order_id, "completed", confirmation.carrier_ref)
            .await?;
        record_stale_outcome(conn, &outcome, current, "carrier_webhook").await?;
        return Ok(Some(STALE_REASON.into()));
    }
    let moved = finish_order(conn, &outcome, OutboxSettlement::Confirmed).await?;
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

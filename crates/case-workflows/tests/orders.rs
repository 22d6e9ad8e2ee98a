//! Order use cases against a real Postgres (`#[sqlx::test]`): only a case's current
//! order moves it, and every worker write on orders is fenced by the outbox claim.

use std::time::Duration;

use case_domain::{Actor, CaseEvent, CaseState, Restoration, Role};
use case_store::{
    MIGRATOR, OutboxClaim, TransitionRequest, audit, claim_outbox, load_case,
    risk::{self, PROVISIONING_TOPIC},
    testing::open_case,
    timeline, transition,
};
use case_workflows::{
    WorkflowError,
    orders::{self, OrderOutcome, STALE_AUDIT_ACTION, STALE_REASON},
};
use sqlx::PgPool;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

fn request(case_id: Uuid, version: i32, event: CaseEvent, actor: &Actor) -> TransitionRequest<'_> {
    TransitionRequest {
        case_id,
        expected_version: version,
        event,
        actor,
        reason: None,
        fence: None,
        outbox: vec![],
    }
}

/// A case in provisioning with its first order; returns (case, order).
async fn provisioning_case(pool: &PgPool, msisdn: &str) -> (Uuid, Uuid) {
    let id = open_case(pool, msisdn).await;
    transition(
        pool,
        request(
            id,
            1,
            CaseEvent::ProofsAccepted,
            &Actor::system("identity-verification"),
        ),
    )
    .await
    .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let done = risk::transition_into_provisioning(
        &mut tx,
        request(
            id,
            2,
            CaseEvent::RiskCleared,
            &Actor::system("risk-assessment"),
        ),
        Restoration::Full,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (id, done.outbox_ids[0])
}

/// Fails the case's provisioning (as the worker does after every retry) without
/// settling the order's outbox row, then retries it as a technical agent; returns the
/// retry's order.
async fn fail_and_retry(pool: &PgPool, case_id: Uuid) -> Uuid {
    let version = load_case(pool, case_id).await.unwrap().unwrap().version;
    transition(
        pool,
        request(
            case_id,
            version,
            CaseEvent::ProvisioningFailed,
            &Actor::system("provisioning"),
        ),
    )
    .await
    .unwrap();
    let tech = Actor::agent(Role::Technical, Uuid::now_v7().to_string());
    let mut tx = pool.begin().await.unwrap();
    let done = risk::transition_into_provisioning(
        &mut tx,
        request(case_id, version + 1, CaseEvent::ProvisioningRetried, &tech),
        Restoration::Full,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    done.outbox_ids[0]
}

async fn claim(pool: &PgPool, worker: &str, lease: Duration) -> OutboxClaim {
    claim_outbox(pool, &[PROVISIONING_TOPIC.to_owned()], worker, lease)
        .await
        .unwrap()
        .expect("an order message to claim")
}

fn completed(order_id: Uuid, case_id: Uuid) -> OrderOutcome<'static> {
    OrderOutcome {
        order_id,
        case_id,
        state: "completed",
        carrier_ref: Some("SO-1"),
        event: CaseEvent::Restored,
        reason: "the carrier restored full service",
    }
}

async fn stale_entries(pool: &PgPool, case_id: Uuid) -> Vec<audit::AuditRow> {
    audit::query(
        pool,
        &audit::AuditFilter {
            case_id: Some(case_id),
            action: Some(STALE_AUDIT_ACTION.into()),
            ..Default::default()
        },
        0,
        100,
    )
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_retry_supersedes_the_current_order(pool: PgPool) {
    let (case_id, first) = provisioning_case(&pool, "+8613800138101").await;
    assert_eq!(
        risk::current_order(&pool, case_id).await.unwrap(),
        Some(first)
    );
    assert_eq!(risk::superseded_by(&pool, first).await.unwrap(), None);
    let retry = fail_and_retry(&pool, case_id).await;
    assert_eq!(
        risk::current_order(&pool, case_id).await.unwrap(),
        Some(retry)
    );
    assert_eq!(
        risk::superseded_by(&pool, retry).await.unwrap(),
        Some(first)
    );
    let pending = orders::pending_order(&pool, retry).await.unwrap().unwrap();
    assert!(pending.current);
    let previous = pending.supersedes.expect("the retry names the first order");
    assert_eq!(
        (previous.order_id, previous.state.as_str()),
        (first, "pending")
    );
    let stale = orders::pending_order(&pool, first).await.unwrap().unwrap();
    assert!(!stale.current, "the first order is no longer current");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_polled_completion_of_a_superseded_order_is_recorded_and_moves_nothing(pool: PgPool) {
    let (case_id, first) = provisioning_case(&pool, "+8613800138102").await;
    // A worker holds the first order's message and is still following it ...
    let worker = claim(&pool, "provisioning-1", LEASE).await;
    assert_eq!(worker.id, first);
    // ... when the case fails and is retried: a second order becomes current.
    let retry = fail_and_retry(&pool, case_id).await;
    let before = timeline(&pool, case_id).await.unwrap().len();

    // The worker's poll finds the first order completed.
    let moved = orders::finish_claimed_order(&pool, &worker, &completed(first, case_id))
        .await
        .unwrap();
    assert!(moved.is_none(), "a stale order moves nothing");

    let case = load_case(&pool, case_id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::Provisioning);
    assert_eq!(timeline(&pool, case_id).await.unwrap().len(), before);
    let order = risk::load_order(&pool, first).await.unwrap().unwrap();
    assert_eq!(order.state, "completed", "the carrier's word is recorded");
    assert_eq!(
        risk::current_order(&pool, case_id).await.unwrap(),
        Some(retry)
    );
    let entries = stale_entries(&pool, case_id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].reason.as_deref(), Some(STALE_REASON));
    assert_eq!(entries[0].detail["order_id"], first.to_string());
    assert_eq!(entries[0].detail["current_order_id"], retry.to_string());
    assert_eq!(entries[0].detail["via"], "provisioning_worker");

    // The current order's completion still moves the case, once.
    let current = claim(&pool, "provisioning-2", LEASE).await;
    assert_eq!(current.id, retry);
    let moved = orders::finish_claimed_order(&pool, &current, &completed(retry, case_id))
        .await
        .unwrap();
    assert_eq!(moved.unwrap().case.state, CaseState::Reactivated);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_worker_that_lost_its_lease_cannot_write_the_order(pool: PgPool) {
    let (case_id, order_id) = provisioning_case(&pool, "+8613800138103").await;
    // Worker A's lease ends at once (it stalled); worker B claims the message again.
    let stale = claim(&pool, "provisioning-a", Duration::ZERO).await;
    let live = claim(&pool, "provisioning-b", LEASE).await;
    assert_eq!((stale.id, live.id), (order_id, order_id));
    assert_eq!(live.attempts, stale.attempts + 1);

    let refused = |r: Result<_, WorkflowError>| matches!(r, Err(WorkflowError::ClaimedByOther));
    assert!(refused(
        orders::record_progress(&pool, &stale, order_id, "inProgress", Some("SO-9"))
            .await
            .map(|()| 0)
    ));
    assert!(refused(
        orders::count_failure(&pool, &stale, order_id).await
    ));
    assert!(refused(
        orders::finish_claimed_order(&pool, &stale, &completed(order_id, case_id))
            .await
            .map(|_| 0)
    ));
    assert!(refused(
        orders::record_cancellation(&pool, &stale, order_id, "cancelled", None)
            .await
            .map(|()| 0)
    ));
    let order = risk::load_order(&pool, order_id).await.unwrap().unwrap();
    assert_eq!(
        (order.state.as_str(), order.failures, order.carrier_ref),
        ("pending", 0, None),
        "the stale worker wrote nothing"
    );
    let case = load_case(&pool, case_id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::Provisioning);

    // The worker holding the claim writes.
    assert_eq!(
        orders::count_failure(&pool, &live, order_id).await.unwrap(),
        1
    );
    orders::record_progress(&pool, &live, order_id, "inProgress", Some("SO-9"))
        .await
        .unwrap();
    let order = risk::load_order(&pool, order_id).await.unwrap().unwrap();
    assert_eq!((order.state.as_str(), order.failures), ("inProgress", 1));
    // Still refused after the live worker wrote; and once the live worker finished,
    // its own claim no longer writes either.
    assert!(refused(
        orders::count_failure(&pool, &stale, order_id).await
    ));
    let moved = orders::finish_claimed_order(&pool, &live, &completed(order_id, case_id))
        .await
        .unwrap();
    assert_eq!(moved.unwrap().case.state, CaseState::Reactivated);
    assert!(refused(orders::count_failure(&pool, &live, order_id).await));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_completed_previous_order_is_adopted_and_the_retry_withdrawn(pool: PgPool) {
    let (case_id, first) = provisioning_case(&pool, "+8613800138104").await;
    // The first order's message was given up (its worker ran out of retries).
    let gave_up = claim(&pool, "provisioning-1", LEASE).await;
    case_store::mark_failed(&pool, &gave_up, "retries used up")
        .await
        .unwrap();
    let retry = fail_and_retry(&pool, case_id).await;
    let worker = claim(&pool, "provisioning-2", LEASE).await;
    assert_eq!(worker.id, retry);

    // The carrier answers the cancellation: too late, the first order completed.
    let moved = orders::adopt_completed_previous(&pool, &worker, retry, &completed(first, case_id))
        .await
        .unwrap();
    assert_eq!(moved.unwrap().case.state, CaseState::Reactivated);
    let withdrawn = risk::load_order(&pool, retry).await.unwrap().unwrap();
    assert_eq!(withdrawn.state, "withdrawn");
    assert_eq!(
        risk::current_order(&pool, case_id).await.unwrap(),
        Some(first)
    );
    assert!(stale_entries(&pool, case_id).await.is_empty());
    // The retry's message is settled: nothing left to deliver.
    assert!(
        claim_outbox(&pool, &[PROVISIONING_TOPIC.to_owned()], "w", LEASE)
            .await
            .unwrap()
            .is_none()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_superseded_order_failing_moves_nothing_and_is_not_a_dead_message(pool: PgPool) {
    let (case_id, first) = provisioning_case(&pool, "+8613800138105").await;
    let worker = claim(&pool, "provisioning-1", LEASE).await;
    let retry = fail_and_retry(&pool, case_id).await;
    let moved = orders::finish_claimed_order(
        &pool,
        &worker,
        &OrderOutcome {
            state: "failed",
            event: CaseEvent::ProvisioningFailed,
            reason: "the carrier failed the order",
            ..completed(first, case_id)
        },
    )
    .await
    .unwrap();
    assert!(moved.is_none());
    assert_eq!(
        load_case(&pool, case_id).await.unwrap().unwrap().state,
        CaseState::Provisioning
    );
    assert_eq!(stale_entries(&pool, case_id).await.len(), 1);
    let dead = case_store::queue::dead_counts(&pool).await.unwrap();
    assert!(
        dead.iter().all(|(_, n)| *n == 0),
        "a stale outcome is settled, not dead: {dead:?}"
    );
    // Only the retry's message is left to deliver.
    assert_eq!(claim(&pool, "provisioning-2", LEASE).await.id, retry);
}

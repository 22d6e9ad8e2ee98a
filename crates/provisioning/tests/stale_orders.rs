//! The provisioning worker against the real carrier simulator (random port, the test's
//! fresh Postgres database): a retry cancels the previous order at the carrier before
//! sending its own, a late completion of the old order moves nothing, an order that
//! completed after all is adopted instead of sending another, and a worker that lost
//! its lease writes nothing. The simulator's request log and resume count show how
//! often the carrier acted.

use std::{sync::Arc, time::Duration};

use carrier_adapter::{Carrier, HttpCarrier, OrderState, ServiceOrderRequest};
use case_domain::{Actor, CaseEvent, CaseState, Msisdn, Restoration, Role};
use case_store::{
    MIGRATOR, OutboxClaim, TransitionRequest, claim_outbox, load_case,
    queue::{self, OUTBOX},
    risk::{self, PROVISIONING_TOPIC},
    testing::open_case,
    timeline, transition,
};
use case_workflows::{
    WorkflowError,
    orders::{self, CarrierConfirmation, STALE_REASON},
};
use provisioning::{ProvisioningHandler, RetryPolicy};
use serde_json::{Value, json};
use service_runtime::{
    Shutdown,
    worker::{Delivery, OutboxHandler},
};
use sqlx::PgPool;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

struct Sim {
    url: String,
    http: reqwest::Client,
    carrier: Arc<HttpCarrier>,
    shutdown: Shutdown,
}

impl Sim {
    async fn start(pool: &PgPool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = Shutdown::new();
        carrier_sim::prepare(pool).await.unwrap();
        tokio::spawn(carrier_sim::run(listener, pool.clone(), shutdown.clone()));
        let carrier = Arc::new(
            HttpCarrier::new(&url, Duration::from_secs(5))
                .unwrap()
                .with_retries(1, Duration::from_millis(10)),
        );
        Self {
            url,
            http: reqwest::Client::new(),
            carrier,
            shutdown,
        }
    }

    /// A handler that never follows an order (the test polls) and gives up after one failure.
    fn handler(&self) -> ProvisioningHandler {
        ProvisioningHandler::new(
            self.carrier.clone(),
            RetryPolicy {
                max_failures: 1,
                base: Duration::from_millis(10),
                cap: Duration::from_millis(10),
                follow_for: Duration::ZERO,
            },
        )
    }

    async fn faults(&self, failure_rate: f64, latency_ms: u64) {
        let answer = self
            .http
            .post(format!("{}/sim/faults", self.url))
            .json(&json!({"provisioning_failure_rate": failure_rate, "provisioning_latency_ms": latency_ms}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }

    async fn add_subscriber(&self, msisdn: &str) {
        let body = json!({
            "msisdn": msisdn, "full_name": "王小明", "id_number": "11010519491231002X",
            "service_password": "pw-secret-1", "backup_contacts": [],
            "recent_contacts": [], "signals": {"fraud_linked_contacts": 0, "sms_peak_per_hour": 0, "intl_calls_24h": 0},
            "status": "suspended", "suspension_reason": "real_name_reverification",
        });
        let answer = self
            .http
            .post(format!("{}/sim/subscribers", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201, "{}", answer.text().await.unwrap());
    }

    async fn subscriber(&self, msisdn: &str) -> Value {
        self.get(&format!("/sim/subscribers/{msisdn}"), &[]).await
    }

    /// The provisioning calls of `order` (by idempotency key) as `(action, outcome)`.
    async fn calls(&self, msisdn: &str, order: Uuid) -> Vec<(String, String)> {
        let all = self
            .get("/sim/provisioning-requests", &[("msisdn", msisdn)])
            .await;
        all.as_array()
            .unwrap()
            .iter()
            .filter(|c| c["idempotency_key"] == order.to_string())
            .map(|c| {
                (
                    c["action"].as_str().unwrap().to_owned(),
                    c["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let answer = self
            .http
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.json().await.unwrap()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

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
    let identity = Actor::system("identity-verification");
    transition(pool, request(id, 1, CaseEvent::ProofsAccepted, &identity))
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let risk_step = Actor::system("risk-assessment");
    let done = risk::transition_into_provisioning(
        &mut tx,
        request(id, 2, CaseEvent::RiskCleared, &risk_step),
        Restoration::Full,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (id, done.outbox_ids[0])
}

/// `retry_provisioning` by a technical agent; returns the retry's order.
async fn retry(pool: &PgPool, case_id: Uuid) -> Uuid {
    let case = load_case(pool, case_id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::ProvisioningFailed);
    let tech = Actor::agent(Role::Technical, Uuid::now_v7().to_string());
    let mut tx = pool.begin().await.unwrap();
    let done = risk::transition_into_provisioning(
        &mut tx,
        request(case_id, case.version, CaseEvent::ProvisioningRetried, &tech),
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
        .expect("an order message due")
}

/// Claims the next due order message, delivers it and records the outcome as the
/// worker loop does (a retry is made due at once: the test drives the clock).
async fn deliver_next(pool: &PgPool, handler: &ProvisioningHandler) -> (Uuid, Delivery) {
    let message = claim(pool, "provisioning-test", LEASE).await;
    let delivery = handler.deliver(pool, &message).await.unwrap();
    match &delivery {
        Delivery::Delivered => case_store::mark_delivered(pool, &message).await.unwrap(),
        Delivery::RetryAfter(_, why) => {
            case_store::retry_later(pool, &message, Duration::ZERO, why)
                .await
                .unwrap()
        }
        Delivery::GiveUp(why) => case_store::mark_failed(pool, &message, why).await.unwrap(),
        Delivery::Recorded => {}
    }
    (message.id, delivery)
}

async fn order_state(pool: &PgPool, order: Uuid) -> String {
    risk::load_order(pool, order).await.unwrap().unwrap().state
}

async fn case_state(pool: &PgPool, case_id: Uuid) -> CaseState {
    load_case(pool, case_id).await.unwrap().unwrap().state
}

/// The first order reaches the carrier and stays in progress there; its worker then
/// loses every answer (503) and the case fails.
async fn first_order_in_flight_then_failed(pool: &PgPool, sim: &Sim, msisdn: &str) -> (Uuid, Uuid) {
    let handler = sim.handler();
    let (case_id, first) = provisioning_case(pool, msisdn).await;
    let (id, delivery) = deliver_next(pool, &handler).await;
    assert_eq!(id, first);
    assert!(matches!(delivery, Delivery::RetryAfter(..)), "{delivery:?}");
    assert_eq!(order_state(pool, first).await, "acknowledged");
    sim.faults(1.0, 0).await;
    let (id, delivery) = deliver_next(pool, &handler).await;
    assert_eq!((id, &delivery), (first, &Delivery::Recorded));
    assert_eq!(
        case_state(pool, case_id).await,
        CaseState::ProvisioningFailed
    );
    (case_id, first)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_retry_cancels_the_first_order_before_sending_and_its_late_completion_moves_nothing(
    pool: PgPool,
) {
    let msisdn = "+8613800138201";
    let sim = Sim::start(&pool).await;
    sim.add_subscriber(msisdn).await;
    // The first order will take ten minutes at the carrier.
    sim.faults(0.0, 600_000).await;
    let (case_id, first) = first_order_in_flight_then_failed(&pool, &sim, msisdn).await;

    // The carrier is healthy and fast again; a technical agent retries.
    sim.faults(0.0, 0).await;
    let second = retry(&pool, case_id).await;
    let (id, delivery) = deliver_next(&pool, &sim.handler()).await;
    assert_eq!((id, delivery), (second, Delivery::Recorded));
    assert_eq!(case_state(&pool, case_id).await, CaseState::Reactivated);
    assert_eq!(order_state(&pool, first).await, "cancelled");
    assert_eq!(order_state(&pool, second).await, "completed");
    // The first order was cancelled before the second was sent.
    let first_calls = sim.calls(msisdn, first).await;
    assert_eq!(first_calls[0], ("resume".into(), "created".into()));
    assert_eq!(
        first_calls.last().unwrap(),
        &("cancel".to_owned(), "cancelled".to_owned())
    );
    assert_eq!(
        sim.calls(msisdn, second).await,
        [("resume".to_owned(), "created".to_owned())]
    );
    let log = sim
        .get("/sim/provisioning-requests", &[("msisdn", msisdn)])
        .await;
    let log = log.as_array().unwrap();
    let cancel_at = log
        .iter()
        .position(|c| c["action"] == "cancel")
        .expect("the cancellation is in the log");
    let second_at = log
        .iter()
        .position(|c| c["idempotency_key"] == second.to_string())
        .unwrap();
    assert!(cancel_at < second_at, "cancel first, then the new order");

    // The first order's completion is reported late: recorded, nothing moves.
    let events = timeline(&pool, case_id).await.unwrap().len();
    let mut tx = pool.begin().await.unwrap();
    let note = orders::confirm_order(
        &mut tx,
        &CarrierConfirmation {
            order_id: first,
            msisdn,
            restoration: Restoration::Full,
            carrier_ref: Some("SO-LATE"),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(note.as_deref(), Some(STALE_REASON));
    assert_eq!(case_state(&pool, case_id).await, CaseState::Reactivated);
    assert_eq!(timeline(&pool, case_id).await.unwrap().len(), events);

    // A late copy of the first order reaching the carrier (a stalled worker's request)
    // does nothing: it is cancelled there.
    let late = sim
        .carrier
        .submit_order(&ServiceOrderRequest {
            order_id: first,
            msisdn: Msisdn::parse(msisdn).unwrap(),
            restoration: Restoration::Full,
        })
        .await
        .unwrap();
    assert_eq!(late.state, OrderState::Cancelled);

    // An admin puts the first order's dead message back: it is not sent again.
    assert!(
        queue::requeue(&pool, &OUTBOX, &first.to_string())
            .await
            .unwrap()
            .is_some()
    );
    let calls_before = sim.calls(msisdn, first).await.len();
    let (id, delivery) = deliver_next(&pool, &sim.handler()).await;
    assert_eq!((id, delivery), (first, Delivery::Recorded));
    assert_eq!(sim.calls(msisdn, first).await.len(), calls_before);

    // The number was restored once.
    let subscriber = sim.subscriber(msisdn).await;
    assert_eq!(subscriber["status"], "active");
    assert_eq!(subscriber["resume_count"], 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_first_order_that_completed_after_all_is_adopted_and_no_second_order_is_sent(
    pool: PgPool,
) {
    let msisdn = "+8613800138202";
    let sim = Sim::start(&pool).await;
    sim.add_subscriber(msisdn).await;
    sim.faults(0.0, 400).await;
    let (case_id, first) = first_order_in_flight_then_failed(&pool, &sim, msisdn).await;
    sim.faults(0.0, 0).await;
    // The first order completes at the carrier after the case failed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.carrier.get_order(first).await.unwrap().state != OrderState::Completed {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first order completes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.subscriber(msisdn).await["resume_count"], 1);

    let second = retry(&pool, case_id).await;
    let (id, delivery) = deliver_next(&pool, &sim.handler()).await;
    assert_eq!((id, delivery), (second, Delivery::Recorded));
    // Too late to cancel: the first order finishes the case, the second is never sent.
    assert_eq!(case_state(&pool, case_id).await, CaseState::Reactivated);
    assert_eq!(order_state(&pool, first).await, "completed");
    assert_eq!(order_state(&pool, second).await, "withdrawn");
    assert_eq!(
        risk::current_order(&pool, case_id).await.unwrap(),
        Some(first)
    );
    assert_eq!(
        sim.calls(msisdn, first).await.last().unwrap(),
        &("cancel".to_owned(), "too_late".to_owned())
    );
    assert!(sim.calls(msisdn, second).await.is_empty());
    let last = timeline(&pool, case_id).await.unwrap().pop().unwrap();
    assert_eq!(last.event, CaseEvent::Restored);
    assert_eq!(sim.subscriber(msisdn).await["resume_count"], 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_worker_whose_lease_was_lost_cannot_count_a_failure_or_fail_the_case(pool: PgPool) {
    let msisdn = "+8613800138203";
    let sim = Sim::start(&pool).await;
    sim.add_subscriber(msisdn).await;
    sim.faults(1.0, 0).await;
    let (case_id, order) = provisioning_case(&pool, msisdn).await;
    // Worker A's lease runs out (it stalled) and worker B claims the message again.
    let stale = claim(&pool, "provisioning-a", Duration::ZERO).await;
    let live = claim(&pool, "provisioning-b", LEASE).await;
    assert_eq!((stale.id, live.id), (order, order));

    // A's carrier call fails; counting it (and so failing the case) is refused.
    let handler = sim.handler();
    let refused = handler.deliver(&pool, &stale).await.unwrap_err();
    assert!(
        matches!(
            refused.downcast_ref::<WorkflowError>(),
            Some(WorkflowError::ClaimedByOther)
        ),
        "{refused:?}"
    );
    let row = risk::load_order(&pool, order).await.unwrap().unwrap();
    assert_eq!((row.failures, row.state.as_str()), (0, "pending"));
    assert_eq!(case_state(&pool, case_id).await, CaseState::Provisioning);

    // B's identical failure counts and, at the limit, fails the case.
    assert_eq!(
        handler.deliver(&pool, &live).await.unwrap(),
        Delivery::Recorded
    );
    assert_eq!(
        risk::load_order(&pool, order)
            .await
            .unwrap()
            .unwrap()
            .failures,
        1
    );
    assert_eq!(
        case_state(&pool, case_id).await,
        CaseState::ProvisioningFailed
    );
}

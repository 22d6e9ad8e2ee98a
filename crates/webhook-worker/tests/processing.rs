//! The webhooks service's processing against a real Postgres (`#[sqlx::test]`): each
//! carrier event applied once, orders confirmed exactly as the provisioning worker
//! finishes them, re-scores only under security review, fan-out by subscription.

use case_store::testing::open_case;
use std::time::Duration;

use case_domain::{Actor, CaseEvent, CaseState, risk::RiskTier};
use case_store::{
    MIGRATOR, TransitionRequest, load_case, risk, timeline, transition, webhooks as store,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

fn request<'a>(
    case_id: Uuid,
    version: i32,
    event: CaseEvent,
    actor: &'a Actor,
) -> TransitionRequest<'a> {
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

/// A case in risk_assessment (version 2).
async fn graded_case(pool: &PgPool, msisdn: &str) -> Uuid {
    let id = open_case(pool, msisdn).await;
    let identity = Actor::system("identity-verification");
    transition(pool, request(id, 1, CaseEvent::ProofsAccepted, &identity))
        .await
        .unwrap();
    id
}

/// A case in provisioning with its order; returns (case, order id).
async fn provisioning_case(pool: &PgPool, msisdn: &str) -> (Uuid, Uuid) {
    let id = graded_case(pool, msisdn).await;
    let system = Actor::system("risk-assessment");
    let mut tx = pool.begin().await.unwrap();
    let done = risk::transition_into_provisioning(
        &mut tx,
        request(id, 2, CaseEvent::RiskCleared, &system),
        case_domain::Restoration::Full,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (id, done.outbox_ids[0])
}

async fn receive(pool: &PgPool, id: &str, body: Value) {
    let kind = body["type"].as_str().unwrap().to_owned();
    assert!(
        store::receive_carrier_webhook(pool, id, &kind, &body)
            .await
            .unwrap()
    );
}

async fn process_all(pool: &PgPool) -> usize {
    let mut n = 0;
    let settings = webhook_worker::InboundSettings {
        start_url: "https://10086.example.cn/fuji".into(),
        keys: std::sync::Arc::new(data_protection::Keys::from_master(&[0x5e; 32])),
    };
    while webhook_worker::inbound::process_one(pool, &settings, "test-worker", LEASE)
        .await
        .unwrap()
    {
        n += 1;
    }
    n
}

fn completed(order_id: Uuid, msisdn: &str) -> Value {
    json!({"type": "provisioning.completed", "timestamp": "2026-12-01T08:00:00Z",
           "data": {"order_id": order_id, "msisdn": msisdn, "restoration": "full", "carrier_ref": "SO-42"}})
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_completion_finishes_the_order_as_the_provisioning_worker_would(pool: PgPool) {
    let msisdn = "+8613800138010";
    let (case_id, order_id) = provisioning_case(&pool, msisdn).await;
    // The provisioning worker has claimed the order and is still following it.
    let claim = case_store::claim_outbox(
        &pool,
        &[risk::PROVISIONING_TOPIC.to_owned()],
        "provisioning-1",
        LEASE,
    )
    .await
    .unwrap()
    .unwrap();

    receive(&pool, "msg_done", completed(order_id, msisdn)).await;
    assert_eq!(process_all(&pool).await, 1);

    let case = load_case(&pool, case_id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::Reactivated);
    let last = timeline(&pool, case_id).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.event, last.actor_id.as_str()),
        (CaseEvent::Restored, "provisioning")
    );
    let order = risk::load_order(&pool, order_id).await.unwrap().unwrap();
    assert_eq!(
        (order.state.as_str(), order.carrier_ref.as_deref()),
        ("completed", Some("SO-42"))
    );

    // The worker then records its own (identical) outcome: nothing moves twice.
    let mut tx = pool.begin().await.unwrap();
    let moved = case_workflows::orders::finish_order(
        &mut tx,
        &case_workflows::orders::OrderOutcome {
            order_id,
            case_id,
            state: "completed",
            carrier_ref: Some("SO-42"),
            event: CaseEvent::Restored,
            reason: "the carrier restored full service",
        },
        case_workflows::orders::OutboxSettlement::Claimed(&claim),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(moved.is_none());
    assert_eq!(timeline(&pool, case_id).await.unwrap().len(), 4);

    // A second completion (another webhook id) is processed and ignored.
    receive(&pool, "msg_done_again", completed(order_id, msisdn)).await;
    assert_eq!(process_all(&pool).await, 1);
    let again = store::load_carrier_webhook(&pool, "msg_done_again")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.error.as_deref(),
        Some("the order was already completed")
    );
    assert_eq!(timeline(&pool, case_id).await.unwrap().len(), 4);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn completions_for_unknown_orders_or_other_numbers_are_ignored(pool: PgPool) {
    let (case_id, order_id) = provisioning_case(&pool, "+8613800138011").await;
    receive(
        &pool,
        "msg_unknown",
        completed(Uuid::now_v7(), "+8613800138011"),
    )
    .await;
    receive(&pool, "msg_other", completed(order_id, "+8613800138099")).await;
    assert_eq!(process_all(&pool).await, 2);
    for (id, note) in [
        ("msg_unknown", "no such order"),
        ("msg_other", "the number does not match the order"),
    ] {
        let row = store::load_carrier_webhook(&pool, id)
            .await
            .unwrap()
            .unwrap();
        assert!(row.processed_at.is_some());
        assert_eq!(row.error.as_deref(), Some(note));
    }
    let case = load_case(&pool, case_id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::Provisioning);
}

fn signals(msisdn: &str, fraud: u32) -> Value {
    json!({"type": "subscriber.signals", "timestamp": "2026-12-01T08:00:00Z",
           "data": {"msisdn": msisdn, "signals": {"fraud_linked_contacts": fraud, "flagged_contacts": ["+8613900000001"]}}})
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn signals_rescore_a_case_under_security_review_only(pool: PgPool) {
    let reviewed = "+8613800138020";
    let case_id = graded_case(&pool, reviewed).await;
    let system = Actor::system("risk-assessment");
    risk::save_assessment(
        &pool,
        case_id,
        RiskTier::Medium,
        &["fraud_linked_contacts".into()],
        &["explanation".into(), "security_review".into()],
        &case_domain::risk::RecordedSignals {
            fraud_linked_contacts: 1,
            suspension_reason: Some("fraud_linked_contacts".into()),
            ..Default::default()
        },
        1,
    )
    .await
    .unwrap();
    transition(&pool, request(case_id, 2, CaseEvent::RiskFlagged, &system))
        .await
        .unwrap();
    let waiting = open_case(&pool, "+8613800138021").await;

    receive(&pool, "msg_sig_1", signals(reviewed, 3)).await;
    receive(&pool, "msg_sig_2", signals("+8613800138021", 3)).await;
    receive(&pool, "msg_sig_3", signals("+8613800138022", 3)).await;
    assert_eq!(process_all(&pool).await, 3);

    let latest = risk::latest_assessment(&pool, case_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.tier, RiskTier::High);
    assert_eq!(
        latest.needs,
        ["explanation", "evidence", "security_review"],
        "the high tier's needs, none satisfied yet"
    );
    assert_eq!(
        latest.signals.suspension_reason.as_deref(),
        Some("fraud_linked_contacts")
    );
    assert_eq!(latest.signals.flagged_contacts[0], "+8613900000001");
    assert!(
        risk::latest_assessment(&pool, waiting)
            .await
            .unwrap()
            .is_none()
    );
    for (id, note) in [
        (
            "msg_sig_2",
            "the case is awaiting_identity, not under security review",
        ),
        ("msg_sig_3", "the number has no open case"),
    ] {
        let row = store::load_carrier_webhook(&pool, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.error.as_deref(), Some(note), "{id}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_suspension_is_recorded_once(pool: PgPool) {
    let body = json!({"type": "subscriber.suspended", "timestamp": "2026-12-01T08:00:00Z",
                      "data": {"msisdn": "13800138030", "reason": "fraud_linked_contacts"}});
    receive(&pool, "msg_susp", body).await;
    assert_eq!(process_all(&pool).await, 1);
    assert_eq!(process_all(&pool).await, 0, "nothing left to process");
    let (msisdn, reason): (String, String) = sqlx::query_as(
        "SELECT msisdn, reason FROM carrier_suspension_notices WHERE webhook_id = 'msg_susp'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (msisdn.as_str(), reason.as_str()),
        ("+8613800138030", "fraud_linked_contacts")
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn fan_out_makes_one_delivery_per_subscribed_endpoint(pool: PgPool) {
    let changes = Uuid::now_v7();
    let openings = Uuid::now_v7();
    for (id, kind) in [(changes, "case.state_changed"), (openings, "case.opened")] {
        store::create_endpoint(
            &pool,
            id,
            "https://hooks.example.com/",
            &[kind.to_owned()],
            b"x",
            None,
        )
        .await
        .unwrap();
    }
    let case = open_case(&pool, "+8613800138040").await;
    let customer = Actor::customer();
    transition(&pool, request(case, 1, CaseEvent::Cancelled, &customer))
        .await
        .unwrap();
    assert!(webhook_worker::outbound::fan_out_once(&pool).await.unwrap());
    assert!(!webhook_worker::outbound::fan_out_once(&pool).await.unwrap());
    let rows: Vec<(Uuid, String, Value)> = sqlx::query_as(
        "SELECT endpoint_id, event_type, payload FROM webhook_deliveries ORDER BY event_type",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].0, rows[0].1.as_str()), (openings, "case.opened"));
    assert_eq!(
        (rows[1].0, rows[1].1.as_str()),
        (changes, "case.state_changed")
    );
    let data = &rows[1].2["data"];
    assert_eq!(
        (&data["from"], &data["to"], &data["version"]),
        (&json!("awaiting_identity"), &json!("cancelled"), &json!(2))
    );
    assert!(
        !rows[1].2.to_string().contains("13800138040"),
        "no number in payloads"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_suspension_notice_links_the_configured_start_page_once(pool: PgPool) {
    let body = json!({"type": "subscriber.suspended", "timestamp": "2026-12-01T08:00:00Z",
                      "data": {"msisdn": "13800138031", "reason": "fraud_linked_contacts"}});
    receive(&pool, "msg_susp_link", body.clone()).await;
    // The same webhook stored again under another id is a different notice; the same id is not.
    assert!(
        !store::receive_carrier_webhook(&pool, "msg_susp_link", "subscriber.suspended", &body)
            .await
            .unwrap()
    );
    assert_eq!(process_all(&pool).await, 1);
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'body' FROM outbox WHERE topic = $1 AND payload->>'kind' = 'suspension'",
    )
    .bind(case_workflows::notices::NOTIFICATION_TOPIC)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(
        bodies[0].contains("https://10086.example.cn/fuji"),
        "{}",
        bodies[0]
    );
}

/// Fails the case's provisioning and retries it as a technical agent; returns the
/// retry's order (now the case's current one).
async fn fail_and_retry(pool: &PgPool, case_id: Uuid) -> Uuid {
    let version = load_case(pool, case_id).await.unwrap().unwrap().version;
    let system = Actor::system("provisioning");
    transition(
        pool,
        request(case_id, version, CaseEvent::ProvisioningFailed, &system),
    )
    .await
    .unwrap();
    let tech = Actor::agent(case_domain::Role::Technical, Uuid::now_v7().to_string());
    let mut tx = pool.begin().await.unwrap();
    let done = risk::transition_into_provisioning(
        &mut tx,
        request(case_id, version + 1, CaseEvent::ProvisioningRetried, &tech),
        case_domain::Restoration::Full,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    done.outbox_ids[0]
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_late_completion_of_a_superseded_order_is_recorded_and_moves_nothing(pool: PgPool) {
    let msisdn = "+8613800138012";
    let (case_id, first) = provisioning_case(&pool, msisdn).await;
    let retry = fail_and_retry(&pool, case_id).await;
    let events = timeline(&pool, case_id).await.unwrap().len();

    // The carrier reports the first order completed, late.
    receive(&pool, "msg_late", completed(first, msisdn)).await;
    assert_eq!(process_all(&pool).await, 1);
    let row = store::load_carrier_webhook(&pool, "msg_late")
        .await
        .unwrap()
        .unwrap();
    assert!(row.processed_at.is_some());
    assert_eq!(
        row.error.as_deref(),
        Some(case_workflows::orders::STALE_REASON)
    );
    let case = load_case(&pool, case_id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::Provisioning, "nothing moved");
    assert_eq!(timeline(&pool, case_id).await.unwrap().len(), events);
    let order = risk::load_order(&pool, first).await.unwrap().unwrap();
    assert_eq!(
        (order.state.as_str(), order.carrier_ref.as_deref()),
        ("completed", Some("SO-42")),
        "the carrier's word is recorded"
    );
    let entries = case_store::audit::query(
        &pool,
        &case_store::audit::AuditFilter {
            case_id: Some(case_id),
            action: Some(case_workflows::orders::STALE_AUDIT_ACTION.into()),
            ..Default::default()
        },
        0,
        10,
    )
    .await
    .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].detail["via"], "carrier_webhook");
    assert_eq!(entries[0].detail["current_order_id"], retry.to_string());
    // The late completion settled neither message. A case's messages of one topic
    // are claimed oldest first, one at a time: the first order's comes out (the
    // provisioning worker settles it unsent), and the retry's waits behind it.
    let mut pending = Vec::new();
    while let Some(claim) = case_store::claim_outbox(
        &pool,
        &[risk::PROVISIONING_TOPIC.to_owned()],
        "provisioning-1",
        LEASE,
    )
    .await
    .unwrap()
    {
        pending.push(claim.id);
    }
    assert_eq!(pending, [first]);

    // The current order's completion moves the case.
    receive(&pool, "msg_current", completed(retry, msisdn)).await;
    assert_eq!(process_all(&pool).await, 1);
    let case = load_case(&pool, case_id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::Reactivated);
}

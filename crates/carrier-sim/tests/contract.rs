//! The contract between `carrier-adapter` and the simulator: a real simulator on a random
//! port over a fresh Postgres database per test, driven through `HttpCarrier` (and raw
//! HTTP for the `/sim/*` calls fixed by the API contract).

use std::time::{Duration, Instant};

use carrier_adapter::{
    Carrier, CarrierError, ContactKind, HttpCarrier, MessageChannel, OrderState, Restoration,
    ServiceOrderRequest,
};
use carrier_sim::demo;
use case_domain::{Msisdn, PersonName, ResidentId};
use reqwest::StatusCode;
use serde_json::{Value, json};
use service_runtime::Shutdown;
use sqlx::PgPool;
use tokio::{net::TcpListener, task::JoinHandle};
use uuid::Uuid;

const NUMBER: &str = "+8613800138000";
const NAME: &str = "张三";
const ID: &str = "11010519491231002X";
const PASSWORD: &str = "314159";
const BACKUP_SMS: &str = "+8613900139000";
const RECENT: [&str; 4] = [
    "+8613700137000",
    "+8613700137001",
    "+8613700137002",
    "+8613700137003",
];

struct Sim {
    base: String,
    carrier: HttpCarrier,
    http: reqwest::Client,
    shutdown: Shutdown,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Sim {
    /// `carrier_sim::run` on a random port.
    async fn start(pool: PgPool) -> Self {
        carrier_sim::prepare(&pool).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = Shutdown::new();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(carrier_sim::run(listener, pool, shutdown.clone()));
        Self::with(base, shutdown, task)
    }

    /// `carrier_sim::router` served directly (no `prepare`, as a second process would).
    async fn start_router(pool: PgPool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = Shutdown::new();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = carrier_sim::router(pool);
        let task = tokio::spawn(service_runtime::http::serve(
            listener,
            app,
            shutdown.clone(),
        ));
        Self::with(base, shutdown, task)
    }

    fn with(base: String, shutdown: Shutdown, task: JoinHandle<anyhow::Result<()>>) -> Self {
        let carrier = HttpCarrier::new(&base, Duration::from_secs(10))
            .unwrap()
            .with_retries(3, Duration::from_millis(10));
        Self {
            base,
            carrier,
            http: reqwest::Client::new(),
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.unwrap().unwrap();
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, String, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, content_type, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await;
        (status, body)
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let (status, _, body) = self
            .send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await;
        (status, body)
    }

    async fn put_subscriber(&self, body: &Value) {
        let (status, answer) = self.post("/sim/subscribers", body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }

    async fn subscriber(&self, msisdn: &str) -> Value {
        let (status, body) = self.get(&format!("/sim/subscribers/{msisdn}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn faults(&self, rate: f64, latency_ms: u64) {
        let body =
            json!({"provisioning_failure_rate": rate, "provisioning_latency_ms": latency_ms});
        let (status, answer) = self.post("/sim/faults", &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    async fn outbox(&self, to: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/sim/outbox?to={to}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().unwrap().clone()
    }

    async fn provisioning_requests(&self, msisdn: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!(
                "/sim/provisioning-requests?msisdn={}",
                msisdn.replace('+', "%2B")
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().unwrap().clone()
    }
}

/// The contract's `POST /sim/subscribers` body.
fn subscriber_body(msisdn: &str) -> Value {
    json!({
        "msisdn": msisdn,
        "full_name": NAME,
        "id_number": ID,
        "service_password": PASSWORD,
        "backup_contacts": [{"kind": "sms", "address": BACKUP_SMS}],
        "recent_contacts": RECENT,
        "signals": {"fraud_linked_contacts": 0, "sms_peak_per_hour": 2, "intl_calls_24h": 0},
        "status": "suspended",
        "suspension_reason": "real_name_reverification"
    })
}

fn m(number: &str) -> Msisdn {
    Msisdn::parse(number).unwrap()
}

fn order(msisdn: &str, restoration: Restoration) -> ServiceOrderRequest {
    ServiceOrderRequest {
        order_id: Uuid::now_v7(),
        msisdn: m(msisdn),
        restoration,
    }
}

fn assert_problem(status: StatusCode, content_type: &str, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(content_type, "application/problem+json", "{body}");
    for member in ["type", "title", "detail"] {
        assert!(body[member].is_string(), "{member} missing: {body}");
    }
    assert_eq!(body["status"], expected.as_u16(), "{body}");
}

#[sqlx::test]
async fn identity_lookups_answer_yes_or_no(pool: PgPool) {
    let sim = Sim::start(pool).await;
    sim.put_subscriber(&subscriber_body(NUMBER)).await;
    let mut no_password = subscriber_body("+8613800138009");
    no_password["service_password"] = Value::Null;
    sim.put_subscriber(&no_password).await;

    let c = &sim.carrier;
    let name = PersonName::parse(NAME).unwrap();
    let id = ResidentId::parse(ID).unwrap();
    let other_name = PersonName::parse("李四").unwrap();
    let other_id = ResidentId::parse("110105199003071239").unwrap();
    assert!(c.subscriber_matches(&m(NUMBER), &name, &id).await.unwrap());
    // Spelling of the number and spacing of the name do not matter.
    let spaced = PersonName::parse(" 张三 ").unwrap();
    assert!(
        c.subscriber_matches(&m("138 0013 8000"), &spaced, &id)
            .await
            .unwrap()
    );
    assert!(
        !c.subscriber_matches(&m(NUMBER), &other_name, &id)
            .await
            .unwrap()
    );
    assert!(
        !c.subscriber_matches(&m(NUMBER), &name, &other_id)
            .await
            .unwrap()
    );
    assert!(
        !c.subscriber_matches(&m("+8613800138099"), &name, &id)
            .await
            .unwrap()
    );

    assert!(
        c.verify_service_password(&m(NUMBER), PASSWORD)
            .await
            .unwrap()
    );
    assert!(
        !c.verify_service_password(&m(NUMBER), "314158")
            .await
            .unwrap()
    );
    assert!(
        !c.verify_service_password(&m("+8613800138099"), PASSWORD)
            .await
            .unwrap()
    );
    assert!(
        !c.verify_service_password(&m("+8613800138009"), PASSWORD)
            .await
            .unwrap()
    );
    sim.stop().await;
}

#[sqlx::test]
async fn messages_go_only_to_contacts_on_file_once_per_key(pool: PgPool) {
    let sim = Sim::start(pool).await;
    let mut body = subscriber_body(NUMBER);
    body["backup_contacts"] = json!([
        {"kind": "sms", "address": BACKUP_SMS},
        {"kind": "email", "address": "Zhang.San@Example.com"}
    ]);
    sim.put_subscriber(&body).await;
    let mut sms_only = subscriber_body("+8613800138001");
    sms_only["backup_contacts"] = json!([{"kind": "sms", "address": "+8613900139001"}]);
    sim.put_subscriber(&sms_only).await;
    let c = &sim.carrier;

    let contacts = c.contacts_on_file(&m(NUMBER)).await.unwrap();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].kind, ContactKind::Sms);
    assert_eq!(contacts[0].masked, "+86*******9000");
    assert_eq!(contacts[1].kind, ContactKind::Email);
    assert_eq!(contacts[1].masked, "z***@example.com");
    assert_eq!(
        c.contacts_on_file(&m("+8613800138099")).await.unwrap_err(),
        CarrierError::NotFound
    );

    let sent = c
        .send_message(&m(NUMBER), MessageChannel::Any, "验证码 123456", "otp-1")
        .await
        .unwrap();
    assert_eq!(sent.kind, ContactKind::Sms);
    assert_eq!(sent.sent_to_masked, "+86*******9000");
    let again = c
        .send_message(&m(NUMBER), MessageChannel::Any, "验证码 123456", "otp-1")
        .await
        .unwrap();
    assert_eq!(again, sent, "the same key answers the same receipt");
    // The outbox finds the message under any spelling of the number.
    for to in ["%2B8613900139000", "13900139000", "+8613900139000"] {
        let inbox = sim.outbox(to).await;
        assert_eq!(inbox.len(), 1, "{to}: {inbox:?}");
        assert_eq!(inbox[0]["to"], BACKUP_SMS);
        assert_eq!(inbox[0]["channel"], "sms");
        assert_eq!(inbox[0]["body"], "验证码 123456");
        assert!(inbox[0]["sent_at"].is_string());
    }

    let mail = c
        .send_message(&m(NUMBER), MessageChannel::Email, "code 654321", "otp-2")
        .await
        .unwrap();
    assert_eq!(mail.kind, ContactKind::Email);
    assert_ne!(mail.message_id, sent.message_id);
    let inbox = sim.outbox("ZHANG.SAN@example.com").await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["to"], "zhang.san@example.com");
    assert_eq!(inbox[0]["channel"], "email");

    assert_eq!(
        c.send_message(&m("+8613800138001"), MessageChannel::Email, "x", "otp-3")
            .await
            .unwrap_err(),
        CarrierError::NoContactOnFile
    );
    assert_eq!(
        c.send_message(&m("+8613800138099"), MessageChannel::Any, "x", "otp-4")
            .await
            .unwrap_err(),
        CarrierError::NoContactOnFile
    );
    let (status, all) = sim.get("/sim/outbox").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    sim.stop().await;
}

#[sqlx::test]
async fn call_records_count_distinct_recent_counterparties(pool: PgPool) {
    let sim = Sim::start(pool).await;
    sim.put_subscriber(&subscriber_body(NUMBER)).await;
    let c = &sim.carrier;
    let named = [
        m(RECENT[0]),
        m(RECENT[1]),
        m("137 0013 7002"), // RECENT[2], spelled differently
        m(RECENT[0]),       // counted once
        m("+8618600186000"),
    ];
    assert_eq!(
        c.count_call_record_matches(&m(NUMBER), &named)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        c.count_call_record_matches(&m(NUMBER), &[]).await.unwrap(),
        0
    );
    assert_eq!(
        c.count_call_record_matches(&m("+8613800138099"), &named)
            .await
            .unwrap(),
        0
    );
    sim.stop().await;
}

#[sqlx::test]
async fn demo_subscribers_load_and_answer_as_described(pool: PgPool) {
    demo::seed(&pool).await.unwrap();
    demo::seed(&pool).await.unwrap();
    let sim = Sim::start(pool.clone()).await;
    let c = &sim.carrier;
    for d in demo::ALL {
        let name = PersonName::parse(d.full_name).unwrap();
        let id = ResidentId::parse(d.id_number).unwrap();
        assert!(
            c.subscriber_matches(&m(d.msisdn), &name, &id)
                .await
                .unwrap(),
            "{}",
            d.key
        );
        assert!(
            c.verify_service_password(&m(d.msisdn), d.service_password)
                .await
                .unwrap(),
            "{}",
            d.key
        );
        let named: Vec<Msisdn> = d.recent_contacts.iter().take(3).map(|n| m(n)).collect();
        assert_eq!(
            c.count_call_record_matches(&m(d.msisdn), &named)
                .await
                .unwrap(),
            3
        );
        let view = sim.subscriber(d.msisdn).await;
        assert_eq!(view["status"], "suspended", "{}", d.key);
    }

    let clean = c.risk_signals(&m(demo::CLEAN.msisdn)).await.unwrap();
    assert_eq!(
        (
            clean.fraud_linked_contacts,
            clean.sms_peak_per_hour,
            clean.intl_calls_24h
        ),
        (0, 0, 0)
    );
    assert!(clean.flagged_contacts.is_empty());
    let flagged = c.risk_signals(&m(demo::FLAGGED.msisdn)).await.unwrap();
    assert_eq!(flagged.fraud_linked_contacts, 2);
    assert_eq!(flagged.sms_peak_per_hour, 300);
    assert_eq!(flagged.intl_calls_24h, 15);
    assert_eq!(
        flagged.suspension_reason.as_deref(),
        Some("fraud_linked_contacts")
    );
    assert_eq!(flagged.flagged_contacts, demo::FLAGGED.flagged_contacts);
    assert_eq!(
        c.risk_signals(&m("+8613800138099")).await.unwrap_err(),
        CarrierError::NotFound
    );

    assert!(
        c.contacts_on_file(&m(demo::NO_BACKUP_CONTACT.msisdn))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.send_message(
            &m(demo::NO_BACKUP_CONTACT.msisdn),
            MessageChannel::Any,
            "x",
            "k1"
        )
        .await
        .unwrap_err(),
        CarrierError::NoContactOnFile
    );
    let otp = c
        .send_message(
            &m(demo::FORGOT_PASSWORD.msisdn),
            MessageChannel::Any,
            "code 1",
            "k2",
        )
        .await
        .unwrap();
    assert_eq!(otp.kind, ContactKind::Email);
    let address = demo::FORGOT_PASSWORD.contact_address().unwrap();
    assert_eq!(sim.outbox(address).await.len(), 1);
    let otp = c
        .send_message(&m(demo::CLEAN.msisdn), MessageChannel::Any, "code 2", "k3")
        .await
        .unwrap();
    assert_eq!(otp.kind, ContactKind::Sms);
    assert_eq!(
        sim.outbox(demo::CLEAN.contact_address().unwrap())
            .await
            .len(),
        1
    );

    // Seeding again keeps the state; reset puts it back.
    let resumed = c
        .submit_order(&order(demo::CLEAN.msisdn, Restoration::Full))
        .await
        .unwrap();
    assert_eq!(resumed.state, OrderState::Completed);
    demo::seed(&pool).await.unwrap();
    assert_eq!(sim.subscriber(demo::CLEAN.msisdn).await["status"], "active");
    demo::reset(&pool).await.unwrap();
    let view = sim.subscriber(demo::CLEAN.msisdn).await;
    assert_eq!(
        (view["status"].as_str(), view["resume_count"].as_i64()),
        (Some("suspended"), Some(0))
    );
    assert_eq!(demo::subscribers().len(), 4);
    sim.stop().await;
}

#[sqlx::test]
async fn orders_move_through_their_states_and_apply_once(pool: PgPool) {
    let sim = Sim::start(pool).await;
    sim.put_subscriber(&subscriber_body(NUMBER)).await;
    let c = &sim.carrier;
    let latency = Duration::from_millis(1500);
    sim.faults(0.0, 1500).await;

    let request = order(NUMBER, Restoration::InboundOnly);
    let submitted_at = Instant::now();
    let created = c.submit_order(&request).await.unwrap();
    assert_eq!(created.order_id, request.order_id);
    assert_eq!(created.state, OrderState::Acknowledged);
    assert_eq!(created.restoration, Restoration::InboundOnly);
    assert!(
        created.carrier_ref.starts_with("SO-"),
        "{}",
        created.carrier_ref
    );
    let view = sim.subscriber(NUMBER).await;
    assert_eq!(
        (view["status"].as_str(), view["resume_count"].as_i64()),
        (Some("suspended"), Some(0))
    );

    // Time has to pass here (the latency is what is tested), but the simulator counts
    // it from when it stored the order, a little after `submitted_at`: look again
    // (bounded) rather than trusting one fixed pause to have been long enough.
    tokio::time::sleep_until((submitted_at + latency / 2).into()).await;
    let midway = loop {
        let midway = c.get_order(request.order_id).await.unwrap();
        if midway.state != OrderState::Acknowledged || submitted_at.elapsed() >= latency {
            break midway;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if submitted_at.elapsed() < latency {
        assert_eq!(midway.state, OrderState::InProgress);
        assert_eq!(sim.subscriber(NUMBER).await["status"], "suspended");
    }

    tokio::time::sleep_until((submitted_at + latency).into()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let done = c.get_order(request.order_id).await.unwrap();
        let settled = !matches!(
            done.state,
            OrderState::Acknowledged | OrderState::InProgress
        );
        if settled || Instant::now() >= deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done.state, OrderState::Completed);
    assert_eq!(done.carrier_ref, created.carrier_ref);
    let view = sim.subscriber(NUMBER).await;
    assert_eq!(view["status"], "active");
    assert_eq!(view["restoration"], "inbound_only");
    assert_eq!(view["resume_count"], 1);
    assert_eq!(
        view["suspension_reason"], "real_name_reverification",
        "partial keeps the reason"
    );

    // The same order again: 200 with its current state, no second effect.
    let again = c.submit_order(&request).await.unwrap();
    assert_eq!(again, done);
    assert_eq!(sim.subscriber(NUMBER).await["resume_count"], 1);
    let calls = sim.provisioning_requests(NUMBER).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    for call in &calls {
        assert_eq!(call["msisdn"], NUMBER);
        assert_eq!(call["action"], "resume");
        assert_eq!(call["idempotency_key"], request.order_id.to_string());
        assert_eq!(call["restoration"], "inbound_only");
        assert!(call["received_at"].is_string());
    }
    assert_eq!(
        (calls[0]["status"].as_i64(), calls[1]["status"].as_i64()),
        (Some(201), Some(200))
    );

    // A full resume later, with no latency: completed at once.
    sim.faults(0.0, 0).await;
    let full = c
        .submit_order(&order(NUMBER, Restoration::Full))
        .await
        .unwrap();
    assert_eq!(full.state, OrderState::Completed);
    let view = sim.subscriber(NUMBER).await;
    assert_eq!(view["restoration"], "full");
    assert_eq!(view["resume_count"], 2);
    assert_eq!(view["suspension_reason"], Value::Null);

    // Unknown orders; orders for unknown numbers fail.
    assert_eq!(
        c.get_order(Uuid::now_v7()).await.unwrap_err(),
        CarrierError::NotFound
    );
    let nobody = c
        .submit_order(&order("+8613800138099", Restoration::Full))
        .await
        .unwrap();
    assert_eq!(nobody.state, OrderState::Failed);
    sim.stop().await;
}

#[sqlx::test]
async fn orders_are_cancelled_before_they_take_effect_and_only_then(pool: PgPool) {
    let sim = Sim::start(pool).await;
    sim.put_subscriber(&subscriber_body(NUMBER)).await;
    let c = &sim.carrier;

    // An order in progress is cancelled: it never takes effect, a copy does nothing.
    sim.faults(0.0, 600_000).await;
    let slow = order(NUMBER, Restoration::Full);
    assert_eq!(
        c.submit_order(&slow).await.unwrap().state,
        OrderState::Acknowledged
    );
    let cancelled = c.cancel_order(&slow).await.unwrap();
    assert_eq!(
        (cancelled.order_id, cancelled.state),
        (slow.order_id, OrderState::Cancelled)
    );
    assert_eq!(
        c.cancel_order(&slow).await.unwrap(),
        cancelled,
        "idempotent"
    );
    assert_eq!(
        c.get_order(slow.order_id).await.unwrap().state,
        OrderState::Cancelled
    );
    assert_eq!(
        c.submit_order(&slow).await.unwrap().state,
        OrderState::Cancelled
    );

    // An order never received is recorded as cancelled: its late arrival does nothing.
    let never = order(NUMBER, Restoration::Full);
    assert_eq!(
        c.cancel_order(&never).await.unwrap().state,
        OrderState::Cancelled
    );
    sim.faults(0.0, 0).await;
    assert_eq!(
        c.submit_order(&never).await.unwrap().state,
        OrderState::Cancelled
    );
    assert_eq!(sim.subscriber(NUMBER).await["resume_count"], 0);

    // Too late: a completed order stays completed.
    let done = order(NUMBER, Restoration::Full);
    assert_eq!(
        c.submit_order(&done).await.unwrap().state,
        OrderState::Completed
    );
    assert_eq!(
        c.cancel_order(&done).await.unwrap().state,
        OrderState::Completed
    );
    assert_eq!(sim.subscriber(NUMBER).await["resume_count"], 1);

    // The request log shows every call by key, cancellations included.
    let calls = sim.provisioning_requests(NUMBER).await;
    let of = |key: Uuid| -> Vec<(String, String, i64)> {
        calls
            .iter()
            .filter(|c| c["idempotency_key"] == key.to_string())
            .map(|c| {
                (
                    c["action"].as_str().unwrap().to_owned(),
                    c["outcome"].as_str().unwrap().to_owned(),
                    c["status"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let row = |a: &str, o: &str, s: i64| (a.to_owned(), o.to_owned(), s);
    assert_eq!(
        of(slow.order_id),
        [
            row("resume", "created", 201),
            row("cancel", "cancelled", 201),
            row("cancel", "already_cancelled", 200),
            row("resume", "duplicate", 200),
        ]
    );
    assert_eq!(
        of(never.order_id),
        [
            row("cancel", "cancelled_unknown", 201),
            row("resume", "duplicate", 200),
        ]
    );
    assert_eq!(
        of(done.order_id),
        [
            row("resume", "created", 201),
            row("cancel", "too_late", 200)
        ]
    );

    // Cancelling with another number's or restoration's key, or a mismatched header.
    let mut other = done.clone();
    other.restoration = Restoration::InboundOnly;
    assert!(matches!(
        c.cancel_order(&other).await.unwrap_err(),
        CarrierError::Rejected { status: 422, .. }
    ));
    let mismatched = sim
        .http
        .post(format!("{}/carrier/v1/cancelServiceOrder", sim.base))
        .header("Idempotency-Key", Uuid::now_v7().to_string())
        .json(&json!({"serviceOrder": {"externalId": done.order_id, "msisdn": NUMBER, "restoration": "full"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(mismatched.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let unknown_field = sim
        .http
        .post(format!("{}/carrier/v1/cancelServiceOrder", sim.base))
        .header("Idempotency-Key", done.order_id.to_string())
        .json(&json!({"serviceOrder": {"externalId": done.order_id, "msisdn": NUMBER, "restoration": "full", "x": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), StatusCode::UNPROCESSABLE_ENTITY);
    sim.stop().await;
}

#[sqlx::test]
async fn concurrent_duplicates_of_one_order_resume_once(pool: PgPool) {
    let sim = Sim::start(pool).await;
    sim.put_subscriber(&subscriber_body(NUMBER)).await;
    let request = order(NUMBER, Restoration::Full);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let carrier = sim.carrier.clone();
        let request = request.clone();
        calls.spawn(async move { carrier.submit_order(&request).await });
    }
    let refs: Vec<String> = calls
        .join_all()
        .await
        .into_iter()
        .map(|answer| answer.unwrap().carrier_ref)
        .collect();
    assert!(refs.iter().all(|r| *r == refs[0]), "{refs:?}");
    let view = sim.subscriber(NUMBER).await;
    assert_eq!(view["resume_count"], 1);
    let calls = sim.provisioning_requests(NUMBER).await;
    assert_eq!(calls.len(), 8);
    assert_eq!(calls.iter().filter(|c| c["status"] == 201).count(), 1);
    sim.stop().await;
}

#[sqlx::test]
async fn half_of_provisioning_calls_failing_still_resumes_each_number_exactly_once(pool: PgPool) {
    let sim = Sim::start(pool).await;
    let numbers: Vec<String> = (0..20).map(|i| format!("+86135001350{i:02}")).collect();
    for number in &numbers {
        let mut body = subscriber_body(number);
        body["service_password"] = Value::Null; // no hashing: keeps the test quick
        sim.put_subscriber(&body).await;
    }
    sim.faults(0.5, 0).await;
    let mut orders = Vec::new();
    for number in &numbers {
        let request = order(number, Restoration::Full);
        // The product's retry loop: the adapter retries 3 times, the caller again later.
        let mut answer = None;
        for _ in 0..30 {
            match sim.carrier.submit_order(&request).await {
                Ok(order) => {
                    answer = Some(order);
                    break;
                }
                Err(CarrierError::Unavailable(_)) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        let answer = answer.expect("an order got through within 90 attempts");
        assert_eq!(answer.state, OrderState::Completed);
        orders.push(request);
    }
    sim.faults(0.0, 0).await;

    let mut calls_total = 0;
    let mut lost_answers = 0;
    let mut not_processed = 0;
    for request in &orders {
        let number = request.msisdn.e164();
        let view = sim.subscriber(number).await;
        assert_eq!(view["status"], "active", "{number}");
        assert_eq!(view["resume_count"], 1, "{number}");
        assert_eq!(
            sim.carrier.get_order(request.order_id).await.unwrap().state,
            OrderState::Completed
        );
        let calls = sim.provisioning_requests(number).await;
        assert!(!calls.is_empty());
        for call in &calls {
            assert_eq!(call["idempotency_key"], request.order_id.to_string());
            if call["status"] == 503 {
                if call["outcome"] == "not_processed" {
                    not_processed += 1;
                } else {
                    lost_answers += 1;
                }
            }
        }
        calls_total += calls.len();
    }
    assert!(
        calls_total > numbers.len(),
        "retries are recorded: {calls_total}"
    );
    assert!(
        lost_answers > 0,
        "some answers were lost after the order was recorded"
    );
    assert!(
        not_processed > 0,
        "some calls failed before anything was recorded"
    );
    sim.stop().await;
}

#[sqlx::test]
async fn a_failing_carrier_exhausts_the_adapters_three_attempts(pool: PgPool) {
    let sim = Sim::start(pool).await;
    sim.put_subscriber(&subscriber_body(NUMBER)).await;
    sim.faults(1.0, 0).await;
    let e = sim
        .carrier
        .submit_order(&order(NUMBER, Restoration::Full))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    let calls = sim.provisioning_requests(NUMBER).await;
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|c| c["status"] == 503));
    sim.stop().await;
}

#[sqlx::test]
async fn data_survives_a_new_simulator_on_the_same_database(pool: PgPool) {
    let first = Sim::start(pool.clone()).await;
    first.put_subscriber(&subscriber_body(NUMBER)).await;
    let sent = first
        .carrier
        .send_message(&m(NUMBER), MessageChannel::Sms, "code 777777", "persist-1")
        .await
        .unwrap();
    let request = order(NUMBER, Restoration::Full);
    first.carrier.submit_order(&request).await.unwrap();
    first.stop().await;

    let second = Sim::start_router(pool).await;
    let view = second.subscriber(NUMBER).await;
    assert_eq!(
        (view["status"].as_str(), view["resume_count"].as_i64()),
        (Some("active"), Some(1))
    );
    let c = &second.carrier;
    assert!(
        c.verify_service_password(&m(NUMBER), PASSWORD)
            .await
            .unwrap()
    );
    assert_eq!(second.outbox(BACKUP_SMS).await.len(), 1);
    let again = c
        .send_message(&m(NUMBER), MessageChannel::Sms, "code 777777", "persist-1")
        .await
        .unwrap();
    assert_eq!(again, sent);
    assert_eq!(
        c.get_order(request.order_id).await.unwrap().state,
        OrderState::Completed
    );
    assert_eq!(
        c.submit_order(&request).await.unwrap().state,
        OrderState::Completed
    );
    assert_eq!(second.subscriber(NUMBER).await["resume_count"], 1);
    assert_eq!(second.provisioning_requests(NUMBER).await.len(), 2);
    second.stop().await;
}

#[sqlx::test]
async fn the_subscriber_view_never_shows_the_password_hash_or_id_number(pool: PgPool) {
    let sim = Sim::start(pool).await;
    let (status, created) = sim.post("/sim/subscribers", &subscriber_body(NUMBER)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, shown) = sim.get(&format!("/sim/subscribers/{NUMBER}")).await;
    for body in [created.to_string(), shown.to_string()] {
        for secret in ["$argon2", "argon2id", ID, "1949", PASSWORD, NAME] {
            assert!(!body.contains(secret), "{secret} in {body}");
        }
    }
    assert_eq!(shown["msisdn"], NUMBER);
    assert_eq!(shown["status"], "suspended");
    assert_eq!(shown["restoration"], Value::Null);
    assert_eq!(shown["resume_count"], 0);
    assert_eq!(shown["suspension_reason"], "real_name_reverification");
    assert_eq!(shown["backup_contacts"][0]["address"], BACKUP_SMS);
    assert_eq!(shown["has_service_password"], true);
    let (status, _) = sim.get("/sim/subscribers/+8613800138099").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Create or replace: a second body for the same number replaces the first.
    let mut active = subscriber_body("13800138000");
    active["status"] = json!("active");
    active["backup_contacts"] = json!([]);
    sim.put_subscriber(&active).await;
    let replaced = sim.subscriber(NUMBER).await;
    assert_eq!(replaced["status"], "active");
    assert_eq!(replaced["restoration"], "full");
    assert_eq!(replaced["backup_contacts"], json!([]));
    sim.stop().await;
}

#[sqlx::test]
async fn bad_input_gets_problem_json_and_changes_nothing(pool: PgPool) {
    let sim = Sim::start(pool).await;
    let url = |path: &str| format!("{}{path}", sim.base);
    let post_raw = |path: &str, body: &str| {
        sim.http
            .post(url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
    };

    let (s, ct, b) = sim
        .send(post_raw("/sim/subscribers", "{\"msisdn\": "))
        .await;
    assert_problem(s, &ct, &b, StatusCode::BAD_REQUEST);

    let mut unknown_field = subscriber_body(NUMBER);
    unknown_field["colour"] = json!("blue");
    let (s, ct, b) = sim
        .send(sim.http.post(url("/sim/subscribers")).json(&unknown_field))
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["detail"].as_str().unwrap().contains("colour"), "{b}");

    let mut bad_id = subscriber_body(NUMBER);
    bad_id["id_number"] = json!("110105194912310021");
    bad_id["backup_contacts"] = json!([{"kind": "email", "address": "not-an-address"}]);
    let (s, ct, b) = sim
        .send(sim.http.post(url("/sim/subscribers")).json(&bad_id))
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["id_number", "backup_contacts[0].address"]);
    assert!(!b.to_string().contains("110105194912310021"), "{b}");

    let mut wrong_type = subscriber_body(NUMBER);
    wrong_type["signals"]["intl_calls_24h"] = json!("11010519491231002X");
    let (s, ct, b) = sim
        .send(sim.http.post(url("/sim/subscribers")).json(&wrong_type))
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!b.to_string().contains("11010519491231002X"), "{b}");
    let mut numeric_id = subscriber_body(NUMBER);
    numeric_id["id_number"] = json!(110_105_194_912_310_021_u64);
    let (s, ct, b) = sim
        .send(sim.http.post(url("/sim/subscribers")).json(&numeric_id))
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!b.to_string().contains("110105194912310021"), "{b}");

    let (s, ct, b) = sim
        .send(
            sim.http
                .post(url("/sim/subscribers"))
                .body(subscriber_body(NUMBER).to_string()),
        )
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Nothing of the above was stored.
    let (s, ct, b) = sim
        .send(sim.http.get(url(&format!("/sim/subscribers/{NUMBER}"))))
        .await;
    assert_problem(s, &ct, &b, StatusCode::NOT_FOUND);
    let (s, ct, b) = sim
        .send(sim.http.get(url("/sim/subscribers/not-a-number")))
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);

    for faults in [
        json!({"provisioning_failure_rate": 1.5}),
        json!({"provisioning_failure_rate": -0.1}),
        json!({"provisioning_latency_ms": -1}),
        json!({"provisioning_latency_ms": 600_001}),
        json!({"provisioning_latency_ms": 1.5}),
        json!({"provisioning_failure_rate": 0.5, "chaos": true}),
    ] {
        let (s, ct, b) = sim
            .send(sim.http.post(url("/sim/faults")).json(&faults))
            .await;
        assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (s, faults) = sim.get("/sim/faults").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        faults,
        json!({"provisioning_failure_rate": 0.0, "provisioning_latency_ms": 0})
    );

    sim.put_subscriber(&subscriber_body(NUMBER)).await;
    let message = json!({"msisdn": NUMBER, "channel": "sms", "body": "x"});
    let (s, ct, b) = sim
        .send(sim.http.post(url("/carrier/v1/messages")).json(&message))
        .await;
    assert_problem(s, &ct, &b, StatusCode::BAD_REQUEST);
    let (s, ct, b) = sim
        .send(
            sim.http
                .post(url("/carrier/v1/messages"))
                .header("Idempotency-Key", "k")
                .json(&json!({"msisdn": NUMBER, "channel": "fax", "body": "x"})),
        )
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, ct, b) = sim
        .send(
            sim.http
                .post(url("/carrier/v1/messages"))
                .header("Idempotency-Key", "k")
                .json(&json!({"msisdn": NUMBER, "channel": "email", "body": "x"})),
        )
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        b["type"].as_str().unwrap().ends_with("/no-contact-on-file"),
        "{b}"
    );
    assert!(sim.outbox(BACKUP_SMS).await.is_empty());

    let id = Uuid::now_v7();
    let order_body =
        json!({"externalId": id, "msisdn": NUMBER, "action": "resume", "restoration": "full"});
    let (s, ct, b) = sim
        .send(
            sim.http
                .post(url("/carrier/v1/serviceOrder"))
                .header("Idempotency-Key", Uuid::now_v7().to_string())
                .json(&order_body),
        )
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let mut other_action = order_body.clone();
    other_action["action"] = json!("terminate");
    let (s, ct, b) = sim
        .send(
            sim.http
                .post(url("/carrier/v1/serviceOrder"))
                .header("Idempotency-Key", id.to_string())
                .json(&other_action),
        )
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        sim.provisioning_requests(NUMBER).await.is_empty(),
        "refused calls change nothing"
    );
    assert_eq!(sim.subscriber(NUMBER).await["status"], "suspended");

    // Reusing an order's key for another restoration is refused.
    let (s, _, _) = sim
        .send(
            sim.http
                .post(url("/carrier/v1/serviceOrder"))
                .header("Idempotency-Key", id.to_string())
                .json(&order_body),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut other_restoration = order_body.clone();
    other_restoration["restoration"] = json!("inbound_only");
    let (s, ct, b) = sim
        .send(
            sim.http
                .post(url("/carrier/v1/serviceOrder"))
                .header("Idempotency-Key", id.to_string())
                .json(&other_restoration),
        )
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(sim.subscriber(NUMBER).await["restoration"], "full");

    let (s, ct, b) = sim
        .send(sim.http.get(url("/carrier/v1/serviceOrder/not-a-uuid")))
        .await;
    assert_problem(s, &ct, &b, StatusCode::NOT_FOUND);
    let (s, ct, b) = sim
        .send(sim.http.get(url("/sim/provisioning-requests?msisdn=12")))
        .await;
    assert_problem(s, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, ct, b) = sim.send(sim.http.get(url("/nowhere"))).await;
    assert_problem(s, &ct, &b, StatusCode::NOT_FOUND);
    let (s, ct, b) = sim.send(sim.http.delete(url("/sim/outbox"))).await;
    assert_problem(s, &ct, &b, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _) = sim.get("/healthz").await;
    assert_eq!(s, StatusCode::OK);
    sim.stop().await;
}

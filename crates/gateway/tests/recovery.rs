//! Lost case tokens, in-process: the gateway's router on a fresh database
//! (`#[sqlx::test]`), the in-process identity use cases, and the real carrier
//! simulator serving on a random local port (codes are read from its outbox).

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Method, Request, StatusCode, header},
};
use carrier_adapter::HttpCarrier;
use carrier_sim::demo::{CLEAN, FLAGGED};
use case_domain::sla::SlaConfig;
use case_workflows::identity::{IdentityCases, RECOVERY_WORDS};
use data_protection::Keys;
use gateway::{AppState, live::LiveHub, webhooks::WebhookConfig};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;

/// A number no subscriber of the simulator has.
const UNKNOWN: &str = "+8613700137999";

struct World {
    app: Router,
    sim: String,
}

/// The gateway over `pool`, proving identity in-process against a carrier simulator
/// that serves the demo subscribers from the same database.
async fn world(pool: PgPool) -> World {
    carrier_sim::demo::seed(&pool)
        .await
        .expect("demo subscribers");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let sim = format!("http://{}", listener.local_addr().expect("address"));
    let router = carrier_sim::router(pool.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let carrier = Arc::new(HttpCarrier::new(&sim, Duration::from_secs(5)).expect("carrier"));
    let keys = Arc::new(Keys::from_master(&[7u8; 32]));
    let identity = Arc::new(IdentityCases::new(pool.clone(), carrier, keys.clone()));
    let app = gateway::app(AppState {
        pool,
        keys,
        identity,
        webhooks: WebhookConfig {
            carrier_secrets: Arc::new(Vec::new()),
            policy: webhooks::DestinationPolicy {
                allow_private: false,
            },
        },
        sla: Arc::new(SlaConfig::default()),
        console: gateway::console::ConsoleConfig::default(),
        live: LiveHub::default(),
    });
    World { app, sim }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    raw: String,
    body: Value,
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .expect("request");
    let response = app.clone().oneshot(request).await.expect("answer");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let raw = String::from_utf8(bytes.to_vec()).expect("UTF-8 body");
    let body = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw).expect("JSON body")
    };
    Answer {
        status,
        headers,
        raw,
        body,
    }
}

/// Opens a case for `who` (locale en); returns its id and token.
async fn open(app: &Router, who: &carrier_sim::demo::DemoSubscriber) -> (String, String) {
    let a = call(
        app,
        Method::POST,
        "/v1/cases",
        None,
        Some(json!({"msisdn": who.msisdn, "full_name": who.full_name, "id_number": who.id_number, "locale": "en"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.raw);
    (
        a.body["case_id"].as_str().expect("case_id").to_owned(),
        a.body["case_token"]
            .as_str()
            .expect("case_token")
            .to_owned(),
    )
}

/// Opens a case for `who` and proves identity with the service password.
async fn open_proven(app: &Router, who: &carrier_sim::demo::DemoSubscriber) -> (String, String) {
    let (case_id, token) = open(app, who).await;
    let a = call(
        app,
        Method::POST,
        &format!("/v1/cases/{case_id}/verifications"),
        Some(&token),
        Some(json!({"method": "service_password", "password": who.service_password})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.raw);
    assert_eq!(a.body["accepted"], true, "{}", a.raw);
    (case_id, token)
}

async fn start(app: &Router, msisdn: &str) -> Answer {
    call(
        app,
        Method::POST,
        "/v1/cases/recovery",
        None,
        Some(json!({ "msisdn": msisdn })),
    )
    .await
}

async fn finish(app: &Router, recovery_id: &str, code: &str) -> Answer {
    call(
        app,
        Method::POST,
        &format!("/v1/cases/recovery/{recovery_id}"),
        None,
        Some(json!({ "code": code })),
    )
    .await
}

/// The recovery messages the simulator sent to `to`, oldest first.
async fn recovery_messages(sim: &str, to: &str) -> Vec<String> {
    let messages: Value = reqwest::Client::new()
        .get(format!("{sim}/sim/outbox"))
        .query(&[("to", to)])
        .send()
        .await
        .expect("outbox")
        .json()
        .await
        .expect("outbox JSON");
    messages
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .filter(|b| b.contains("recover"))
        .map(str::to_owned)
        .collect()
}

/// The code in the newest recovery message to `to`.
async fn latest_code(sim: &str, to: &str) -> String {
    let messages = recovery_messages(sim, to).await;
    let body = messages.last().expect("a recovery message");
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("six digits in the message")
        .to_owned()
}

/// A six-digit code other than `code`.
fn other_than(code: &str) -> String {
    let n: u32 = code.parse().expect("digits");
    format!("{:06}", (n + 1) % 1_000_000)
}

async fn proof_slots(pool: &PgPool, msisdn: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM number_budget_uses WHERE msisdn = $1 AND kind = 'proof'",
    )
    .bind(msisdn)
    .fetch_one(pool)
    .await
    .expect("count")
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_proven_case_gets_a_working_new_token_and_the_old_one_stops_working(pool: PgPool) {
    let w = world(pool.clone()).await;
    let (case_id, old_token) = open_proven(&w.app, &CLEAN).await;

    let started = start(&w.app, CLEAN.msisdn).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.raw);
    let recovery_id = started.body["recovery_id"]
        .as_str()
        .expect("recovery_id")
        .to_owned();
    let code = latest_code(&w.sim, CLEAN.contact_address().expect("contact")).await;

    let done = finish(&w.app, &recovery_id, &code).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.raw);
    assert_eq!(done.body["recovered"], true);
    assert_eq!(done.body["case_id"], case_id.as_str());
    let new_token = done.body["case_token"].as_str().expect("case_token");
    assert_ne!(new_token, old_token);

    let path = format!("/v1/cases/{case_id}");
    let seen = call(&w.app, Method::GET, &path, Some(new_token), None).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.raw);
    assert_eq!(seen.body["case_id"], case_id.as_str());
    let old = call(&w.app, Method::GET, &path, Some(&old_token), None).await;
    assert_eq!(old.status, StatusCode::NOT_FOUND, "{}", old.raw);

    // The code is used once: a replay recovers nothing (and is a failed proof).
    let again = finish(&w.app, &recovery_id, &code).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.raw);
    assert_eq!(
        again.body,
        json!({"recovered": false, "remaining_attempts": 4})
    );

    // The swap is audited, without personal data.
    let audited: Vec<(String, Option<uuid::Uuid>, String)> = sqlx::query_as(
        "SELECT action, case_id, detail::text FROM audit_log WHERE action = 'case.token_recovered'",
    )
    .fetch_all(&pool)
    .await
    .expect("audit rows");
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].1.map(|id| id.to_string()), Some(case_id));
    assert!(audited[0].2.contains(&recovery_id));
    assert!(!audited[0].2.contains(CLEAN.msisdn) && !audited[0].2.contains(&code));
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn the_recovery_answer_is_the_same_whatever_the_number(pool: PgPool) {
    let w = world(pool).await;
    open_proven(&w.app, &CLEAN).await;
    // FLAGGED has an open case that has not proven identity: it is opened again, not recovered.
    open(&w.app, &FLAGGED).await;

    let mut shapes = Vec::new();
    for msisdn in [CLEAN.msisdn, FLAGGED.msisdn, UNKNOWN] {
        let a = start(&w.app, msisdn).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{msisdn}: {}", a.raw);
        let id = a.body["recovery_id"].as_str().expect("recovery_id");
        assert!(uuid::Uuid::parse_str(id).is_ok());
        assert_eq!(a.body["detail"], RECOVERY_WORDS);
        shapes.push((
            a.raw.replace(id, "ID"),
            a.headers.get(header::CONTENT_TYPE).cloned(),
        ));
    }
    assert_eq!(shapes[0], shapes[1]);
    assert_eq!(shapes[0], shapes[2]);

    // Only the proven case's contact got a code.
    assert_eq!(
        recovery_messages(&w.sim, CLEAN.contact_address().expect("contact"))
            .await
            .len(),
        1
    );
    assert!(
        recovery_messages(&w.sim, FLAGGED.contact_address().expect("contact"))
            .await
            .is_empty()
    );

    // A number that is not a mainland mobile number is a form error, not an answer about it.
    let bad = start(&w.app, "12345").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.raw);
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn wrong_recovery_codes_spend_the_numbers_proof_budget(pool: PgPool) {
    let w = world(pool.clone()).await;
    let (_, _) = open_proven(&w.app, &CLEAN).await;
    // The proven case stays the number's only one past identity; a new request is
    // still opened beside it (not proven).
    let (other_case, other_token) = open(&w.app, &CLEAN).await;

    let started = start(&w.app, CLEAN.msisdn).await;
    let recovery_id = started.body["recovery_id"]
        .as_str()
        .expect("recovery_id")
        .to_owned();
    let code = latest_code(&w.sim, CLEAN.contact_address().expect("contact")).await;
    let wrong = other_than(&code);
    for left in (0..5).rev() {
        let a = finish(&w.app, &recovery_id, &wrong).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.raw);
        assert_eq!(
            a.body,
            json!({"recovered": false, "remaining_attempts": left})
        );
    }
    // Spent: even the right code is not judged.
    let locked = finish(&w.app, &recovery_id, &code).await;
    assert_eq!(locked.status, StatusCode::LOCKED, "{}", locked.raw);
    assert_eq!(
        locked.body["type"],
        "https://reactivation.example/problems/identity-locked"
    );
    assert!(locked.body["retry_at"].as_str().is_some(), "{}", locked.raw);
    assert!(locked.headers.get(header::RETRY_AFTER).is_some());

    // The budget is the number's: a proof on its other case is refused too.
    let verify = call(
        &w.app,
        Method::POST,
        &format!("/v1/cases/{other_case}/verifications"),
        Some(&other_token),
        Some(json!({"method": "service_password", "password": CLEAN.service_password})),
    )
    .await;
    assert_eq!(verify.status, StatusCode::LOCKED, "{}", verify.raw);
    assert_eq!(proof_slots(&pool, CLEAN.msisdn).await, 6);
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_malformed_code_or_an_unknown_recovery_reserves_nothing(pool: PgPool) {
    let w = world(pool.clone()).await;
    open_proven(&w.app, &CLEAN).await;
    let before = proof_slots(&pool, CLEAN.msisdn).await;
    let started = start(&w.app, CLEAN.msisdn).await;
    let recovery_id = started.body["recovery_id"]
        .as_str()
        .expect("recovery_id")
        .to_owned();

    for code in ["12", "abcdef", "1234567", ""] {
        let a = finish(&w.app, &recovery_id, code).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{code}: {}",
            a.raw
        );
        assert_eq!(
            a.body["type"],
            "https://reactivation.example/problems/validation"
        );
        assert_eq!(a.body["detail"], "code must be six digits");
    }
    let extra = call(
        &w.app,
        Method::POST,
        &format!("/v1/cases/recovery/{recovery_id}"),
        None,
        Some(json!({"code": "123456", "msisdn": CLEAN.msisdn})),
    )
    .await;
    assert_eq!(
        extra.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        extra.raw
    );
    assert_eq!(proof_slots(&pool, CLEAN.msisdn).await, before);

    // Unknown recovery ids answer like a wrong code, never 404, and have no number to budget.
    for id in [uuid::Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        let a = finish(&w.app, &id, "123456").await;
        assert_eq!(a.status, StatusCode::OK, "{id}: {}", a.raw);
        assert_eq!(a.body, json!({"recovered": false, "remaining_attempts": 0}));
    }
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM number_budget_uses WHERE kind = 'proof'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(total, before);
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn recovery_requests_spend_the_numbers_daily_codes_alike(pool: PgPool) {
    let w = world(pool).await;
    open_proven(&w.app, &CLEAN).await;
    let limit = case_domain::identity::MAX_OTP_PER_NUMBER_PER_DAY;
    let mut refusals = Vec::new();
    for msisdn in [CLEAN.msisdn, UNKNOWN] {
        for _ in 0..limit {
            let a = start(&w.app, msisdn).await;
            assert_eq!(a.status, StatusCode::ACCEPTED, "{msisdn}: {}", a.raw);
        }
        let spent = start(&w.app, msisdn).await;
        assert_eq!(
            spent.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{msisdn}: {}",
            spent.raw
        );
        assert_eq!(
            spent.body["type"],
            "https://reactivation.example/problems/too-many-codes"
        );
        refusals.push(spent.raw);
    }
    assert_eq!(refusals[0], refusals[1]);
    let sent = recovery_messages(&w.sim, CLEAN.contact_address().expect("contact")).await;
    assert_eq!(sent.len(), usize::try_from(limit).expect("small"));
}

//! The customer routes in-process: the gateway's router on a fresh database
//! (`#[sqlx::test]`), identity proofs through the in-process identity use cases,
//! and the real carrier simulator serving on a random local port.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use carrier_adapter::HttpCarrier;
use carrier_sim::demo::CLEAN;
use case_domain::sla::SlaConfig;
use case_workflows::identity::IdentityCases;
use data_protection::Keys;
use gateway::{AppState, live::LiveHub, webhooks::WebhookConfig};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;

/// The gateway over `pool`, proving identity in-process against a carrier simulator
/// that serves the demo subscribers from the same database.
async fn app(pool: PgPool) -> Router {
    carrier_sim::demo::seed(&pool)
        .await
        .expect("demo subscribers");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let sim = carrier_sim::router(pool.clone());
    tokio::spawn(async move { axum::serve(listener, sim).await });
    let carrier = Arc::new(HttpCarrier::new(&url, Duration::from_secs(5)).expect("carrier"));
    let keys = Arc::new(Keys::from_master(&[7u8; 32]));
    let identity = Arc::new(IdentityCases::new(pool.clone(), carrier, keys.clone()));
    gateway::app(AppState {
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
    })
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
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
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, value)
}

fn clean_case() -> Value {
    json!({"msisdn": CLEAN.msisdn, "full_name": CLEAN.full_name, "id_number": CLEAN.id_number, "locale": "en"})
}

async fn open(app: &Router) -> (String, String) {
    let (status, body) = call(
        app,
        Method::POST,
        "/v1/cases",
        None,
        None,
        Some(clean_case()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["case_id"].as_str().expect("case_id").to_owned(),
        body["case_token"].as_str().expect("case_token").to_owned(),
    )
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn an_opened_case_shows_its_status_to_its_token_only(pool: PgPool) {
    let app = app(pool).await;
    let (status, created) = call(
        &app,
        Method::POST,
        "/v1/cases",
        None,
        None,
        Some(clean_case()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["state"], "awaiting_identity");
    assert_eq!(created["msisdn"], "+86*******8001");
    assert_eq!(created["timeline"].as_array().map(Vec::len), Some(1));
    let case_id = created["case_id"].as_str().expect("case_id");
    let token = created["case_token"].as_str().expect("token");

    let path = format!("/v1/cases/{case_id}");
    let (status, seen) = call(&app, Method::GET, &path, Some(token), None, None).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["case_id"], created["case_id"]);
    assert_eq!(seen["state"], "awaiting_identity");
    assert_eq!(seen["department"], "customer_service");
    assert!(seen.get("case_token").is_none());

    // A wrong token, a missing token and an unknown case all answer the same 404.
    let (status, problem) = call(&app, Method::GET, &path, Some("wrong"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        problem["type"],
        "https://reactivation.example/problems/not-found"
    );
    let (status, _) = call(&app, Method::GET, &path, None, None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unknown = format!("/v1/cases/{}", uuid::Uuid::now_v7());
    let (status, _) = call(&app, Method::GET, &unknown, Some(token), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_retry_with_the_same_key_replays_the_first_answer_with_its_token(pool: PgPool) {
    let app = app(pool).await;
    let (first_status, first) = call(
        &app,
        Method::POST,
        "/v1/cases",
        None,
        Some("retry-1"),
        Some(clean_case()),
    )
    .await;
    assert_eq!(first_status, StatusCode::CREATED, "{first}");
    let (status, again) = call(
        &app,
        Method::POST,
        "/v1/cases",
        None,
        Some("retry-1"),
        Some(clean_case()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again, first);
    let mut other = clean_case();
    other["locale"] = json!("zh-CN");
    let (status, problem) = call(
        &app,
        Method::POST,
        "/v1/cases",
        None,
        Some("retry-1"),
        Some(other),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        problem["type"],
        "https://reactivation.example/problems/idempotency-key-reused"
    );
    // Invalid fields are refused before the key is taken.
    let (status, problem) = call(
        &app,
        Method::POST,
        "/v1/cases",
        None,
        Some("retry-2"),
        Some(json!({"msisdn": "123", "full_name": "张伟", "id_number": "110105199003071239", "channel": "fax"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["msisdn", "channel"]);
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn identity_is_proved_through_the_in_process_port_and_the_carrier(pool: PgPool) {
    let app = app(pool.clone()).await;
    let (case_id, token) = open(&app).await;
    let otp = format!("/v1/cases/{case_id}/otp");
    let verifications = format!("/v1/cases/{case_id}/verifications");

    let (status, sent) = call(&app, Method::POST, &otp, Some(&token), None, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    // The same words whatever the number: no destination, no channel (no oracle).
    assert_eq!(sent["status"], "requested");
    assert_eq!(sent["detail"], case_workflows::identity::CODE_SENT_WORDS);
    assert!(sent["remaining_sends"].as_i64().is_some());
    assert!(sent.get("sent_to").is_none() && sent.get("channel").is_none());

    // A malformed code is refused without an attempt counted against the subscriber.
    let (status, problem) = call(
        &app,
        Method::POST,
        &verifications,
        Some(&token),
        None,
        Some(json!({"method": "otp", "code": "12"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        problem["type"],
        "https://reactivation.example/problems/validation"
    );
    assert_eq!(problem["detail"], "code must be six digits");

    let (status, wrong) = call(
        &app,
        Method::POST,
        &verifications,
        Some(&token),
        None,
        Some(json!({"method": "service_password", "password": "000000"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{wrong}");
    assert_eq!(wrong["accepted"], false);
    let left = wrong["remaining_attempts"]
        .as_i64()
        .expect("remaining_attempts");

    let (status, right) = call(
        &app,
        Method::POST,
        &verifications,
        Some(&token),
        None,
        Some(json!({"method": "service_password", "password": CLEAN.service_password})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{right}");
    assert_eq!(right, json!({"accepted": true, "remaining_attempts": left}));

    let (_, seen) = call(
        &app,
        Method::GET,
        &format!("/v1/cases/{case_id}"),
        Some(&token),
        None,
        None,
    )
    .await;
    assert_ne!(seen["state"], "awaiting_identity");
    let events: Vec<&str> = seen["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(events.contains(&"proofs_accepted"), "{events:?}");

    // Past identity verification, proofs are not taken.
    let (status, problem) = call(
        &app,
        Method::POST,
        &verifications,
        Some(&token),
        None,
        Some(json!({"method": "service_password", "password": CLEAN.service_password})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        problem["type"],
        "https://reactivation.example/problems/wrong-state"
    );

    // The identity service decrypted the name and ID to ask the carrier (its answer is
    // remembered: the later proofs did not ask again), and every such read of
    // personal data is audited as the service. The ladder's grading right after the
    // opening asks too; a proof sent at once may race it, hence once or twice.
    let decrypts: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT actor_role::text, actor_id, case_id::text FROM audit_log WHERE action = 'identity.decrypt'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!((1..=2).contains(&decrypts.len()), "{decrypts:?}");
    for d in &decrypts {
        assert_eq!(
            d,
            &(
                "system".to_owned(),
                "identity-verification".to_owned(),
                Some(case_id.clone())
            )
        );
    }
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_cancelled_case_cannot_be_cancelled_again(pool: PgPool) {
    let app = app(pool).await;
    let (case_id, token) = open(&app).await;
    let cancel = format!("/v1/cases/{case_id}/cancel");
    let (status, body) = call(&app, Method::POST, &cancel, Some(&token), None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "cancelled");
    let (status, problem) = call(&app, Method::POST, &cancel, Some(&token), None, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        problem["detail"],
        "The case is finished and cannot be cancelled."
    );
    // A finished case takes no complaint material, but complaints are still heard.
    let (status, complaint) = call(
        &app,
        Method::POST,
        &format!("/v1/cases/{case_id}/complaints"),
        Some(&token),
        None,
        Some(json!({"channel": "app", "text": "Nobody called me back."})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{complaint}");
    assert_eq!(complaint["status"], "open");
    assert!(complaint.get("answered_by").is_none());
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn material_and_appeals_are_refused_outside_their_states(pool: PgPool) {
    let app = app(pool).await;
    let (case_id, token) = open(&app).await;
    let (status, problem) = call(
        &app,
        Method::POST,
        &format!("/v1/cases/{case_id}/explanations"),
        Some(&token),
        None,
        Some(json!({"statement": "They are my colleagues."})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "material_not_accepted");
    let (status, problem) = call(
        &app,
        Method::POST,
        &format!("/v1/cases/{case_id}/appeal"),
        Some(&token),
        None,
        Some(json!({"statement": "I disagree."})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "not_rejected");
    let (status, problem) = call(
        &app,
        Method::POST,
        &format!("/v1/cases/{case_id}/appeal"),
        Some(&token),
        None,
        Some(json!({"statement": ""})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "statement");
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn of_eight_racing_right_passwords_only_the_one_that_moved_the_case_is_accepted(
    pool: PgPool,
) {
    let app = app(pool.clone()).await;
    let (case_id, token) = open(&app).await;
    let verifications = format!("/v1/cases/{case_id}/verifications");
    let answers = futures_util::future::join_all((0..8).map(|_| {
        call(
            &app,
            Method::POST,
            &verifications,
            Some(&token),
            None,
            Some(json!({"method": "service_password", "password": CLEAN.service_password})),
        )
    }))
    .await;
    let accepted = answers
        .iter()
        .filter(|(status, body)| *status == StatusCode::OK && body["accepted"] == true)
        .count();
    assert_eq!(accepted, 1, "{answers:?}");
    // The others: 409, either overtaken (the case moved) or not judged at all (the
    // number's attempts were all being judged at that moment).
    for (status, body) in answers.iter().filter(|(_, body)| body["accepted"] != true) {
        assert_eq!(*status, StatusCode::CONFLICT, "{body}");
        assert!(
            [
                "https://reactivation.example/problems/wrong-state",
                "https://reactivation.example/problems/proof-in-progress"
            ]
            .contains(&body["type"].as_str().unwrap_or_default()),
            "{body}"
        );
    }
    let moved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM case_events WHERE case_id = $1::uuid AND event = 'proofs_accepted'",
    )
    .bind(&case_id)
    .fetch_one(&pool)
    .await
    .expect("events");
    assert_eq!(moved, 1);
}

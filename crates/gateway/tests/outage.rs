//! A database that cannot be reached answers 503 with `Retry-After`, never 500: a pool
//! whose every connection is busy (the acquire times out) and a server that refuses
//! connections, on the customer, agent and case-opening routes.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use case_domain::sla::SlaConfig;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::{PgPool, postgres::PgPoolOptions};
use tower::ServiceExt;

fn app(pool: PgPool) -> Router {
    gateway::app(gateway::AppState {
        pool,
        keys: Arc::new(data_protection::Keys::from_master(&[7; 32])),
        identity: Arc::new(
            gateway::identity_client::HttpIdentity::new("http://127.0.0.1:9").expect("client"),
        ),
        webhooks: gateway::webhooks::WebhookConfig {
            carrier_secrets: Arc::new(vec![]),
            policy: webhooks::DestinationPolicy {
                allow_private: false,
            },
        },
        sla: Arc::new(SlaConfig::default()),
        console: gateway::console::ConsoleConfig::default(),
        live: gateway::live::LiveHub::default(),
    })
}

/// Sends each request that reads or writes the database and checks the answer is a
/// 503 problem with `Retry-After`.
async fn every_route_answers_unavailable(app: Router) {
    let case = uuid::Uuid::now_v7();
    let requests = [
        Request::get(format!("/v1/cases/{case}"))
            .header(header::AUTHORIZATION, "Bearer some-token")
            .body(Body::empty()),
        Request::post("/v1/cases")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"msisdn": "+8613800138000", "full_name": "张三",
                       "id_number": "11010519491231002X", "channel": "web", "locale": "en"})
                .to_string(),
            )),
        Request::post("/v1/agent/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"username": "someone", "password": "a long enough password"}).to_string(),
            )),
        Request::get("/v1/agent/queue?department=security")
            .header(header::AUTHORIZATION, "Bearer some-agent-token")
            .body(Body::empty()),
    ];
    for request in requests {
        let request = request.expect("request");
        let what = format!("{} {}", request.method(), request.uri());
        let response = app.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {body}");
        assert!(retry_after.is_some(), "{what}: no Retry-After");
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{what}"
        );
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("/unavailable")),
            "{what}: {body}"
        );
    }
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_pool_with_no_free_connection_answers_503_with_retry_after(pool: PgPool) {
    // One connection, held for the whole test: every acquire times out.
    let options = pool.connect_options().as_ref().clone();
    let small = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200))
        .connect_with(options)
        .await
        .expect("small pool");
    let held = small.acquire().await.expect("the only connection");
    every_route_answers_unavailable(app(small.clone())).await;
    drop(held);
}

#[tokio::test]
async fn a_database_that_refuses_connections_answers_503_with_retry_after() {
    // Nothing listens on port 1 of the loopback: every connection is refused.
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://postgres@127.0.0.1:1/nowhere")
        .expect("lazy pool");
    every_route_answers_unavailable(app(pool)).await;
}

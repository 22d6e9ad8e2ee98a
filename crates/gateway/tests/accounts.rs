//! The admins' account API in process (tower `oneshot` on a fresh database): the
//! password policy at creation, disable (sessions stop at once) and enable, role
//! changes, password resets, the last-admin guard, and the audit row of each.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use case_domain::Role;
use case_store::{MIGRATOR, audit::ChainReport};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

const ADMIN_PASSWORD: &str = "a long enough password";

fn app(pool: &PgPool) -> Router {
    gateway::app(gateway::AppState {
        pool: pool.clone(),
        keys: Arc::new(data_protection::Keys::from_master(&[7; 32])),
        identity: Arc::new(
            gateway::identity_client::HttpIdentity::new("http://127.0.0.1:9").unwrap(),
        ),
        webhooks: gateway::webhooks::WebhookConfig {
            carrier_secrets: Arc::new(vec![]),
            policy: webhooks::DestinationPolicy {
                allow_private: false,
            },
        },
        sla: Arc::new(case_domain::sla::SlaConfig::default()),
        console: gateway::console::ConsoleConfig::default(),
        live: gateway::live::LiveHub::default(),
    })
}

async fn call(
    pool: &PgPool,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(b) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app(pool).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn login(pool: &PgPool, username: &str, password: &str) -> Option<String> {
    let (status, body) = call(
        pool,
        "POST",
        "/v1/agent/login",
        None,
        Some(json!({ "username": username, "password": password })),
    )
    .await;
    (status == StatusCode::OK).then(|| body["token"].as_str().unwrap().to_owned())
}

async fn seeded_admin(pool: &PgPool, username: &str) -> (Uuid, String) {
    let hash = data_protection::hash_password(ADMIN_PASSWORD.into())
        .await
        .unwrap();
    let id = case_store::agents::create_agent(pool, username, &hash, &[Role::Admin])
        .await
        .unwrap();
    (id, login(pool, username, ADMIN_PASSWORD).await.unwrap())
}

async fn actions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log WHERE action LIKE 'agent.%' AND action <> 'agent.login' ORDER BY seq")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn admins_create_accounts_under_the_password_policy(pool: PgPool) {
    let (_, admin) = seeded_admin(&pool, "root.admin").await;
    for (password, reason) in [
        ("short-pass", "at least 12 characters"),
        ("Password2024!", "commonly used or breached"),
        ("123456789012", "repeated or sequential"),
        ("aaaaaaaaaaaaaaaa", "repeated or sequential"),
        ("new.analyst is me", "must not contain the username"),
        // Refused at the edge, before the policy sees it.
        ("nul\u{0}in the password", "NUL character"),
    ] {
        let (status, body) = call(
            &pool,
            "POST",
            "/v1/agent/admin/agents",
            Some(&admin),
            Some(json!({ "username": "new.analyst", "password": password, "roles": ["security"] })),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{password}: {body}"
        );
        assert!(
            body["detail"].as_str().unwrap().contains(reason),
            "{password}: {body}"
        );
        assert!(
            !body.to_string().contains(password),
            "the password is not echoed"
        );
    }
    for (username, roles) in [
        ("New.Analyst", json!(["security"])),
        ("nul\u{0}name", json!(["security"])),
        ("new.analyst", json!([])),
        ("new.analyst", json!(["system"])),
        ("new.analyst", json!(["root\u{0}"])),
    ] {
        let (status, body) = call(
            &pool,
            "POST",
            "/v1/agent/admin/agents",
            Some(&admin),
            Some(json!({ "username": username, "password": "blue kettle on the hob", "roles": roles })),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{username} {roles}: {body}"
        );
    }
    assert!(actions(&pool).await.is_empty(), "refusals change nothing");

    let (status, created) = call(
        &pool,
        "POST",
        "/v1/agent/admin/agents",
        Some(&admin),
        Some(json!({ "username": "new.analyst", "password": "blue kettle on the hob", "roles": ["security", "cs"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["roles"], json!(["security", "cs"]));
    assert_eq!(created["enabled"], true);
    assert!(created.get("password_hash").is_none());
    assert!(
        login(&pool, "new.analyst", "blue kettle on the hob")
            .await
            .is_some()
    );

    let (status, body) = call(
        &pool,
        "POST",
        "/v1/agent/admin/agents",
        Some(&admin),
        Some(json!({ "username": "new.analyst", "password": "another kettle boils", "roles": ["cs"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, list) = call(&pool, "GET", "/v1/agent/admin/agents", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["new.analyst", "root.admin"]);
    assert!(!list.to_string().contains("argon2"));
    assert_eq!(actions(&pool).await, ["agent.create"]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn disabling_ends_sessions_at_once_and_roles_and_passwords_change_under_audit(pool: PgPool) {
    let (admin_id, admin) = seeded_admin(&pool, "root.admin").await;
    let (_, created) = call(
        &pool,
        "POST",
        "/v1/agent/admin/agents",
        Some(&admin),
        Some(json!({ "username": "cs.worker", "password": "blue kettle on the hob", "roles": ["cs"] })),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = login(&pool, "cs.worker", "blue kettle on the hob")
        .await
        .unwrap();
    let (status, _) = call(
        &pool,
        "GET",
        "/v1/agent/queue?department=cs",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Only admins administer accounts.
    for (method, path, body) in [
        ("GET", "/v1/agent/admin/agents".to_owned(), None),
        (
            "POST",
            format!("/v1/agent/admin/agents/{admin_id}/disable"),
            None,
        ),
        (
            "PUT",
            format!("/v1/agent/admin/agents/{id}/roles"),
            Some(json!({"roles": ["admin"]})),
        ),
        (
            "POST",
            format!("/v1/agent/admin/agents/{id}/password"),
            Some(json!({"password": "blue kettle on the hob 2"})),
        ),
    ] {
        let (status, body) = call(&pool, method, &path, Some(&token), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
    }

    // Disabled: the live session stops working on its next request, and login is refused.
    let (status, body) = call(
        &pool,
        "POST",
        &format!("/v1/agent/admin/agents/{id}/disable"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false);
    let (status, _) = call(
        &pool,
        "GET",
        "/v1/agent/queue?department=cs",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        login(&pool, "cs.worker", "blue kettle on the hob")
            .await
            .is_none()
    );
    // Twice changes nothing more.
    let (status, _) = call(
        &pool,
        "POST",
        &format!("/v1/agent/admin/agents/{id}/disable"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Enabled again: a new login works, the old session stays ended.
    let (status, body) = call(
        &pool,
        "POST",
        &format!("/v1/agent/admin/agents/{id}/enable"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["enabled"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let (status, _) = call(
        &pool,
        "GET",
        "/v1/agent/queue?department=cs",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let token = login(&pool, "cs.worker", "blue kettle on the hob")
        .await
        .unwrap();

    // A role change applies to the live session's next request.
    let (status, _) = call(&pool, "GET", "/v1/agent/escalations", Some(&token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = call(
        &pool,
        "PUT",
        &format!("/v1/agent/admin/agents/{id}/roles"),
        Some(&admin),
        Some(json!({"roles": ["supervisor"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["roles"], json!(["supervisor"]));
    let (status, _) = call(&pool, "GET", "/v1/agent/escalations", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &pool,
        "PUT",
        &format!("/v1/agent/admin/agents/{id}/roles"),
        Some(&admin),
        Some(json!({"roles": ["wizard"]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // A reset: the policy applies, the sessions end, only the new password works.
    let (status, body) = call(
        &pool,
        "POST",
        &format!("/v1/agent/admin/agents/{id}/password"),
        Some(&admin),
        Some(json!({"password": "cs.worker-2026-new"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = call(
        &pool,
        "POST",
        &format!("/v1/agent/admin/agents/{id}/password"),
        Some(&admin),
        Some(json!({"password": "green teapot in the sun"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = call(&pool, "GET", "/v1/agent/escalations", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        login(&pool, "cs.worker", "blue kettle on the hob")
            .await
            .is_none()
    );
    assert!(
        login(&pool, "cs.worker", "green teapot in the sun")
            .await
            .is_some()
    );

    // Unknown or malformed ids.
    for path in [
        format!("/v1/agent/admin/agents/{}/disable", Uuid::now_v7()),
        "/v1/agent/admin/agents/not-an-id/enable".to_owned(),
    ] {
        let (status, _) = call(&pool, "POST", &path, Some(&admin), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }

    // The last enabled admin can be neither disabled nor demoted.
    let (status, body) = call(
        &pool,
        "POST",
        &format!("/v1/agent/admin/agents/{admin_id}/disable"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "last_admin");
    let (status, _) = call(
        &pool,
        "PUT",
        &format!("/v1/agent/admin/agents/{admin_id}/roles"),
        Some(&admin),
        Some(json!({"roles": ["supervisor"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // With a second admin, the first may step down.
    let (status, _) = call(
        &pool,
        "PUT",
        &format!("/v1/agent/admin/agents/{id}/roles"),
        Some(&admin),
        Some(json!({"roles": ["admin"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &pool,
        "PUT",
        &format!("/v1/agent/admin/agents/{admin_id}/roles"),
        Some(&admin),
        Some(json!({"roles": ["supervisor"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(
        actions(&pool).await,
        [
            "agent.create",
            "agent.disable",
            "agent.enable",
            "agent.roles",
            "agent.password_reset",
            "agent.roles",
            "agent.roles",
        ]
    );
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM audit_log WHERE action = 'agent.roles' ORDER BY seq LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(detail["from"], json!(["cs"]));
    assert_eq!(detail["to"], json!(["supervisor"]));
    let mut conn = pool.acquire().await.unwrap();
    assert!(matches!(
        case_store::audit::verify_chain(&mut conn).await.unwrap(),
        ChainReport::Intact(_)
    ));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_admins_disabling_each_other_at_once_leave_one_admin(pool: PgPool) {
    let (a_id, a) = seeded_admin(&pool, "admin.one").await;
    let (b_id, b) = seeded_admin(&pool, "admin.two").await;
    let (disable_b, disable_a) = (
        format!("/v1/agent/admin/agents/{b_id}/disable"),
        format!("/v1/agent/admin/agents/{a_id}/disable"),
    );
    let (first, second) = tokio::join!(
        call(&pool, "POST", &disable_b, Some(&a), None),
        call(&pool, "POST", &disable_a, Some(&b), None),
    );
    let mut statuses = [first.0.as_u16(), second.0.as_u16()];
    statuses.sort_unstable();
    // One wins; the other either finds itself the last admin (409) or had its own
    // session ended first (401).
    assert!(
        statuses == [200, 401] || statuses == [200, 409],
        "{statuses:?} {first:?} {second:?}"
    );
    let enabled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM agents WHERE 'admin' = ANY(roles::text[]) AND disabled_at IS NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(enabled, 1);
}

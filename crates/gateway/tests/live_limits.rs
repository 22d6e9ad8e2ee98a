//! Live-stream limits and the catch-up after a listener reconnect:
//! - past the cap per case token, per agent or in total a stream answers 429
//!   problem+json with `Retry-After`, and a closed stream frees its slot (in process);
//! - 500 streams over real HTTP on a small pool, the listener's backend killed while
//!   every followed case changes: no 5xx, no pool timeout, and every stream gets its
//!   update from one batched read (no stream re-reads its own log).

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use case_domain::{Actor, CaseEvent, Channel, Locale, Msisdn, Role};
use case_store::{MIGRATOR, NewCase, TransitionRequest};
use gateway::{
    AppState, RateLimitConfig,
    live::{LiveHub, StreamLimits},
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use service_runtime::Shutdown;
use sqlx::{PgPool, postgres::PgPoolOptions};
use tower::ServiceExt;
use uuid::Uuid;

fn state(pool: &PgPool, live: LiveHub) -> AppState {
    AppState {
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
        live,
    }
}

/// Opens a case whose token is `token`.
async fn case_with_token(pool: &PgPool, n: usize, token: &str) -> Uuid {
    let id = Uuid::now_v7();
    let new = NewCase {
        id,
        msisdn: Msisdn::parse(&format!("+861390{n:07}")).unwrap(),
        channel: Channel::App,
        locale: Locale::En,
        token_hash: data_protection::hash_token(token),
    };
    let mut tx = pool.begin().await.unwrap();
    case_store::create_case(&mut tx, &new, &Actor::customer())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

/// Sends a request in process; the response body is returned unread (a stream stays
/// open while it is held).
async fn send(app: &Router, path: &str, token: &str) -> axum::response::Response {
    app.clone()
        .oneshot(
            Request::get(path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap()
}

async fn assert_too_many(response: axum::response::Response, limit: &str) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["status"], 429, "{body}");
    assert_eq!(body["limit"], limit, "{body}");
    assert!(
        body["type"].as_str().unwrap().ends_with("too-many-streams"),
        "{body}"
    );
}

async fn login(app: &Router, pool: &PgPool, username: &str) -> String {
    let hash = data_protection::hash_password("a long enough password".into())
        .await
        .unwrap();
    case_store::agents::create_agent(pool, username, &hash, &[Role::Security])
        .await
        .unwrap();
    let response = app
        .clone()
        .oneshot(
            Request::post("/v1/agent/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({ "username": username, "password": "a long enough password" })
                        .to_string(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    body["token"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn streams_past_a_cap_get_429_and_a_closed_stream_frees_its_slot(pool: PgPool) {
    let hub = LiveHub::with_limits(
        64,
        StreamLimits {
            per_token: 2,
            per_agent: 3,
            total: 6,
        },
    );
    let app = gateway::app(state(&pool, hub.clone()));
    let case = case_with_token(&pool, 1, "token-one").await;
    let path = format!("/v1/cases/{case}/events");

    // Per case token.
    let first = send(&app, &path, "token-one").await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = send(&app, &path, "token-one").await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_too_many(send(&app, &path, "token-one").await, "per_token").await;
    // A wrong token is still a 404, whatever the count.
    assert_eq!(
        send(&app, &path, "not-the-token").await.status(),
        StatusCode::NOT_FOUND
    );
    drop(first);
    assert_eq!(hub.open_streams(), 1, "a closed stream frees its slot");
    let again = send(&app, &path, "token-one").await;
    assert_eq!(again.status(), StatusCode::OK);

    // Per agent: case streams and the console feed together.
    let analyst = login(&app, &pool, "analyst.streams").await;
    let agent_path = format!("/v1/agent/cases/{case}/events");
    let mut held = Vec::new();
    for _ in 0..3 {
        let r = send(&app, &agent_path, &analyst).await;
        assert_eq!(r.status(), StatusCode::OK);
        held.push(r);
    }
    assert_too_many(send(&app, &agent_path, &analyst).await, "per_agent").await;

    // In total: 2 + 3 open; one more fits, then every holder is refused.
    let other = login(&app, &pool, "other.streams").await;
    let sixth = send(&app, &agent_path, &other).await;
    assert_eq!(sixth.status(), StatusCode::OK);
    assert_eq!(hub.open_streams(), 6);
    assert_too_many(send(&app, &agent_path, &other).await, "total").await;
    let case_two = case_with_token(&pool, 2, "token-two").await;
    assert_too_many(
        send(&app, &format!("/v1/cases/{case_two}/events"), "token-two").await,
        "total",
    )
    .await;
    drop(held.pop());
    let seventh = send(&app, &format!("/v1/cases/{case_two}/events"), "token-two").await;
    assert_eq!(seventh.status(), StatusCode::OK);

    drop((second, again, held, sixth, seventh));
    assert_eq!(hub.open_streams(), 0);
}

/// The newest event id (version) seen on an SSE stream, read until it ends.
async fn follow(
    mut response: reqwest::Response,
    index: usize,
    seen: tokio::sync::mpsc::UnboundedSender<(usize, i32)>,
) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(id) = frame
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .and_then(|v| v.trim().parse::<i32>().ok())
                && seen.send((index, id)).is_err()
            {
                return;
            }
        }
    }
}

async fn listener_pid(pool: &PgPool) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_optional(pool)
    .await
    .unwrap()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CASES: usize = 100;
const STREAMS_PER_CASE: usize = 5;

#[sqlx::test(migrator = "MIGRATOR")]
async fn five_hundred_streams_survive_a_listener_reconnect_on_a_small_pool(pool: PgPool) {
    // The gateway's own pool is small, with a short acquire timeout: if the
    // reconnect made every stream re-read its case at once, requests would time out.
    let small = PgPoolOptions::new()
        .max_connections(6)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let hub = LiveHub::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let served = {
        let (state, stop) = (state(&small, hub.clone()), shutdown.clone());
        tokio::spawn(async move {
            gateway::run_with(
                listener,
                state,
                Duration::from_secs(10),
                &RateLimitConfig::off(),
                stop,
            )
            .await
        })
    };
    wait_for("the listener connects", async || {
        listener_pid(&pool).await.is_some()
    })
    .await;

    let mut cases = Vec::with_capacity(CASES);
    for n in 0..CASES {
        let token = format!("live-token-{n}");
        cases.push((case_with_token(&pool, n, &token).await, token));
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut readers = Vec::new();
    let mut index = 0;
    for chunk in cases.chunks(10) {
        let mut requests = Vec::new();
        for (id, token) in chunk {
            for _ in 0..STREAMS_PER_CASE {
                requests.push(
                    http.get(format!("{base}/v1/cases/{id}/events"))
                        .bearer_auth(token)
                        .send(),
                );
            }
        }
        let opened = futures_util::future::join_all(requests).await;
        for response in opened {
            let response = response.unwrap();
            *statuses.entry(response.status().as_u16()).or_default() += 1;
            if response.status() == reqwest::StatusCode::OK {
                readers.push(tokio::spawn(follow(response, index, seen_tx.clone())));
                index += 1;
            }
        }
    }
    let streams = CASES * STREAMS_PER_CASE;
    assert_eq!(
        statuses,
        HashMap::from([(200, streams)]),
        "every stream opens"
    );
    assert_eq!(hub.open_streams(), streams);
    let mut latest = vec![0; streams];
    let mut at_least = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, i32)>,
                              version: i32| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while latest.iter().any(|v| *v < version) {
            let (i, v) = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| {
                    let behind = latest.iter().filter(|v| **v < version).count();
                    panic!("{behind} streams never saw version {version}")
                })
                .unwrap();
            latest[i] = latest[i].max(v);
        }
    };
    at_least(&mut seen_rx, 1).await;

    // Every case changes in one transaction that commits while nobody listens.
    let system = Actor::system("test");
    let mut tx = pool.begin().await.unwrap();
    for (id, _) in &cases {
        case_store::transition_in(
            &mut tx,
            TransitionRequest {
                case_id: *id,
                expected_version: 1,
                event: CaseEvent::IdentityEscalated,
                actor: &system,
                reason: None,
                fence: None,
                outbox: vec![],
            },
        )
        .await
        .unwrap();
    }
    let old = listener_pid(&pool).await.expect("a listener");
    let reads_before = hub.resync_reads();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(old)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(killed);
    wait_for("the old listener is gone", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(old)
            .fetch_one(&pool)
            .await
            .unwrap()
            == 0
    })
    .await;
    tx.commit().await.unwrap();
    let committed: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&pool)
        .await
        .unwrap();

    // Meanwhile the API keeps answering on the small pool.
    for (id, token) in cases.iter().take(20) {
        let r = http
            .get(format!("{base}/v1/cases/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    at_least(&mut seen_rx, 2).await;
    let new = listener_pid(&pool).await.expect("the listener is back");
    assert_ne!(new, old, "the listener reconnected");
    let listening_since: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT query_start FROM pg_stat_activity WHERE pid = $1")
            .bind(new)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        listening_since > committed,
        "the changes were committed while nobody listened, so no notification carried them"
    );
    // One batched read served every stream; none re-read its own log.
    assert!(
        (1..=2).contains(&(hub.resync_reads() - reads_before)),
        "{} batched reads",
        hub.resync_reads() - reads_before
    );
    assert_eq!(hub.catch_ups(), 0, "no stream re-read its case on its own");

    // Clients leave: every slot is freed.
    for reader in &readers {
        reader.abort();
    }
    wait_for("every slot is freed", async || hub.open_streams() == 0).await;
    shutdown.trigger();
    let _ = served.await;
}

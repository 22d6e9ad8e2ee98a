//! The audit chain under concurrency, over real HTTP: the gateway runs in-process
//! (`gateway::run`) on a random local port against a fresh database, and a burst
//! of audited reads and logins must all succeed and leave a gap-free chain that
//! verifies. Then the supervisors' query and CSV export, the audited agent live
//! stream, and the published chain head.

use std::{sync::Arc, time::Duration};

use case_domain::{Actor, CaseEvent, Role};
use case_store::{
    MIGRATOR, TransitionRequest,
    audit::{self, ChainReport},
    testing::open_case,
};
use serde_json::{Value, json};
use service_runtime::Shutdown;
use sqlx::PgPool;
use uuid::Uuid;

const PASSWORD: &str = "a long enough password";

struct Gateway {
    base: String,
    http: reqwest::Client,
    shutdown: Shutdown,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn start(pool: &PgPool) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = gateway::AppState {
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
    };
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        // The burst is the point here, not the per-address limits (tested in edge.rs).
        let limits = gateway::rate_limit::RateLimitConfig::off();
        gateway::run_with(listener, state, Duration::from_secs(30), &limits, stop)
            .await
            .expect("gateway runs");
    });
    Gateway {
        base,
        http: reqwest::Client::new(),
        shutdown,
    }
}

impl Gateway {
    async fn login(&self, username: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/agent/login", self.base))
            .json(&json!({ "username": username, "password": PASSWORD }))
            .send()
            .await
            .expect("login answered");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("answered")
    }
}

async fn agent(pool: &PgPool, gw: &Gateway, username: &str, roles: &[Role]) -> (Uuid, String) {
    let hash = data_protection::hash_password(PASSWORD.into())
        .await
        .unwrap();
    let id = case_store::agents::create_agent(pool, username, &hash, roles)
        .await
        .unwrap();
    let (status, body) = gw.login(username).await;
    assert_eq!(status, 200, "{body}");
    (id, body["token"].as_str().unwrap().to_owned())
}

async fn security_review_case(pool: &PgPool, msisdn: &str) -> Uuid {
    let id = open_case(pool, msisdn).await;
    let system = Actor::system("test");
    for event in [CaseEvent::ProofsAccepted, CaseEvent::RiskFlagged] {
        let case = case_store::load_case(pool, id).await.unwrap().unwrap();
        case_store::transition(
            pool,
            TransitionRequest {
                case_id: id,
                expected_version: case.version,
                event,
                actor: &system,
                reason: None,
                fence: None,
                outbox: vec![],
            },
        )
        .await
        .unwrap();
    }
    id
}

async fn assert_gapless_and_verified(pool: &PgPool) -> i64 {
    let (count, max): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(*), max(seq) FROM audit_log")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(Some(count), max, "seq runs 1..=count without gaps");
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(
        audit::verify_chain(&mut conn).await.unwrap(),
        ChainReport::Intact(count)
    );
    count
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sixty_concurrent_audited_reads_and_ten_logins_leave_a_gapless_verified_chain(
    pool: PgPool,
) {
    let gw = start(&pool).await;
    let case_id = security_review_case(&pool, "+8613800138500").await;
    let (analyst_id, analyst) = agent(&pool, &gw, "burst.analyst", &[Role::Security]).await;
    let (_, boss) = agent(&pool, &gw, "burst.boss", &[Role::Supervisor]).await;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let token = if i % 2 == 0 {
            analyst.clone()
        } else {
            boss.clone()
        };
        let http = gw.http.clone();
        let url = format!("{}/v1/agent/cases/{case_id}", gw.base);
        tasks.spawn(async move {
            let r = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("answered");
            ("read", r.status().as_u16())
        });
    }
    for i in 0..10 {
        let http = gw.http.clone();
        let url = format!("{}/v1/agent/login", gw.base);
        let username = if i % 2 == 0 {
            "burst.analyst"
        } else {
            "burst.boss"
        };
        tasks.spawn(async move {
            let r = http
                .post(url)
                .json(&json!({ "username": username, "password": PASSWORD }))
                .send()
                .await
                .expect("answered");
            ("login", r.status().as_u16())
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.push(done.expect("task"));
    }
    assert_eq!(answers.len(), 70);
    assert!(
        answers.iter().all(|(_, status)| *status == 200),
        "every read and login succeeds: {answers:?}"
    );

    let rows = assert_gapless_and_verified(&pool).await;
    // 2 logins at setup + 60 views + 10 logins.
    assert_eq!(rows, 72);
    let views: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'case.view' AND case_id = $1",
    )
    .bind(case_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(views, 60);

    // The supervisor finds the analyst's reads by case, agent and action.
    let r = gw
        .get(
            &format!(
                "/v1/agent/audit?case_id={case_id}&agent_id={analyst_id}&action=case.view&limit=20"
            ),
            &boss,
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let page: Value = r.json().await.unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 20);
    assert!(
        entries
            .iter()
            .all(|e| e["actor_id"] == analyst_id.to_string()
                && e["action"] == "case.view"
                && e["case_id"] == case_id.to_string())
    );
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first");
    let next = page["next_after"].as_i64().expect("a next page");
    let r = gw
        .get(
            &format!("/v1/agent/audit?case_id={case_id}&agent_id={analyst_id}&action=case.view&limit=20&after={next}"),
            &boss,
        )
        .await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 10);
    assert!(page["next_after"].is_null());

    // The CSV export streams every matching row after a header.
    let r = gw
        .get(
            &format!("/v1/agent/audit?format=csv&case_id={case_id}&action=case.view"),
            &boss,
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()[reqwest::header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], gateway::audit::CSV_HEADER.trim_end());
    assert_eq!(lines.len(), 1 + 60, "{csv}");
    assert!(lines[1..].iter().all(|l| l.contains(",case.view,")));

    // Each query is itself audited, and the chain still verifies.
    let queries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'audit.query'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(queries, 3);
    assert_gapless_and_verified(&pool).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn only_supervisors_and_admins_read_the_log_and_bad_filters_are_refused(pool: PgPool) {
    let gw = start(&pool).await;
    let (_, cs) = agent(&pool, &gw, "log.cs", &[Role::Cs]).await;
    let (_, admin) = agent(&pool, &gw, "log.admin", &[Role::Admin]).await;

    let r = gw.get("/v1/agent/audit", &cs).await;
    assert_eq!(r.status().as_u16(), 403);
    let r = gw.get("/v1/agent/audit", &admin).await;
    assert_eq!(r.status().as_u16(), 200);
    let page: Value = r.json().await.unwrap();
    let actions: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // The query's own row is written first, so it is the last one read.
    assert_eq!(actions, ["agent.login", "agent.login", "audit.query"]);

    for bad in [
        "case_id=nope",
        "agent_id=%00",
        "action=CASE",
        "action=case.view%00",
        "from=yesterday",
        "from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
        "limit=0",
        "limit=5000",
        "after=-3",
        "format=xml",
        "unknown=1",
        "limit=1&limit=2",
    ] {
        let r = gw.get(&format!("/v1/agent/audit?{bad}"), &admin).await;
        assert_eq!(r.status().as_u16(), 422, "{bad}");
        assert_eq!(
            r.headers()[reqwest::header::CONTENT_TYPE],
            "application/problem+json",
            "{bad}"
        );
    }
    // A time range.
    let r = gw
        .get(
            "/v1/agent/audit?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z",
            &admin,
        )
        .await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 0);
    // A refused query changed nothing: only the good queries are in the log.
    let queries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'audit.query'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(queries, 2);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_agent_live_stream_is_audited_and_the_chain_head_is_published(pool: PgPool) {
    let gw = start(&pool).await;
    let case_id = security_review_case(&pool, "+8613800138501").await;
    let (analyst_id, analyst) = agent(&pool, &gw, "live.analyst", &[Role::Security]).await;

    let mut r = gw
        .get(&format!("/v1/agent/cases/{case_id}/events"), &analyst)
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), r.chunk())
        .await
        .expect("a first event")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: status"));
    drop(r);
    let follows: Vec<(String, Option<Uuid>)> =
        sqlx::query_as("SELECT actor_id, case_id FROM audit_log WHERE action = 'case.follow'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(follows, [(analyst_id.to_string(), Some(case_id))]);
    // An unknown case: 404, and nothing audited.
    let r = gw
        .get(
            &format!("/v1/agent/cases/{}/events", Uuid::now_v7()),
            &analyst,
        )
        .await;
    assert_eq!(r.status().as_u16(), 404);
    let rows = assert_gapless_and_verified(&pool).await;
    assert_eq!(rows, 2);

    // The head (seq and the hash's first 48 bits) reaches /metrics.
    let (seq, hash) = audit::head(&pool).await.unwrap().expect("a head");
    service_runtime::metrics::install();
    let stop = Shutdown::new();
    let publisher = tokio::spawn(gateway::audit::publish_chain_head(
        pool.clone(),
        Duration::from_millis(50),
        stop.clone(),
    ));
    let expected_seq = format!("audit_chain_head_seq {seq}");
    let expected_hash = format!(
        "audit_chain_head_hash_prefix {}",
        gateway::audit::hash_prefix(&hash)
    );
    let mut text = String::new();
    for _ in 0..50 {
        text = gw
            .http
            .get(format!("{}/metrics", gw.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(&expected_seq) && text.contains(&expected_hash) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.contains(&expected_seq), "{text}");
    assert!(text.contains(&expected_hash), "{text}");
    stop.trigger();
    publisher.await.unwrap();
}

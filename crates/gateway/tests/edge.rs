//! The gateway's edge against abuse, over real HTTP on a random local port (the
//! served gateway, `gateway::run_with`, with connect info) or in process:
//! - per-client rate limits (429 problem+json with `Retry-After`), per real client
//!   behind a trusted proxy, and an untrusted peer's `X-Forwarded-For` ignored;
//! - the agent API is no CSRF target: bearer only and JSON only on state changes;
//! - text that PostgreSQL cannot store (NUL) is refused with 422 naming the field;
//! - unknown routes and methods answer problem+json;
//! - the served OpenAPI document is consistent (path parameters, `$ref`s, operation ids).

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use case_domain::Role;
use gateway::{AppState, RateLimitConfig, rate_limit::Budget};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use service_runtime::Shutdown;
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

fn state(pool: &PgPool) -> AppState {
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
        live: gateway::live::LiveHub::default(),
    }
}

/// A served gateway (stopped when the returned guard drops); its base URL.
struct Served {
    base: String,
    shutdown: Shutdown,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn serve(pool: &PgPool, limits: RateLimitConfig) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let (state, stop) = (state(pool), shutdown.clone());
    tokio::spawn(async move {
        gateway::run_with(listener, state, Duration::from_secs(10), &limits, stop).await
    });
    Served { base, shutdown }
}

fn limits(burst: u32, trusted: &[&str]) -> RateLimitConfig {
    let budget = Budget::new(burst, Duration::from_secs(60)).unwrap();
    RateLimitConfig {
        enabled: true,
        anonymous: budget,
        login: budget,
        trusted_proxies: trusted.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

/// A case-token read of a case that does not exist (404 until the limit).
async fn read_case(
    http: &reqwest::Client,
    base: &str,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let mut request = http
        .get(format!("{base}/v1/cases/{}", Uuid::now_v7()))
        .bearer_auth("not-a-token");
    if let Some(xff) = forwarded {
        request = request.header("x-forwarded-for", xff);
    }
    request.send().await.unwrap()
}

async fn assert_rate_limited(response: reqwest::Response) {
    assert_eq!(response.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], 429, "{body}");
    assert_eq!(
        body["type"],
        "https://reactivation.example/problems/rate-limited"
    );
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn past_the_limit_an_address_gets_429_with_retry_after(pool: PgPool) {
    let served = serve(&pool, limits(3, &[])).await;
    let http = reqwest::Client::new();
    // Opening a case and the case-token routes share one budget per address.
    let open = http
        .post(format!("{}/v1/cases", served.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    for _ in 0..2 {
        let response = read_case(&http, &served.base, None).await;
        assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    }
    assert_rate_limited(read_case(&http, &served.base, None).await).await;
    let open = http
        .post(format!("{}/v1/cases", served.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_rate_limited(open).await;

    // Login has its own budget: the JSON login and the console form draw on it.
    for _ in 0..3 {
        let response = http
            .post(format!("{}/v1/agent/login", served.base))
            .json(&json!({"username": "nobody", "password": "wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    let form = http
        .post(format!("{}/console/login", served.base))
        .form(&[("username", "nobody"), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_rate_limited(form).await;

    // Signed carrier webhooks and the operational routes are not limited.
    for _ in 0..6 {
        let webhook = http
            .post(format!("{}/v1/webhooks/carrier", served.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        // (503: this gateway has no carrier secrets; never 429.)
        assert_eq!(webhook.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        let health = http
            .get(format!("{}/healthz", served.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), reqwest::StatusCode::OK);
    }
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn behind_a_trusted_proxy_each_real_client_counts_separately(pool: PgPool) {
    // The test's connections come from 127.0.0.1: here, the trusted proxy.
    let served = serve(&pool, limits(2, &["127.0.0.1/32"])).await;
    let http = reqwest::Client::new();
    let (a, b) = ("203.0.113.1", "203.0.113.2");
    for _ in 0..2 {
        let response = read_case(&http, &served.base, Some(a)).await;
        assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    }
    assert_rate_limited(read_case(&http, &served.base, Some(a)).await).await;
    // Client A cannot pass as someone else by writing a left-most entry: the proxy
    // appended its real address on the right.
    let forged = format!("198.51.100.9, {a}");
    assert_rate_limited(read_case(&http, &served.base, Some(&forged)).await).await;
    // Client B behind the same proxy still has its own budget.
    for _ in 0..2 {
        let response = read_case(&http, &served.base, Some(b)).await;
        assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    }
    assert_rate_limited(read_case(&http, &served.base, Some(b)).await).await;
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn an_untrusted_peer_cannot_choose_its_address_with_x_forwarded_for(pool: PgPool) {
    // Only 10.0.0.0/8 is trusted; the test connects from 127.0.0.1.
    let served = serve(&pool, limits(2, &["10.0.0.0/8"])).await;
    let http = reqwest::Client::new();
    for i in 1..=2 {
        let response = read_case(&http, &served.base, Some(&format!("203.0.113.{i}"))).await;
        assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    }
    assert_rate_limited(read_case(&http, &served.base, Some("203.0.113.3")).await).await;
    assert_rate_limited(read_case(&http, &served.base, None).await).await;
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn with_rate_limits_off_no_client_is_throttled(pool: PgPool) {
    let served = serve(&pool, RateLimitConfig::off()).await;
    let http = reqwest::Client::new();
    for _ in 0..80 {
        let response = read_case(&http, &served.base, None).await;
        assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    }
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn unknown_routes_and_methods_answer_problem_json(pool: PgPool) {
    let served = serve(&pool, RateLimitConfig::off()).await;
    let http = reqwest::Client::new();
    let unknown = http
        .get(format!("{}/v1/nowhere", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["status"], 404);
    let wrong_method = http
        .delete(format!("{}/v1/cases", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong_method.status(),
        reqwest::StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        wrong_method.headers()["content-type"],
        "application/problem+json"
    );
    assert!(wrong_method.headers().contains_key("allow"));
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["status"], 405);
}

// ---- in process -------------------------------------------------------------------

struct Call<'a> {
    method: &'a str,
    path: String,
    headers: Vec<(header::HeaderName, String)>,
    body: Option<String>,
}

impl<'a> Call<'a> {
    fn new(method: &'a str, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: vec![],
            body: None,
        }
    }

    fn bearer(mut self, token: &str) -> Self {
        self.headers
            .push((header::AUTHORIZATION, format!("Bearer {token}")));
        self
    }

    fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn json(self, body: &str) -> Self {
        self.body(body).with_type("application/json")
    }

    fn body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }

    fn with_type(self, content_type: &str) -> Self {
        self.header(header::CONTENT_TYPE, content_type)
    }

    async fn send(self, app: &Router) -> (StatusCode, String, Value) {
        let mut request = Request::builder().method(self.method).uri(&self.path);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(self.body.map_or_else(Body::empty, Body::from))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

const PASSWORD: &str = "a long enough password";

/// Creates an agent and logs them in; returns the session token.
async fn agent(app: &Router, pool: &PgPool, username: &str, roles: &[Role]) -> String {
    let hash = data_protection::hash_password(PASSWORD.into())
        .await
        .unwrap();
    case_store::agents::create_agent(pool, username, &hash, roles)
        .await
        .unwrap();
    let (status, _, body) = Call::new("POST", "/v1/agent/login")
        .json(&json!({ "username": username, "password": PASSWORD }).to_string())
        .send(app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

fn cookie(token: &str) -> String {
    format!("{}={token}", gateway::agent_auth::SESSION_COOKIE)
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn state_changing_agent_calls_take_a_bearer_token_not_the_cookie(pool: PgPool) {
    let app = gateway::app(state(&pool));
    let token = agent(&app, &pool, "cs.one", &[Role::Cs]).await;
    let case_id = case_store::testing::open_case(&pool, "+8613800138000").await;
    let note = json!({"body": "Called the subscriber back."}).to_string();
    let notes = format!("/v1/agent/cases/{case_id}/notes");

    // What a page on another site can make the browser send: the cookie, no header.
    let (status, content_type, body) = Call::new("POST", &notes)
        .header(header::COOKIE, &cookie(&token))
        .json(&note)
        .send(&app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(
        body["type"],
        "https://reactivation.example/problems/bearer-required"
    );
    for (method, path) in [
        ("POST", format!("/v1/agent/cases/{case_id}/claim")),
        ("POST", "/v1/agent/logout".to_owned()),
    ] {
        let (status, _, body) = Call::new(method, &path)
            .header(header::COOKIE, &cookie(&token))
            .send(&app)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
    }
    let (notes_written,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM case_notes WHERE case_id = $1")
            .bind(case_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(notes_written, 0, "a refused call changed nothing");

    // Reads still take the cookie (the console's live stream does).
    let (status, _, body) = Call::new("GET", "/v1/agent/queue?department=cs")
        .header(header::COOKIE, &cookie(&token))
        .send(&app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The bearer token works, also with the cookie beside it.
    let (status, _, body) = Call::new("POST", &notes)
        .bearer(&token)
        .header(header::COOKIE, &cookie(&token))
        .json(&note)
        .send(&app)
        .await;
    assert!(status.is_success(), "{status}: {body}");
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn agent_json_calls_refuse_other_content_types_with_415(pool: PgPool) {
    let app = gateway::app(state(&pool));
    let token = agent(&app, &pool, "cs.two", &[Role::Cs]).await;
    let case_id = case_store::testing::open_case(&pool, "+8613800138000").await;
    let notes = format!("/v1/agent/cases/{case_id}/notes");
    let note = json!({"body": "x"}).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
    ] {
        let (status, ct, body) = Call::new("POST", &notes)
            .bearer(&token)
            .body(&note)
            .with_type(content_type)
            .send(&app)
            .await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}: {body}"
        );
        assert_eq!(ct, "application/problem+json");
        // Login too (a forged login would log the victim's browser into our account).
        let (status, _, _) = Call::new("POST", "/v1/agent/login")
            .body(&json!({"username": "cs.two", "password": PASSWORD}).to_string())
            .with_type(content_type)
            .send(&app)
            .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
    }
    // A body without a type is refused too.
    let (status, _, _) = Call::new("POST", &notes)
        .bearer(&token)
        .body(&note)
        .send(&app)
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // JSON with a charset is JSON; a bodiless call needs no type.
    let (status, _, body) = Call::new("POST", &notes)
        .bearer(&token)
        .body(&note)
        .with_type("application/json; charset=utf-8")
        .send(&app)
        .await;
    assert!(status.is_success(), "{status}: {body}");
    let (status, _, body) = Call::new("POST", "/v1/agent/logout")
        .bearer(&token)
        .send(&app)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn text_with_a_nul_character_is_refused_with_422_naming_the_field(pool: PgPool) {
    let app = gateway::app(state(&pool));
    let agent_token = agent(&app, &pool, "admin.one", &[Role::Admin, Role::Cs]).await;
    let case_id = case_store::testing::open_case(&pool, "+8613800138000").await;
    let case_token = "a-case-token-for-the-test";
    sqlx::query("UPDATE reactivation_cases SET token_hash = $1 WHERE id = $2")
        .bind(data_protection::hash_token(case_token).to_vec())
        .bind(case_id)
        .execute(&pool)
        .await
        .unwrap();
    let nul = "a\u{0}b";
    let cases: Vec<(Call<'_>, &str)> = vec![
        (
            Call::new("POST", "/v1/agent/login")
                .json(&json!({"username": nul, "password": PASSWORD}).to_string()),
            "username",
        ),
        (
            Call::new("POST", "/v1/cases").json(
                &json!({"msisdn": "+8613800138001", "full_name": nul,
                        "id_number": "11010519491231002X", "channel": "web", "locale": "en"})
                .to_string(),
            ),
            "full_name",
        ),
        (
            Call::new("POST", format!("/v1/cases/{case_id}/verifications"))
                .bearer(case_token)
                .json(&json!({"method": "service_password", "password": nul}).to_string()),
            "password",
        ),
        (
            Call::new("POST", format!("/v1/cases/{case_id}/explanations"))
                .bearer(case_token)
                .json(&json!({"text": nul}).to_string()),
            "text",
        ),
        (
            Call::new("POST", format!("/v1/cases/{case_id}/complaints"))
                .bearer(case_token)
                .json(&json!({"category": "other", "text": nul}).to_string()),
            "text",
        ),
        (
            Call::new("POST", format!("/v1/agent/cases/{case_id}/notes"))
                .bearer(&agent_token)
                .json(&json!({"body": nul}).to_string()),
            "body",
        ),
        (
            Call::new("POST", format!("/v1/agent/cases/{case_id}/actions"))
                .bearer(&agent_token)
                .json(&json!({"action": "note", "reason": nul, "version": 1}).to_string()),
            "reason",
        ),
        (
            Call::new("POST", "/v1/agent/webhook-endpoints")
                .bearer(&agent_token)
                .json(&json!({"url": format!("https://example.com/{nul}")}).to_string()),
            "url",
        ),
        (
            Call::new("GET", "/v1/agent/queue?department=cs%00").bearer(&agent_token),
            "department",
        ),
        (
            Call::new(
                "GET",
                format!("/v1/agent/cases/{case_id}/dossier?format=json%00"),
            )
            .bearer(&agent_token),
            "format",
        ),
        (
            Call::new("GET", "/v1/agent/cases/%00").bearer(&agent_token),
            "path",
        ),
        (
            Call::new("POST", "/console/login")
                .body("username=a%00b&password=x&login_csrf=y")
                .with_type("application/x-www-form-urlencoded"),
            "username",
        ),
        (
            Call::new("GET", "/console/login?next=%2Fconsole%00"),
            "next",
        ),
    ];
    for (call, field) in cases {
        let what = format!("{} {}", call.method, call.path);
        let (status, content_type, body) = call.send(&app).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        assert_eq!(content_type, "application/problem+json", "{what}");
        assert_eq!(body["errors"][0]["field"], field, "{what}: {body}");
        assert!(
            !body.to_string().contains("\\u0000"),
            "{what} echoes the NUL: {body}"
        );
    }
}

// ---- the OpenAPI document ------------------------------------------------------------

fn path_template_names(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_owned)
        .collect()
}

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(r) = v.as_str() {
                        out.push(r.to_owned());
                    }
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Resolves a local JSON pointer (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

/// The checks a client generator relies on; returns every violation.
fn openapi_violations(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if !doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")) {
        problems.push("`openapi` is not 3.x".into());
    }
    let mut operation_ids = HashSet::new();
    let Some(paths) = doc["paths"].as_object() else {
        return vec!["no `paths`".into()];
    };
    for (path, item) in paths {
        let in_template = path_template_names(path);
        let shared: Vec<Value> = item["parameters"].as_array().cloned().unwrap_or_default();
        for (method, operation) in item.as_object().into_iter().flatten() {
            if ![
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&method.as_str())
            {
                continue;
            }
            let at = format!("{} {path}", method.to_uppercase());
            match operation["operationId"].as_str() {
                Some(id) if !operation_ids.insert(id.to_owned()) => {
                    problems.push(format!("{at}: operationId `{id}` is not unique"));
                }
                Some(_) => {}
                None => problems.push(format!("{at}: no operationId")),
            }
            let mut parameters = shared.clone();
            parameters.extend(
                operation["parameters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            let mut seen = HashSet::new();
            let mut declared_path = BTreeSet::new();
            for p in &parameters {
                let p = match p.get("$ref").and_then(Value::as_str) {
                    Some(r) => resolve(doc, r).cloned().unwrap_or(Value::Null),
                    None => p.clone(),
                };
                let (Some(name), Some(location)) = (p["name"].as_str(), p["in"].as_str()) else {
                    problems.push(format!("{at}: a parameter without name or `in`"));
                    continue;
                };
                if !["path", "query", "header", "cookie"].contains(&location) {
                    problems.push(format!("{at}: parameter `{name}` in `{location}`"));
                }
                if !seen.insert((name.to_owned(), location.to_owned())) {
                    problems.push(format!("{at}: parameter `{name}` declared twice"));
                }
                if location == "path" {
                    declared_path.insert(name.to_owned());
                    if p["required"] != Value::Bool(true) {
                        problems.push(format!("{at}: path parameter `{name}` not required"));
                    }
                }
            }
            for missing in in_template.difference(&declared_path) {
                problems.push(format!("{at}: path parameter `{missing}` is not declared"));
            }
            for extra in declared_path.difference(&in_template) {
                problems.push(format!(
                    "{at}: declares path parameter `{extra}`, which its path does not have"
                ));
            }
            match operation["responses"].as_object() {
                Some(responses) if !responses.is_empty() => {
                    for (code, response) in responses {
                        if response.get("$ref").is_none() && !response["description"].is_string() {
                            problems.push(format!("{at}: response {code} has no description"));
                        }
                    }
                }
                _ => problems.push(format!("{at}: no responses")),
            }
        }
    }
    let mut all_refs = Vec::new();
    refs(doc, &mut all_refs);
    for reference in all_refs {
        if resolve(doc, &reference).is_none() {
            problems.push(format!("`$ref` {reference} does not resolve"));
        }
    }
    problems
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn the_served_openapi_document_is_consistent(pool: PgPool) {
    let app = gateway::app(state(&pool));
    let (status, _, doc) = Call::new("GET", "/openapi.json").send(&app).await;
    assert_eq!(status, StatusCode::OK);
    let problems = openapi_violations(&doc);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The rate limits are documented where they apply, and only there.
    for (path, method) in [
        ("/v1/cases", "post"),
        ("/v1/cases/{case_id}", "get"),
        ("/v1/cases/{case_id}/otp", "post"),
        ("/v1/agent/login", "post"),
    ] {
        let description = doc["paths"][path][method]["responses"]["429"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(description.contains("rate-limited"), "{method} {path}");
    }
    assert!(doc["paths"]["/v1/webhooks/carrier"]["post"]["responses"]["429"].is_null());
    // Query parameters are declared in the query.
    let dossier = &doc["paths"]["/v1/agent/cases/{case_id}/dossier"]["get"]["parameters"];
    assert!(
        dossier
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "format" && p["in"] == "query"),
        "{dossier}"
    );
    // The checker finds what it is for.
    let mut broken = doc.clone();
    broken["paths"]["/v1/cases"]["post"]["parameters"] =
        json!([{"name": "format", "in": "path", "required": true, "schema": {"type": "string"}}]);
    broken["paths"]["/v1/cases/{case_id}"]["get"]["responses"]["200"]["content"] =
        json!({"application/json": {"schema": {"$ref": "#/components/schemas/Nowhere"}}});
    let found = openapi_violations(&broken).join("\n");
    assert!(
        found.contains("`format`, which its path does not have"),
        "{found}"
    );
    assert!(found.contains("Nowhere does not resolve"), "{found}");
}

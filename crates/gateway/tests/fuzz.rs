//! A fuzzer over the served OpenAPI document: every operation (method and path) of
//! `/openapi.json` gets many generated requests, over real HTTP to the served gateway
//! (`gateway::run_with`, random local port) on a real database, proving identity
//! in-process against the carrier simulator.
//!
//! Requests are built from the document: path parameters from real ids (cases,
//! complaints, endpoints, an agent), random uuids and garbage (huge, unicode, NUL and
//! control characters, `..`); query parameters from their declared schemas and junk;
//! bodies from the declared request schema (`$ref`s resolved) with wrong types, missing
//! required fields, extra fields, boundary numbers, long strings and deep nesting, and
//! random bytes with and without the right `Content-Type`; each with every credential
//! (none, a case token, an agent of each role, a wrong token).
//!
//! Asserted for every answer: no 5xx (the database is up, so not even 503), every
//! 4xx is `application/problem+json` with `type`, `title`, `status` and `detail`, no
//! panic anywhere in the process, and the answer within the gateway's time limit.
//! The seed is fixed (`FUZZ_SEED` changes it); `FUZZ_CASES` sets the requests per
//! operation (default 60: about 15 s on two cores).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use carrier_adapter::HttpCarrier;
use carrier_sim::demo;
use case_domain::{Role, sla::SlaConfig};
use case_workflows::identity::IdentityCases;
use data_protection::Keys;
use futures_util::{StreamExt, stream};
use gateway::{AppState, RateLimitConfig, live::LiveHub, webhooks::WebhookConfig};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::{Map, Value, json};
use service_runtime::Shutdown;
use sqlx::PgPool;
use uuid::Uuid;

/// The gateway's per-request time limit in this test.
const TIME_LIMIT: Duration = Duration::from_secs(10);
const PASSWORD: &str = "a long enough password";

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic in the process (server tasks included), then reports it as usual.
fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
}

fn carrier_secret() -> webhooks::Secret {
    webhooks::Secret::from_bytes(&[9u8; 32]).unwrap()
}

struct Served {
    base: String,
    shutdown: Shutdown,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn serve(pool: &PgPool) -> Served {
    demo::seed(pool).await.expect("demo subscribers");
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}", sim_listener.local_addr().unwrap());
    let sim = carrier_sim::router(pool.clone());
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(sim_listener, sim)
            .with_graceful_shutdown(async move { stop.wait().await })
            .await
    });
    let carrier = Arc::new(HttpCarrier::new(&sim_url, Duration::from_secs(5)).unwrap());
    let keys = Arc::new(Keys::from_master(&[7u8; 32]));
    let identity = Arc::new(IdentityCases::new(pool.clone(), carrier, keys.clone()));
    let state = AppState {
        pool: pool.clone(),
        keys,
        identity,
        webhooks: WebhookConfig {
            carrier_secrets: Arc::new(vec![carrier_secret()]),
            policy: webhooks::DestinationPolicy {
                allow_private: false,
            },
        },
        sla: Arc::new(SlaConfig::default()),
        console: gateway::console::ConsoleConfig::default(),
        live: LiveHub::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        gateway::run_with(listener, state, TIME_LIMIT, &RateLimitConfig::off(), stop).await
    });
    Served { base, shutdown }
}

/// What the fuzzer knows of the world: real credentials and real ids.
struct World {
    /// (label, token): none, a case token, each agent role, a wrong token.
    credentials: Vec<(String, Option<String>)>,
    /// Real ids per path parameter name.
    ids: BTreeMap<&'static str, Vec<String>>,
    /// Each real case's own token.
    case_tokens: BTreeMap<String, String>,
}

async fn login(http: &reqwest::Client, base: &str, username: &str) -> String {
    let response = http
        .post(format!("{base}/v1/agent/login"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "login {username}");
    let body: Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn world(pool: &PgPool, http: &reqwest::Client, base: &str) -> World {
    let hash = data_protection::hash_password(PASSWORD.into())
        .await
        .unwrap();
    let mut credentials = vec![("none".to_owned(), None)];
    let mut agents = BTreeMap::new();
    for (name, role) in [
        ("cs", Role::Cs),
        ("security", Role::Security),
        ("technical", Role::Technical),
        ("supervisor", Role::Supervisor),
        ("admin", Role::Admin),
    ] {
        let username = format!("fuzz.{name}");
        case_store::agents::create_agent(pool, &username, &hash, &[role])
            .await
            .unwrap();
        agents.insert(name, login(http, base, &username).await);
    }
    // An agent only ever named in paths: admin calls on it cannot lock the fuzzer out.
    let victim = case_store::agents::create_agent(pool, "fuzz.victim", &hash, &[Role::Cs])
        .await
        .unwrap();

    // Real cases through the API (real tokens), one per demo subscriber.
    let mut case_ids = Vec::new();
    let mut case_tokens = Vec::new();
    for subscriber in demo::ALL {
        let response = http
            .post(format!("{base}/v1/cases"))
            .json(
                &json!({"msisdn": subscriber.msisdn, "full_name": subscriber.full_name,
                          "id_number": subscriber.id_number, "locale": "en"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            201,
            "open a case for {}",
            subscriber.msisdn
        );
        let body: Value = response.json().await.unwrap();
        case_ids.push(body["case_id"].as_str().unwrap().to_owned());
        case_tokens.push(body["case_token"].as_str().unwrap().to_owned());
    }
    // A complaint on the first case, and an outbound endpoint, for their ids.
    let response = http
        .post(format!("{base}/v1/cases/{}/complaints", case_ids[0]))
        .bearer_auth(&case_tokens[0])
        .json(&json!({"channel": "web", "text": "Nobody called me back."}))
        .send()
        .await
        .unwrap();
    let complaint: Value = response.json().await.unwrap();
    let complaint_ids: Vec<String> = complaint["complaint_id"]
        .as_str()
        .or(complaint["id"].as_str())
        .map(str::to_owned)
        .into_iter()
        .collect();
    let response = http
        .post(format!("{base}/v1/agent/webhook-endpoints"))
        .bearer_auth(&agents["admin"])
        .json(&json!({"url": "https://93.184.215.14/hooks",
                      "event_types": [webhooks::CaseEventType::ALL[0].as_str()]}))
        .send()
        .await
        .unwrap();
    let endpoint: Value = response.json().await.unwrap();
    let endpoint_ids: Vec<String> = endpoint["endpoint_id"]
        .as_str()
        .or(endpoint["id"].as_str())
        .map(str::to_owned)
        .into_iter()
        .collect();

    credentials.push(("case token".to_owned(), Some(case_tokens[0].clone())));
    for (name, token) in agents {
        credentials.push((format!("agent {name}"), Some(token)));
    }
    credentials.push((
        "wrong token".to_owned(),
        Some("not-a-real-token".to_owned()),
    ));
    credentials.push((
        "wrong agent-like token".to_owned(),
        Some(format!(
            "{}{}",
            Uuid::new_v4().simple(),
            Uuid::new_v4().simple()
        )),
    ));

    assert_eq!(complaint_ids.len(), 1, "a complaint: {complaint}");
    assert_eq!(endpoint_ids.len(), 1, "an endpoint: {endpoint}");
    let mut ids = BTreeMap::new();
    ids.insert("case_id", case_ids.clone());
    ids.insert("complaint_id", complaint_ids);
    ids.insert("endpoint_id", endpoint_ids);
    ids.insert("agent_id", vec![victim.to_string()]);
    ids.insert(
        "queue",
        vec![
            "outbox".into(),
            "carrier_webhooks".into(),
            "webhook_deliveries".into(),
        ],
    );
    World {
        credentials,
        case_tokens: ids["case_id"].iter().cloned().zip(case_tokens).collect(),
        ids,
    }
}

// ---- generators -----------------------------------------------------------------------

/// Strings that break naive parsers and stores; one in five holds a NUL character
/// (which PostgreSQL cannot store) somewhere.
fn nasty_string(rng: &mut StdRng) -> String {
    let mut text = nasty_string_kind(rng);
    if rng.random_bool(0.2) {
        let at = rng.random_range(0..=text.chars().count());
        let at = text.char_indices().nth(at).map_or(text.len(), |(i, _)| i);
        text.insert(at, '\0');
    }
    text
}

fn nasty_string_kind(rng: &mut StdRng) -> String {
    match rng.random_range(0..14) {
        0 => String::new(),
        1 => "a\u{0}b".into(),
        2 => "\u{1}\u{7}\u{1b}[31m\r\n\t".into(),
        3 => "..".into(),
        4 => "../../etc/passwd".into(),
        5 => "x".repeat(rng.random_range(1_000..70_000)),
        6 => "é中文🙂\u{202e}\u{feff}\u{fffd}".into(),
        7 => "' OR 1=1; --".into(),
        8 => "99999999999999999999999999999999".into(),
        9 => "-1".into(),
        10 => "%00%2e%2e%2f".into(),
        11 => "\u{d7ff}\u{e000}\u{10ffff}".into(),
        12 => Uuid::new_v4().to_string().to_uppercase(),
        _ => (0..rng.random_range(1..40))
            .map(|_| char::from_u32(rng.random_range(1..0x3000)).unwrap_or('?'))
            .collect(),
    }
}

fn boundary_number(rng: &mut StdRng) -> Value {
    match rng.random_range(0..12) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(1),
        3 => json!(i32::MAX),
        4 => json!(i64::from(i32::MAX) + 1),
        5 => json!(i32::MIN),
        6 => json!(i64::MAX),
        7 => json!(i64::MIN),
        8 => json!(u64::MAX),
        9 => json!(1e308),
        10 => json!(0.5),
        _ => json!(-1e-300),
    }
}

/// Any JSON value at all, nested up to `depth`.
fn junk(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => boundary_number(rng),
        3 => json!(nasty_string(rng)),
        4 => json!(Uuid::new_v4()),
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| junk(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|_| (nasty_string(rng), junk(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// A value nested `depth` arrays or objects deep.
fn deep(depth: usize, objects: bool) -> String {
    if objects {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }
}

/// Follows `$ref`s (and single-entry `allOf`s) to the schema they name.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            schema = reference
                .strip_prefix('#')
                .and_then(|p| doc.pointer(p))
                .unwrap_or(&Value::Null);
        } else {
            return schema;
        }
    }
    schema
}

/// A value of `schema`, valid most of the time, sometimes subtly or wildly not.
fn from_schema(doc: &Value, schema: &Value, rng: &mut StdRng, depth: u32) -> Value {
    let schema = resolve(doc, schema);
    if depth == 0 || rng.random_bool(0.08) {
        return junk(rng, 2);
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[combinator].as_array() {
            if combinator == "allOf" {
                // Merge the objects of an allOf.
                let mut merged = Map::new();
                for option in options {
                    if let Value::Object(part) = from_schema(doc, option, rng, depth - 1) {
                        merged.extend(part);
                    }
                }
                return Value::Object(merged);
            }
            if let Some(option) = options.choose(rng) {
                return from_schema(doc, option, rng, depth - 1);
            }
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        if rng.random_bool(0.85)
            && let Some(v) = values.choose(rng)
        {
            return v.clone();
        }
        return json!(nasty_string(rng));
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(types) => types
            .choose(rng)
            .and_then(Value::as_str)
            .unwrap_or("null")
            .to_owned(),
        _ if schema["properties"].is_object() => "object".into(),
        _ => return junk(rng, 2),
    };
    match kind.as_str() {
        "object" => {
            let mut object = Map::new();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    let is_required = required.contains(&name.as_str());
                    let keep = if is_required {
                        rng.random_bool(0.93)
                    } else {
                        rng.random_bool(0.6)
                    };
                    if keep {
                        object.insert(name.clone(), from_schema(doc, property, rng, depth - 1));
                    }
                }
            }
            if rng.random_bool(0.1) {
                object.insert(nasty_string(rng), junk(rng, 2));
            }
            Value::Object(object)
        }
        "array" => {
            let n = if rng.random_bool(0.05) {
                rng.random_range(50..300)
            } else {
                rng.random_range(0..4)
            };
            Value::Array(
                (0..n)
                    .map(|_| from_schema(doc, &schema["items"], rng, depth - 1))
                    .collect(),
            )
        }
        "integer" | "number" => {
            if rng.random_bool(0.5) {
                boundary_number(rng)
            } else {
                let min = schema["minimum"].as_i64().unwrap_or(0);
                let max = schema["maximum"]
                    .as_i64()
                    .unwrap_or(min.saturating_add(100));
                json!(rng.random_range(min..=max.max(min)))
            }
        }
        "boolean" => json!(rng.random_bool(0.5)),
        "null" => Value::Null,
        _ => {
            let format = schema["format"].as_str().unwrap_or_default();
            if rng.random_bool(0.5) {
                return json!(nasty_string(rng));
            }
            match format {
                "uuid" => json!(Uuid::new_v4()),
                "date-time" => json!(
                    [
                        "2026-12-03T16:00:00Z",
                        "9999-12-31T23:59:59Z",
                        "1970-01-01T00:00:00Z",
                        "2026-02-30T25:61:61Z"
                    ]
                    .choose(rng)
                ),
                "uri" => json!(
                    [
                        "https://example.com/x",
                        "http://127.0.0.1:1/",
                        "javascript:alert(1)"
                    ]
                    .choose(rng)
                ),
                _ => {
                    let max = schema["maxLength"].as_u64().unwrap_or(40) as usize;
                    let len = rng.random_range(0..=max.min(2_000) + 1);
                    json!(
                        (0..len)
                            .map(|_| rng.random_range('a'..='z'))
                            .collect::<String>()
                    )
                }
            }
        }
    }
}

fn encode(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn path_value(name: &str, world: &World, rng: &mut StdRng) -> String {
    let real = world.ids.get(name).filter(|ids| !ids.is_empty());
    match (rng.random_range(0..10), real) {
        (0..=3, Some(ids)) => encode(ids.choose(rng).unwrap()),
        (0..=5, _) => Uuid::new_v4().to_string(),
        (6, _) => "..".into(),
        (7, _) => ["%00", "%2e%2e%2f", "a%2Fb", "%FF%FE", "%", "%zz"]
            .choose(rng)
            .unwrap()
            .to_string(),
        _ => encode(&nasty_string(rng)),
    }
}

/// One generated request.
struct Attempt {
    method: reqwest::Method,
    url: String,
    credential: (String, Option<String>),
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn attempt(
    doc: &Value,
    base: &str,
    path: &str,
    method: &str,
    operation: &Value,
    world: &World,
    rng: &mut StdRng,
) -> Attempt {
    let mut parameters: Vec<Value> = doc["paths"][path]["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    parameters.extend(
        operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    let parameters: Vec<Value> = parameters.iter().map(|p| resolve(doc, p).clone()).collect();
    let mut url = base.to_owned();
    let mut credential = world.credentials[rng.random_range(0..world.credentials.len())].clone();
    for segment in path.split('/').skip(1) {
        url.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let value = path_value(name, world, rng);
                // A customer route of a real case: mostly with that case's own token.
                if let Some(token) = world.case_tokens.get(&value)
                    && path.starts_with("/v1/cases/")
                    && rng.random_bool(0.7)
                {
                    credential = ("its case token".to_owned(), Some(token.clone()));
                }
                url.push_str(&value);
            }
            None => url.push_str(segment),
        }
    }
    let mut query = Vec::new();
    for p in parameters.iter().filter(|p| p["in"] == "query") {
        let name = p["name"].as_str().unwrap_or_default();
        if rng.random_bool(0.15) {
            continue;
        }
        let value = match from_schema(doc, &p["schema"], rng, 3) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        query.push(format!("{}={}", encode(name), encode(&value)));
        if rng.random_bool(0.05) {
            query.push(format!("{}={}", encode(name), encode(&nasty_string(rng))));
        }
    }
    if rng.random_bool(0.1) {
        query.push(format!(
            "{}={}",
            encode(&nasty_string(rng)),
            encode(&nasty_string(rng))
        ));
    }
    if rng.random_bool(0.03) {
        query.push("%zz=%".into());
    }
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }

    let declared = operation["requestBody"]["content"]
        .as_object()
        .and_then(|c| c.iter().next())
        .map(|(ct, media)| (ct.clone(), media["schema"].clone()));
    let (mut content_type, mut body) = (None, None);
    match declared {
        Some((ct, schema)) if ct == "application/json" => {
            content_type = Some(ct);
            body = Some(match rng.random_range(0..20) {
                0 => deep(rng.random_range(100..3_000), rng.random_bool(0.5)).into_bytes(),
                1 => (0..rng.random_range(0..200))
                    .map(|_| rng.random())
                    .collect(),
                2 => b"{\"a\":".to_vec(),
                3 => Vec::new(),
                _ => from_schema(doc, &schema, rng, 6).to_string().into_bytes(),
            });
        }
        Some((ct, _)) if ct.starts_with("multipart/") => {
            let boundary = "fuzzboundary";
            content_type = Some(format!("{ct}; boundary={boundary}"));
            let name = ["file", "other", "file\"", ""].choose(rng).unwrap();
            let file_type = ["application/pdf", "image/png", "image/jpeg", "text/plain"]
                .choose(rng)
                .unwrap();
            let mut part = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{}\"\r\nContent-Type: {file_type}\r\n\r\n",
                nasty_string(rng).replace(['"', '\r', '\n'], "")
            )
            .into_bytes();
            match rng.random_range(0..4) {
                0 => {
                    part.extend_from_slice(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF")
                }
                1 => part.extend_from_slice(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
                2 => part.extend_from_slice(b"\xff\xd8\xff\xe0garbage"),
                _ => part.extend((0..rng.random_range(0..500)).map(|_| rng.random::<u8>())),
            }
            if rng.random_bool(0.8) {
                part.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            }
            body = Some(part);
        }
        _ => {}
    }
    // The wrong type, no type, or a body nobody asked for.
    match rng.random_range(0..12) {
        0 => content_type = None,
        1 => {
            content_type = Some(
                [
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "application/jsonp",
                    "multipart/form-data",
                    "application/json; charset=utf-16",
                    "\u{7f}",
                ]
                .choose(rng)
                .unwrap()
                .to_string(),
            )
        }
        2 => {
            body = Some(
                (0..rng.random_range(0..300))
                    .map(|_| rng.random())
                    .collect(),
            );
        }
        3 if rng.random_bool(0.2) => {
            // Beyond any body limit.
            body = Some(vec![b'a'; 6 * 1024 * 1024]);
        }
        _ => {}
    }
    // Carrier webhooks: mostly signed with the carrier's secret, so the body is read.
    let mut headers = Vec::new();
    if path == "/v1/webhooks/carrier" && rng.random_bool(0.7) {
        let id = if rng.random_bool(0.8) {
            format!("msg_{}", Uuid::new_v4().simple())
        } else {
            nasty_string(rng)
        };
        let now = chrono::Utc::now().timestamp();
        let timestamp = *[now, now, now, now - 86_400, i64::MAX, 0]
            .choose(rng)
            .unwrap();
        let signature = webhooks::sign(
            &carrier_secret(),
            &id,
            timestamp,
            body.as_deref().unwrap_or_default(),
        );
        headers.push(("webhook-id".to_owned(), id));
        headers.push(("webhook-timestamp".to_owned(), timestamp.to_string()));
        headers.push(("webhook-signature".to_owned(), signature));
    }
    Attempt {
        method: method.to_uppercase().parse().unwrap(),
        url,
        credential,
        content_type,
        headers,
        body,
    }
}

/// Sends one attempt; returns the status it got (0: none) and a violation, if any.
async fn check(http: &reqwest::Client, attempt: Attempt) -> (u16, Option<String>) {
    let (label, token) = &attempt.credential;
    let what = format!(
        "{} {} as {label} ({}; body {})",
        attempt.method,
        attempt.url.chars().take(300).collect::<String>(),
        attempt.content_type.as_deref().unwrap_or("no content type"),
        attempt
            .body
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned())
            .unwrap_or_else(|| "none".into()),
    );
    let mut request = http.request(attempt.method, &attempt.url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(ct) = &attempt.content_type {
        request = request.header("content-type", ct);
    }
    for (name, value) in &attempt.headers {
        request = request.header(name, value);
    }
    if let Some(body) = attempt.body {
        request = request.body(body);
    }
    let started = std::time::Instant::now();
    let response = match request.send().await {
        Ok(r) => r,
        // reqwest refuses to build a few of the nastiest URLs itself: not the server's.
        Err(e) if e.is_builder() => return (0, None),
        Err(e) => return (0, Some(format!("{what}: no answer ({e})"))),
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type.starts_with("text/event-stream") {
        // A live stream stays open: its head is the answer.
        let violation = (!status.is_success()).then(|| format!("{what}: {status} as a stream"));
        return (status.as_u16(), violation);
    }
    let code = status.as_u16();
    if started.elapsed() > TIME_LIMIT + Duration::from_secs(1) {
        return (
            code,
            Some(format!("{what}: {status} after {:?}", started.elapsed())),
        );
    }
    let retry_after = response.headers().contains_key("retry-after");
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return (code, Some(format!("{what}: {status}, body cut ({e})"))),
    };
    if status.is_server_error() {
        let note = if status == 503 && retry_after {
            " (503 with Retry-After, but the database is up)"
        } else {
            ""
        };
        let body = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned();
        return (code, Some(format!("{what}: {status}{note}: {body}")));
    }
    if status.is_client_error() {
        if content_type != "application/problem+json" {
            return (code, Some(format!("{what}: {status} as `{content_type}`")));
        }
        let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let complete = problem["type"].is_string()
            && problem["title"].is_string()
            && problem["detail"].is_string()
            && problem["status"] == status.as_u16();
        if !complete {
            return (
                code,
                Some(format!("{what}: {status}, incomplete {problem}")),
            );
        }
    }
    (code, None)
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn every_operation_of_the_openapi_document_survives_fuzzing(pool: PgPool) {
    count_panics();
    let cases: usize = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f022);
    let served = serve(&pool).await;
    let http = reqwest::Client::builder()
        .timeout(TIME_LIMIT + Duration::from_secs(5))
        .build()
        .unwrap();
    let world = world(&pool, &http, &served.base).await;
    let doc: Value = http
        .get(format!("{}/openapi.json", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().into_iter().flatten() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                operations.push((path.clone(), method.clone(), operation.clone()));
            }
        }
    }
    // Cancelling ends the real cases and logging out the fuzzer's sessions: last.
    operations.sort_by_key(|(path, _, _)| (path.ends_with("/logout"), path.ends_with("/cancel")));
    assert!(operations.len() > 30, "{} operations", operations.len());

    let mut rng = StdRng::seed_from_u64(seed);
    let mut violations = Vec::new();
    let mut statuses: BTreeMap<(String, String, u16), usize> = BTreeMap::new();
    let mut sent = 0;
    for (path, method, operation) in &operations {
        let attempts: Vec<Attempt> = (0..cases)
            .map(|_| {
                attempt(
                    &doc,
                    &served.base,
                    path,
                    method,
                    operation,
                    &world,
                    &mut rng,
                )
            })
            .collect();
        sent += attempts.len();
        let found: Vec<(u16, Option<String>)> = stream::iter(attempts)
            .map(|a| check(&http, a))
            .buffer_unordered(4)
            .collect()
            .await;
        for (status, violation) in found {
            *statuses
                .entry((path.clone(), method.clone(), status))
                .or_insert(0) += 1;
            violations.extend(violation);
        }
    }
    // A fuzzer that only ever met the door tests nothing: most operations must also
    // have been answered with something other than 401/404.
    let mut by_operation: BTreeMap<(String, String), Vec<(u16, usize)>> = BTreeMap::new();
    for ((path, method, status), n) in &statuses {
        by_operation
            .entry((method.to_uppercase(), path.clone()))
            .or_default()
            .push((*status, *n));
    }
    for ((method, path), seen) in &by_operation {
        eprintln!("{method} {path}: {seen:?}");
    }
    let past_the_door = by_operation
        .values()
        .filter(|seen| seen.iter().any(|(s, _)| ![0, 401, 404].contains(s)))
        .count();
    assert!(
        past_the_door * 4 >= operations.len() * 3,
        "only {past_the_door} of {} operations got past authentication",
        operations.len()
    );
    drop(served);
    let panics = PANICS.load(Ordering::SeqCst);
    assert!(
        violations.is_empty() && panics == 0,
        "{} of {sent} requests over {} operations broke a rule ({panics} panics), seed {seed}:\n{}",
        violations.len(),
        operations.len(),
        violations.join("\n")
    );
}

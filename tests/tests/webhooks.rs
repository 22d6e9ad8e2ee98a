//! Webhooks both ways, over real processes: the carrier's signed webhooks into the
//! gateway (verification, replay dedupe under concurrency, key rotation, processing
//! by the webhooks service), the simulator's own webhooks (signals, order
//! completion), and outbound webhooks to a receiver run by the test (retries, 410,
//! the delivery log, the SSRF check at registration).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use serde_json::{Value, json};
use system_tests::{Stack, StackOptions, TEST_WEBHOOK_SECRET, TestSubscriber};
use webhooks::{ReceivedHeaders, Secret};

const SETTLE: Duration = Duration::from_secs(30);
/// A second carrier secret, as during a rotation (test only).
const ROTATED_SECRET: &str = "whsec_cm90YXRlZC1jYXJyaWVyLXdlYmhvb2stc2VjcmV0LXRlc3Q=";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A carrier webhook request with explicit header values (`None` leaves one out).
fn carrier_post(
    stack: &Stack,
    id: Option<&str>,
    timestamp: Option<String>,
    signature: Option<String>,
    body: &str,
) -> reqwest::RequestBuilder {
    let mut request = stack
        .http
        .post(format!("{}/v1/webhooks/carrier", stack.url("gateway")))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(id) = id {
        request = request.header("webhook-id", id);
    }
    if let Some(ts) = timestamp {
        request = request.header("webhook-timestamp", ts);
    }
    if let Some(sig) = signature {
        request = request.header("webhook-signature", sig);
    }
    request
}

/// A correctly signed carrier webhook.
fn signed(stack: &Stack, secret: &str, id: &str, body: &str) -> reqwest::RequestBuilder {
    let secret = Secret::parse(secret).unwrap();
    let ts = now();
    carrier_post(
        stack,
        Some(id),
        Some(ts.to_string()),
        Some(webhooks::sign(&secret, id, ts, body.as_bytes())),
        body,
    )
}

fn suspended_body(msisdn: &str) -> String {
    json!({
        "type": "subscriber.suspended",
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "data": {"msisdn": msisdn, "reason": "fraud_linked_contacts"}
    })
    .to_string()
}

async fn stored(stack: &Stack, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM carrier_webhooks WHERE id = $1")
        .bind(id)
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + SETTLE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn processed(stack: &Stack, id: &str) -> bool {
    sqlx::query_scalar::<_, bool>(
        "SELECT processed_at IS NOT NULL FROM carrier_webhooks WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&stack.pool)
    .await
    .unwrap()
    .unwrap_or(false)
}

#[tokio::test]
async fn carrier_webhooks_are_verified_deduplicated_rotated_and_processed_once() {
    let stack = Stack::start_with(StackOptions {
        env: vec![(
            "REACTIVATION_CARRIER_WEBHOOK_SECRETS".into(),
            format!("{TEST_WEBHOOK_SECRET} {ROTATED_SECRET}"),
        )],
        ..StackOptions::default()
    })
    .await;
    let number = "+8613900001234";
    let subscriber = TestSubscriber::clean(1234);
    assert_eq!(subscriber.msisdn, number);
    stack.add_subscriber(&subscriber).await;

    // The same delivery ten times at once: one is new, every one is acknowledged.
    let body = suspended_body(number);
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let request = signed(&stack, TEST_WEBHOOK_SECRET, "msg_concurrent", &body);
        sends.spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        });
    }
    let mut fresh = 0;
    while let Some(done) = sends.join_next().await {
        let (status, answer) = done.unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["webhook_id"], "msg_concurrent");
        if answer["duplicate"] == false {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one delivery is new");
    wait_until("the suspension to be processed", || {
        processed(&stack, "msg_concurrent")
    })
    .await;
    let (notices, attempts): (i64, i32) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM carrier_suspension_notices WHERE msisdn = $1),
                (SELECT attempts FROM carrier_webhooks WHERE id = 'msg_concurrent')",
    )
    .bind(number)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!((notices, attempts), (1, 1), "processed exactly once");
    // The subscriber is told why, what to do and where to start: once, at a contact on file.
    // "Once" is only worth asserting after the delivery is over: wait until the
    // notice's outbox message is marked delivered (a redelivery would come before that).
    let contact = subscriber.backup_sms.clone().unwrap();
    wait_until("the suspension notice to be delivered", || async {
        let delivered: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE payload->>'kind' = 'suspension'
               AND payload->>'msisdn' = $1 AND delivered_at IS NOT NULL",
        )
        .bind(number)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        delivered >= 1
    })
    .await;
    let told = stack.sim_outbox(&contact).await;
    assert_eq!(told.len(), 1, "{told:?}");
    let text = told[0]["body"].as_str().unwrap();
    assert!(
        text.contains("http"),
        "the message links to where to start: {text}"
    );
    assert!(
        !text.contains("13900001234"),
        "the number is masked: {text}"
    );
    // Later redeliveries are acknowledged and not processed again.
    let (status, again) = stack
        .call(signed(&stack, TEST_WEBHOOK_SECRET, "msg_concurrent", &body))
        .await;
    assert_eq!((status, &again["duplicate"]), (200, &json!(true)));

    // Refusals: 401 problem+json, and nothing is stored.
    let secret = Secret::parse(TEST_WEBHOOK_SECRET).unwrap();
    let other = Secret::from_bytes(&[42u8; 32]).unwrap();
    let body = suspended_body(number);
    let sig = |id: &str, ts: i64| webhooks::sign(&secret, id, ts, body.as_bytes());
    let stale = now() - 301;
    let refusals: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "bad signature",
            carrier_post(
                &stack,
                Some("msg_bad_sig"),
                Some(now().to_string()),
                Some(webhooks::sign(
                    &other,
                    "msg_bad_sig",
                    now(),
                    body.as_bytes(),
                )),
                &body,
            ),
        ),
        (
            "empty v1 signature",
            carrier_post(
                &stack,
                Some("msg_empty_sig"),
                Some(now().to_string()),
                Some("v1,".into()),
                &body,
            ),
        ),
        (
            "stale timestamp",
            carrier_post(
                &stack,
                Some("msg_stale"),
                Some(stale.to_string()),
                Some(sig("msg_stale", stale)),
                &body,
            ),
        ),
        (
            "future timestamp",
            carrier_post(
                &stack,
                Some("msg_future"),
                Some((now() + 400).to_string()),
                Some(sig("msg_future", now() + 400)),
                &body,
            ),
        ),
        (
            "non-numeric timestamp",
            carrier_post(
                &stack,
                Some("msg_nan"),
                Some("soon".into()),
                Some(sig("msg_nan", now())),
                &body,
            ),
        ),
        (
            "missing timestamp",
            carrier_post(
                &stack,
                Some("msg_no_ts"),
                None,
                Some(sig("msg_no_ts", now())),
                &body,
            ),
        ),
        (
            "missing signature",
            carrier_post(
                &stack,
                Some("msg_no_sig"),
                Some(now().to_string()),
                None,
                &body,
            ),
        ),
        (
            "missing id",
            carrier_post(
                &stack,
                None,
                Some(now().to_string()),
                Some(sig("", now())),
                &body,
            ),
        ),
        (
            "body changed after signing",
            carrier_post(
                &stack,
                Some("msg_tampered"),
                Some(now().to_string()),
                Some(sig("msg_tampered", now())),
                &body.replace("fraud_linked_contacts", "court_order"),
            ),
        ),
    ];
    for (what, request) in refusals {
        let (status, content_type, text) = stack.call_raw(request).await;
        assert_eq!(status, 401, "{what}: {text}");
        assert_eq!(content_type, "application/problem+json", "{what}");
    }
    let (refused_rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM carrier_webhooks WHERE id <> 'msg_concurrent'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(refused_rows, 0, "nothing refused was stored");

    // An unknown type is refused after verification (422), and not stored either.
    let unknown = json!({"type": "subscriber.deleted", "timestamp": chrono::Utc::now().to_rfc3339(), "data": {}}).to_string();
    let (status, problem) = stack
        .call(signed(&stack, TEST_WEBHOOK_SECRET, "msg_unknown", &unknown))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "type");
    assert_eq!(stored(&stack, "msg_unknown").await, 0);

    // Rotation: the new secret works, and so does a header carrying both signatures.
    let (status, answer) = stack
        .call(signed(&stack, ROTATED_SECRET, "msg_rotated", &body))
        .await;
    assert_eq!((status, &answer["duplicate"]), (200, &json!(false)));
    let ts = now();
    let both = format!(
        "v1,AAAA {}",
        webhooks::sign(
            &Secret::parse(ROTATED_SECRET).unwrap(),
            "msg_both",
            ts,
            body.as_bytes()
        )
    );
    let (status, _) = stack
        .call(carrier_post(
            &stack,
            Some("msg_both"),
            Some(ts.to_string()),
            Some(both),
            &body,
        ))
        .await;
    assert_eq!(status, 200);

    // The simulator's signals webhook re-scores a case under security review.
    let subscriber = TestSubscriber::flagged(31);
    stack.add_subscriber(&subscriber).await;
    let (case, token) = stack.open_verified_case(&subscriber).await;
    stack
        .wait_for_state(&case, &token, "security_review", SETTLE)
        .await;
    let encoded = subscriber.msisdn.replace('+', "%2B");
    let (status, answer) = stack
        .call(
            stack
                .http
                .post(format!(
                    "{}/sim/subscribers/{encoded}/signals",
                    stack.url("carrier-sim")
                ))
                .json(&json!({"fraud_linked_contacts": 4})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["webhook_id"].is_string(), "{answer}");
    let case_id: uuid::Uuid = case.parse().unwrap();
    wait_until("the case to be re-scored", || async {
        let tiers: Vec<String> = sqlx::query_scalar(
            "SELECT tier::text FROM risk_assessments WHERE case_id = $1 ORDER BY assessed_at, id",
        )
        .bind(case_id)
        .fetch_all(&stack.pool)
        .await
        .unwrap();
        tiers == ["medium", "high"]
    })
    .await;
    let status = stack.status(&case, &token).await.1;
    assert!(
        status["needs"]
            .as_array()
            .unwrap()
            .contains(&json!("evidence")),
        "the high tier asks for evidence: {status}"
    );
}

#[tokio::test]
async fn the_simulator_confirms_an_order_with_provisioning_completed() {
    // No provisioning worker: only the carrier's webhook can finish the order.
    let stack = Stack::start_with(StackOptions {
        services: vec!["carrier-sim", "identity", "risk", "webhooks", "gateway"],
        ..StackOptions::default()
    })
    .await;
    let subscriber = TestSubscriber::clean(32);
    stack.add_subscriber(&subscriber).await;
    let (case, token) = stack.open_verified_case(&subscriber).await;
    stack
        .wait_for_state(&case, &token, "provisioning", SETTLE)
        .await;
    let (order_id, restoration): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, restoration FROM provisioning_orders WHERE case_id = $1::uuid")
            .bind(&case)
            .fetch_one(&stack.pool)
            .await
            .unwrap();

    // The order reaches the carrier (as the provisioning worker would send it).
    let (status, order) = stack
        .call(
            stack
                .http
                .post(format!(
                    "{}/carrier/v1/serviceOrder",
                    stack.url("carrier-sim")
                ))
                .header("Idempotency-Key", order_id.to_string())
                .json(&json!({"externalId": order_id, "msisdn": subscriber.msisdn, "action": "resume", "restoration": restoration})),
        )
        .await;
    assert_eq!(status, 201, "{order}");

    let done = stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    let last = done["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "restored", "{done}");
    let (state, delivered): (String, bool) = sqlx::query_as(
        "SELECT o.state, x.delivered_at IS NOT NULL FROM provisioning_orders o JOIN outbox x ON x.id = o.id WHERE o.id = $1",
    )
    .bind(order_id)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), delivered), ("completed", true));

    // The simulator logged its signed webhook as delivered.
    let (status, sent) = stack
        .call(
            stack
                .http
                .get(format!("{}/sim/webhooks", stack.url("carrier-sim"))),
        )
        .await;
    assert_eq!(status, 200);
    let completion = sent
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["type"] == "provisioning.completed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(completion["delivered"], true, "{sent}");
    // The webhook was processed once; a second completion would change nothing.
    let (processed,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM carrier_webhooks WHERE type = 'provisioning.completed' AND processed_at IS NOT NULL AND error IS NULL",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(processed, 1);
}

/// What the test's receiver saw: headers and raw bodies.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>,
}

impl Receiver {
    fn requests(&self, path: &str) -> Vec<(HeaderMap, Bytes)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, h, b)| (h.clone(), b.clone()))
            .collect()
    }
}

async fn flaky(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = r.seen.lock().unwrap();
    let first = !seen.iter().any(|(p, _, _)| p == "/flaky");
    seen.push(("/flaky".into(), headers, body));
    if first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn gone(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.seen.lock().unwrap().push(("/gone".into(), headers, body));
    StatusCode::GONE
}

async fn start_receiver() -> (String, Receiver) {
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/flaky", post(flaky))
        .route("/gone", post(gone))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, receiver)
}

async fn register(stack: &Stack, token: &str, url: &str) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .post(format!(
                    "{}/v1/agent/webhook-endpoints",
                    stack.url("gateway")
                ))
                .bearer_auth(token)
                .json(&json!({"url": url, "event_types": ["case.state_changed"]})),
        )
        .await
}

async fn delivery_log(stack: &Stack, token: &str, endpoint: &str) -> Value {
    let (status, log) = stack
        .call(
            stack
                .http
                .get(format!(
                    "{}/v1/agent/webhook-endpoints/{endpoint}/deliveries",
                    stack.url("gateway")
                ))
                .bearer_auth(token),
        )
        .await;
    assert_eq!(status, 200, "{log}");
    log
}

#[tokio::test]
async fn outbound_webhooks_are_signed_retried_logged_and_disabled_on_410() {
    let stack = Stack::start_with(StackOptions {
        services: vec!["webhooks", "gateway"],
        env: vec![
            ("REACTIVATION_WEBHOOKS_ALLOW_PRIVATE".into(), "true".into()),
            ("REACTIVATION_WEBHOOKS_RETRY_SCALE".into(), "0.001".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    stack.create_agent("hooks.admin", &["admin"]);
    stack.create_agent("hooks.cs", &["cs"]);
    let admin = stack.login("hooks.admin").await;
    let (base, receiver) = start_receiver().await;

    // Only admins manage endpoints; the metadata address stays refused even in development.
    let cs = stack.login("hooks.cs").await;
    let (status, _) = register(&stack, &cs, &format!("{base}/flaky")).await;
    assert_eq!(status, 403);
    let (status, problem) = register(&stack, &admin, "http://169.254.169.254/latest/").await;
    assert_eq!(status, 422, "{problem}");

    let (status, flaky_endpoint) = register(&stack, &admin, &format!("{base}/flaky")).await;
    assert_eq!(status, 201, "{flaky_endpoint}");
    let secret = flaky_endpoint["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let (status, gone_endpoint) = register(&stack, &admin, &format!("{base}/gone")).await;
    assert_eq!(status, 201, "{gone_endpoint}");
    let (flaky_id, gone_id) = (
        flaky_endpoint["id"].as_str().unwrap().to_owned(),
        gone_endpoint["id"].as_str().unwrap().to_owned(),
    );
    let (status, list) = stack
        .call(
            stack
                .http
                .get(format!(
                    "{}/v1/agent/webhook-endpoints",
                    stack.url("gateway")
                ))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["endpoints"].as_array().unwrap().len(), 2);
    assert!(
        !list.to_string().contains(&secret),
        "the secret is shown once"
    );

    // One transition: opened (not subscribed) then cancelled (subscribed).
    let subscriber = TestSubscriber::clean(33);
    let (case, token) = stack.open_case(&subscriber).await;
    let (status, _) = stack
        .call(
            stack
                .http
                .post(format!("{}/v1/cases/{case}/cancel", stack.url("gateway")))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(status, 200);

    // 500, then (after the scaled 5 s) 200: delivered on the second attempt.
    wait_until("the flaky endpoint's delivery", || async {
        delivery_log(&stack, &admin, &flaky_id).await["deliveries"][0]["status"] == "delivered"
    })
    .await;
    let log = delivery_log(&stack, &admin, &flaky_id).await;
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{log}");
    let delivery = &deliveries[0];
    assert_eq!(delivery["attempts"], 2, "{log}");
    let statuses: Vec<&Value> = delivery["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(statuses, [&json!(500), &json!(200)], "{log}");

    let requests = receiver.requests("/flaky");
    assert_eq!(requests.len(), 2, "only the subscribed event, twice");
    let secret = Secret::parse(&secret).unwrap();
    let mut ids = Vec::new();
    for (headers, body) in &requests {
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let verified = webhooks::verify(
            std::slice::from_ref(&secret),
            ReceivedHeaders {
                id: header("webhook-id"),
                timestamp: header("webhook-timestamp"),
                signature: header("webhook-signature"),
            },
            body,
            now(),
        )
        .expect("signed per Standard Webhooks");
        ids.push(verified.id);
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["type"], "case.state_changed");
        assert_eq!(event["data"]["case_id"], case.as_str());
        assert_eq!(
            (&event["data"]["from"], &event["data"]["to"]),
            (&json!("awaiting_identity"), &json!("cancelled"))
        );
        let text = String::from_utf8_lossy(body);
        assert!(
            !text.contains(&subscriber.msisdn[3..]),
            "no personal data: {text}"
        );
    }
    assert_eq!(ids[0], ids[1], "a retry keeps its webhook-id");
    assert_eq!(ids[0], delivery["id"].as_str().unwrap());

    // 410 Gone disables the endpoint; the delivery is failed, not retried.
    wait_until("the 410 endpoint to be disabled", || async {
        let (_, list) = stack
            .call(
                stack
                    .http
                    .get(format!(
                        "{}/v1/agent/webhook-endpoints",
                        stack.url("gateway")
                    ))
                    .bearer_auth(&admin),
            )
            .await;
        list["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == gone_id.as_str() && e["enabled"] == false)
    })
    .await;
    let log = delivery_log(&stack, &admin, &gone_id).await;
    assert_eq!(
        (
            &log["deliveries"][0]["status"],
            &log["deliveries"][0]["attempts"],
            &log["deliveries"][0]["last_status"]
        ),
        (&json!("failed"), &json!(1), &json!(410)),
        "{log}"
    );
    assert_eq!(receiver.requests("/gone").len(), 1);

    // Deleting an endpoint: 204, gone from the list, its log no longer served.
    let delete = |id: String| {
        stack
            .http
            .delete(format!(
                "{}/v1/agent/webhook-endpoints/{id}",
                stack.url("gateway")
            ))
            .bearer_auth(&admin)
    };
    assert_eq!(stack.call(delete(flaky_id.clone())).await.0, 204);
    assert_eq!(stack.call(delete(flaky_id.clone())).await.0, 404);
    let (status, _) = stack
        .call(
            stack
                .http
                .get(format!(
                    "{}/v1/agent/webhook-endpoints/{flaky_id}/deliveries",
                    stack.url("gateway")
                ))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn private_and_metadata_destinations_are_refused_without_the_development_flag() {
    let stack = Stack::start_with(StackOptions {
        services: vec!["gateway"],
        env: vec![("REACTIVATION_WEBHOOKS_ALLOW_PRIVATE".into(), "false".into())],
        ..StackOptions::default()
    })
    .await;
    stack.create_agent("ssrf.admin", &["admin"]);
    let admin = stack.login("ssrf.admin").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://0x7f000001/hook",
        "http://2130706433/hook",
        "http://[::1]/hook",
        "http://[::ffff:169.254.169.254]/",
        "http://10.0.0.8/hook",
        "http://localhost:9/hook",
        "ftp://hooks.example.com/",
        "https://user:secret@hooks.example.com/",
    ] {
        let (status, content_type, text) = stack
            .call_raw(
                stack
                    .http
                    .post(format!(
                        "{}/v1/agent/webhook-endpoints",
                        stack.url("gateway")
                    ))
                    .bearer_auth(&admin)
                    .json(&json!({"url": url, "event_types": ["case.state_changed"]})),
            )
            .await;
        assert_eq!(status, 422, "{url}: {text}");
        assert_eq!(content_type, "application/problem+json");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["errors"][0]["field"], "url", "{url}: {problem}");
    }
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM webhook_endpoints")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_rotated_endpoint_secret_signs_beside_the_new_one_during_the_overlap() {
    let stack = Stack::start_with(StackOptions {
        services: vec!["webhooks", "gateway"],
        env: vec![
            ("REACTIVATION_WEBHOOKS_ALLOW_PRIVATE".into(), "true".into()),
            ("REACTIVATION_WEBHOOKS_RETRY_SCALE".into(), "0.001".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    stack.create_agent("rotate.admin", &["admin"]);
    let admin = stack.login("rotate.admin").await;
    let (base, receiver) = start_receiver().await;
    let (status, endpoint) = register(&stack, &admin, &format!("{base}/flaky")).await;
    assert_eq!(status, 201, "{endpoint}");
    let old = Secret::parse(endpoint["secret"].as_str().unwrap()).unwrap();
    let id = endpoint["id"].as_str().unwrap().to_owned();
    let rotate = |body: Value| {
        stack.call(
            stack
                .http
                .post(format!(
                    "{}/v1/agent/webhook-endpoints/{id}/rotate-secret",
                    stack.url("gateway")
                ))
                .bearer_auth(&admin)
                .json(&body),
        )
    };
    // A window longer than a week is refused, and nothing changes.
    let (status, problem) = rotate(json!({"overlap_hours": 169})).await;
    assert_eq!(status, 422, "{problem}");
    let (status, rotated) = rotate(json!({"overlap_hours": 2})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = Secret::parse(rotated["secret"].as_str().unwrap()).unwrap();
    assert!(rotated["previous_valid_until"].as_str().is_some());

    let (case, token) = stack.open_case(&TestSubscriber::clean(34)).await;
    let (status, _) = stack
        .call(
            stack
                .http
                .post(format!("{}/v1/cases/{case}/cancel", stack.url("gateway")))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(status, 200);
    wait_until("the delivery", || async {
        delivery_log(&stack, &admin, &id).await["deliveries"][0]["status"] == "delivered"
    })
    .await;
    let requests = receiver.requests("/flaky");
    assert!(!requests.is_empty());
    for (headers, body) in &requests {
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        assert_eq!(
            header("webhook-signature").unwrap().matches("v1,").count(),
            2,
            "two signatures during the overlap"
        );
        // A receiver that knows only one of the two secrets accepts it.
        for secret in [&old, &new] {
            webhooks::verify(
                std::slice::from_ref(secret),
                ReceivedHeaders {
                    id: header("webhook-id"),
                    timestamp: header("webhook-timestamp"),
                    signature: header("webhook-signature"),
                },
                body,
                now(),
            )
            .expect("verifies under either secret");
        }
    }
    // After the window, only the new secret signs.
    sqlx::query("UPDATE webhook_endpoints SET previous_secret_until = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&stack.pool)
        .await
        .unwrap();
    let (case, token) = stack.open_case(&TestSubscriber::clean(35)).await;
    let (status, _) = stack
        .call(
            stack
                .http
                .post(format!("{}/v1/cases/{case}/cancel", stack.url("gateway")))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(status, 200);
    wait_until("the second delivery", || async {
        receiver.requests("/flaky").len() > requests.len()
    })
    .await;
    let (headers, _) = receiver.requests("/flaky").pop().unwrap();
    assert_eq!(
        headers
            .get("webhook-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap()
            .matches("v1,")
            .count(),
        1
    );
}

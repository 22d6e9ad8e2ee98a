//! Faults over real processes (issue 13): a worker killed with SIGKILL in the middle of
//! its work and restarted, the database stopped for 20 s under load, and every service
//! run as several replicas under load. One binary, run serially with the other
//! system tests (`.config/nextest.toml`).
//!
//! How the kills land mid-work: the provisioning kill waits until the carrier has
//! recorded the order (the simulator's latency keeps it in progress); the risk and
//! timers kills freeze the carrier simulator (SIGSTOP) so the worker's call hangs,
//! and wait until the database shows the claim; the webhooks kill holds the test's
//! receiver until the delivery has arrived. A short lease lets the restarted process
//! take the work over. Negative claims (no second order, no second message) are made
//! only after the work that could have produced them is recorded as finished.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use serde_json::{Value, json};
use system_tests::{PrivateCluster, Stack, StackOptions, TestSubscriber};
use uuid::Uuid;

const SETTLE: Duration = Duration::from_secs(60);
/// The carrier simulator's pool in the load tests: every replica's carrier calls and
/// the clients' set-up land on its one process.
fn busy_simulator() -> Vec<(&'static str, String, String)> {
    vec![(
        "carrier-sim",
        "REACTIVATION_DB_MAX_CONNECTIONS".to_owned(),
        "15".to_owned(),
    )]
}

/// Leases short enough that a restarted process takes over the dead one's work quickly.
const LEASE: (&str, &str) = ("REACTIVATION_WORKER_LEASE_SECS", "3");

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `timeout`.
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn events(stack: &Stack, case: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event::text FROM case_events WHERE case_id = $1::uuid ORDER BY seq")
        .bind(case)
        .fetch_all(&stack.pool)
        .await
        .unwrap()
}

async fn count(stack: &Stack, sql: &str, case: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(case)
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

/// The carrier saw exactly one order for `msisdn` — however many times it was sent,
/// always under one idempotency key — and applied it once. Returns how many times it
/// was sent.
async fn one_order_at_the_carrier(stack: &Stack, msisdn: &str) -> usize {
    let requests = stack.provisioning_requests(msisdn).await;
    assert!(!requests.is_empty(), "no order for {msisdn}");
    let keys: HashSet<&str> = requests
        .iter()
        .map(|r| r["idempotency_key"].as_str().expect("an idempotency key"))
        .collect();
    assert_eq!(keys.len(), 1, "{msisdn}: more than one key: {requests:?}");
    let at_carrier = stack.sim_subscriber(msisdn).await;
    assert_eq!(
        (
            at_carrier["status"].as_str(),
            at_carrier["resume_count"].as_i64()
        ),
        (Some("active"), Some(1)),
        "{msisdn}: {at_carrier}"
    );
    requests.len()
}

/// A stack on a Postgres cluster of its own: the kill tests do not compete with other
/// tests for the shared server's connection slots. The stack drops before its cluster.
struct OwnStack {
    stack: Stack,
    _cluster: PrivateCluster,
}

impl std::ops::Deref for OwnStack {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl std::ops::DerefMut for OwnStack {
    fn deref_mut(&mut self) -> &mut Stack {
        &mut self.stack
    }
}

async fn own_stack(options: StackOptions) -> OwnStack {
    let cluster = PrivateCluster::start(100).await;
    let stack = Stack::start_with(StackOptions {
        database_server: Some(cluster.admin_url()),
        ..options
    })
    .await;
    OwnStack {
        stack,
        _cluster: cluster,
    }
}

const CLEAN_JOURNEY: [&str; 4] = ["opened", "proofs_accepted", "risk_cleared", "restored"];

// ---------------------------------------------------------------------------
// 1. Kill tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_killed_after_the_carrier_recorded_the_order_resends_it_under_its_key() {
    // No webhooks service: the carrier's completion webhook cannot finish the order, so
    // the restarted provisioning process must send it again and follow it.
    let mut stack = own_stack(StackOptions {
        services: vec![
            "carrier-sim",
            "identity",
            "risk",
            "provisioning",
            "timers",
            "gateway",
        ],
        env: env(&[LEASE]),
        ..StackOptions::default()
    })
    .await;
    stack.sim_faults(0.0, 4000).await;
    let s = TestSubscriber::clean(101);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_verified_case(&s).await;
    wait_until("the carrier to record the order", SETTLE, || async {
        !stack.provisioning_requests(&s.msisdn).await.is_empty()
    })
    .await;
    let order_state: String =
        sqlx::query_scalar("SELECT state::text FROM reactivation_cases WHERE id = $1::uuid")
            .bind(&case)
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(order_state, "provisioning", "killed too late");
    stack.restart("provisioning").await;

    let done = stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    assert_eq!(done["state"], "reactivated");
    assert_eq!(events(&stack, &case).await, CLEAN_JOURNEY);
    let sent = one_order_at_the_carrier(&stack, &s.msisdn).await;
    assert!(
        sent >= 2,
        "the restarted process did not send the order again"
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM provisioning_orders WHERE case_id = $1::uuid",
            &case
        )
        .await,
        1
    );
}

/// Freezes the carrier, lets `service` claim `case` (its call to the carrier then
/// hangs), kills it mid-claim, thaws the carrier and restarts it. Returns the
/// worker id that held the claim.
async fn kill_mid_case_claim(stack: &mut Stack, service: &str, case: &str) -> String {
    let claimed = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT lease_owner FROM reactivation_cases WHERE id = $1::uuid AND lease_expires_at > now()",
        )
        .bind(case)
        .fetch_optional(&stack.pool)
        .await
        .unwrap()
        .flatten()
    };
    let deadline = Instant::now() + SETTLE;
    let owner = loop {
        if let Some(owner) = claimed().await {
            break owner;
        }
        assert!(
            Instant::now() < deadline,
            "{service} never claimed the case"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(owner.starts_with(service), "claimed by {owner}");
    stack.kill(service);
    stack.resume("carrier-sim");
    stack.spawn(service);
    stack.wait_ready(service).await;
    owner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_risk_worker_killed_mid_claim_is_replaced_and_the_case_is_assessed_once() {
    let mut stack = own_stack(StackOptions {
        env: env(&[LEASE]),
        ..StackOptions::default()
    })
    .await;
    let s = TestSubscriber::clean(102);
    stack.add_subscriber(&s).await;
    // Risk frozen while the proof is accepted; then the carrier frozen, risk thawed:
    // risk claims the case and its signals call hangs.
    stack.pause("risk");
    let (case, token) = stack.open_verified_case(&s).await;
    stack.pause("carrier-sim");
    stack.resume("risk");
    kill_mid_case_claim(&mut stack, "risk", &case).await;

    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    assert_eq!(events(&stack, &case).await, CLEAN_JOURNEY);
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM risk_assessments WHERE case_id = $1::uuid",
            &case
        )
        .await,
        1,
        "assessed twice"
    );
    assert_eq!(one_order_at_the_carrier(&stack, &s.msisdn).await, 1);
}

/// Notification rows of `case`: (delivered, total).
async fn notifications(stack: &Stack, case: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL), count(*) FROM outbox
          WHERE case_id = $1::uuid AND topic = 'notification.subscriber'",
    )
    .bind(case)
    .fetch_one(&stack.pool)
    .await
    .unwrap()
}

/// Waits until `case` has notices and every one is delivered; on time-out names them.
async fn notices_delivered(stack: &Stack, case: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (delivered, total) = notifications(stack, case).await;
        if total > 0 && delivered == total {
            return;
        }
        if Instant::now() > deadline {
            let rows: Vec<(String, i32, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT payload::text, attempts, last_error, failed_at::text FROM outbox
                  WHERE case_id = $1::uuid AND topic = 'notification.subscriber'",
            )
            .bind(case)
            .fetch_all(&stack.pool)
            .await
            .unwrap();
            let events = events(stack, case).await;
            panic!(
                "notices of {case} not delivered: {rows:?}; events {events:?}; logs in {}",
                stack.logs().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timers_killed_mid_delivery_send_each_message_once() {
    let mut stack = own_stack(StackOptions {
        env: env(&[LEASE]),
        ..StackOptions::default()
    })
    .await;
    let s = TestSubscriber::clean(103);
    let contact = s.backup_sms.clone().expect("a contact on file");
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_verified_case(&s).await;
    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    // The journey's notifications are out; now one more (a cancelled case's notice
    // is not sent for a finished one), so freeze the carrier and open a second case
    // of another subscriber whose notice will hang in the timers' call.
    notices_delivered(&stack, &case).await;
    let s2 = TestSubscriber::clean(104);
    let contact2 = s2.backup_sms.clone().expect("a contact on file");
    stack.add_subscriber(&s2).await;
    stack.pause("carrier-sim");
    let (status, opened) = stack.create_case(&s2.case_body(), None).await;
    assert_eq!(status, 201, "{opened}");
    let case2 = opened["case_id"].as_str().unwrap().to_owned();
    let token2 = opened["case_token"].as_str().unwrap().to_owned();
    let claimed = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT lease_owner FROM outbox WHERE case_id = $1::uuid
                AND topic = 'notification.subscriber' AND delivered_at IS NULL
                AND lease_expires_at > now() LIMIT 1",
        )
        .bind(&case2)
        .fetch_optional(&stack.pool)
        .await
        .unwrap()
        .flatten()
    };
    let deadline = Instant::now() + SETTLE;
    loop {
        if claimed().await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timers never claimed the notice"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stack.kill("timers");
    stack.resume("carrier-sim");
    stack.spawn("timers");
    stack.wait_ready("timers").await;

    // The second journey to its end, then every notice of both cases delivered.
    let (status, answer) = stack
        .verify(
            &case2,
            &token2,
            &json!({"method": "service_password", "password": s2.password}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    stack
        .wait_for_state(&case2, &token2, "reactivated", SETTLE)
        .await;
    for (case, contact) in [(&case, &contact), (&case2, &contact2)] {
        notices_delivered(&stack, case).await;
        let (_, total) = notifications(&stack, case).await;
        let messages = stack.sim_outbox(contact).await;
        assert_eq!(
            messages.len() as i64,
            total,
            "each notice once at the carrier: {messages:?}"
        );
    }
    let retried = count(
        &stack,
        "SELECT count(*) FROM outbox WHERE case_id = $1::uuid
           AND topic = 'notification.subscriber' AND attempts >= 2",
        &case2,
    )
    .await;
    assert!(retried >= 1, "the killed delivery was not taken over");
}

/// An outbound-webhook receiver that holds the first request it gets until `release`.
#[derive(Clone, Default)]
struct HoldingReceiver {
    ids: Arc<Mutex<Vec<String>>>,
    release: Arc<AtomicBool>,
}

async fn hold_first(State(r): State<HoldingReceiver>, headers: HeaderMap) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let first = {
        let mut ids = r.ids.lock().unwrap();
        ids.push(id);
        ids.len() == 1
    };
    if first {
        let deadline = Instant::now() + SETTLE;
        while !r.release.load(Ordering::SeqCst) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    StatusCode::OK
}

async fn start_receiver(receiver: HoldingReceiver) -> String {
    let app = Router::new()
        .route("/hook", post(hold_first))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("{base}/hook")
}

async fn register_endpoint(stack: &Stack, url: &str) {
    stack.create_agent("faults.admin", &["admin"]);
    let admin = stack.login("faults.admin").await;
    let (status, endpoint) = stack
        .call(
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
    assert_eq!(status, 201, "{endpoint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhooks_worker_killed_mid_delivery_redelivers_under_the_same_id() {
    let mut stack = own_stack(StackOptions {
        env: env(&[
            LEASE,
            ("REACTIVATION_WEBHOOKS_ALLOW_PRIVATE", "true"),
            ("REACTIVATION_WEBHOOKS_RETRY_SCALE", "0.001"),
        ]),
        ..StackOptions::default()
    })
    .await;
    let receiver = HoldingReceiver::default();
    let url = start_receiver(receiver.clone()).await;
    register_endpoint(&stack, &url).await;
    let s = TestSubscriber::clean(105);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_verified_case(&s).await;
    wait_until(
        "the first delivery to reach the receiver",
        SETTLE,
        || async { !receiver.ids.lock().unwrap().is_empty() },
    )
    .await;
    stack.kill("webhooks");
    // The dead worker's connection gets its answer too late.
    receiver.release.store(true, Ordering::SeqCst);
    stack.spawn("webhooks");
    stack.wait_ready("webhooks").await;

    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    let state_changes = count(
        &stack,
        "SELECT count(*) FROM case_events WHERE case_id = $1::uuid AND event <> 'opened'",
        &case,
    )
    .await;
    let deliveries = || async {
        sqlx::query_as::<_, (String, String, i32)>(
            "SELECT id::text, status, attempts FROM webhook_deliveries ORDER BY created_at",
        )
        .fetch_all(&stack.pool)
        .await
        .unwrap()
    };
    wait_until("every delivery finished", SETTLE, || async {
        let d = deliveries().await;
        d.len() as i64 == state_changes && d.iter().all(|(_, status, _)| status != "pending")
    })
    .await;
    let deliveries = deliveries().await;
    assert!(
        deliveries
            .iter()
            .all(|(_, status, _)| status == "delivered"),
        "{deliveries:?}"
    );
    let ids = receiver.ids.lock().unwrap().clone();
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &ids {
        *times.entry(id.as_str()).or_default() += 1;
    }
    let held = ids[0].as_str();
    assert_eq!(
        times[held], 2,
        "the held delivery again, same webhook-id: {ids:?}"
    );
    for (id, _, _) in &deliveries {
        if id != held {
            assert_eq!(times.get(id.as_str()), Some(&1), "{id} not once: {ids:?}");
        }
    }
    assert_eq!(times.len(), deliveries.len(), "{ids:?}");
}

// ---------------------------------------------------------------------------
// Load: clean journeys driven over HTTP
// ---------------------------------------------------------------------------

/// What a load run saw.
#[derive(Debug, Default)]
struct LoadReport {
    /// (case id, token, msisdn) of every case opened.
    cases: Vec<(String, String, String)>,
    /// Answers by status code.
    statuses: BTreeMap<u16, usize>,
    /// Anything unacceptable: a 5xx other than 503, a 503 without Retry-After, a
    /// request not answered within the client's timeout.
    failures: Vec<String>,
    /// The slowest answer.
    slowest: Duration,
}

/// The load's client: one request with retries on 503 (honouring Retry-After, at
/// most 1 s), every answer recorded. `Ok` with the final answer; `Err` when the
/// answer is unacceptable or the load's give-up time has passed.
async fn send(
    report: &Mutex<LoadReport>,
    give_up: Instant,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(u16, Value), ()> {
    loop {
        let started = Instant::now();
        let outcome = make().send().await;
        let took = started.elapsed();
        let (status, retry_after, response) = {
            let mut r = report.lock().unwrap();
            r.slowest = r.slowest.max(took);
            let response = match outcome {
                Ok(response) => response,
                Err(e) => {
                    r.failures.push(format!("no answer after {took:?}: {e}"));
                    return Err(());
                }
            };
            let status = response.status().as_u16();
            *r.statuses.entry(status).or_default() += 1;
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            (status, retry_after, response)
        };
        if status == 503 {
            let Some(seconds) = retry_after else {
                report
                    .lock()
                    .unwrap()
                    .failures
                    .push("503 without Retry-After".into());
                return Err(());
            };
            if Instant::now() > give_up {
                report
                    .lock()
                    .unwrap()
                    .failures
                    .push("still 503 at the give-up time".into());
                return Err(());
            }
            tokio::time::sleep(Duration::from_secs(seconds).min(Duration::from_secs(1))).await;
            continue;
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // The first attempt of this key (or proof) is still recorded as running — it
        // was cut off by the outage: the API says to retry shortly (an abandoned
        // claim is taken over after 60 s).
        let kind = body["type"].as_str().unwrap_or_default();
        if status == 409
            && (kind.ends_with("/idempotency-key-in-flight")
                || kind.ends_with("/proof-in-progress"))
        {
            if Instant::now() > give_up {
                report
                    .lock()
                    .unwrap()
                    .failures
                    .push(format!("still in flight at the give-up time: {body}"));
                return Err(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if status >= 500 {
            report
                .lock()
                .unwrap()
                .failures
                .push(format!("{status}: {body}"));
            return Err(());
        }
        return Ok((status, body));
    }
}

/// Runs clean journeys (register at the carrier, open with an idempotency key,
/// prove with the service password) from `clients` tasks for `duration`, the
/// requests alternating over `gateways`. Subscribers are numbered from `first`.
async fn load(
    sim: String,
    gateways: Vec<String>,
    clients: usize,
    duration: Duration,
    first: u32,
) -> LoadReport {
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let next = Arc::new(AtomicU32::new(first));
    let turn = Arc::new(AtomicU32::new(0));
    let stop = Instant::now() + duration;
    // A request retried past this is a case the outage lost.
    let give_up = stop + Duration::from_secs(60);
    let http = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (report, next, turn, http, sim, gateways) = (
            report.clone(),
            next.clone(),
            turn.clone(),
            http.clone(),
            sim.clone(),
            gateways.clone(),
        );
        tasks.spawn(async move {
            let gateway = || {
                let i = turn.fetch_add(1, Ordering::Relaxed) as usize;
                gateways[i % gateways.len()].clone()
            };
            while Instant::now() < stop {
                let s = TestSubscriber::clean(next.fetch_add(1, Ordering::Relaxed));
                // The carrier's side of the set-up (not under test): tried until it takes.
                let mut tries = 0;
                loop {
                    let added = http
                        .post(format!("{sim}/sim/subscribers"))
                        .json(&s.sim_body())
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    if added.as_ref().is_ok_and(|s| *s == 201) {
                        break;
                    }
                    tries += 1;
                    assert!(tries < 20, "the simulator refused a subscriber: {added:?}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let key = Uuid::new_v4().to_string();
                let Ok((status, opened)) = send(&report, give_up, || {
                    http.post(format!("{}/v1/cases", gateway()))
                        .header("Idempotency-Key", &key)
                        .json(&s.case_body())
                })
                .await
                else {
                    continue;
                };
                if status != 201 && status != 200 {
                    report
                        .lock()
                        .unwrap()
                        .failures
                        .push(format!("open: {status} {opened}"));
                    continue;
                }
                let case = opened["case_id"].as_str().unwrap_or_default().to_owned();
                let token = opened["case_token"].as_str().unwrap_or_default().to_owned();
                report
                    .lock()
                    .unwrap()
                    .cases
                    .push((case.clone(), token.clone(), s.msisdn.clone()));
                let proof = json!({"method": "service_password", "password": s.password});
                let verified = send(&report, give_up, || {
                    http.post(format!("{}/v1/cases/{case}/verifications", gateway()))
                        .bearer_auth(&token)
                        .json(&proof)
                })
                .await;
                match verified {
                    Ok((200, answer)) if answer["accepted"] == true => {}
                    // A proof accepted just before the database went away, answered
                    // 503, then retried: the case has moved on.
                    Ok((409, _)) => {}
                    Ok((status, answer)) => report
                        .lock()
                        .unwrap()
                        .failures
                        .push(format!("verify: {status} {answer}")),
                    Err(()) => {}
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a load client panicked");
    }
    Arc::try_unwrap(report)
        .expect("the clients are done")
        .into_inner()
        .unwrap()
}

/// The gateways' time limit in the load tests (the default), and the client's (a
/// little longer): an answer that takes longer than the client waits is a hang.
const GATEWAY_TIMEOUT_SECS: u64 = 30;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(GATEWAY_TIMEOUT_SECS + 5);
/// Length of each load, as the issue asks (`FAULTS_LOAD_SECS` shortens it locally).
fn load_duration() -> Duration {
    Duration::from_secs(
        std::env::var("FAULTS_LOAD_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    )
}

/// Waits until every case of the report is reactivated; returns when the last one was.
async fn all_reactivated(
    stack: &Stack,
    report: &LoadReport,
    timeout: Duration,
) -> chrono::DateTime<chrono::Utc> {
    let ids: Vec<Uuid> = report
        .cases
        .iter()
        .map(|(c, _, _)| c.parse().unwrap())
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let stuck: Vec<(String, String)> = sqlx::query_as(
            "SELECT id::text, state::text FROM reactivation_cases
              WHERE id = ANY($1) AND state <> 'reactivated' LIMIT 5",
        )
        .bind(&ids)
        .fetch_all(&stack.pool)
        .await
        .unwrap_or_else(|e| panic!("read the cases: {e}"));
        if stuck.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cases not reactivated, e.g. {stuck:?}; logs in {}",
            stack.logs().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sqlx::query_scalar(
        "SELECT max(at) FROM case_events WHERE case_id = ANY($1) AND event = 'restored'",
    )
    .bind(&ids)
    .fetch_one(&stack.pool)
    .await
    .unwrap()
}

/// Every case the clients opened exists once, is reactivated with one `restored`
/// event, and its number was resumed once at the carrier under one key; no case
/// exists that the clients did not get.
async fn each_case_once(stack: &Stack, report: &LoadReport) {
    let ids: Vec<Uuid> = report
        .cases
        .iter()
        .map(|(c, _, _)| c.parse().unwrap())
        .collect();
    let distinct: HashSet<&Uuid> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "a case id answered twice");
    let in_db: i64 = sqlx::query_scalar("SELECT count(*) FROM reactivation_cases")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(in_db as usize, ids.len(), "cases the clients never got");
    let restored_twice: Vec<(String, i64)> = sqlx::query_as(
        "SELECT case_id::text, count(*) FROM case_events WHERE event = 'restored'
          GROUP BY case_id HAVING count(*) <> 1",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert!(restored_twice.is_empty(), "{restored_twice:?}");
    let orders_twice: Vec<(String, i64)> = sqlx::query_as(
        "SELECT case_id::text, count(*) FROM provisioning_orders GROUP BY case_id HAVING count(*) <> 1",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert!(orders_twice.is_empty(), "{orders_twice:?}");
    for (_, _, msisdn) in &report.cases {
        one_order_at_the_carrier(stack, msisdn).await;
    }
}

// ---------------------------------------------------------------------------
// 2. Database outage under load
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_load_answers_503_and_every_service_recovers_without_a_restart() {
    let cluster = PrivateCluster::start(200).await;
    // The carrier's own database, which stays up.
    let carrier = PrivateCluster::start(100).await;
    let mut stack = Stack::start_with(StackOptions {
        database_server: Some(cluster.admin_url()),
        carrier_database_server: Some(carrier.admin_url()),
        service_env: busy_simulator(),
        env: env(&[
            LEASE,
            (
                "REACTIVATION_HTTP_TIMEOUT_SECS",
                &GATEWAY_TIMEOUT_SECS.to_string(),
            ),
        ]),
        ..StackOptions::default()
    })
    .await;
    let product: Vec<&str> = vec!["identity", "risk", "provisioning", "webhooks", "gateway"];
    let pids: HashMap<&str, Vec<u32>> = product.iter().map(|s| (*s, stack.pids(s))).collect();
    let gateway = stack.url("gateway").to_owned();
    let sim = stack.url("carrier-sim").to_owned();
    let duration = load_duration();
    let started = Instant::now();

    let outage = async {
        tokio::time::sleep(duration / 4).await;
        cluster.stop().await;
        let down_at = Instant::now();
        // Every service says it is not ready, and why.
        for service in product.iter().chain(["timers"].iter()) {
            let url = format!("{}/readyz", stack.url(service));
            wait_until(
                &format!("{service} to report not ready"),
                SETTLE,
                || async {
                    stack
                        .http
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 503)
                },
            )
            .await;
        }
        // A process started while the database is down waits for it.
        stack.kill("timers");
        stack.spawn("timers");
        let timers = format!("{}/readyz", stack.url("timers"));
        let deadline = Instant::now() + SETTLE;
        let detail = loop {
            if let Ok(r) = stack.http.get(&timers).send().await
                && r.status() == 503
            {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let detail = body["detail"].as_str().unwrap_or_default().to_owned();
                // The second attempt announced: it retried, with back-off.
                if detail.contains("attempt 2,") {
                    break detail;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the restarted timers never explained why they wait"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            detail.starts_with("Waiting for the database: cannot reach the database server"),
            "{detail}"
        );
        let healthz = stack
            .http
            .get(format!("{}/healthz", stack.url("timers")))
            .send()
            .await
            .expect("the waiting process answers");
        assert_eq!(healthz.status(), 200);
        let outage_for = Duration::from_secs(20);
        tokio::time::sleep(outage_for.saturating_sub(down_at.elapsed())).await;
        cluster.start_again().await;
        down_at.elapsed()
    };
    let (report, outage_lasted) = tokio::join!(load(sim, vec![gateway], 8, duration, 1), outage);
    let load_took = started.elapsed();

    // Every service ready again, the product's processes the same as before.
    for service in product.iter().chain(["timers", "carrier-sim"].iter()) {
        let url = format!("{}/readyz", stack.url(service));
        wait_until(&format!("{service} to be ready again"), SETTLE, || async {
            stack
                .http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }
    assert!(
        stack.all_running(),
        "a process exited; logs in {}",
        stack.logs().display()
    );
    for service in &product {
        assert_eq!(
            stack.pids(service),
            pids[service],
            "{service} was restarted"
        );
    }
    let timers_log = std::fs::read_to_string(stack.logs().join("timers.log")).unwrap();
    assert!(
        timers_log.matches("waiting for the database").count() >= 2,
        "the waiting is not logged"
    );

    println!(
        "outage: {:?} down during a {:?} load; answers {:?}; slowest {:?}; {} cases",
        outage_lasted,
        load_took,
        report.statuses,
        report.slowest,
        report.cases.len()
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        report.statuses.get(&503).copied().unwrap_or(0) > 0,
        "the outage never reached the load"
    );
    assert!(report.slowest < CLIENT_TIMEOUT);
    assert!(!report.cases.is_empty());
    all_reactivated(&stack, &report, Duration::from_secs(120)).await;
    each_case_once(&stack, &report).await;
}

// ---------------------------------------------------------------------------
// 4. Replicas
// ---------------------------------------------------------------------------

/// A receiver counting each webhook-id.
#[derive(Clone, Default)]
struct CountingReceiver {
    ids: Arc<Mutex<Vec<String>>>,
}

async fn count_hook(State(r): State<CountingReceiver>, headers: HeaderMap) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    r.ids.lock().unwrap().push(id);
    StatusCode::OK
}

/// Runs the load on a stack with `replicas`; checks that every case, order, message
/// and webhook was handled once; returns (cases, cases per second from the first
/// request to the last restoration).
async fn replicated_load(replicas: Vec<(&'static str, usize)>) -> (usize, f64) {
    let cluster = PrivateCluster::start(300).await;
    let carrier = PrivateCluster::start(100).await;
    let stack = Stack::start_with(StackOptions {
        database_server: Some(cluster.admin_url()),
        carrier_database_server: Some(carrier.admin_url()),
        replicas: replicas.clone(),
        service_env: busy_simulator(),
        env: env(&[
            ("REACTIVATION_WEBHOOKS_ALLOW_PRIVATE", "true"),
            (
                "REACTIVATION_HTTP_TIMEOUT_SECS",
                &GATEWAY_TIMEOUT_SECS.to_string(),
            ),
        ]),
        ..StackOptions::default()
    })
    .await;
    let receiver = CountingReceiver::default();
    let app = Router::new()
        .route("/hook", post(count_hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    register_endpoint(&stack, &url).await;

    let started = chrono::Utc::now();
    let report = load(
        stack.url("carrier-sim").to_owned(),
        stack.replica_urls("gateway"),
        8,
        load_duration(),
        1,
    )
    .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(!report.cases.is_empty());
    let last = all_reactivated(&stack, &report, Duration::from_secs(180)).await;
    each_case_once(&stack, &report).await;

    // Messages: every notice delivered, and the carrier got each once.
    wait_until("every notice delivered", SETTLE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM outbox WHERE topic = 'notification.subscriber' AND delivered_at IS NULL",
        )
        .fetch_one(&stack.pool)
        .await
        .unwrap()
            == 0
    })
    .await;
    let notices: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.msisdn, count(o.id) FROM reactivation_cases c
           LEFT JOIN outbox o ON o.case_id = c.id AND o.topic = 'notification.subscriber'
          GROUP BY c.msisdn",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    let contact_of: HashMap<&str, String> = report
        .cases
        .iter()
        .map(|(_, _, m)| {
            let n: u32 = m[m.len() - 4..].parse().unwrap();
            (m.as_str(), TestSubscriber::clean(n).backup_sms.unwrap())
        })
        .collect();
    for (msisdn, expected) in &notices {
        let sent = stack.sim_outbox(&contact_of[msisdn.as_str()]).await;
        assert_eq!(sent.len() as i64, *expected, "{msisdn}: {sent:?}");
    }

    // Webhooks: one delivery per state change, each received once.
    let changes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM case_events WHERE event <> 'opened'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    wait_until("every webhook delivered", SETTLE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'",
        )
        .fetch_one(&stack.pool)
        .await
        .unwrap()
            == changes
    })
    .await;
    let ids = receiver.ids.lock().unwrap().clone();
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "a webhook received twice");
    assert_eq!(ids.len() as i64, changes);

    // The replicas shared the work.
    for (service, n) in &replicas {
        // The case and outbox workers count their claims; the webhooks service's
        // deliveries are checked above.
        if !matches!(*service, "risk" | "provisioning" | "timers") || *n < 2 {
            continue;
        }
        let mut working = 0;
        for url in stack.replica_urls(service) {
            let text = stack
                .http
                .get(format!("{url}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let claims: f64 = text
                .lines()
                .filter(|l| {
                    l.starts_with("worker_claims_total")
                        || l.starts_with("handoff_latency_seconds_count")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            working += usize::from(claims > 0.0);
        }
        println!("{service}: {working} of {n} replicas claimed work");
        assert!(working >= 2, "{service}: only {working} replica worked");
    }
    let seconds = (last - started).num_milliseconds() as f64 / 1000.0;
    let rate = report.cases.len() as f64 / seconds;
    println!(
        "replicas {:?}: {} cases reactivated in {seconds:.1} s = {rate:.2} cases/s; answers {:?}; slowest {:?}",
        replicas,
        report.cases.len(),
        report.statuses,
        report.slowest
    );
    drop(stack);
    drop(carrier);
    drop(cluster);
    (report.cases.len(), rate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_and_three_replicas_of_each_worker_handle_every_case_once() {
    replicated_load(vec![
        ("gateway", 2),
        ("identity", 2),
        ("risk", 3),
        ("provisioning", 3),
        ("timers", 3),
        ("webhooks", 3),
    ])
    .await;
}

/// The baseline of docs/scaling.md's "Replicas": the same load on one process of
/// each service. Run by hand: `cargo nextest run -p system-tests --test faults
/// --run-ignored only`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run by hand for docs/scaling.md"]
async fn one_process_of_each_service_baseline() {
    replicated_load(vec![]).await;
}

//! The harness of the cross-service scenarios.
//!
//! Owns: starting the product as the operator would — separate `reactivation serve …`
//! processes of the real binary, on free loopback ports, against a fresh Postgres
//! database per test (created on the server named by `DATABASE_URL`, dropped after)
//! — and a small HTTP client for the customer API and the carrier simulator.
//!
//! Must not: reach into a service's internals; scenarios talk HTTP, and read the
//! database only to check what the services wrote.
//!
//! How scenarios wait: never a fixed pause. A positive outcome is polled for with a
//! deadline (`wait_for_state`, `metric`, a row's `processed_at`/`delivered_at`). A
//! negative one ("nothing was sent", "told once", "no second order") is asserted only
//! after proof that the work which could have produced it ran: a later marker item
//! processed behind it (journey: a clean case restored after a flagged one), the
//! outbox message marked delivered (webhooks), the timers' `event_cursors` position past
//! every event (notifications). Waiting for workers to be ready means seeing their
//! `LISTEN` in `pg_stat_activity` (handoff). Single-service behaviour is tested in the
//! crates by calling the worker's process-one function until it reports nothing left.

use std::{
    collections::HashMap,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// The services a scenario can start.
pub const ALL_SERVICES: &[&str] = &[
    "carrier-sim",
    "identity",
    "risk",
    "provisioning",
    "timers",
    "webhooks",
    "gateway",
];

/// A fresh random secret: base64 of 32 bytes from the OS generator. Each stack gets its
/// own master key and internal token this way (`serve` refuses a published or typed one).
pub fn random_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The carrier webhook secret the gateway accepts and the simulator signs with (test only).
pub const TEST_WEBHOOK_SECRET: &str =
    "whsec_c3lzdGVtLXRlc3RzLW9ubHktY2Fycmllci13ZWJob29rLXNlY3JldA==";

/// The `reactivation` binary: `REACTIVATION_BIN`, else `target/debug/reactivation`.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("REACTIVATION_BIN") {
        return PathBuf::from(p);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/reactivation");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p reactivation` (scripts/test does)",
        path.display()
    );
    path
}

/// `n` distinct free ports: every listener is held until all are picked.
fn distinct_free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

/// The variable naming each service's listening address.
fn addr_variable(service: &str) -> &'static str {
    match service {
        "gateway" => "REACTIVATION_GATEWAY_ADDR",
        "identity" => "REACTIVATION_IDENTITY_ADDR",
        "risk" => "REACTIVATION_RISK_ADDR",
        "provisioning" => "REACTIVATION_PROVISIONING_ADDR",
        "carrier-sim" => "REACTIVATION_CARRIER_SIM_ADDR",
        "timers" => "REACTIVATION_TIMERS_ADDR",
        "webhooks" => "REACTIVATION_WEBHOOKS_ADDR",
        other => panic!("unknown service {other}"),
    }
}

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Which services (names of `reactivation serve`).
    pub services: Vec<&'static str>,
    /// Workers' fallback poll; long by default so that hand-offs must come from NOTIFY.
    pub poll_secs: u64,
    /// Extra environment for every process.
    pub env: Vec<(String, String)>,
    /// Extra environment for one service's process: (service, name, value), applied
    /// after `env` (e.g. a different `REACTIVATION_INTERNAL_TOKENS` per side).
    pub service_env: Vec<(&'static str, String, String)>,
    /// How many processes of a service to run (one when not listed): each replica
    /// listens on its own port; gateway replica `i` calls identity replica `i` (modulo
    /// their number). The carrier simulator's webhooks go to the first gateway.
    pub replicas: Vec<(&'static str, usize)>,
    /// The Postgres server (any database URL on it) the product's database is created
    /// on, e.g. a [`PrivateCluster`]'s; `DATABASE_URL`'s server when `None`.
    pub database_server: Option<String>,
    /// When set, the carrier simulator gets a database of its own on this server (the
    /// carrier is another company's system: it does not go down with our database);
    /// otherwise it shares the product's database.
    pub carrier_database_server: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            services: ALL_SERVICES.to_vec(),
            poll_secs: 3600,
            env: vec![],
            service_env: vec![],
            replicas: vec![],
            database_server: None,
            carrier_database_server: None,
        }
    }
}

impl StackOptions {
    fn replicas_of(&self, service: &str) -> usize {
        self.replicas
            .iter()
            .find(|(s, _)| *s == service)
            .map_or(1, |(_, n)| (*n).max(1))
    }
}

/// One process of a service, with what it takes to start it again.
#[derive(Debug)]
struct Process {
    service: &'static str,
    replica: usize,
    url: String,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn spawn(&mut self) {
        if self.child.is_some() {
            return;
        }
        // Appended: the log of a restarted process keeps what its predecessor wrote.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(binary())
            .args(["serve", self.service])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn a service");
        self.child = Some(child);
    }

    /// SIGKILL, as a crash would, and reap it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    /// Sends `signal` (`-STOP`, `-CONT`) with kill(1); whether it was delivered.
    fn signal(&self, signal: &str) -> bool {
        self.child.as_ref().is_none_or(|child| {
            Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success())
        })
    }
}

/// A running product: one process per service (or several replicas), a fresh database.
#[derive(Debug)]
pub struct Stack {
    /// Pool on the stack's database.
    pub pool: PgPool,
    /// The stack's database URL.
    pub database_url: String,
    /// Base URLs by service name (`gateway`, `carrier-sim`, `identity`, `risk`,
    /// `provisioning`): the first replica's.
    pub urls: HashMap<&'static str, String>,
    /// HTTP client.
    pub http: reqwest::Client,
    /// The stack's `REACTIVATION_SECRET_KEY` (random per stack).
    pub secret_key: String,
    /// The stack's `REACTIVATION_INTERNAL_TOKENS` (one random token per stack, unless
    /// the options set the variable).
    pub internal_token: String,
    processes: Vec<Process>,
    /// (server admin URL, database) of every database the stack created.
    databases: Vec<(String, String)>,
    logs: PathBuf,
    /// Whether dropping the stack drops its databases (not for a failed start attempt).
    drop_database: bool,
}

/// Creates database `name` on the server of `admin_url` and applies the migrations;
/// returns its URL.
async fn create_database(admin_url: &str, name: &str) -> String {
    let admin = PgPool::connect(admin_url)
        .await
        .expect("connect to the database server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let url = with_database(admin_url, name);
    let status = Command::new(binary())
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .expect("run migrate");
    assert!(
        status.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    url
}

impl Stack {
    /// Starts the default stack (every service).
    pub async fn start() -> Self {
        Self::start_with(StackOptions::default()).await
    }

    /// Starts the services in `options` on a fresh database and waits until each is healthy.
    pub async fn start_with(options: StackOptions) -> Self {
        let shared_url = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL must name a Postgres server for the system tests");
        let admin_url = options.database_server.clone().unwrap_or(shared_url);
        let database = format!("systest_{}", Uuid::new_v4().simple());
        let database_url = create_database(&admin_url, &database).await;
        let mut databases = vec![(admin_url.clone(), database.clone())];
        let sim_database_url = match &options.carrier_database_server {
            Some(server) => {
                let sim = format!("{database}_carrier");
                let url = create_database(server, &sim).await;
                databases.push((server.clone(), sim));
                url
            }
            None => database_url.clone(),
        };
        let logs = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/system-tests")
            .join(&database);
        std::fs::create_dir_all(&logs).expect("log folder");

        let (secret_key, internal_token) = (random_secret(), random_secret());
        // Every replica of every service, in start order.
        let instances: Vec<(&'static str, usize)> = ALL_SERVICES
            .iter()
            .flat_map(|s| (0..options.replicas_of(s)).map(move |i| (*s, i)))
            .collect();
        // A service whose port was taken by another process between our pick and its
        // bind exits at once; then the whole set starts again on new ports.
        for attempt in 1..=3 {
            let picked = distinct_free_ports(instances.len());
            let ports: HashMap<(&str, usize), u16> =
                instances.iter().copied().zip(picked).collect();
            let url = |s: &str, i: usize| format!("http://127.0.0.1:{}", ports[&(s, i)]);
            let addr = |s: &str, i: usize| format!("127.0.0.1:{}", ports[&(s, i)]);
            let mut env: Vec<(String, String)> =
                vec![("DATABASE_URL".into(), database_url.clone())];
            env.extend(
                ALL_SERVICES
                    .iter()
                    .map(|s| (addr_variable(s).to_owned(), addr(s, 0))),
            );
            env.extend([
                (
                    "REACTIVATION_CARRIER_WEBHOOK_SECRETS".into(),
                    TEST_WEBHOOK_SECRET.into(),
                ),
                (
                    "REACTIVATION_SIM_WEBHOOK_URL".into(),
                    format!("{}/v1/webhooks/carrier", url("gateway", 0)),
                ),
                (
                    "REACTIVATION_SIM_WEBHOOK_SECRET".into(),
                    TEST_WEBHOOK_SECRET.into(),
                ),
                ("REACTIVATION_CARRIER_URL".into(), url("carrier-sim", 0)),
                ("REACTIVATION_IDENTITY_URL".into(), url("identity", 0)),
                ("REACTIVATION_SECRET_KEY".into(), secret_key.clone()),
                (
                    "REACTIVATION_INTERNAL_TOKENS".into(),
                    internal_token.clone(),
                ),
                (
                    "REACTIVATION_WORKER_POLL_SECS".into(),
                    options.poll_secs.to_string(),
                ),
                ("REACTIVATION_DB_MAX_CONNECTIONS".into(), "5".into()),
                // Messages go at once (a test of the window that collapses a case's
                // quick transitions into one message sets it through `options.env`).
                ("REACTIVATION_MESSAGE_WINDOW_SECONDS".into(), "0".into()),
                // Every test's client is 127.0.0.1: per-client limits would throttle the
                // suite. A test of the limits sets them back on through `options.env`.
                ("REACTIVATION_RATE_LIMITS".into(), "off".into()),
                (
                    "REACTIVATION_LOG".into(),
                    "info,sqlx::postgres::notice=warn".into(),
                ),
            ]);
            env.extend(options.env.iter().cloned());

            let mut processes = Vec::new();
            for service in &options.services {
                for replica in 0..options.replicas_of(service) {
                    let mut own_env = env.clone();
                    own_env.push((addr_variable(service).into(), addr(service, replica)));
                    if *service == "carrier-sim" {
                        own_env.push(("DATABASE_URL".into(), sim_database_url.clone()));
                    }
                    if *service == "gateway" {
                        let identities = options.replicas_of("identity");
                        own_env.push((
                            "REACTIVATION_IDENTITY_URL".into(),
                            url("identity", replica % identities),
                        ));
                    }
                    own_env.extend(
                        options
                            .service_env
                            .iter()
                            .filter(|(s, _, _)| s == service)
                            .map(|(_, k, v)| (k.clone(), v.clone())),
                    );
                    let name = if replica == 0 {
                        format!("{service}.log")
                    } else {
                        format!("{service}-{replica}.log")
                    };
                    let mut process = Process {
                        service,
                        replica,
                        url: url(service, replica),
                        env: own_env,
                        log: logs.join(name),
                        child: None,
                    };
                    // A fresh log per attempt.
                    let _ = std::fs::remove_file(&process.log);
                    process.spawn();
                    processes.push(process);
                }
            }
            let urls: HashMap<&'static str, String> =
                ALL_SERVICES.iter().map(|s| (*s, url(s, 0))).collect();
            let pool = PgPool::connect(&database_url)
                .await
                .expect("connect to the test database");
            let mut stack = Self {
                pool,
                database_url: database_url.clone(),
                urls,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client"),
                secret_key: secret_key.clone(),
                internal_token: internal_token.clone(),
                processes,
                databases: databases.clone(),
                logs: logs.clone(),
                drop_database: true,
            };
            let mut all_up = true;
            for service in &options.services {
                all_up &= stack.wait_healthy(service).await;
            }
            // A process that lost its port may still be exiting while another server on
            // that port answered: look once more after a moment.
            tokio::time::sleep(Duration::from_millis(300)).await;
            all_up &= stack.processes.iter_mut().all(|p| !p.exited());
            if all_up {
                return stack;
            }
            assert!(
                attempt < 3,
                "services kept failing to start; see {}",
                stack.logs.display()
            );
            // Keep the database for the next attempt; stop this attempt's processes.
            stack.drop_database = false;
            drop(stack);
        }
        unreachable!("the loop returns or panics")
    }

    /// Waits until every replica of `service` answers `/readyz`; false if one's
    /// process exited first.
    async fn wait_healthy(&mut self, service: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = self.http.clone();
        for process in self.processes.iter_mut().filter(|p| p.service == service) {
            loop {
                if process.exited() {
                    return false;
                }
                if let Ok(r) = http.get(format!("{}/readyz", process.url)).send().await
                    && r.status().is_success()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{service} did not become ready; see {}",
                    self.logs.display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        true
    }

    /// The folder holding every process's log (`SERVICE.log`, `SERVICE-N.log`).
    pub fn logs(&self) -> &std::path::Path {
        &self.logs
    }

    /// Base URLs of every replica of `service`, first replica first.
    pub fn replica_urls(&self, service: &str) -> Vec<String> {
        let mut replicas: Vec<&Process> = self
            .processes
            .iter()
            .filter(|p| p.service == service)
            .collect();
        replicas.sort_by_key(|p| p.replica);
        replicas.into_iter().map(|p| p.url.clone()).collect()
    }

    /// Sets `key` to `value` in the environment every replica of `service` gets at its
    /// next start ([`Stack::spawn`], [`Stack::restart`]): a changed configuration.
    pub fn set_env(&mut self, service: &str, key: &str, value: &str) {
        for process in self.processes.iter_mut().filter(|p| p.service == service) {
            process.env.retain(|(k, _)| k != key);
            process.env.push((key.to_owned(), value.to_owned()));
        }
    }

    /// Removes `key` from the environment every replica of `service` gets at its next
    /// start.
    pub fn unset_env(&mut self, service: &str, key: &str) {
        for process in self.processes.iter_mut().filter(|p| p.service == service) {
            process.env.retain(|(k, _)| k != key);
        }
    }

    /// Kills every replica of one service with SIGKILL (as a crash would).
    pub fn kill(&mut self, service: &str) {
        for process in self.processes.iter_mut().filter(|p| p.service == service) {
            process.kill();
        }
    }

    /// Starts the stopped processes of `service` again, on the same ports with the
    /// same environment, without waiting for them (see [`Stack::wait_ready`]).
    pub fn spawn(&mut self, service: &str) {
        for process in self.processes.iter_mut().filter(|p| p.service == service) {
            process.spawn();
        }
    }

    /// Waits until every replica of `service` answers `/readyz`; panics if one exits
    /// or 30 s pass.
    pub async fn wait_ready(&mut self, service: &str) {
        assert!(
            self.wait_healthy(service).await,
            "{service} exited; see {}",
            self.logs.display()
        );
    }

    /// Kills `service` with SIGKILL and starts it again: the crash and the
    /// orchestrator's restart. Returns once it is ready.
    pub async fn restart(&mut self, service: &str) {
        self.kill(service);
        self.spawn(service);
        self.wait_ready(service).await;
    }

    /// Freezes every process of `service` (SIGSTOP): it keeps its connections and
    /// its port but answers nothing until [`Stack::resume`].
    pub fn pause(&self, service: &str) {
        for process in self.processes.iter().filter(|p| p.service == service) {
            assert!(process.signal("-STOP"), "could not pause {service}");
        }
    }

    /// Lets the processes frozen by [`Stack::pause`] run again (SIGCONT).
    pub fn resume(&self, service: &str) {
        for process in self.processes.iter().filter(|p| p.service == service) {
            assert!(process.signal("-CONT"), "could not resume {service}");
        }
    }

    /// The operating-system ids of every running replica of `service`.
    pub fn pids(&self, service: &str) -> Vec<u32> {
        self.processes
            .iter()
            .filter(|p| p.service == service)
            .filter_map(|p| p.child.as_ref().map(Child::id))
            .collect()
    }

    /// Whether every process the stack started is still running (none crashed or exited).
    pub fn all_running(&mut self) -> bool {
        self.processes.iter_mut().all(|p| !p.exited())
    }

    /// Base URL of a service.
    pub fn url(&self, service: &str) -> &str {
        &self.urls[service]
    }

    /// Sends a request and returns the status and JSON body (Null when empty or not JSON).
    pub async fn call(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends a request and returns the status, content type and raw body.
    pub async fn call_raw(&self, request: reqwest::RequestBuilder) -> (u16, String, String) {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let ct = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, ct, response.text().await.unwrap_or_default())
    }

    /// Registers a subscriber at the carrier simulator.
    pub async fn add_subscriber(&self, subscriber: &TestSubscriber) {
        self.add_sim_subscriber(&subscriber.sim_body()).await;
    }

    /// Registers `subscriber` at the simulator, suspended for `reason` (for example
    /// `police_request`, which the risk rules grade extreme).
    pub async fn add_subscriber_suspended_for(&self, subscriber: &TestSubscriber, reason: &str) {
        let mut body = subscriber.sim_body();
        body["suspension_reason"] = json!(reason);
        self.add_sim_subscriber(&body).await;
    }

    async fn add_sim_subscriber(&self, body: &Value) {
        let (status, answer) = self
            .call(
                self.http
                    .post(format!("{}/sim/subscribers", self.url("carrier-sim")))
                    .json(body),
            )
            .await;
        assert_eq!(status, 201, "sim refused the subscriber: {answer}");
    }

    /// `POST /v1/cases` with an optional Idempotency-Key.
    pub async fn create_case(&self, body: &Value, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/v1/cases", self.url("gateway")))
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.call(request).await
    }

    /// Opens a case for `s` and returns (case id, token).
    pub async fn open_case(&self, s: &TestSubscriber) -> (String, String) {
        let (status, body) = self.create_case(&s.case_body(), None).await;
        assert_eq!(status, 201, "{body}");
        (
            body["case_id"].as_str().expect("case_id").to_owned(),
            body["case_token"].as_str().expect("token").to_owned(),
        )
    }

    /// `GET /v1/cases/{id}`.
    pub async fn status(&self, case_id: &str, token: &str) -> (u16, Value) {
        self.call(
            self.http
                .get(format!("{}/v1/cases/{case_id}", self.url("gateway")))
                .bearer_auth(token),
        )
        .await
    }

    /// `POST /v1/cases/{id}/otp`.
    pub async fn request_otp(&self, case_id: &str, token: &str) -> (u16, Value) {
        self.call(
            self.http
                .post(format!("{}/v1/cases/{case_id}/otp", self.url("gateway")))
                .bearer_auth(token),
        )
        .await
    }

    /// `POST /v1/cases/{id}/verifications`.
    pub async fn verify(&self, case_id: &str, token: &str, proof: &Value) -> (u16, Value) {
        self.call(
            self.http
                .post(format!(
                    "{}/v1/cases/{case_id}/verifications",
                    self.url("gateway")
                ))
                .bearer_auth(token)
                .json(proof),
        )
        .await
    }

    /// Every message the product sent through the carrier to `to`.
    pub async fn sim_outbox(&self, to: &str) -> Vec<Value> {
        let (status, body) = self
            .call(
                self.http
                    .get(format!("{}/sim/outbox", self.url("carrier-sim")))
                    .query(&[("to", to)]),
            )
            .await;
        assert_eq!(status, 200);
        body.as_array().cloned().unwrap_or_default()
    }

    /// The six-digit code in the newest message to `to`.
    pub async fn latest_code(&self, to: &str) -> String {
        let messages = self.sim_outbox(to).await;
        // Status notifications go to the same contact: take the newest message with a code.
        let has_code = |b: &str| b.split(|c: char| !c.is_ascii_digit()).any(|w| w.len() == 6);
        let body = messages
            .iter()
            .rev()
            .filter_map(|m| m["body"].as_str())
            .find(|b| has_code(b))
            .expect("a message with a code")
            .to_owned();
        body.split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .expect("six digits in the message")
            .to_owned()
    }

    /// Every provisioning call the simulator received for `msisdn`.
    pub async fn provisioning_requests(&self, msisdn: &str) -> Vec<Value> {
        let (status, body) = self
            .call(
                self.http
                    .get(format!(
                        "{}/sim/provisioning-requests",
                        self.url("carrier-sim")
                    ))
                    .query(&[("msisdn", msisdn)]),
            )
            .await;
        assert_eq!(status, 200);
        body.as_array().cloned().unwrap_or_default()
    }

    /// The simulator's view of a subscriber.
    pub async fn sim_subscriber(&self, msisdn: &str) -> Value {
        let encoded = msisdn.replace('+', "%2B");
        let (status, body) = self
            .call(self.http.get(format!(
                "{}/sim/subscribers/{encoded}",
                self.url("carrier-sim")
            )))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Configures the simulator's provisioning faults.
    pub async fn sim_faults(&self, failure_rate: f64, latency_ms: u64) {
        let body = json!({ "provisioning_failure_rate": failure_rate, "provisioning_latency_ms": latency_ms });
        let (status, answer) = self
            .call(
                self.http
                    .post(format!("{}/sim/faults", self.url("carrier-sim")))
                    .json(&body),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    /// Polls the case until it is in `state` (or `timeout` passes) and returns its status.
    pub async fn wait_for_state(
        &self,
        case_id: &str,
        token: &str,
        state: &str,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, body) = self.status(case_id, token).await;
            assert_eq!(code, 200, "{body}");
            if body["state"] == state {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "case never reached {state}; last: {body}\nlogs in {}",
                self.logs.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A Prometheus counter's value on a service's `/metrics` (summed over series matching all `labels`).
    pub async fn metric(&self, service: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url(service)))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for process in &mut self.processes {
            // SIGKILL ends a frozen process too.
            process.kill();
        }
        if !self.drop_database {
            return;
        }
        let databases = self.databases.clone();
        // Dropping the database needs async I/O; Drop is sync, so use a private runtime on a thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                for (admin_url, database) in databases {
                    if let Ok(admin) = PgPool::connect(&admin_url).await {
                        let _ = sqlx::query(&format!(
                            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                        ))
                        .execute(&admin)
                        .await;
                    }
                }
            });
        })
        .join();
    }
}

/// A subscriber of the simulated carrier, with valid personal data.
#[derive(Debug, Clone)]
pub struct TestSubscriber {
    /// E.164 number.
    pub msisdn: String,
    /// Name.
    pub full_name: String,
    /// Resident ID.
    pub id_number: String,
    /// Service password.
    pub password: String,
    /// Backup SMS contact on file.
    pub backup_sms: Option<String>,
    /// Recent call counterparties.
    pub recent: Vec<String>,
    /// Risk signals: (fraud_linked_contacts, sms_peak_per_hour, intl_calls_24h).
    pub signals: (u32, u32, u32),
    /// Language of the case.
    pub locale: &'static str,
}

impl TestSubscriber {
    /// A clean subscriber numbered `n` (distinct numbers and IDs per `n`).
    pub fn clean(n: u32) -> Self {
        let first17 = format!(
            "3101011985{:02}{:02}{:03}",
            1 + n % 12,
            1 + n % 28,
            n % 1000
        );
        Self {
            msisdn: format!("+861390000{:04}", n),
            full_name: "王小明".into(),
            id_number: case_domain::ResidentId::with_check_digit(&first17).expect("valid test ID"),
            password: format!("pw-{n}-secret"),
            backup_sms: Some(format!("+861880000{:04}", n)),
            recent: (1..=4).map(|i| format!("+86137{:04}{:04}", n, i)).collect(),
            signals: (0, 0, 0),
            locale: "en",
        }
    }

    /// A subscriber whose traffic is flagged (medium tier).
    pub fn flagged(n: u32) -> Self {
        Self {
            signals: (2, 300, 15),
            ..Self::clean(n)
        }
    }

    /// The simulator's `POST /sim/subscribers` body.
    pub fn sim_body(&self) -> Value {
        let contacts: Vec<Value> = self
            .backup_sms
            .iter()
            .map(|a| json!({"kind": "sms", "address": a}))
            .collect();
        json!({
            "msisdn": self.msisdn,
            "full_name": self.full_name,
            "id_number": self.id_number,
            "service_password": self.password,
            "backup_contacts": contacts,
            "recent_contacts": self.recent,
            "signals": {"fraud_linked_contacts": self.signals.0, "sms_peak_per_hour": self.signals.1, "intl_calls_24h": self.signals.2},
            "status": "suspended",
            "suspension_reason": if self.signals == (0, 0, 0) { "real_name_reverification" } else { "fraud_linked_contacts" },
        })
    }

    /// The customer API's `POST /v1/cases` body.
    pub fn case_body(&self) -> Value {
        json!({"msisdn": self.msisdn, "full_name": self.full_name, "id_number": self.id_number, "channel": "app", "locale": self.locale})
    }
}

/// The password of every agent a scenario creates.
pub const AGENT_PASSWORD: &str = "correct-horse-battery-1";

impl Stack {
    /// Runs `reactivation <args>` against the stack's database, with `env` added:
    /// (whether it succeeded, its stdout then its stderr).
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        let out = Command::new(binary())
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .envs(env.iter().copied())
            .output()
            .expect("run the reactivation command line");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Creates an agent with the product's own command (`reactivation agent create`).
    pub fn create_agent(&self, username: &str, roles: &[&str]) {
        let mut command = Command::new(binary());
        command.args([
            "agent",
            "create",
            "--username",
            username,
            "--password",
            AGENT_PASSWORD,
        ]);
        for role in roles {
            command.args(["--role", role]);
        }
        let out = command
            .env("DATABASE_URL", &self.database_url)
            .output()
            .expect("run agent create");
        assert!(
            out.status.success(),
            "agent create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Logs an agent in and returns the bearer token.
    pub async fn login(&self, username: &str) -> String {
        let (status, body) = self
            .call(
                self.http
                    .post(format!("{}/v1/agent/login", self.url("gateway")))
                    .json(&json!({"username": username, "password": AGENT_PASSWORD})),
            )
            .await;
        assert_eq!(status, 200, "login {username}: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// The subscriber uploads a PDF evidence file `name` to the case; panics unless
    /// it is stored.
    pub async fn upload_pdf(&self, case: &str, token: &str, name: &str, pdf: &[u8]) {
        let part = reqwest::multipart::Part::bytes(pdf.to_vec())
            .file_name(name.to_owned())
            .mime_str("application/pdf")
            .expect("media type");
        let upload = self
            .http
            .post(format!("{}/v1/cases/{case}/evidence", self.url("gateway")))
            .bearer_auth(token)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .expect("upload sent");
        let status = upload.status();
        assert!(
            status.is_success(),
            "{}",
            upload.text().await.unwrap_or_default()
        );
    }

    /// The subscriber explains their contacts with `statement` alone; panics unless
    /// it is stored.
    pub async fn explain(&self, case: &str, token: &str, statement: &str) {
        let (status, body) = self
            .call(
                self.http
                    .post(format!(
                        "{}/v1/cases/{case}/explanations",
                        self.url("gateway")
                    ))
                    .bearer_auth(token)
                    .json(&json!({ "statement": statement })),
            )
            .await;
        assert!((200..300).contains(&status), "{status}: {body}");
    }

    /// The agent view of a case.
    pub async fn agent_case(&self, token: &str, case_id: &str) -> Value {
        let (status, body) = self
            .call(
                self.http
                    .get(format!("{}/v1/agent/cases/{case_id}", self.url("gateway")))
                    .bearer_auth(token),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// An agent action; returns the status and body.
    pub async fn act(
        &self,
        token: &str,
        case_id: &str,
        action: &str,
        version: i64,
        extra: Value,
    ) -> (u16, Value) {
        let mut body = json!({"action": action, "expected_version": version});
        if let (Some(map), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            map.extend(extra.clone());
        }
        self.call(
            self.http
                .post(format!(
                    "{}/v1/agent/cases/{case_id}/actions",
                    self.url("gateway")
                ))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    /// Runs `reactivation audit verify` on the stack's database: (success, output).
    pub fn verify_audit(&self) -> (bool, String) {
        self.cli(&["audit", "verify"], &[])
    }

    /// Registers `s` at the carrier, opens a case, proves identity with the service
    /// password and waits until the risk service has sent it to security review (so
    /// `s` must be flagged). Returns the case id, its token and its status there.
    pub async fn case_in_security_review(&self, s: &TestSubscriber) -> (String, String, Value) {
        self.add_subscriber(s).await;
        let (case, token) = self.open_verified_case(s).await;
        // A high tier on the verification ladder asks a CS agent to call back first.
        if self.status(&case, &token).await.1["state"] == "identity_review" {
            self.call_back(&case).await;
        }
        let status = self
            .wait_for_state(&case, &token, "security_review", Duration::from_secs(30))
            .await;
        (case, token, status)
    }

    /// A CS agent of the case's own calls the number on file back and confirms
    /// identity (`verify_identity` with `callback_to_contact_on_file`), as the high
    /// tier of the verification ladder asks.
    pub async fn call_back(&self, case: &str) {
        let username = format!("cs.callback.{}", &case[case.len() - 12..]);
        self.create_agent(&username, &["cs"]);
        let cs = self.login(&username).await;
        let version = self.agent_case(&cs, case).await["version"]
            .as_i64()
            .expect("a version");
        let (status, answer) = self
            .act(
                &cs,
                case,
                "verify_identity",
                version,
                json!({"identity_check": "callback_to_contact_on_file", "reason": "called back the number on file; the subscriber answered"}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    /// Opens a case for `s` and proves identity as its tier asks online.
    pub async fn open_verified_case(&self, s: &TestSubscriber) -> (String, String) {
        let (case, token) = self.open_case(s).await;
        self.prove_identity(&case, &token, s).await;
        (case, token)
    }

    /// Gives what the case's tier on the verification ladder asks online: the
    /// service password, then the one-time code when the tier asks for both. A case
    /// whose tier asks for a store visit is left waiting for it; one whose tier asks
    /// for a call-back goes to a CS agent.
    pub async fn prove_identity(&self, case: &str, token: &str, s: &TestSubscriber) {
        let (status, answer) = self
            .verify(
                case,
                token,
                &json!({"method": "service_password", "password": s.password}),
            )
            .await;
        if status == 409
            && answer["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("store-visit-required"))
        {
            return;
        }
        assert_eq!(status, 200, "{answer}");
        if answer["accepted"] == true {
            return;
        }
        let needed = answer["still_needed"].to_string();
        assert!(
            needed.contains("\"otp\""),
            "the password counted and a code is asked: {answer}"
        );
        let (status, sent) = self.request_otp(case, token).await;
        assert_eq!(status, 202, "{sent}");
        let to = s
            .backup_sms
            .as_deref()
            .expect("a contact on file for the code");
        let code = self.latest_code(to).await;
        let (status, answer) = self
            .verify(case, token, &json!({"method": "otp", "code": code}))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], true, "{answer}");
    }
}

/// A Postgres cluster of a test's own (from the system's `initdb`/`pg_ctl`, through
/// `local-postgres`) on a free port, so that the test may stop and start it — a
/// database outage — without touching the server other tests share. Its files are
/// under `target/system-tests/`; dropping it stops it and removes them.
#[derive(Debug)]
pub struct PrivateCluster {
    cluster: local_postgres::LocalCluster,
    root: PathBuf,
}

impl PrivateCluster {
    /// Creates and starts a cluster with `max_connections` slots.
    pub async fn start(max_connections: u32) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/system-tests")
            .join(format!("pg_{}", Uuid::new_v4().simple()));
        let data_dir = root.join("data");
        let port = distinct_free_ports(1)[0];
        let cluster = tokio::task::spawn_blocking(move || {
            let binaries = local_postgres::PgBinaries::locate()?;
            local_postgres::LocalCluster::start_configured(
                &binaries,
                &data_dir,
                port,
                &[("max_connections", &max_connections.to_string())],
            )
        })
        .await
        .expect("the start task")
        .expect("a private Postgres cluster (initdb and pg_ctl must be installed)");
        Self { cluster, root }
    }

    /// A URL on the cluster's `postgres` database (for [`StackOptions::database_server`]).
    pub fn admin_url(&self) -> String {
        self.cluster.database_url("postgres")
    }

    /// `pg_ctl stop -m fast`: every connection is cut and new ones are refused.
    pub async fn stop(&self) {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .expect("the stop task")
            .expect("pg_ctl stop");
    }

    /// Starts the stopped cluster again on the same port; returns once it accepts
    /// connections.
    pub async fn start_again(&self) {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.start_again())
            .await
            .expect("the start task")
            .expect("pg_ctl start");
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The agent console over plain HTTP, as a browser without script would use it:
/// a client that does not follow redirects, the form's hidden fields, the cookies
/// a response sets, and a login through the console's form.
pub mod console {
    use reqwest::{StatusCode, header};

    use crate::{AGENT_PASSWORD, Stack};

    /// A client that shows redirects instead of following them.
    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// The value of `name="{field}" value="…"` in a page.
    pub fn hidden(html: &str, field: &str) -> String {
        let marker = format!("name=\"{field}\" value=\"");
        let start = html
            .find(&marker)
            .unwrap_or_else(|| panic!("no {field} in page"))
            + marker.len();
        html[start..start + html[start..].find('"').expect("closing quote")].to_owned()
    }

    /// The value of the cookie `name` a response sets, if it sets it.
    pub fn cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                c.split(';')
                    .next()
                    .and_then(|kv| kv.split_once('='))
                    .filter(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_owned())
            })
    }

    /// Logs `username` (password [`AGENT_PASSWORD`]) in through the console's form;
    /// returns the `Cookie` header value of the session.
    pub async fn login(stack: &Stack, username: &str) -> String {
        let gw = stack.url("gateway");
        let page = client()
            .get(format!("{gw}/console/login"))
            .send()
            .await
            .unwrap();
        let login_cookie = cookie_value(&page, "reactivation_login_csrf").expect("login csrf");
        let token = hidden(&page.text().await.unwrap(), "login_csrf");
        let answer = client()
            .post(format!("{gw}/console/login"))
            .header(
                header::COOKIE,
                format!("reactivation_login_csrf={login_cookie}"),
            )
            .form(&[
                ("username", username),
                ("password", AGENT_PASSWORD),
                ("login_csrf", &token),
                ("next", ""),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "login {username}");
        format!(
            "reactivation_session={}",
            cookie_value(&answer, "reactivation_session").expect("session cookie")
        )
    }
}

//! The HTTP side: registering subscribers at the simulator, the clean journey per
//! case, the create-only calls, and a bounded worker pool that runs them.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::Client;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::fixtures::BenchSubscriber;

/// The states a clean case passes through before `reactivated`. Any other state means
/// the case left the clean path (and would wait for a human): the journey fails at once.
pub const CLEAN_PATH: &[&str] = &["awaiting_identity", "risk_assessment", "provisioning"];

/// Runs `f(0)`, …, `f(n - 1)` on `concurrency` tasks (each takes the next index when it
/// is done with one) and returns the results in index order.
pub async fn run_indexed<T, F, Fut>(n: usize, concurrency: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (f, next) = (f.clone(), next.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                done.push((i, f(i).await));
            }
            done
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(done) => all.extend(done),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a bench task was cancelled: {e}"),
        }
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// Sends a request; returns the status and the JSON body (Null when empty or not JSON).
async fn call(request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
    let response = request.send().await.map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Whether `{base}/readyz` answers 2xx.
pub async fn ready(http: &Client, base: &str) -> Result<(), String> {
    let response = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_err(|e| format!("{base}/readyz: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("{base}/readyz answered {}", response.status()))
    }
}

/// Registers `s` at the simulator (`POST /sim/subscribers`, which hashes the service
/// password with argon2id); returns how long the call took.
pub async fn register(
    http: &Client,
    carrier: &str,
    s: &BenchSubscriber,
) -> Result<Duration, String> {
    let started = Instant::now();
    let (status, body) = call(
        http.post(format!("{carrier}/sim/subscribers"))
            .json(&s.sim_body()),
    )
    .await?;
    if status == 201 {
        Ok(started.elapsed())
    } else {
        Err(format!("POST /sim/subscribers answered {status}: {body}"))
    }
}

/// Timing of one journey.
#[derive(Debug, Clone)]
pub struct JourneySettings {
    /// Pause between two status polls.
    pub poll: Duration,
    /// From the create call on, how long the case may take to reach `reactivated`.
    pub timeout: Duration,
}

/// What one successful journey measured (client-side clock).
#[derive(Debug, Clone)]
pub struct JourneyRecord {
    /// The case.
    pub case_id: Uuid,
    /// When `POST /v1/cases` was sent.
    pub submitted: Instant,
    /// When its `201` arrived.
    pub created: Instant,
    /// When the verification call was sent (right after `created`).
    pub verify_sent: Instant,
    /// When the verification's `200 accepted` arrived.
    pub verified: Instant,
    /// When a poll first saw `reactivated`.
    pub reactivated: Instant,
    /// Status polls made.
    pub polls: u32,
}

impl JourneyRecord {
    /// Latency of the create call.
    pub fn create_latency(&self) -> Duration {
        self.created - self.submitted
    }

    /// Latency of the verification call.
    pub fn verify_latency(&self) -> Duration {
        self.verified - self.verify_sent
    }

    /// From sending the create call to seeing `reactivated`.
    pub fn submit_to_reactivated(&self) -> Duration {
        self.reactivated - self.submitted
    }
}

/// Where a journey failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `POST /v1/cases` did not answer 201.
    Create,
    /// The service password was not accepted.
    Verify,
    /// A status poll failed.
    Poll,
    /// The case left the clean path.
    OffPath,
    /// The case did not reach `reactivated` in time.
    Timeout,
}

/// A failed journey.
#[derive(Debug, Clone)]
pub struct JourneyFailure {
    /// Index of the subscriber.
    pub index: usize,
    /// The case, once opened.
    pub case_id: Option<Uuid>,
    /// Where it failed.
    pub step: Step,
    /// What was seen.
    pub detail: String,
    /// When the create call was sent.
    pub submitted: Instant,
    /// When the create call answered 201, if it did.
    pub created: Option<Instant>,
    /// Status polls made before it failed.
    pub polls: u32,
}

/// Opens a case; returns (case id, token) or the failure detail.
pub async fn open_case(
    http: &Client,
    gateway: &str,
    s: &BenchSubscriber,
) -> Result<(Uuid, String), String> {
    let (status, body) = call(
        http.post(format!("{gateway}/v1/cases"))
            .json(&s.case_body()),
    )
    .await?;
    if status != 201 {
        return Err(format!("POST /v1/cases answered {status}: {body}"));
    }
    let case_id = body["case_id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| format!("no case_id in {body}"))?;
    let token = body["case_token"]
        .as_str()
        .ok_or_else(|| format!("no case_token in {body}"))?
        .to_owned();
    Ok((case_id, token))
}

/// The clean journey of subscriber `index`: open, prove with the service password, poll
/// `GET /v1/cases/{id}` every `settings.poll` until `reactivated`.
pub async fn journey(
    http: &Client,
    gateway: &str,
    index: usize,
    s: &BenchSubscriber,
    settings: &JourneySettings,
) -> Result<JourneyRecord, JourneyFailure> {
    let submitted = Instant::now();
    let mut polls = 0u32;
    let fail = |step, case_id, created, detail, polls| JourneyFailure {
        index,
        case_id,
        step,
        detail,
        submitted,
        created,
        polls,
    };
    let (case_id, token) = open_case(http, gateway, s)
        .await
        .map_err(|d| fail(Step::Create, None, None, d, 0))?;
    let created = Instant::now();

    let verify_sent = Instant::now();
    let proof = json!({"method": "service_password", "password": s.password});
    let (status, answer) = call(
        http.post(format!("{gateway}/v1/cases/{case_id}/verifications"))
            .bearer_auth(&token)
            .json(&proof),
    )
    .await
    .map_err(|d| fail(Step::Verify, Some(case_id), Some(created), d, 0))?;
    if status != 200 || answer["accepted"] != Value::Bool(true) {
        return Err(fail(
            Step::Verify,
            Some(case_id),
            Some(created),
            format!("verification answered {status}: {answer}"),
            0,
        ));
    }
    let verified = Instant::now();

    let deadline = submitted + settings.timeout;
    loop {
        let (status, body) = call(
            http.get(format!("{gateway}/v1/cases/{case_id}"))
                .bearer_auth(&token),
        )
        .await
        .map_err(|d| fail(Step::Poll, Some(case_id), Some(created), d, polls))?;
        polls += 1;
        if status != 200 {
            return Err(fail(
                Step::Poll,
                Some(case_id),
                Some(created),
                format!("GET /v1/cases/{{id}} answered {status}: {body}"),
                polls,
            ));
        }
        let state = body["state"].as_str().unwrap_or("(none)");
        if state == "reactivated" {
            return Ok(JourneyRecord {
                case_id,
                submitted,
                created,
                verify_sent,
                verified,
                reactivated: Instant::now(),
                polls,
            });
        }
        if !CLEAN_PATH.contains(&state) {
            return Err(fail(
                Step::OffPath,
                Some(case_id),
                Some(created),
                format!("the case went to {state}"),
                polls,
            ));
        }
        if Instant::now() >= deadline {
            return Err(fail(
                Step::Timeout,
                Some(case_id),
                Some(created),
                format!(
                    "still {state} after {:.1} s",
                    settings.timeout.as_secs_f64()
                ),
                polls,
            ));
        }
        tokio::time::sleep(settings.poll).await;
    }
}

/// One create call of the create-only phase.
#[derive(Debug, Clone)]
pub struct Created {
    /// The case.
    pub case_id: Uuid,
    /// Its token (to cancel it afterwards).
    pub token: String,
    /// When the call was sent.
    pub sent: Instant,
    /// When its 201 arrived.
    pub answered: Instant,
}

/// Opens a case and does nothing else with it (the create-only phase).
pub async fn create_only(
    http: &Client,
    gateway: &str,
    s: &BenchSubscriber,
) -> Result<Created, String> {
    let sent = Instant::now();
    let (case_id, token) = open_case(http, gateway, s).await?;
    Ok(Created {
        case_id,
        token,
        sent,
        answered: Instant::now(),
    })
}

/// Withdraws a case opened by the create-only phase, so no open case is left behind.
pub async fn cancel(
    http: &Client,
    gateway: &str,
    case_id: Uuid,
    token: &str,
) -> Result<(), String> {
    let (status, body) = call(
        http.post(format!("{gateway}/v1/cases/{case_id}/cancel"))
            .bearer_auth(token),
    )
    .await?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("cancel answered {status}: {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_indexed_keeps_order_and_bounds_concurrency() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let out = run_indexed(40, 3, move |i| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1 + (i % 3) as u64)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..40).map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(run_indexed(0, 4, |i| async move { i }).await.is_empty());
    }
}

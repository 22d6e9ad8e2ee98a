//! The open-loop stages (`--rate R --duration S`): case creation at R/s, and the
//! verify → reactivated journey at R/s with the one-time code already sent.
//!
//! **Create stage.** `POST /v1/cases` at R/s; the latency is the client's, measured from
//! each request's *scheduled* start to its `201` (a late start counts its delay). The
//! cases are cancelled afterwards, outside the measurement.
//!
//! **Journey stage.** First, outside the measurement and closed-loop: register each
//! subscriber at the simulator with no service password (so no argon2id hash anywhere),
//! open its case, ask for a one-time code, and read the codes from the simulator's
//! outbox. Then the verifications go out at R/s. The latency is read from the product's
//! event log, not from client polling: from the `proofs_accepted` event's `at` to the
//! `at` of the event that made the case `reactivated`. The bench waits for the cases to
//! settle by reading their state from the database a few times a second.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::Client;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    events::EventRow,
    fixtures::{BenchSubscriber, Series},
    journey::{self, Created, run_indexed},
    schedule::{self, OpenLoop, Schedule},
};

/// How an open-loop run kept to its schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrivals {
    /// Offered rate (per second).
    pub offered: f64,
    /// Arrivals scheduled.
    pub scheduled: usize,
    /// Arrivals started.
    pub started: usize,
    /// Starts more than [`schedule::LATE_AFTER`] behind schedule.
    pub late: usize,
    /// The largest lateness of a start.
    pub max_lateness: Duration,
    /// Starts dropped because too many requests were outstanding.
    pub dropped: usize,
    /// The rate at which starts were made.
    pub achieved: f64,
}

impl Arrivals {
    fn of<T>(schedule: Schedule, run: &OpenLoop<T>) -> Self {
        Self {
            offered: schedule.rate,
            scheduled: schedule.count,
            started: run.started(),
            late: run.late,
            max_lateness: run.max_lateness,
            dropped: run.dropped,
            achieved: run.achieved_rate(),
        }
    }
}

/// What the create stage measured.
#[derive(Debug)]
pub struct RatedCreates {
    /// How the schedule was kept.
    pub arrivals: Arrivals,
    /// Scheduled start → `201`, per created case.
    pub latencies: Vec<Duration>,
    /// Calls that did not answer `201`.
    pub errors: usize,
    /// The first of those.
    pub first_error: Option<String>,
    /// The cases opened (to cancel afterwards).
    pub created: Vec<Created>,
}

/// `POST /v1/cases` for subscribers `0..` of `tag`'s create-only block at `schedule`.
pub async fn create_at_rate(
    http: &Client,
    gateway: &str,
    tag: u16,
    schedule: Schedule,
    max_in_flight: usize,
) -> RatedCreates {
    let run = schedule::run(schedule, max_in_flight, |i, due| {
        let (http, gateway) = (http.clone(), gateway.to_owned());
        async move {
            let s = BenchSubscriber::new(tag, Series::CreateOnly, index(i));
            journey::open_case(&http, &gateway, &s)
                .await
                .map(|(case_id, token)| Created {
                    case_id,
                    token,
                    sent: due,
                    answered: Instant::now(),
                })
        }
    })
    .await;
    let arrivals = Arrivals::of(schedule, &run);
    let mut out = RatedCreates {
        arrivals,
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
        created: Vec::new(),
    };
    for r in run.results.into_iter().flatten() {
        match r {
            Ok(c) => {
                out.latencies.push(c.answered - c.sent);
                out.created.push(c);
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out
}

/// Cancels the cases a create stage opened (closed-loop, not measured); returns the
/// number of cancels that failed.
pub async fn cancel_all(http: &Client, gateway: &str, created: Vec<Created>, c: usize) -> usize {
    let created = Arc::new(created);
    let (http, gateway, all) = (http.clone(), gateway.to_owned(), created.clone());
    run_indexed(created.len(), c, move |i| {
        let (http, gateway, all) = (http.clone(), gateway.clone(), all.clone());
        async move { journey::cancel(&http, &gateway, all[i].case_id, &all[i].token).await }
    })
    .await
    .iter()
    .filter(|r| r.is_err())
    .count()
}

fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// A case waiting for its verification: opened, code sent.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The case.
    pub case_id: Uuid,
    /// Its bearer token.
    pub token: String,
    /// The one-time code the simulator delivered.
    pub code: String,
}

/// The six-digit code in a message body, if any.
pub fn code_in(body: &str) -> Option<&str> {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
}

/// Per recipient, the code in the newest message that has one (`messages` oldest first,
/// as `GET /sim/outbox` lists them).
pub fn latest_codes(messages: &[Value]) -> HashMap<String, String> {
    let mut codes = HashMap::new();
    for m in messages {
        if let (Some(to), Some(code)) = (m["to"].as_str(), m["body"].as_str().and_then(code_in)) {
            codes.insert(to.to_owned(), code.to_owned());
        }
    }
    codes
}

/// Registers `n` subscribers of `tag`'s one-time-code block, opens their cases and has a
/// code sent to each (closed-loop at `concurrency`, not measured), then reads the codes.
pub async fn prepare(
    http: &Client,
    gateway: &str,
    carrier: &str,
    tag: u16,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Ready>> {
    let opened = {
        let (http, gateway, carrier) = (http.clone(), gateway.to_owned(), carrier.to_owned());
        run_indexed(n, concurrency, move |i| {
            let (http, gateway, carrier) = (http.clone(), gateway.clone(), carrier.clone());
            async move {
                let s = BenchSubscriber::new(tag, Series::Otp, index(i));
                let response = http
                    .post(format!("{carrier}/sim/subscribers"))
                    .json(&s.sim_body_without_password())
                    .send()
                    .await
                    .map_err(|e| format!("POST /sim/subscribers: {e}"))?;
                if response.status().as_u16() != 201 {
                    return Err(format!(
                        "POST /sim/subscribers answered {}",
                        response.status()
                    ));
                }
                let (case_id, token) = journey::open_case(&http, &gateway, &s).await?;
                let response = http
                    .post(format!("{gateway}/v1/cases/{case_id}/otp"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map_err(|e| format!("POST /v1/cases/{{id}}/otp: {e}"))?;
                if response.status().as_u16() != 202 {
                    return Err(format!(
                        "POST /v1/cases/{{id}}/otp answered {}",
                        response.status()
                    ));
                }
                Ok::<_, String>((case_id, token, s.backup_sms))
            }
        })
        .await
    };
    let mut cases = Vec::with_capacity(n);
    for r in opened {
        cases.push(r.map_err(|e| anyhow::anyhow!("preparing a journey: {e}"))?);
    }
    // The codes go out through the carrier's SMS API before `202`; read them all at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let messages: Value = http
            .get(format!("{carrier}/sim/outbox"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let codes = latest_codes(messages.as_array().map_or(&[][..], Vec::as_slice));
        let ready: Option<Vec<Ready>> = cases
            .iter()
            .map(|(case_id, token, to)| {
                codes.get(to).map(|code| Ready {
                    case_id: *case_id,
                    token: token.clone(),
                    code: code.clone(),
                })
            })
            .collect();
        if let Some(ready) = ready {
            return Ok(ready);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the simulator's outbox lacks some one-time codes after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the verifications at a fixed rate did (client side).
#[derive(Debug)]
pub struct RatedVerifies {
    /// How the schedule was kept.
    pub arrivals: Arrivals,
    /// Scheduled start → answer, per accepted verification (client clock, for reference).
    pub call_latencies: Vec<Duration>,
    /// Cases whose code was accepted.
    pub accepted: Vec<Uuid>,
    /// Verifications not answered `200 {"accepted": true}`.
    pub errors: usize,
    /// The first of those.
    pub first_error: Option<String>,
}

/// Sends `ready[i]`'s code at `schedule` (`schedule.count` must not exceed `ready.len()`).
pub async fn verify_at_rate(
    http: &Client,
    gateway: &str,
    ready: Arc<Vec<Ready>>,
    schedule: Schedule,
    max_in_flight: usize,
) -> RatedVerifies {
    let run = schedule::run(schedule, max_in_flight, |i, due| {
        let (http, gateway, ready) = (http.clone(), gateway.to_owned(), ready.clone());
        async move {
            let r = &ready[i];
            let response = http
                .post(format!("{gateway}/v1/cases/{}/verifications", r.case_id))
                .bearer_auth(&r.token)
                .json(&json!({"method": "otp", "code": r.code}))
                .send()
                .await
                .map_err(|e| format!("verification: {e}"))?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status == 200 && body["accepted"] == Value::Bool(true) {
                Ok((r.case_id, due.elapsed()))
            } else {
                Err(format!("verification answered {status}: {body}"))
            }
        }
    })
    .await;
    let mut out = RatedVerifies {
        arrivals: Arrivals::of(schedule, &run),
        call_latencies: Vec::new(),
        accepted: Vec::new(),
        errors: 0,
        first_error: None,
    };
    for r in run.results.into_iter().flatten() {
        match r {
            Ok((id, latency)) => {
                out.accepted.push(id);
                out.call_latencies.push(latency);
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out
}

/// Waits until none of `ids` is still on its way (awaiting identity, risk assessment or
/// provisioning), reading the states from the database every 200 ms. Returns the number
/// of reads made (each is one transaction in the product's database) and whether the
/// cases settled before `timeout`.
pub async fn settle(pool: &PgPool, ids: &[Uuid], timeout: Duration) -> anyhow::Result<(u64, bool)> {
    let deadline = Instant::now() + timeout;
    let mut reads = 0;
    loop {
        let moving: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM reactivation_cases WHERE id = ANY($1)
               AND state IN ('awaiting_identity', 'risk_assessment', 'provisioning')",
        )
        .bind(ids)
        .fetch_one(pool)
        .await?;
        reads += 1;
        if moving == 0 {
            return Ok((reads, true));
        }
        if Instant::now() >= deadline {
            return Ok((reads, false));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the timers service's follower has read every event of the cases
/// `ids` and no message of theirs (state messages held for the message window,
/// provisioning orders) is still to be delivered, so a transaction count includes
/// the journeys' messages; returns the reads made and whether that happened
/// before `timeout`.
/// With `ids` `None`: until no message of any case is (a measurement's window then
/// starts without the earlier stages' held messages).
pub async fn drain_outbox(
    pool: &PgPool,
    ids: Option<&[Uuid]>,
    timeout: Duration,
) -> anyhow::Result<(u64, bool)> {
    let deadline = Instant::now() + timeout;
    let mut reads = 0;
    loop {
        // The follower that writes the messages (the timers service's, consumer
        // `case-timers`) must have read the cases' events, and every message it wrote
        // must be delivered.
        let pending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE ($1::uuid[] IS NULL OR case_id = ANY($1))
                              AND delivered_at IS NULL AND failed_at IS NULL)
                 OR EXISTS (SELECT 1 FROM event_cursors c JOIN case_events e
                              ON e.tx_id IS NOT NULL AND (e.tx_id, e.seq) > (c.tx_id, c.seq)
                                 AND e.tx_id >= c.tx_id
                             WHERE c.consumer = 'case-timers'
                               AND ($1::uuid[] IS NULL OR e.case_id = ANY($1)))",
        )
        .bind(ids)
        .fetch_one(pool)
        .await?;
        reads += 1;
        if !pending {
            return Ok((reads, true));
        }
        if Instant::now() >= deadline {
            return Ok((reads, false));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The event log's view of the journeys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JourneyTimes {
    /// `proofs_accepted` → `reactivated`, per reactivated case.
    pub verify_to_reactivated: Vec<Duration>,
    /// Cases that ended elsewhere (or not yet): their last state → count.
    pub not_reactivated: BTreeMap<String, usize>,
    /// From the first `proofs_accepted` to the last reactivation (of these cases).
    pub span: Duration,
}

impl JourneyTimes {
    /// Reactivations per second over [`Self::span`]: the rate the product completed
    /// journeys at (below the offered rate when it saturates).
    pub fn completion_rate(&self) -> f64 {
        crate::stats::rate(self.verify_to_reactivated.len(), self.span)
    }
}

/// Reads the verify → reactivated times from `rows` (any order, several cases).
pub fn journey_times(mut rows: Vec<EventRow>) -> JourneyTimes {
    rows.sort_by_key(|r| (r.case_id, r.version));
    let mut out = JourneyTimes::default();
    let (mut first, mut last) = (None, None);
    for case in rows.chunk_by(|a, b| a.case_id == b.case_id) {
        let accepted = case.iter().find(|e| e.event == "proofs_accepted");
        let done = case.iter().find(|e| e.to_state == "reactivated");
        match (accepted, done) {
            (Some(a), Some(d)) => {
                out.verify_to_reactivated
                    .push((d.at - a.at).to_std().unwrap_or_default());
                first = Some(first.map_or(a.at, |f: chrono::DateTime<chrono::Utc>| f.min(a.at)));
                last = Some(last.map_or(d.at, |l: chrono::DateTime<chrono::Utc>| l.max(d.at)));
            }
            _ => {
                let last = case.last().map_or("?", |e| e.to_state.as_str());
                *out.not_reactivated.entry(last.to_owned()).or_default() += 1;
            }
        }
    }
    if let (Some(f), Some(l)) = (first, last) {
        out.span = (l - f).to_std().unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::*;

    fn row(case: u128, version: i32, to: &str, event: &str, ms: i64) -> EventRow {
        EventRow {
            case_id: Uuid::from_u128(case),
            version,
            to_state: to.into(),
            event: event.into(),
            actor_id: "x".into(),
            at: DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms),
        }
    }

    #[test]
    fn verify_to_reactivated_comes_from_the_event_times() {
        let rows = vec![
            row(1, 4, "reactivated", "restored", 1_030),
            row(1, 1, "awaiting_identity", "opened", 0),
            row(1, 2, "risk_assessment", "proofs_accepted", 1_000),
            row(1, 3, "provisioning", "risk_cleared", 1_010),
            row(2, 1, "awaiting_identity", "opened", 0),
            row(2, 2, "risk_assessment", "proofs_accepted", 500),
            row(2, 3, "security_review", "risk_flagged", 520),
            row(3, 1, "awaiting_identity", "opened", 0),
        ];
        let t = journey_times(rows);
        assert_eq!(t.verify_to_reactivated, [Duration::from_millis(30)]);
        assert_eq!(t.span, Duration::from_millis(30));
        assert!((t.completion_rate() - 1.0 / 0.030).abs() < 1e-6);
        assert_eq!(
            t.not_reactivated.into_iter().collect::<Vec<_>>(),
            [
                ("awaiting_identity".into(), 1),
                ("security_review".into(), 1)
            ]
        );
    }

    #[test]
    fn the_newest_code_per_recipient_wins() {
        let messages = vec![
            json!({"to": "+8618000100001", "body": "Your code is 111111. It expires in 10 minutes."}),
            json!({"to": "+8618000100002", "body": "Your code is 222222."}),
            json!({"to": "+8618000100001", "body": "Your code is 333333."}),
            json!({"to": "+8618000100001", "body": "Your case is now being reviewed."}),
        ];
        let codes = latest_codes(&messages);
        assert_eq!(codes["+8618000100001"], "333333");
        assert_eq!(codes["+8618000100002"], "222222");
        assert_eq!(code_in("case 12345 and 1234567"), None);
    }
}

//! The follower, the timers and the notification delivery against a real Postgres
//! (a fresh database per test) and the real carrier simulator over HTTP. The clock
//! is injected: no test sleeps.

use case_store::testing::open_case_in as open_case;
use std::{sync::Arc, time::Duration as StdDuration};

use carrier_adapter::HttpCarrier;
use case_domain::{Actor, CaseEvent, CaseState, Msisdn, Role, sla::SlaConfig};
use case_store::{TransitionRequest, load_case, timers as store, transition};
use case_timers::{
    NOTIFICATION_TOPIC, NotificationHandler, TimersConfig, deliver::SuspensionNotice, fire_due,
    follow, notify_suspension,
};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use service_runtime::{Shutdown, worker::process_one_message};
use sqlx::PgPool;
use uuid::Uuid;

/// Messages go at once here (the window that collapses them has its own test).
fn config() -> TimersConfig {
    TimersConfig::from_lookup(|k| (k == "REACTIVATION_MESSAGE_WINDOW_SECONDS").then(|| "0".into()))
        .unwrap()
}

async fn step(pool: &PgPool, case_id: Uuid, event: CaseEvent, actor: &Actor, reason: Option<&str>) {
    let case = load_case(pool, case_id).await.unwrap().unwrap();
    transition(
        pool,
        TransitionRequest {
            case_id,
            expected_version: case.version,
            event,
            actor,
            reason,
            fence: None,
            outbox: vec![],
        },
    )
    .await
    .unwrap();
}

fn system() -> Actor {
    Actor::system("test")
}

/// A case flagged for security review (version 3).
async fn in_security_review(pool: &PgPool, msisdn: &str, locale: &str) -> Uuid {
    let id = open_case(pool, msisdn, locale).await;
    step(pool, id, CaseEvent::ProofsAccepted, &system(), None).await;
    step(
        pool,
        id,
        CaseEvent::RiskFlagged,
        &system(),
        Some("risk tier medium"),
    )
    .await;
    id
}

async fn messages(pool: &PgPool, case_id: Uuid) -> Vec<Value> {
    sqlx::query_scalar::<_, Value>(
        "SELECT o.payload FROM outbox o LEFT JOIN case_events e ON e.id = o.event_id
         WHERE o.case_id = $1 AND o.topic = $2 ORDER BY o.created_at, e.seq NULLS LAST, o.id",
    )
    .bind(case_id)
    .bind(NOTIFICATION_TOPIC)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Follows until every committed event is handled. Other tests' transactions on the
/// same server can hold the follower back for a moment (it reads below the oldest
/// running writer), so it looks again while events are pending.
async fn follow_all(pool: &PgPool, now: DateTime<Utc>) -> usize {
    follow_all_with(pool, &config(), now).await.events
}

/// [`follow_all`] with `config`: what the passes did, summed (the earliest due time
/// of all).
async fn follow_all_with(
    pool: &PgPool,
    config: &TimersConfig,
    now: DateTime<Utc>,
) -> case_timers::follow::Followed {
    let mut all = case_timers::follow::Followed::default();
    let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
    loop {
        let done = follow(pool, config, now).await.unwrap();
        all.events += done.events;
        all.messages += done.messages;
        all.timers += done.timers;
        all.earliest_due = all.earliest_due.into_iter().chain(done.earliest_due).min();
        if done.events == 0 && !done.pending {
            return all;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the follower never caught up"
        );
        if done.events == 0 {
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
    }
}

async fn escalation(pool: &PgPool, case_id: Uuid) -> i16 {
    store::escalation_of(pool, case_id)
        .await
        .unwrap()
        .unwrap()
        .level
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn one_message_per_relevant_transition_exactly_once(pool: PgPool) {
    let now = Utc::now();
    let id = in_security_review(&pool, "+8613800138001", "en").await;
    assert_eq!(follow_all(&pool, now).await, 3);
    // opened, proofs_accepted and risk_flagged: all relevant.
    let sent = messages(&pool, id).await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    let bodies: Vec<&str> = sent.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert!(
        bodies[0].contains("we received your request"),
        "{}",
        bodies[0]
    );
    assert!(bodies[1].contains("identity is confirmed"), "{}", bodies[1]);
    assert!(bodies[2].contains("security"), "{}", bodies[2]);
    for (m, b) in sent.iter().zip(&bodies) {
        assert!(
            b.contains("+86*******8001") && !b.contains("13800138001"),
            "{b}"
        );
        assert_eq!(m["msisdn"], "+8613800138001");
    }
    // In security review a department has the case: the message has an ETA.
    assert!(bodies[2].contains("ETA "), "{}", bodies[2]);
    // Reading again, or with a second follower, enqueues nothing more.
    assert_eq!(follow_all(&pool, now).await, 0);
    assert_eq!(messages(&pool, id).await.len(), 3);
    // The idempotency key is derived from the transition.
    let events = case_store::timeline(&pool, id).await.unwrap();
    assert_eq!(
        sent[2]["idempotency_key"],
        format!("{}:{NOTIFICATION_TOPIC}", events[2].id)
    );
    // risk_cleared is not worth a message.
    let clean = open_case(&pool, "+8613800138002", "zh-CN").await;
    step(&pool, clean, CaseEvent::ProofsAccepted, &system(), None).await;
    follow_all(&pool, now).await;
    let sent = messages(&pool, clean).await;
    assert_eq!(sent.len(), 2);
    assert!(
        sent[0]["body"]
            .as_str()
            .unwrap()
            .contains("我们已收到您的复机申请"),
        "{sent:?}"
    );
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn an_event_committed_late_is_not_skipped(pool: PgPool) {
    let now = Utc::now();
    let a = open_case(&pool, "+8613800138003", "en").await;
    let b = open_case(&pool, "+8613800138004", "en").await;
    assert_eq!(follow_all(&pool, now).await, 2);
    // A writes first but commits last.
    let mut slow = pool.begin().await.unwrap();
    let actor = system();
    case_store::transition_in(
        &mut slow,
        TransitionRequest {
            case_id: a,
            expected_version: 1,
            event: CaseEvent::ProofsAccepted,
            actor: &actor,
            reason: None,
            fence: None,
            outbox: vec![],
        },
    )
    .await
    .unwrap();
    step(&pool, b, CaseEvent::ProofsAccepted, &system(), None).await;
    let done = follow(&pool, &config(), now).await.unwrap();
    assert_eq!(done.events, 0, "B must wait for the older writer A");
    assert!(done.pending);
    slow.commit().await.unwrap();
    assert_eq!(follow_all(&pool, now).await, 2);
    assert_eq!(messages(&pool, a).await.len(), 2);
    assert_eq!(messages(&pool, b).await.len(), 2);
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_breached_stage_escalates_at_its_sla_and_again_at_twice_it(pool: PgPool) {
    let now = Utc::now();
    let id = in_security_review(&pool, "+8613800138005", "en").await;
    follow_all(&pool, now).await;
    let timers = store::timers_of(&pool, id).await.unwrap();
    let pending: Vec<(&str, i16)> = timers
        .iter()
        .filter(|t| t.case_version == 3)
        .map(|t| (t.kind.as_str(), t.ordinal))
        .collect();
    assert_eq!(pending, vec![("escalation", 1), ("escalation", 2)]);

    // One hour in: nothing breached (the risk stage's 1-minute timers are stale).
    fire_due(&pool, &config(), now + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(escalation(&pool, id).await, 0);
    assert!(store::escalated_cases(&pool, 10).await.unwrap().is_empty());

    // 25 hours in: the 24-hour SLA ran out.
    fire_due(&pool, &config(), now + Duration::hours(25))
        .await
        .unwrap();
    assert_eq!(escalation(&pool, id).await, 1);
    let listed = store::escalated_cases(&pool, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].case_id, listed[0].escalated_state),
        (id, Some(CaseState::SecurityReview))
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'case.escalated' AND case_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    // Firing again at the same instant does nothing more.
    assert_eq!(
        fire_due(&pool, &config(), now + Duration::hours(25))
            .await
            .unwrap(),
        0
    );
    // 49 hours in: level 2.
    fire_due(&pool, &config(), now + Duration::hours(49))
        .await
        .unwrap();
    assert_eq!(escalation(&pool, id).await, 2);

    // The analyst decides: the breached stage is over, and so is the escalation.
    let analyst = Actor::agent(Role::Security, "analyst-1");
    step(
        &pool,
        id,
        CaseEvent::Rejected,
        &analyst,
        Some("Your explanation did not show why the flagged contacts are safe."),
    )
    .await;
    follow_all(&pool, now).await;
    assert_eq!(escalation(&pool, id).await, 0);
    assert!(store::escalated_cases(&pool, 10).await.unwrap().is_empty());
    let sent = messages(&pool, id).await;
    let refusal = sent.last().unwrap()["body"].as_str().unwrap();
    assert!(
        refusal.contains("refused") && refusal.contains("did not show why"),
        "{refusal}"
    );
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_case_waiting_on_the_subscriber_never_breaches_it_is_reminded_then_expires(pool: PgPool) {
    let now = Utc::now();
    let id = in_security_review(&pool, "+8613800138006", "zh-CN").await;
    let analyst = Actor::agent(Role::Security, "analyst-1");
    step(
        &pool,
        id,
        CaseEvent::InfoRequested,
        &analyst,
        Some("请上传您的工作证明。"),
    )
    .await;
    follow_all(&pool, now).await;
    let asked = messages(&pool, id).await;
    let body = asked.last().unwrap()["body"].as_str().unwrap().to_owned();
    assert!(
        body.contains("需要您补充信息：请上传您的工作证明。") && body.contains("逾期申请将失效"),
        "{body}"
    );

    // 25 h: the security stage's SLA would have run out, but the case waits on the subscriber.
    fire_due(&pool, &config(), now + Duration::hours(25))
        .await
        .unwrap();
    assert_eq!(escalation(&pool, id).await, 0);
    let sent = messages(&pool, id).await;
    assert_eq!(sent.len(), asked.len() + 1, "the 24-hour reminder");
    let reminder = sent.last().unwrap()["body"].as_str().unwrap();
    assert!(reminder.contains("提醒"), "{reminder}");
    assert_eq!(sent.last().unwrap()["kind"], "reminder");
    // 49 h: the second reminder, still no escalation.
    fire_due(&pool, &config(), now + Duration::hours(49))
        .await
        .unwrap();
    assert_eq!(messages(&pool, id).await.len(), asked.len() + 2);
    assert_eq!(escalation(&pool, id).await, 0);
    // Eight days: expired, and the subscriber is told so.
    fire_due(&pool, &config(), now + Duration::days(8))
        .await
        .unwrap();
    let case = load_case(&pool, id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::Expired);
    follow_all(&pool, now + Duration::days(8)).await;
    let last = messages(&pool, id).await.last().unwrap()["body"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(last.contains("申请已过期"), "{last}");
    // Nothing is left pending for an expired case.
    let left = store::timers_of(&pool, id)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.fired_at.is_none())
        .count();
    assert_eq!(left, 0);
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn the_clock_resumes_with_what_the_stage_had_left(pool: PgPool) {
    let id = in_security_review(&pool, "+8613800138007", "en").await;
    let analyst = Actor::agent(Role::Security, "analyst-1");
    step(
        &pool,
        id,
        CaseEvent::InfoRequested,
        &analyst,
        Some("Who is it?"),
    )
    .await;
    step(
        &pool,
        id,
        CaseEvent::CustomerResponded,
        &Actor::customer(),
        None,
    )
    .await;
    let now = Utc::now();
    follow_all(&pool, now).await;
    let resumed = store::timers_of(&pool, id)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.case_version == 5 && t.kind == "escalation" && t.ordinal == 1)
        .unwrap();
    let events = case_store::timeline(&pool, id).await.unwrap();
    // Resumed at v5 with (v4 - v3) already used: due 24 h minus that after v5.
    let used = events[3].at - events[2].at;
    assert_eq!(resumed.due_at, events[4].at + Duration::hours(24) - used);
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn an_unappealed_refusal_closes_after_fifteen_days(pool: PgPool) {
    let now = Utc::now();
    let id = in_security_review(&pool, "+8613800138008", "en").await;
    let analyst = Actor::agent(Role::Security, "analyst-1");
    step(&pool, id, CaseEvent::Rejected, &analyst, Some("Refused.")).await;
    follow_all(&pool, now).await;
    fire_due(&pool, &config(), now + Duration::days(14))
        .await
        .unwrap();
    assert_eq!(
        load_case(&pool, id).await.unwrap().unwrap().state,
        CaseState::Rejected
    );
    fire_due(&pool, &config(), now + Duration::days(16))
        .await
        .unwrap();
    assert_eq!(
        load_case(&pool, id).await.unwrap().unwrap().state,
        CaseState::Closed
    );
    follow_all(&pool, now).await;
    let last = messages(&pool, id).await.last().unwrap()["body"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(last.contains("your case is closed"), "{last}");
    // An appealed refusal's closing timer is discarded.
    let other = in_security_review(&pool, "+8613800138009", "en").await;
    step(
        &pool,
        other,
        CaseEvent::Rejected,
        &analyst,
        Some("Refused."),
    )
    .await;
    follow_all(&pool, now).await;
    step(&pool, other, CaseEvent::Appealed, &Actor::customer(), None).await;
    fire_due(&pool, &config(), now + Duration::days(16))
        .await
        .unwrap();
    assert_eq!(
        load_case(&pool, other).await.unwrap().unwrap().state,
        CaseState::SecurityReview
    );
    let stale = store::timers_of(&pool, other)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == "deadline" && t.state == CaseState::Rejected)
        .map(|t| t.outcome)
        .collect::<Vec<_>>();
    assert_eq!(stale, vec![Some("stale".to_owned())]);
}

/// The timers of every event of a pass go in one statement at its end: each case
/// gets those of the states it entered, a case with two events in the pass gets both
/// versions', the pass reports what it wrote and the earliest due time, and writing the
/// same plans again adds nothing.
#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn one_pass_writes_the_timers_of_every_event_it_handled(pool: PgPool) {
    let now = Utc::now();
    let a = open_case(&pool, "+8613800138021", "en").await;
    let b = open_case(&pool, "+8613800138022", "en").await;
    let c = in_security_review(&pool, "+8613800138023", "en").await;
    let done = follow_all_with(&pool, &config(), now).await;
    let (timers, earliest) = (done.timers, done.earliest_due);
    let rows: Vec<(uuid::Uuid, i32, String, chrono::DateTime<Utc>)> = sqlx::query_as(
        "SELECT case_id, case_version, state::text, due_at FROM case_timers ORDER BY due_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len() as u64, timers, "the pass counts what it wrote");
    assert_eq!(earliest, rows.first().map(|r| r.3));
    let versions = |case| {
        let mut v: Vec<(i32, String)> = rows
            .iter()
            .filter(|r| r.0 == case)
            .map(|r| (r.1, r.2.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let opened = vec![(1, "awaiting_identity".to_owned())];
    assert_eq!(versions(a), opened);
    assert_eq!(versions(b), opened);
    let c_versions = versions(c);
    assert!(
        c_versions.contains(&(1, "awaiting_identity".to_owned())),
        "{c_versions:?}"
    );
    assert!(
        c_versions.contains(&(3, "security_review".to_owned())),
        "{c_versions:?}"
    );
    // The same plans again: every timer is already there.
    let sla = SlaConfig::default();
    let plans: Vec<store::TimerPlan> = [a, b]
        .into_iter()
        .map(|case_id| store::TimerPlan {
            case_id,
            version: 1,
            state: CaseState::AwaitingIdentity,
            timers: case_domain::sla::plan_timers(
                CaseState::AwaitingIdentity,
                now,
                chrono::Duration::zero(),
                &sla,
            ),
        })
        .collect();
    assert!(plans.iter().all(|p| !p.timers.is_empty()));
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(
        store::insert_timer_plans(&mut conn, &plans).await.unwrap(),
        0
    );
    assert_eq!(store::insert_timer_plans(&mut conn, &[]).await.unwrap(), 0);
}

/// A pass writes the messages of all its openings together, held for the window,
/// with what one by one would give: every case its own message, and a number that
/// opened more cases than its budget of anonymous messages allows told only that
/// many times (counted in the order of the openings), whatever the other numbers do.
#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn one_pass_sends_the_messages_of_every_opening_within_each_numbers_budget(pool: PgPool) {
    let windowed = TimersConfig::from_lookup(|k| {
        (k == "REACTIVATION_MESSAGE_WINDOW_SECONDS").then(|| "20".into())
    })
    .unwrap();
    let busy = "+8613800138041";
    let budget = case_domain::identity::MAX_ANONYMOUS_MESSAGES_PER_NUMBER;
    let mut busy_cases = Vec::new();
    let mut others = Vec::new();
    for i in 0..=budget {
        busy_cases.push(open_case(&pool, busy, "en").await);
        others.push(open_case(&pool, &format!("+86138001381{i:02}"), "zh-CN").await);
    }
    let done = follow_all_with(&pool, &windowed, Utc::now()).await;
    assert_eq!(done.events, busy_cases.len() + others.len());
    assert_eq!(done.messages, busy_cases.len() + others.len() - 1);
    for (i, case) in busy_cases.iter().enumerate() {
        let told = messages(&pool, *case).await.len();
        let expected = usize::from(i < usize::try_from(budget).unwrap());
        assert_eq!(told, expected, "the busy number's opening {i}");
    }
    for case in &others {
        let told = messages(&pool, *case).await;
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0]["body"].as_str().is_some_and(|b| !b.is_empty()));
    }
    let (uses, held): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM number_budget_uses WHERE msisdn = $1),
                (SELECT count(*) FROM outbox WHERE topic = $2 AND delivered_at IS NULL
                   AND available_at > now() + interval '10 seconds')",
    )
    .bind(busy)
    .bind(NOTIFICATION_TOPIC)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(uses, budget, "the busy number's budget, spent once");
    assert_eq!(
        held as usize, done.messages,
        "every message held for its window"
    );
    // Following again finds nothing to do and writes nothing twice.
    let again = follow_all_with(&pool, &windowed, Utc::now()).await;
    assert_eq!((again.events, again.messages), (0, 0));
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_restart_loses_no_timer(pool: PgPool) {
    let now = Utc::now();
    // Reminders before the unproven request lapses (a day), so it has three timers.
    let lookup =
        |name: &str| (name == "REACTIVATION_REMINDER_MINUTES").then(|| "60,120".to_owned());
    let configured = TimersConfig::from_lookup(lookup).unwrap();
    let id = open_case(&pool, "+8613800138010", "en").await;
    follow_all_with(&pool, &configured, now).await;
    // A firer that crashed mid-way: it claimed a timer, then died before committing.
    let mut crashed = pool.begin().await.unwrap();
    let claimed = store::claim_due_timer(&mut crashed, now + Duration::days(8))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.case_id, id);
    // While it is held, another firer skips it (and finds the next one).
    let mut other = pool.begin().await.unwrap();
    let next = store::claim_due_timer(&mut other, now + Duration::days(8))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(next.id, claimed.id);
    drop(other);
    drop(crashed);

    // "Restart": a new process is a new pool and a new configuration; the timers are rows.
    let restarted = PgPool::connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let fresh = TimersConfig::from_lookup(lookup).unwrap();
    assert_eq!(fresh.sla, configured.sla);
    assert_ne!(fresh.sla, SlaConfig::default());
    let fired = fire_due(&restarted, &fresh, now + Duration::days(8))
        .await
        .unwrap();
    assert_eq!(fired, 3, "two reminders and the expiry");
    assert_eq!(
        load_case(&restarted, id).await.unwrap().unwrap().state,
        CaseState::Expired
    );
    // The sweep arms cases that never had timers (older than the follower).
    let legacy = open_case(&pool, "+8613800138011", "en").await;
    sqlx::query("DELETE FROM case_timers WHERE case_id = $1")
        .bind(legacy)
        .execute(&pool)
        .await
        .unwrap();
    let armed = case_timers::fire::arm_unarmed(
        &restarted,
        &fresh,
        now + Duration::minutes(5),
        Duration::minutes(1),
    )
    .await
    .unwrap();
    assert_eq!(armed, 3);
}

async fn start_simulator(pool: &PgPool) -> (String, Shutdown) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    carrier_sim::prepare(pool).await.unwrap();
    tokio::spawn(carrier_sim::run(listener, pool.clone(), shutdown.clone()));
    (url, shutdown)
}

async fn add_subscriber(sim: &str, msisdn: &str, backup: Option<&str>) {
    let contacts: Vec<Value> = backup
        .iter()
        .map(|a| json!({"kind": "sms", "address": a}))
        .collect();
    let body = json!({
        "msisdn": msisdn, "full_name": "王小明", "id_number": "11010519491231002X",
        "service_password": "pw-secret-1", "backup_contacts": contacts,
        "recent_contacts": [], "signals": {"fraud_linked_contacts": 0, "sms_peak_per_hour": 0, "intl_calls_24h": 0},
        "status": "suspended", "suspension_reason": "real_name_reverification",
    });
    let answer = reqwest::Client::new()
        .post(format!("{sim}/sim/subscribers"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201, "{}", answer.text().await.unwrap());
}

async fn sim_outbox(sim: &str, to: &str) -> Vec<Value> {
    reqwest::Client::new()
        .get(format!("{sim}/sim/outbox"))
        .query(&[("to", to)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn deliver_all(pool: &PgPool, handler: &NotificationHandler) -> usize {
    let mut n = 0;
    while process_one_message(pool, handler, "test-deliverer", StdDuration::from_secs(30))
        .await
        .unwrap()
    {
        n += 1;
    }
    n
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn messages_reach_a_contact_on_file_once_even_when_delivered_twice(pool: PgPool) {
    let (sim, shutdown) = start_simulator(&pool).await;
    add_subscriber(&sim, "+8613800138012", Some("+8618800000012")).await;
    let carrier = Arc::new(HttpCarrier::new(&sim, StdDuration::from_secs(5)).unwrap());
    let handler = NotificationHandler::new(carrier);
    let id = in_security_review(&pool, "+8613800138012", "zh-CN").await;
    follow_all(&pool, Utc::now()).await;
    assert_eq!(deliver_all(&pool, &handler).await, 3);
    let inbox = sim_outbox(&sim, "+8618800000012").await;
    assert_eq!(inbox.len(), 3, "{inbox:?}");
    assert!(
        inbox
            .iter()
            .all(|m| m["body"].as_str().unwrap().contains("【复机服务】"))
    );

    // A crash after the carrier accepted but before the outbox row was marked:
    // the row is delivered again with the same key, and the carrier sends nothing new.
    sqlx::query("UPDATE outbox SET delivered_at = NULL WHERE case_id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(deliver_all(&pool, &handler).await, 3);
    assert_eq!(sim_outbox(&sim, "+8618800000012").await.len(), 3);

    // No contact on file: given up, not retried forever.
    add_subscriber(&sim, "+8613800138013", None).await;
    let lonely = open_case(&pool, "+8613800138013", "en").await;
    follow_all(&pool, Utc::now()).await;
    assert_eq!(deliver_all(&pool, &handler).await, 1);
    let failed: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT failed_at FROM outbox WHERE case_id = $1")
            .bind(lonely)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(failed.is_some());
    shutdown.trigger();
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_suspension_notice_tells_why_what_to_do_and_where_once(pool: PgPool) {
    let (sim, shutdown) = start_simulator(&pool).await;
    add_subscriber(&sim, "+8613800138014", Some("+8618800000014")).await;
    let carrier = Arc::new(HttpCarrier::new(&sim, StdDuration::from_secs(5)).unwrap());
    let handler = NotificationHandler::new(carrier);
    let msisdn = Msisdn::parse("+8613800138014").unwrap();
    let notice = SuspensionNotice {
        msisdn: &msisdn,
        reason: "fraud_linked_contacts",
        locale: "zh-CN",
        notice_id: "msg_2fQ1",
        start_url: &config().start_url,
    };
    let mut conn = pool.acquire().await.unwrap();
    assert!(
        notify_suspension(&mut conn, &notice)
            .await
            .unwrap()
            .is_some()
    );
    // The same webhook again: nothing new.
    assert!(
        notify_suspension(&mut conn, &notice)
            .await
            .unwrap()
            .is_none()
    );
    drop(conn);
    assert_eq!(deliver_all(&pool, &handler).await, 1);
    let inbox = sim_outbox(&sim, "+8618800000014").await;
    assert_eq!(inbox.len(), 1);
    let body = inbox[0]["body"].as_str().unwrap();
    assert!(
        body.contains("保护性停机")
            && body.contains("原因及办理见")
            && body.contains(case_timers::config::DEFAULT_START_URL)
            && body.contains("尾号8014"),
        "{body}"
    );
    shutdown.trigger();
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn the_eta_uses_the_slas_and_the_live_queue(pool: PgPool) {
    let id = in_security_review(&pool, "+8613800138015", "en").await;
    let case = load_case(&pool, id).await.unwrap().unwrap();
    let timeline = case_store::timeline(&pool, id).await.unwrap();
    let now = case.state_entered_at + Duration::hours(1);
    // No history worth a median: 24 h of review, 30 min of provisioning.
    let eta = case_workflows::eta::case_eta(&pool, &config().sla, &case, &timeline, now)
        .await
        .unwrap();
    assert_eq!(
        eta,
        case.state_entered_at + Duration::hours(24) + Duration::minutes(30)
    );
    // The live figures see the queue.
    let stats = case_workflows::eta::read_live_stats(&pool, Utc::now())
        .await
        .unwrap();
    assert_eq!(stats.stages[&CaseState::SecurityReview].depth, 1);
    assert_eq!(stats.stages[&CaseState::RiskAssessment].samples, 1);
    // Waiting on the subscriber: no ETA.
    let waiting = open_case(&pool, "+8613800138016", "en").await;
    let case = load_case(&pool, waiting).await.unwrap().unwrap();
    let timeline = case_store::timeline(&pool, waiting).await.unwrap();
    assert_eq!(
        case_workflows::eta::case_eta(&pool, &config().sla, &case, &timeline, Utc::now()).await,
        None
    );
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn transitions_within_the_window_collapse_into_one_message_about_the_latest(pool: PgPool) {
    let windowed = TimersConfig::from_lookup(|k| {
        (k == "REACTIVATION_MESSAGE_WINDOW_SECONDS").then(|| "20".into())
    })
    .unwrap();
    let follow_windowed = async |pool: &PgPool| {
        let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
        loop {
            let done = follow(pool, &windowed, Utc::now()).await.unwrap();
            if done.events == 0 && !done.pending {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "never caught up");
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
    };
    let rows = async |pool: &PgPool, id: Uuid| {
        sqlx::query_as::<_, (Uuid, Option<Uuid>, bool, bool)>(
            "SELECT id, superseded_by, delivered_at IS NULL, available_at > now() + interval '10 seconds'
             FROM outbox WHERE case_id = $1 AND topic = $2 ORDER BY created_at, id",
        )
        .bind(id)
        .bind(NOTIFICATION_TOPIC)
        .fetch_all(pool)
        .await
        .unwrap()
    };
    // opened, proofs_accepted, risk_flagged within a second: one message remains,
    // about the latest state, held until its window ends.
    let id = in_security_review(&pool, "+8613800138031", "en").await;
    follow_windowed(&pool).await;
    let outbox = rows(&pool, id).await;
    assert_eq!(outbox.len(), 3, "{outbox:?}");
    let last = outbox[2].0;
    // Each was replaced by the next, never sent.
    for (i, (_, by, pending, _)) in outbox[..2].iter().enumerate() {
        assert_eq!(*by, Some(outbox[i + 1].0), "{outbox:?}");
        assert!(!pending);
    }
    assert_eq!(outbox[2].1, None);
    assert!(outbox[2].2 && outbox[2].3, "held: {outbox:?}");
    let held = messages(&pool, id).await;
    assert!(held[2]["body"].as_str().unwrap().contains("security"));
    // Nothing is due yet: a deliverer claims nothing of the case.
    let topics = vec![NOTIFICATION_TOPIC.to_owned()];
    let claimed = case_store::claim_outbox(&pool, &topics, "d1", StdDuration::from_secs(30))
        .await
        .unwrap();
    assert!(
        claimed.as_ref().is_none_or(|c| c.case_id != Some(id)),
        "{claimed:?}"
    );

    // A message a deliverer already took is never replaced: the next one follows it.
    sqlx::query(
        "UPDATE outbox SET attempts = 1, lease_owner = 'd2', lease_expires_at = now() + interval '1 minute'
         WHERE id = $1",
    )
    .bind(last)
    .execute(&pool)
    .await
    .unwrap();
    step(
        &pool,
        id,
        CaseEvent::InfoRequested,
        &Actor::agent(Role::Security, "analyst"),
        Some("Who is the contact you called most?"),
    )
    .await;
    follow_windowed(&pool).await;
    let outbox = rows(&pool, id).await;
    assert_eq!(outbox.len(), 4, "{outbox:?}");
    assert_eq!(outbox[2].1, None, "the claimed message stays: {outbox:?}");
    assert!(outbox[2].2 && outbox[3].2);
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn an_event_whose_rows_do_not_decode_is_skipped_not_a_stall(pool: PgPool) {
    let now = Utc::now();
    let bad = open_case(&pool, "+8613800138051", "en").await;
    step(&pool, bad, CaseEvent::ProofsAccepted, &system(), None).await;
    assert_eq!(follow_all(&pool, now).await, 2);
    // Its risk assessment written in a shape the code does not read (here by hand):
    // the risk_flagged message needs that row.
    sqlx::query(
        "INSERT INTO risk_assessments (id, case_id, tier, reason_codes, needs, signals, assessed_at)
         VALUES ($1, $2, 'medium', '{}', '{}', '{\"fraud_linked_contacts\": 2}', now())",
    )
    .bind(Uuid::now_v7())
    .bind(bad)
    .execute(&pool)
    .await
    .unwrap();
    step(
        &pool,
        bad,
        CaseEvent::RiskFlagged,
        &system(),
        Some("risk tier medium"),
    )
    .await;
    // Another case's transitions come after it in the log.
    let good = in_security_review(&pool, "+8613800138052", "en").await;

    // The follower passes over that one event and handles everything after it, once.
    assert_eq!(follow_all(&pool, now).await, 3, "4 events, 1 skipped");
    assert_eq!(
        messages(&pool, bad).await.len(),
        2,
        "opened and proofs_accepted"
    );
    assert_eq!(messages(&pool, good).await.len(), 3);
    assert_eq!(follow_all(&pool, now).await, 0);
    // Once the row is repaired, the case's next transition is handled as usual.
    sqlx::query(
        "UPDATE risk_assessments SET signals = signals || '{\"sms_peak_per_hour\": 0,
             \"intl_calls_24h\": 0, \"suspension_reason\": null}' WHERE case_id = $1",
    )
    .bind(bad)
    .execute(&pool)
    .await
    .unwrap();
    step(&pool, bad, CaseEvent::Cancelled, &Actor::customer(), None).await;
    assert_eq!(follow_all(&pool, now).await, 1);
    assert_eq!(messages(&pool, bad).await.len(), 3);
}

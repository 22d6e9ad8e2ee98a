//! The complaint clock with the legal 15 days and an injected clock (no test
//! sleeps): a 12300 referral logged by an agent is not escalated before its due
//! time, is escalated once after it (the subscriber's message names 12300), and an
//! answer within the time tells the subscriber without naming the regulator.

use case_domain::{Actor, Role, sla::SlaConfig};
use case_store::testing::open_case_in as open_case;
use case_workflows::{
    agent::Agent,
    complaints::{LogRequest, answer, escalate_overdue, log},
};
use chrono::{Duration, Utc};
use serde_json::Value;
use sqlx::PgPool;

async fn complaint_messages(pool: &PgPool) -> Vec<(String, Value)> {
    sqlx::query_as::<_, (String, Value)>(
        "SELECT dedupe_key, payload FROM outbox WHERE dedupe_key LIKE 'complaint:%' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_referral_escalates_once_after_fifteen_days_and_names_12300(pool: PgPool) {
    let case = open_case(&pool, "+8613800138070", "zh-CN").await;
    let id = case_store::agents::create_agent(&pool, "cs.clock", "$argon2id$unused", &[Role::Cs])
        .await
        .unwrap();
    let agent = Agent {
        id,
        username: "cs.clock".into(),
        roles: vec![Role::Cs],
    };
    let window = SlaConfig::default().complaint_answer_window();
    assert_eq!(window, Duration::days(15));
    let row = log(
        &pool,
        &agent,
        &LogRequest {
            channel: "regulator".into(),
            text: "12300 forwarded: the subscriber waited a week.".into(),
            case_id: Some(case),
            reference: Some("12300-2026-77".into()),
            ..LogRequest::default()
        },
        window,
    )
    .await
    .unwrap();
    assert_eq!(row.due_at - row.created_at, Duration::days(15));
    let timers = Actor::system("case-timers");
    let now = Utc::now();

    assert!(
        !escalate_overdue(&pool, &timers, now + Duration::days(14))
            .await
            .unwrap()
    );
    assert!(complaint_messages(&pool).await.is_empty());

    let late = row.due_at + Duration::minutes(1);
    assert!(escalate_overdue(&pool, &timers, late).await.unwrap());
    assert!(
        !escalate_overdue(&pool, &timers, late).await.unwrap(),
        "once"
    );
    let messages = complaint_messages(&pool).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].0.contains(":overdue:"));
    let body = messages[0].1["body"].as_str().unwrap();
    assert!(body.contains("12300") && body.contains("投诉"), "{body}");
    assert!(!body.contains("13800138070"), "masked: {body}");

    // Answered (by the database's clock, within the 15 days): told, 12300 not named.
    let actor = agent.actor(Role::Cs);
    answer(&pool, &actor, agent.id, None, row.id, "已为您加急处理。")
        .await
        .unwrap();
    let messages = complaint_messages(&pool).await;
    assert_eq!(messages.len(), 2);
    let body = messages[1].1["body"].as_str().unwrap();
    assert!(body.contains("已为您加急处理"), "{body}");
    assert!(!body.contains("12300"), "{body}");
    // Answered complaints are never escalated.
    assert!(
        !escalate_overdue(&pool, &timers, late + Duration::days(30))
            .await
            .unwrap()
    );
}

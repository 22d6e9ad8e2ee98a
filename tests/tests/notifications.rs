//! Notifications, SLA escalation and expiry over the real processes, the `timers`
//! service included. Nothing sleeps to make time pass: the SLA and the customer
//! window are configured to zero minutes, so the timers are due at once.

use std::time::{Duration, Instant};

use case_domain::{CaseEvent, notice::notifies_subscriber};
use serde_json::{Value, json};
use system_tests::{Stack, StackOptions, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

/// Waits until `to` has received at least `n` messages and the work that could send
/// more is over (the timers' follower has read every event and no subscriber message
/// waits in the outbox), then returns them all: a test may then assert there are no more.
async fn wait_for_messages(stack: &Stack, to: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (unread, undelivered): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM case_events e, event_cursors c
                             WHERE c.consumer = 'case-timers' AND e.tx_id IS NOT NULL
                               AND (e.tx_id, e.seq) > (c.tx_id, c.seq)),
                    EXISTS (SELECT 1 FROM outbox WHERE topic LIKE 'notification.%'
                               AND delivered_at IS NULL AND failed_at IS NULL)",
        )
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        // Status notifications only: the one-time codes the ladder asks for go to the
        // same contact (【复机验证】).
        let messages: Vec<Value> = stack
            .sim_outbox(to)
            .await
            .into_iter()
            .filter(|m| !m["body"].as_str().unwrap_or("").starts_with("【复机验证】"))
            .collect();
        if messages.len() >= n && !unread && !undelivered {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} messages arrived (events unread by the timers: {unread}, \
             messages undelivered: {undelivered}): {messages:#?}",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event_of(entry: &Value) -> CaseEvent {
    serde_json::from_value(entry["event"].clone()).expect("a known event")
}

#[tokio::test]
async fn every_customer_relevant_transition_sends_one_message_in_the_subscribers_language() {
    let stack = Stack::start().await;
    stack.create_agent("analyst.one", &["security"]);
    let s = TestSubscriber {
        locale: "zh-CN",
        ..TestSubscriber::flagged(300)
    };
    let backup = s.backup_sms.clone().unwrap();
    let (case, token, review) = stack.case_in_security_review(&s).await;
    let analyst = stack.login("analyst.one").await;
    let (status, view) = stack
        .act(
            &analyst,
            &case,
            "approve_partly",
            review["version"].as_i64().unwrap(),
            json!({"reason": "inbound first"}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let partial = stack
        .wait_for_state(&case, &token, "partially_reactivated", SETTLE)
        .await;
    let (status, view) = stack
        .act(
            &analyst,
            &case,
            "approve",
            partial["version"].as_i64().unwrap(),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let done = stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;

    let timeline = done["timeline"].as_array().unwrap();
    let relevant: Vec<CaseEvent> = timeline
        .iter()
        .map(event_of)
        .filter(|e| notifies_subscriber(*e))
        .collect();
    assert_eq!(
        relevant,
        [
            CaseEvent::Opened,
            CaseEvent::ProofsAccepted,
            CaseEvent::RiskFlagged,
            CaseEvent::PartlyApproved,
            CaseEvent::PartlyRestored,
            CaseEvent::Approved,
            CaseEvent::Restored,
        ]
    );
    let messages = wait_for_messages(&stack, &backup, relevant.len()).await;
    let bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies.len(), relevant.len(), "{bodies:#?}");
    for body in &bodies {
        assert!(body.starts_with("【复机服务】尾号"), "{body}");
        assert!(case_domain::sms::fits_one(body), "one SMS segment: {body}");
        assert!(
            !body.contains(&s.msisdn[3..]),
            "the number is masked: {body}"
        );
        assert!(!body.contains(&s.full_name) && !body.contains(&s.id_number));
    }
    let expected = [
        "我们已收到您的复机申请",
        "身份已核验",
        "安全人员",
        "部分通过",
        "已恢复来电和短信接收",
        "您的申请已通过",
        "您的号码已恢复正常使用",
    ];
    for (body, words) in bodies.iter().zip(expected) {
        assert!(body.contains(words), "expected {words}: {body}");
    }
    // While a department had the case, the message said when it should be done.
    assert!(bodies[2].contains("预计北京时间"), "{}", bodies[2]);
    // The final message names the complaint path.
    assert!(bodies[6].contains("投诉"), "{}", bodies[6]);
    // The subscriber's status shows an ETA computed the same way.
    assert!(review["eta"].is_string(), "{review}");
    assert!(done["eta"].is_null());
}

#[tokio::test]
async fn a_breached_review_escalates_to_the_supervisors_queue() {
    let stack = Stack::start_with(StackOptions {
        env: vec![(
            "REACTIVATION_SLA_SECURITY_REVIEW_MINUTES".into(),
            "0".into(),
        )],
        ..StackOptions::default()
    })
    .await;
    stack.create_agent("boss.one", &["supervisor"]);
    stack.create_agent("analyst.one", &["security"]);
    let s = TestSubscriber::flagged(301);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_verified_case(&s).await;
    stack
        .wait_for_state(&case, &token, "security_review", SETTLE)
        .await;

    let boss = stack.login("boss.one").await;
    let url = format!("{}/v1/agent/escalations", stack.url("gateway"));
    let deadline = Instant::now() + SETTLE;
    let listed = loop {
        let (status, body) = stack.call(stack.http.get(&url).bearer_auth(&boss)).await;
        assert_eq!(status, 200, "{body}");
        let cases = body["cases"].as_array().cloned().unwrap_or_default();
        if let Some(c) = cases.into_iter().find(|c| c["case_id"] == case.as_str()) {
            break c;
        }
        assert!(Instant::now() < deadline, "never escalated: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listed["state"], "security_review");
    assert_eq!(listed["escalated_state"], "security_review");
    assert!(listed["escalation_level"].as_i64().unwrap() >= 1);
    assert!(listed["msisdn"].as_str().unwrap().starts_with("+86*******"));

    // Only supervisors see the escalation queue.
    let analyst = stack.login("analyst.one").await;
    let (status, problem) = stack.call(stack.http.get(&url).bearer_auth(&analyst)).await;
    assert_eq!(status, 403, "{problem}");
    let (status, _) = stack.call(stack.http.get(&url)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_subscriber_who_never_proves_identity_expires_and_is_told() {
    let stack = Stack::start_with(StackOptions {
        env: vec![(
            "REACTIVATION_EXPIRY_AWAITING_IDENTITY_MINUTES".into(),
            "0".into(),
        )],
        ..StackOptions::default()
    })
    .await;
    let s = TestSubscriber::clean(302);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    let expired = stack.wait_for_state(&case, &token, "expired", SETTLE).await;
    let last = expired["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["actor"], "system");
    let messages = wait_for_messages(&stack, s.backup_sms.as_deref().unwrap(), 2).await;
    let bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert!(
        bodies[0].contains("we received your request"),
        "{}",
        bodies[0]
    );
    assert!(bodies[1].contains("your request expired"), "{}", bodies[1]);
}

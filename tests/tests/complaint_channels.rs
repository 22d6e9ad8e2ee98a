//! Complaints from any channel, over the real processes: an agent logs a 12300
//! referral against a case and a hotline complaint against a number with no case;
//! the answer clock (configured to zero minutes, so nothing sleeps) runs out, the
//! timers service escalates both into the supervisors' queue and tells each
//! subscriber that 12300 is the next avenue; an agent answers and the subscriber is
//! told the answer in their language. Bad input changes nothing.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use system_tests::{Stack, StackOptions, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

async fn post(stack: &Stack, token: &str, path: &str, body: Value) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .post(format!("{}{path}", stack.url("gateway")))
                .bearer_auth(token)
                .json(&body),
        )
        .await
}

async fn get(stack: &Stack, token: &str, path: &str) -> Value {
    let (status, body) = stack
        .call(
            stack
                .http
                .get(format!("{}{path}", stack.url("gateway")))
                .bearer_auth(token),
        )
        .await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Waits for a message to `to` whose body contains every one of `words`.
async fn message_with(stack: &Stack, to: &str, words: &[&str]) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let messages = stack.sim_outbox(to).await;
        if let Some(body) = messages
            .iter()
            .filter_map(|m| m["body"].as_str())
            .find(|b| words.iter().all(|w| b.contains(w)))
        {
            return body.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no message to {to} with {words:?}: {messages:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the escalation queue lists complaint `id`.
async fn escalated_complaint(stack: &Stack, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let queue = get(stack, token, "/v1/agent/escalations").await;
        if let Some(k) = queue["complaints"]
            .as_array()
            .and_then(|ks| ks.iter().find(|k| k["complaint_id"] == id))
        {
            return k.clone();
        }
        assert!(Instant::now() < deadline, "never escalated: {queue}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(stack: &Stack, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_12300_referral_runs_its_clock_escalates_when_overdue_and_the_subscriber_is_told_the_answer()
 {
    let stack = Stack::start_with(StackOptions {
        env: vec![("REACTIVATION_COMPLAINT_ANSWER_MINUTES".into(), "0".into())],
        ..StackOptions::default()
    })
    .await;
    stack.create_agent("cs.one", &["cs"]);
    stack.create_agent("analyst.one", &["security"]);
    stack.create_agent("boss.one", &["supervisor"]);
    let cs = stack.login("cs.one").await;
    let analyst = stack.login("analyst.one").await;
    let boss = stack.login("boss.one").await;

    let s = TestSubscriber {
        locale: "zh-CN",
        ..TestSubscriber::flagged(720)
    };
    let contact = s.backup_sms.clone().unwrap();
    let (case, token, _) = stack.case_in_security_review(&s).await;

    // Bad input: problem+json, nothing logged.
    let referral = json!({
        "channel": "regulator", "case_id": case, "reference": "12300-GX-2026-0815",
        "text": "The subscriber complained to 12300: nobody handles the reactivation.",
    });
    let mut bad = Vec::new();
    for (field, value) in [
        ("reference", Value::Null),
        ("channel", json!("web")),
        ("channel", json!("weibo")),
        ("text", json!("")),
        ("msisdn", json!("+8613900009999")),
        ("locale", json!("fr")),
        ("unknown", json!(1)),
    ] {
        let mut body = referral.clone();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(field);
        } else {
            body[field] = value;
        }
        bad.push((body, 422));
    }
    let mut unknown_case = referral.clone();
    unknown_case["case_id"] = json!(uuid::Uuid::now_v7());
    bad.push((unknown_case, 404));
    bad.push((
        json!({"channel": "hotline", "text": "no case, no number"}),
        422,
    ));
    for (body, want) in &bad {
        let (status, problem) = post(&stack, &cs, "/v1/agent/complaints", body.clone()).await;
        assert_eq!(status, *want, "{body}: {problem}");
        assert_eq!(
            problem["status"].as_u64(),
            Some(u64::from(*want)),
            "{problem}"
        );
    }
    let (status, _) = post(&stack, &analyst, "/v1/agent/complaints", referral.clone()).await;
    assert_eq!(status, 403, "security analysts do not log complaints");
    assert_eq!(
        count(&stack, "SELECT count(*) FROM case_complaints").await,
        0
    );

    // The referral, and a hotline call about a number that has no case.
    let (status, logged) = post(&stack, &cs, "/v1/agent/complaints", referral).await;
    assert_eq!(status, 201, "{logged}");
    assert_eq!(logged["case_id"], case.as_str());
    assert_eq!(logged["channel"], "regulator");
    assert_eq!(logged["reference"], "12300-GX-2026-0815");
    assert_eq!(logged["logged_by"], "cs.one");
    assert!(logged["msisdn"].as_str().unwrap().starts_with("+86*******"));
    assert_eq!(
        logged["due_at"], logged["created_at"],
        "a clock of zero minutes"
    );
    let referral_id = logged["complaint_id"].as_str().unwrap().to_owned();

    let caller = TestSubscriber::clean(721);
    stack.add_subscriber(&caller).await;
    let caller_contact = caller.backup_sms.clone().unwrap();
    let (status, hotline) = post(
        &stack,
        &boss,
        "/v1/agent/complaints",
        json!({"channel": "hotline", "msisdn": caller.msisdn, "locale": "en",
               "text": "Bounced between three departments, nobody answerable."}),
    )
    .await;
    assert_eq!(status, 201, "{hotline}");
    assert!(hotline.get("case_id").is_none(), "{hotline}");
    assert!(
        !hotline.to_string().contains(&caller.msisdn[3..]),
        "masked: {hotline}"
    );
    let hotline_id = hotline["complaint_id"].as_str().unwrap().to_owned();

    // The clock runs out: both are escalated and each subscriber is told of 12300.
    let listed = escalated_complaint(&stack, &boss, &referral_id).await;
    assert_eq!(listed["overdue"], true);
    assert_eq!(listed["regulator_eligible"], true);
    assert!(listed["escalated_at"].is_string());
    assert_eq!(listed["case_state"], "security_review");
    let listed = escalated_complaint(&stack, &boss, &hotline_id).await;
    assert!(listed["case_state"].is_null());
    let overdue = message_with(&stack, &contact, &["12300", "投诉"]).await;
    assert!(!overdue.contains(&s.msisdn[3..]), "masked: {overdue}");
    let overdue_en = message_with(&stack, &caller_contact, &["12300", "complaint"]).await;
    assert!(overdue_en.contains("no answer"), "{overdue_en}");
    // The complaint queue lists them oldest due first.
    let queue = get(&stack, &boss, "/v1/agent/complaints").await;
    let ids: Vec<&str> = queue["complaints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["complaint_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [referral_id.as_str(), hotline_id.as_str()]);

    // An agent answers: the subscriber is told the answer, and (late) of 12300.
    let (status, problem) = post(
        &stack,
        &cs,
        &format!("/v1/agent/cases/{case}/complaints/{referral_id}/answer"),
        json!({"answer": ""}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let (status, answered) = post(
        &stack,
        &cs,
        &format!("/v1/agent/cases/{case}/complaints/{referral_id}/answer"),
        json!({"answer": "安全审核已加急处理，今日内完成。"}),
    )
    .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["status"], "answered");
    let told = message_with(&stack, &contact, &["安全审核已加急处理", "12300"]).await;
    assert!(told.starts_with("【复机服务】"), "{told}");
    let (status, again) = post(
        &stack,
        &cs,
        &format!("/v1/agent/complaints/{referral_id}/answer"),
        json!({"answer": "twice"}),
    )
    .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("complaint_already_answered"))
    );

    let (status, answered) = post(
        &stack,
        &cs,
        &format!("/v1/agent/complaints/{hotline_id}/answer"),
        json!({"answer": "We apologise; a supervisor now owns your request."}),
    )
    .await;
    assert_eq!(status, 200, "{answered}");
    message_with(
        &stack,
        &caller_contact,
        &["a supervisor now owns your request", "12300"],
    )
    .await;

    // The subscriber sees the answer on the case, not who logged it or the reference.
    let (status, mine) = stack
        .call(
            stack
                .http
                .get(format!(
                    "{}/v1/cases/{case}/complaints",
                    stack.url("gateway")
                ))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(status, 200, "{mine}");
    let k = &mine["complaints"][0];
    assert_eq!(k["status"], "answered");
    assert_eq!(k["regulator_eligible"], true);
    assert!(
        k.get("logged_by").is_none() && k.get("reference").is_none(),
        "{k}"
    );

    // Answered complaints leave the escalation queue; everything is audited.
    let queue = get(&stack, &boss, "/v1/agent/escalations").await;
    assert!(
        queue["complaints"].as_array().unwrap().is_empty(),
        "{queue}"
    );
    for (action, n) in [
        ("complaint.log", 2),
        ("complaint.escalated", 2),
        ("complaint.answer", 2),
    ] {
        let got = count(
            &stack,
            &format!("SELECT count(*) FROM audit_log WHERE action = '{action}'"),
        )
        .await;
        assert_eq!(got, n, "{action}");
    }
    let (ok, out) = stack.verify_audit();
    assert!(ok, "{out}");
}

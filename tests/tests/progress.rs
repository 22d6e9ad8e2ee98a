//! Per-department progress and expedited handling (issue 14 item 5), and fewer,
//! shorter messages (item 7): over the real processes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use system_tests::{Stack, StackOptions, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

async fn expedite(stack: &Stack, case: &str, token: &str, reason: &str) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .post(format!("{}/v1/cases/{case}/expedite", stack.url("gateway")))
                .bearer_auth(token)
                .json(&json!({ "reason": reason })),
        )
        .await
}

fn steps(status: &Value) -> Vec<(String, String)> {
    status["departments"]
        .as_array()
        .expect("departments")
        .iter()
        .map(|d| {
            (
                d["state"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_status_lists_the_departments_and_an_expedite_request_raises_the_case_once() {
    let stack = Stack::start().await;
    stack.create_agent("analyst.one", &["security"]);
    // Two flagged cases in security review; the first entered it earlier.
    let (first, _, _) = stack
        .case_in_security_review(&TestSubscriber::flagged(710))
        .await;
    let s = TestSubscriber::flagged(711);
    let (case, token, status) = stack.case_in_security_review(&s).await;

    // Where the case is and what is ahead, with what each department checks and how long
    // it typically takes (few recent cases here: the SLAs).
    assert_eq!(
        steps(&status),
        [
            ("awaiting_identity".into(), "done".into()),
            ("risk_assessment".into(), "done".into()),
            ("security_review".into(), "current".into()),
            ("provisioning".into(), "ahead".into()),
        ],
        "{status}"
    );
    let review = &status["departments"][2];
    assert_eq!(review["department"], "security");
    assert_eq!(review["typical_seconds"], 24 * 3600);
    assert_eq!(review["typical_source"], "sla");
    assert!(
        review["checks"]
            .as_str()
            .unwrap()
            .contains("security analyst")
    );
    assert_eq!(status["departments"][3]["department"], "technical");
    assert!(status["expedite"].is_null());

    // Bad input changes nothing.
    let (code, problem) = expedite(&stack, &case, &token, "   ").await;
    assert_eq!(code, 422, "{problem}");
    let (code, problem) = expedite(&stack, &case, "wrong-token", "urgent").await;
    assert_eq!(code, 404, "{problem}");

    // Two racing requests: exactly one is recorded.
    let reason = "I need the number for my bank's codes today.";
    let (a, b) = tokio::join!(
        expedite(&stack, &case, &token, reason),
        expedite(&stack, &case, &token, "second")
    );
    let mut codes = [a.0, b.0];
    codes.sort_unstable();
    assert_eq!(codes, [201, 409], "{a:?} {b:?}");
    let loser = if a.0 == 409 { &a.1 } else { &b.1 };
    assert_eq!(loser["code"], "already_expedited", "{loser}");
    let (code, problem) = expedite(&stack, &case, &token, reason).await;
    assert_eq!(code, 409, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap_or_default()
            .ends_with("already-expedited"),
        "{problem}"
    );

    let (code, status) = stack.status(&case, &token).await;
    assert_eq!(code, 200);
    assert!(status["expedite"]["reason"].is_string(), "{status}");
    assert_eq!(status["expedite"]["state"], "security_review");

    // Agents see it, and the case now comes before the one that waited longer.
    let analyst = stack.login("analyst.one").await;
    let (code, queue) = stack
        .call(
            stack
                .http
                .get(format!("{}/v1/agent/queue", stack.url("gateway")))
                .query(&[("department", "security")])
                .bearer_auth(&analyst),
        )
        .await;
    assert_eq!(code, 200, "{queue}");
    let ids: Vec<&str> = queue["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["case_id"].as_str().unwrap())
        .collect();
    let at = |id: &str| ids.iter().position(|c| *c == id).expect("in the queue");
    assert!(at(&case) < at(&first), "{queue}");
    let item = &queue["cases"][at(&case)];
    assert_eq!(item["expedited"], true);
    assert_eq!(item["priority"], "expedited");

    // Audited.
    let (audited,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM audit_log WHERE action = 'case.expedite' AND case_id = $1::uuid",
    )
    .bind(&case)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn a_clean_case_puts_one_sms_about_its_final_state_on_the_phone() {
    let stack = Stack::start_with(StackOptions {
        env: vec![("REACTIVATION_MESSAGE_WINDOW_SECONDS".into(), "3".into())],
        ..StackOptions::default()
    })
    .await;
    let s = TestSubscriber::clean(712);
    stack.add_subscriber(&s).await;
    let phone = s.backup_sms.clone().unwrap();
    let (case, token) = stack.open_verified_case(&s).await;
    let done = stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    // opened, proofs_accepted, restored (risk_cleared tells nothing) within the window.
    assert_eq!(done["timeline"].as_array().unwrap().len(), 4, "{done}");

    // Wait until the timers read every event and no message waits in the outbox.
    let deadline = Instant::now() + SETTLE;
    let messages = loop {
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
        let messages = stack.sim_outbox(&phone).await;
        if !unread && !undelivered && !messages.is_empty() {
            break messages;
        }
        assert!(
            Instant::now() < deadline,
            "messages never settled: {messages:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let body = messages[0]["body"].as_str().unwrap();
    assert!(body.contains("your number works again"), "{body}");
    assert!(case_domain::sms::fits_one(body), "{body}");
    // The earlier two were replaced, never sent.
    let (superseded,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM outbox WHERE case_id = $1::uuid AND superseded_by IS NOT NULL",
    )
    .bind(&case)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(superseded, 2);
}

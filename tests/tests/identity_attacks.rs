//! The identity path tried as an attacker holding a leaked name and ID number would,
//! over real processes (gateway → identity service → carrier simulator, the timers
//! service delivering messages): guess budgets per number, one `accepted` per case,
//! no squatting, no message pumping, no oracle in the code-send answer.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use system_tests::{Stack, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

/// How many service-password checks the simulated carrier was asked for `msisdn`.
async fn password_checks(stack: &Stack, msisdn: &str) -> u64 {
    let (status, body) = stack
        .call(
            stack
                .http
                .get(format!("{}/sim/identity-checks", stack.url("carrier-sim")))
                .query(&[("msisdn", msisdn)]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["service_password"].as_u64().expect("a count")
}

async fn cancel(stack: &Stack, case: &str, token: &str) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .post(format!("{}/v1/cases/{case}/cancel", stack.url("gateway")))
                .bearer_auth(token),
        )
        .await
}

async fn password_guesses(
    stack: &Stack,
    case: &str,
    token: &str,
    password: &str,
    n: usize,
) -> Vec<(u16, Value)> {
    let proof = json!({"method": "service_password", "password": password});
    futures_util::future::join_all((0..n).map(|_| stack.verify(case, token, &proof))).await
}

#[tokio::test]
async fn five_guesses_per_number_across_concurrent_requests_and_reopened_cases() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(600);
    stack.add_subscriber(&s).await;

    for round in 0..3 {
        let (case, token) = stack.open_case(&s).await;
        let answers = password_guesses(&stack, &case, &token, "not-the-password", 30).await;
        for (status, body) in &answers {
            // Judged and refused, not judged because the slots left were being judged
            // (409), or not judged because the budget is spent (423): never a 5xx.
            assert!(
                [200, 409, 423].contains(status),
                "round {round}: {status} {body}"
            );
            assert_ne!(body["accepted"], true, "{body}");
        }
        let (status, body) = cancel(&stack, &case, &token).await;
        assert_eq!(status, 200, "{body}");
    }
    let judged = password_checks(&stack, &s.msisdn).await;
    assert!(
        (1..=5).contains(&judged),
        "the carrier was asked {judged} times"
    );

    // The right password on a new case: refused unjudged, with when to come back.
    let (case, token) = stack.open_case(&s).await;
    let refused = stack
        .http
        .post(format!(
            "{}/v1/cases/{case}/verifications",
            stack.url("gateway")
        ))
        .bearer_auth(&token)
        .json(&json!({"method": "service_password", "password": s.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 423);
    let header = |name: &str| {
        refused
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/problem+json");
    let wait: u64 = header("retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!(wait > 0 && wait <= 24 * 3600, "{wait}");
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["retry_at"].as_str().is_some(), "{problem}");
    assert_eq!(password_checks(&stack, &s.msisdn).await, judged);
    // ... and the case is with a person.
    stack
        .wait_for_state(&case, &token, "identity_review", SETTLE)
        .await;
}

#[tokio::test]
async fn of_eight_racing_right_passwords_exactly_one_is_accepted() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(601);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    let answers = password_guesses(&stack, &case, &token, &s.password, 8).await;
    let accepted = answers
        .iter()
        .filter(|(status, body)| *status == 200 && body["accepted"] == true)
        .count();
    assert_eq!(accepted, 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(_, b)| b["accepted"] != true) {
        assert_eq!(*status, 409, "{body}");
    }
    let moved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM case_events WHERE case_id = $1::uuid AND event = 'proofs_accepted'",
    )
    .bind(&case)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(moved, 1);
}

#[tokio::test]
async fn a_strangers_request_does_not_stop_the_subscriber_and_ends_superseded() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(602);
    stack.add_subscriber(&s).await;

    // A stranger with the leaked name and ID number gets there first.
    let (stranger_case, stranger_token) = stack.open_case(&s).await;
    // The subscriber is answered exactly as if nobody had.
    let (status, body) = stack.create_case(&s.case_body(), None).await;
    assert_eq!(status, 201, "{body}");
    let (case, token) = (
        body["case_id"].as_str().unwrap().to_owned(),
        body["case_token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(stack.request_otp(&case, &token).await.0, 202);
    let code = stack.latest_code(s.backup_sms.as_deref().unwrap()).await;
    let (status, answer) = stack
        .verify(&case, &token, &json!({"method": "otp", "code": code}))
        .await;
    assert_eq!(
        (status, answer["accepted"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;

    // The stranger's case is closed as superseded and its token no longer opens anything.
    let (status, _) = stack.status(&stranger_case, &stranger_token).await;
    assert_eq!(status, 404);
    let (state, last): (String, String) = sqlx::query_as(
        "SELECT c.state::text, (SELECT e.event::text FROM case_events e WHERE e.case_id = c.id ORDER BY version DESC LIMIT 1)
         FROM reactivation_cases c WHERE c.id = $1::uuid",
    )
    .bind(&stranger_case)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), last.as_str()), ("cancelled", "superseded"));
}

#[tokio::test]
async fn twelve_anonymous_open_and_cancel_rounds_put_at_most_three_messages_on_the_phone() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(603);
    stack.add_subscriber(&s).await;
    let contact = s.backup_sms.clone().unwrap();
    for _ in 0..12 {
        let (case, token) = stack.open_case(&s).await;
        let (status, body) = cancel(&stack, &case, &token).await;
        assert_eq!(status, 200, "{body}");
    }
    // 24 transitions: wait until the timers service has dealt with every one (sent
    // through the carrier, or dropped and counted).
    let deadline = Instant::now() + SETTLE;
    loop {
        let dropped = stack
            .metric(
                "timers",
                "notifications_dropped_total",
                &[("reason", "number_budget")],
            )
            .await;
        let sent = stack.sim_outbox(&contact).await.len() as f64;
        if dropped + sent >= 24.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {SETTLE:?}: {sent} sent, {dropped} dropped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let messages = stack.sim_outbox(&contact).await;
    assert!(
        (1..=3).contains(&messages.len()),
        "{} messages: {messages:?}",
        messages.len()
    );
}

#[tokio::test]
async fn the_code_send_answer_is_the_same_for_every_number() {
    let stack = Stack::start().await;
    let subscriber = TestSubscriber::clean(604);
    stack.add_subscriber(&subscriber).await;
    let no_contact = TestSubscriber {
        backup_sms: None,
        ..TestSubscriber::clean(605)
    };
    stack.add_subscriber(&no_contact).await;
    let unknown = TestSubscriber::clean(606);

    let mut answers = Vec::new();
    for who in [&subscriber, &no_contact, &unknown] {
        let (case, token) = stack.open_case(who).await;
        let (status, headers, body) = stack
            .call_raw(
                stack
                    .http
                    .post(format!("{}/v1/cases/{case}/otp", stack.url("gateway")))
                    .bearer_auth(&token),
            )
            .await;
        answers.push((status, headers, body));
    }
    assert_eq!(answers[0].0, 202, "{answers:?}");
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    // And yet the subscriber's contact on file did get a code.
    let code = stack
        .latest_code(subscriber.backup_sms.as_deref().unwrap())
        .await;
    assert_eq!(code.len(), 6);
}

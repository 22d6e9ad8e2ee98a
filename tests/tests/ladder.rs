//! The risk-graded verification ladder end to end (issue 14 item 6), one test per
//! tier, against the whole product and the carrier simulator: the carrier's signals
//! are read when the case opens, the status answer says up front which proofs the
//! tier asks for and why, a good proof that is not yet enough is counted (not
//! refused, no attempt spent), and a case that gives what its tier asks is never
//! refused online — the extreme tier goes to a store visit before anything else
//! instead of being graded and refused after its proofs.

use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Stack, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

/// The status answer once the ladder has graded the case (the gateway asks the
/// identity service right after opening; this waits for it).
async fn graded_status(stack: &Stack, case: &str, token: &str) -> Value {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let (status, body) = stack.status(case, token).await;
        assert_eq!(status, 200, "{body}");
        if body["identity_proofs"]["why"].is_string() || body["state"] != "awaiting_identity" {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never graded: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn password(stack: &Stack, case: &str, token: &str, s: &TestSubscriber) -> (u16, Value) {
    stack
        .verify(
            case,
            token,
            &json!({"method": "service_password", "password": s.password}),
        )
        .await
}

async fn code(stack: &Stack, case: &str, token: &str, s: &TestSubscriber) -> (u16, Value) {
    let (status, sent) = stack.request_otp(case, token).await;
    assert_eq!(status, 202, "{sent}");
    let code = stack.latest_code(s.backup_sms.as_deref().unwrap()).await;
    stack
        .verify(case, token, &json!({"method": "otp", "code": code}))
        .await
}

fn events(status: &Value) -> Vec<String> {
    status["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn low_tier_asks_one_proof_and_the_case_goes_through() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(801);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    let status = graded_status(&stack, &case, &token).await;
    assert_eq!(
        status["identity_proofs"]["needed"],
        json!([["otp", "service_password"]])
    );
    assert_eq!(status["identity_proofs"]["given"], json!([]));
    assert!(
        status["identity_proofs"]["why"]
            .as_str()
            .unwrap()
            .contains("one proof is enough"),
        "{status}"
    );
    let (code, answer) = password(&stack, &case, &token, &s).await;
    assert_eq!((code, answer["accepted"].as_bool()), (200, Some(true)));
    assert!(answer.get("still_needed").is_none(), "{answer}");
    let done = stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    assert!(
        done.get("identity_proofs").is_none(),
        "only while proofs are asked"
    );
}

#[tokio::test]
async fn medium_tier_asks_both_online_proofs_and_a_good_first_one_is_counted_not_refused() {
    let stack = Stack::start().await;
    let s = TestSubscriber::flagged(802);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    let status = graded_status(&stack, &case, &token).await;
    assert_eq!(
        status["identity_proofs"]["needed"],
        json!([["otp"], ["service_password"]]),
        "{status}"
    );
    assert!(
        status["identity_proofs"]["why"]
            .as_str()
            .unwrap()
            .contains("two proofs"),
        "{status}"
    );
    // Told up front without a reason code or a signal: the tier's words only.
    assert!(status["risk"].is_null(), "{status}");

    // The password alone: good and counted, not accepted yet, no attempt spent.
    let (code_status, answer) = password(&stack, &case, &token, &s).await;
    assert_eq!(code_status, 200, "{answer}");
    assert_eq!(answer["accepted"], false, "{answer}");
    assert_eq!(answer["still_needed"], json!([["otp"]]), "{answer}");
    assert_eq!(answer["remaining_attempts"], 5, "{answer}");
    let (_, now) = stack.status(&case, &token).await;
    assert_eq!(now["state"], "awaiting_identity");
    assert_eq!(now["identity_proofs"]["given"], json!(["service_password"]));
    assert_eq!(now["identity_proofs"]["needed"], json!([["otp"]]));
    // The same password again changes nothing.
    let (_, again) = password(&stack, &case, &token, &s).await;
    assert_eq!(
        (again["accepted"].as_bool(), &again["still_needed"]),
        (Some(false), &json!([["otp"]]))
    );

    // The code completes the ladder: the case moves on, and is not refused.
    let (code_status, answer) = code(&stack, &case, &token, &s).await;
    assert_eq!(
        (code_status, answer["accepted"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    let review = stack
        .wait_for_state(&case, &token, "security_review", SETTLE)
        .await;
    let seen = events(&review);
    assert_eq!(
        seen.iter().filter(|e| *e == "proofs_accepted").count(),
        1,
        "{seen:?}"
    );
    assert!(!seen.iter().any(|e| e == "risk_refused" || e == "rejected"));
}

#[tokio::test]
async fn two_good_proofs_racing_on_a_medium_case_move_it_once() {
    let stack = Stack::start().await;
    let s = TestSubscriber::flagged(803);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    graded_status(&stack, &case, &token).await;
    let (status, sent) = stack.request_otp(&case, &token).await;
    assert_eq!(status, 202, "{sent}");
    let otp = stack.latest_code(s.backup_sms.as_deref().unwrap()).await;
    let by_code = json!({"method": "otp", "code": otp});
    let by_password = json!({"method": "service_password", "password": s.password});
    let (a, b) = tokio::join!(
        stack.verify(&case, &token, &by_code),
        stack.verify(&case, &token, &by_password),
    );
    // Both are good; whichever came second completed the ladder and moved the case.
    // (A proof that found the case moved already is told so: 409.)
    let accepted = [&a, &b]
        .iter()
        .filter(|(s, v)| *s == 200 && v["accepted"] == true)
        .count();
    assert_eq!(accepted, 1, "{a:?} {b:?}");
    for (status, answer) in [&a, &b] {
        assert!(
            (*status == 200 && answer["remaining_attempts"] == 5) || *status == 409,
            "{status} {answer}"
        );
    }
    let moved = stack
        .wait_for_state(&case, &token, "security_review", SETTLE)
        .await;
    assert_eq!(
        events(&moved)
            .iter()
            .filter(|e| *e == "proofs_accepted")
            .count(),
        1
    );
}

#[tokio::test]
async fn high_tier_asks_both_proofs_and_a_call_back_which_a_cs_agent_gives() {
    let stack = Stack::start().await;
    let s = TestSubscriber {
        // Three fraud-linked counterparties grade high.
        signals: (3, 0, 0),
        ..TestSubscriber::clean(804)
    };
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    let status = graded_status(&stack, &case, &token).await;
    assert_eq!(
        status["identity_proofs"]["needed"],
        json!([
            ["otp"],
            ["service_password"],
            ["cs_callback", "in_person_id"]
        ]),
        "{status}"
    );
    let (_, first) = code(&stack, &case, &token, &s).await;
    assert_eq!(
        first["still_needed"],
        json!([["service_password"], ["cs_callback", "in_person_id"]]),
        "{first}"
    );
    let (status_code, second) = password(&stack, &case, &token, &s).await;
    assert_eq!(
        (status_code, second["accepted"].as_bool()),
        (200, Some(true)),
        "{second}"
    );
    // Both online proofs given: a CS agent calls back the number on file.
    let review = stack
        .wait_for_state(&case, &token, "identity_review", SETTLE)
        .await;
    assert_eq!(review["department"], "customer_service");

    stack.create_agent("cs.ladder", &["cs"]);
    let cs = stack.login("cs.ladder").await;
    let version = stack.agent_case(&cs, &case).await["version"]
        .as_i64()
        .unwrap();
    // Documents alone are not what the high tier asks: refused, nothing changes.
    let (refused, problem) = stack
        .act(
            &cs,
            &case,
            "verify_identity",
            version,
            json!({"identity_check": "documents_reviewed", "reason": "documents look fine"}),
        )
        .await;
    assert_eq!(
        (refused, problem["code"].as_str()),
        (409, Some("ladder_requires")),
        "{problem}"
    );
    assert_eq!(
        stack.status(&case, &token).await.1["state"],
        "identity_review"
    );
    let version = stack.agent_case(&cs, &case).await["version"]
        .as_i64()
        .unwrap();
    let (ok, answer) = stack
        .act(
            &cs,
            &case,
            "verify_identity",
            version,
            json!({"identity_check": "callback_to_contact_on_file", "reason": "called back the number on file; the subscriber answered"}),
        )
        .await;
    assert_eq!(ok, 200, "{answer}");
    // On to the security department, not refused.
    let flagged = stack
        .wait_for_state(&case, &token, "security_review", SETTLE)
        .await;
    assert_eq!(flagged["risk"]["tier"], "high");
    let seen = events(&flagged);
    assert!(!seen.iter().any(|e| e == "risk_refused" || e == "rejected"));
    let given: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(proofs_given) FROM case_identities WHERE case_id = $1::uuid",
    )
    .bind(&case)
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert_eq!(given, ["otp", "service_password", "cs_callback"]);
}

#[tokio::test]
async fn extreme_tier_asks_for_a_store_visit_before_anything_else() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(805);
    stack
        .add_subscriber_suspended_for(&s, "police_request")
        .await;
    let (case, token) = stack.open_case(&s).await;
    // Graded when it opened: it waits for the visit without any proof asked online.
    let waiting = stack
        .wait_for_state(&case, &token, "awaiting_store_visit", SETTLE)
        .await;
    assert_eq!(waiting["needs"], json!(["store_visit"]));
    // No code is sent, no proof judged, no attempt spent: the answer says why.
    let (status, problem) = stack.request_otp(&case, &token).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("store-visit-required"),
        "{problem}"
    );
    let (status, problem) = password(&stack, &case, &token, &s).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("original ID card")
    );
    // A one-time code is six digits in a message of its own; the status messages
    // (received, store visit needed) carry none.
    let six_digits = |b: &str| b.split(|c: char| !c.is_ascii_digit()).any(|w| w.len() == 6);
    let codes = stack
        .sim_outbox(s.backup_sms.as_deref().unwrap())
        .await
        .iter()
        .filter(|m| six_digits(m["body"].as_str().unwrap_or("")))
        .count();
    assert_eq!(codes, 0, "no code was sent");
    let spent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM number_budget_uses WHERE msisdn = $1 AND kind = 'proof'",
    )
    .bind(&s.msisdn)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(spent, 0, "no proof slot taken");
    let seen = events(&waiting);
    assert_eq!(seen, ["opened", "store_visit_required"], "{seen:?}");
}

#[tokio::test]
async fn a_requester_without_the_subscribers_name_and_id_learns_nothing_of_the_tier() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(806);
    stack
        .add_subscriber_suspended_for(&s, "police_request")
        .await;
    // A stranger with the number but another person's name and ID.
    let stranger = TestSubscriber {
        full_name: "李四".into(),
        id_number: TestSubscriber::clean(807).id_number,
        ..TestSubscriber::clean(806)
    };
    let (case, token) = stack.open_case(&stranger).await;
    // Give the opening's grading time to run: it must not move or tell anything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, seen) = stack.status(&case, &token).await;
    assert_eq!(seen["state"], "awaiting_identity", "{seen}");
    assert_eq!(
        seen["identity_proofs"],
        json!({"needed": [["otp", "service_password"]], "given": [], "why": null}),
        "{seen}"
    );
    // The code request answers as for any number.
    let (status, sent) = stack.request_otp(&case, &token).await;
    assert_eq!(status, 202, "{sent}");
    // The real subscriber's own case is graded extreme and asked for the visit.
    let (own, own_token) = stack.open_case(&s).await;
    stack
        .wait_for_state(&own, &own_token, "awaiting_store_visit", SETTLE)
        .await;
}

/// A burst of openings is graded in few calls to the identity service, and each case
/// gets what grading it alone gives: a clean subscriber the low tier, a flagged one
/// the medium tier, a stranger with another person's name and ID nothing, whichever
/// other cases share the call. The grading call itself refuses what it cannot
/// grade, and answers an unknown case as not found, without a word on the others.
#[tokio::test]
async fn a_burst_of_openings_is_graded_together_each_case_as_alone() {
    let stack = Stack::start().await;
    let clean: Vec<TestSubscriber> = (0..8).map(|i| TestSubscriber::clean(820 + i)).collect();
    let flagged: Vec<TestSubscriber> = (0..4).map(|i| TestSubscriber::flagged(840 + i)).collect();
    for s in clean.iter().chain(&flagged) {
        stack.add_subscriber(s).await;
    }
    let stranger = TestSubscriber {
        full_name: "李四".into(),
        id_number: TestSubscriber::clean(861).id_number,
        ..TestSubscriber::clean(860)
    };
    stack.add_subscriber(&TestSubscriber::clean(860)).await;
    let everyone: Vec<&TestSubscriber> = clean.iter().chain(&flagged).chain([&stranger]).collect();
    let opened = futures_util::future::join_all(everyone.iter().map(|s| stack.open_case(s))).await;
    let why = |status: &Value| status["identity_proofs"]["why"].as_str().map(str::to_owned);
    for (s, (case, token)) in everyone.iter().zip(&opened) {
        if std::ptr::eq(*s, &stranger) {
            continue;
        }
        let status = graded_status(&stack, case, token).await;
        let needed = &status["identity_proofs"]["needed"];
        if s.signals == (0, 0, 0) {
            assert_eq!(needed, &json!([["otp", "service_password"]]), "{status}");
            assert!(
                why(&status).unwrap().contains("one proof is enough"),
                "{status}"
            );
        } else {
            assert_eq!(needed, &json!([["otp"], ["service_password"]]), "{status}");
            assert!(why(&status).unwrap().contains("two proofs"), "{status}");
        }
    }
    let (case, token) = opened.last().unwrap();
    let (_, seen) = stack.status(case, token).await;
    assert_eq!(seen["state"], "awaiting_identity", "{seen}");
    assert_eq!(seen["identity_proofs"]["why"], Value::Null, "{seen}");

    // The identity service's grading call, as the gateway makes it.
    let grades = format!("{}/internal/v1/grades", stack.url("identity"));
    let call = |body: Value| {
        stack
            .http
            .post(&grades)
            .bearer_auth(&stack.internal_token)
            .json(&body)
    };
    let unknown = uuid::Uuid::now_v7();
    let (status, answer) = stack.call(call(json!({"case_ids": [unknown]}))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["grades"][0]["case_id"], json!(unknown));
    assert_eq!(answer["grades"][0]["problem"]["status"], 404, "{answer}");
    let too_many: Vec<uuid::Uuid> = (0..101).map(|_| uuid::Uuid::now_v7()).collect();
    for refused in [
        json!({"case_ids": []}),
        json!({"case_ids": too_many}),
        json!({"case_ids": [unknown, unknown]}),
        json!({"case_ids": ["not-a-uuid"]}),
        json!({"cases": [unknown]}),
    ] {
        let (status, answer) = stack.call(call(refused.clone())).await;
        assert_eq!(status, 422, "{refused}: {answer}");
        assert!(answer["detail"].is_string(), "{answer}");
    }
    let (status, _) = stack
        .call(
            stack
                .http
                .post(&grades)
                .json(&json!({"case_ids": [unknown]})),
        )
        .await;
    assert_eq!(status, 401, "no internal token, no grading");
}

//! The clean-case journey end to end: gateway, identity, risk, provisioning and the
//! carrier simulator as separate processes over real HTTP.

use std::time::Duration;

use serde_json::json;
use system_tests::{Stack, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

fn events(status: &serde_json::Value) -> Vec<String> {
    status["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_clean_case_is_reactivated_with_a_one_time_code_and_with_the_service_password() {
    let stack = Stack::start().await;
    let (by_code, by_password) = (TestSubscriber::clean(10), TestSubscriber::clean(11));
    stack.add_subscriber(&by_code).await;
    stack.add_subscriber(&by_password).await;

    // One-time code, read from the simulated carrier's outbox (sent to the contact on file).
    let (case, token) = stack.open_case(&by_code).await;
    let (status, sent) = stack.request_otp(&case, &token).await;
    assert_eq!(status, 202, "{sent}");
    // No destination in the answer (no oracle): the code is read from the contact on file.
    assert_eq!(sent["status"], "requested", "{sent}");
    assert!(sent.get("sent_to").is_none(), "{sent}");
    let code = stack
        .latest_code(by_code.backup_sms.as_deref().unwrap())
        .await;
    let (status, answer) = stack
        .verify(&case, &token, &json!({"method": "otp", "code": code}))
        .await;
    assert_eq!(
        (status, answer["accepted"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    let done = stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    assert_eq!(
        events(&done),
        ["opened", "proofs_accepted", "risk_cleared", "restored"]
    );
    let hand_offs: Vec<(&str, &str)> = done["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        hand_offs,
        [
            ("awaiting_identity", "risk_assessment"),
            ("risk_assessment", "provisioning"),
            ("provisioning", "reactivated")
        ]
    );
    assert_eq!(done["department"], serde_json::Value::Null);
    assert_eq!(done["risk"]["tier"], "low");

    // Service password.
    let (case2, token2) = stack.open_case(&by_password).await;
    let (status, answer) = stack
        .verify(
            &case2,
            &token2,
            &json!({"method": "service_password", "password": by_password.password}),
        )
        .await;
    assert_eq!(
        (status, answer["accepted"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    stack
        .wait_for_state(&case2, &token2, "reactivated", SETTLE)
        .await;

    // Exactly one resume request per case reached the carrier, and the numbers work again.
    for s in [&by_code, &by_password] {
        let requests = stack.provisioning_requests(&s.msisdn).await;
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(requests[0]["action"], "resume");
        let at_carrier = stack.sim_subscriber(&s.msisdn).await;
        assert_eq!(
            (
                at_carrier["status"].as_str(),
                at_carrier["resume_count"].as_i64()
            ),
            (Some("active"), Some(1))
        );
    }
}

#[tokio::test]
async fn five_wrong_codes_send_the_case_to_an_agent_and_the_sixth_is_refused() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(20);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    assert_eq!(stack.request_otp(&case, &token).await.0, 202);
    let real = stack.latest_code(s.backup_sms.as_deref().unwrap()).await;
    let wrong = if real == "000000" { "111111" } else { "000000" };
    for remaining in (0..5).rev() {
        let (status, answer) = stack
            .verify(&case, &token, &json!({"method": "otp", "code": wrong}))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer,
            json!({"accepted": false, "remaining_attempts": remaining})
        );
    }
    let status = stack
        .wait_for_state(&case, &token, "identity_review", SETTLE)
        .await;
    assert_eq!(status["department"], "customer_service");
    // The sixth check is refused, even with the right code.
    let (code, problem) = stack
        .verify(&case, &token, &json!({"method": "otp", "code": real}))
        .await;
    assert_eq!(code, 423, "{problem}");
    assert_eq!(problem["status"], 423);
    assert_eq!(
        stack.status(&case, &token).await.1["state"],
        "identity_review"
    );
}

#[tokio::test]
async fn a_code_never_goes_to_a_contact_the_requester_typed() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(30);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    let attacker = "+8615000000001";
    // The API takes no address; one smuggled into the body or the query is ignored or refused.
    let url = format!("{}/v1/cases/{case}/otp", stack.url("gateway"));
    let (status, _) = stack
        .call(
            stack
                .http
                .post(&url)
                .query(&[("to", attacker)])
                .bearer_auth(&token)
                .json(&json!({"to": attacker})),
        )
        .await;
    assert_eq!(status, 202);
    let (status, problem) = stack
        .create_case(&json!({"msisdn": s.msisdn, "full_name": s.full_name, "id_number": s.id_number, "otp_to": attacker}), None)
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(stack.sim_outbox(attacker).await.is_empty());
    // One code went to the contact on file (status notifications go there too).
    let codes = stack
        .sim_outbox(s.backup_sms.as_deref().unwrap())
        .await
        .into_iter()
        .filter(|m| {
            m["body"]
                .as_str()
                .is_some_and(|b| b.contains("Reactivation code"))
        })
        .count();
    assert_eq!(codes, 1);
}

#[tokio::test]
async fn case_creation_is_idempotent_and_reveals_nothing_about_the_subscriber() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(40);
    stack.add_subscriber(&s).await;

    let (first_status, first) = stack.create_case(&s.case_body(), Some("retry-key-1")).await;
    assert_eq!(first_status, 201, "{first}");
    let (again_status, again) = stack.create_case(&s.case_body(), Some("retry-key-1")).await;
    assert_eq!(
        (again_status, &again),
        (201, &first),
        "a retry replays the first answer"
    );
    let mut other = s.case_body();
    other["locale"] = json!("zh-CN");
    let (status, problem) = stack.create_case(&other, Some("retry-key-1")).await;
    assert_eq!(status, 422, "{problem}");
    let cases: i64 = sqlx::query_scalar("SELECT count(*) FROM reactivation_cases")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(cases, 1);

    // A name/ID pair that does not match the number's subscriber (or an unknown number)
    // is answered exactly like one that does: same status, same fields, same state.
    let mut mismatched = TestSubscriber::clean(41);
    stack.add_subscriber(&mismatched).await;
    mismatched.full_name = "李四".into();
    let unknown = TestSubscriber::clean(42);
    let (s1, matching) = stack
        .create_case(&TestSubscriber::clean(43).case_body(), None)
        .await;
    let (s2, not_matching) = stack.create_case(&mismatched.case_body(), None).await;
    let (s3, not_a_subscriber) = stack.create_case(&unknown.case_body(), None).await;
    assert_eq!((s1, s2, s3), (201, 201, 201));
    let shape = |v: &serde_json::Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        (
            keys,
            v["state"].clone(),
            v["needs"].clone(),
            v["department"].clone(),
            v["timeline"].as_array().unwrap().len(),
        )
    };
    assert_eq!(shape(&matching), shape(&not_matching));
    assert_eq!(shape(&matching), shape(&not_a_subscriber));
    // Even a proof does not tell: a right password with a wrong name is just "not accepted".
    let (case, token) = (
        not_matching["case_id"].as_str().unwrap(),
        not_matching["case_token"].as_str().unwrap(),
    );
    let (status, answer) = stack
        .verify(
            case,
            token,
            &json!({"method": "service_password", "password": mismatched.password}),
        )
        .await;
    assert_eq!(
        (status, answer),
        (200, json!({"accepted": false, "remaining_attempts": 4}))
    );
}

#[tokio::test]
async fn a_wrong_token_looks_exactly_like_a_missing_case() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(50);
    let (case, token) = stack.open_case(&s).await;
    let gateway = stack.url("gateway");
    let wrong = stack
        .call_raw(
            stack
                .http
                .get(format!("{gateway}/v1/cases/{case}"))
                .bearer_auth("not-the-token"),
        )
        .await;
    let missing = stack
        .call_raw(
            stack
                .http
                .get(format!(
                    "{gateway}/v1/cases/01a23152-0000-7000-8000-000000000000"
                ))
                .bearer_auth(&token),
        )
        .await;
    let no_token = stack
        .call_raw(stack.http.get(format!("{gateway}/v1/cases/{case}")))
        .await;
    let garbage = stack
        .call_raw(
            stack
                .http
                .get(format!("{gateway}/v1/cases/not-a-uuid"))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(wrong.0, 404);
    assert_eq!(wrong.1, "application/problem+json");
    assert_eq!(wrong, missing);
    assert_eq!(wrong, no_token);
    assert_eq!(wrong, garbage);
    // The same holds for every case route, and on the proof route whatever the body:
    // a well-formed proof (the identity service checks the token in its read of the
    // case) or one that is not JSON at all (the gateway checks the token before
    // judging a bad body).
    let proof = json!({"method": "otp", "code": "123456"}).to_string();
    for (path, body) in [
        ("otp", "{}"),
        ("verifications", "{}"),
        ("cancel", "{}"),
        ("verifications", proof.as_str()),
        ("verifications", "not json"),
    ] {
        let answer = stack
            .call_raw(
                stack
                    .http
                    .post(format!("{gateway}/v1/cases/{case}/{path}"))
                    .bearer_auth("x")
                    .header("content-type", "application/json")
                    .body(body.to_owned()),
            )
            .await;
        assert_eq!(answer, wrong, "{path} {body}");
    }
}

#[tokio::test]
async fn a_flagged_subscriber_stops_at_security_review_with_what_is_needed() {
    let stack = Stack::start().await;
    let s = TestSubscriber::flagged(60);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    // The medium tier asks for both the password and a code before anything else.
    stack.prove_identity(&case, &token, &s).await;
    let review = stack
        .wait_for_state(&case, &token, "security_review", SETTLE)
        .await;
    assert_eq!(review["department"], "security");
    assert_eq!(review["risk"]["tier"], "medium");
    assert_eq!(review["needs"], json!(["explanation", "security_review"]));
    let codes: Vec<&str> = review["risk"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["fraud_linked_contacts", "bulk_sms", "international_calls"]
    );
    assert!(
        review["risk"]["reasons"][0]["remedy"]
            .as_str()
            .unwrap()
            .len()
            > 10
    );
    assert!(review["eta"].is_string());
    // Nothing was sent to the network. First prove the workers ran past this case: a
    // clean case opened after it goes through risk and provisioning and is restored
    // (a marker behind it in the queues), and only then look for what the flagged one sent.
    let marker = TestSubscriber::clean(61);
    stack.add_subscriber(&marker).await;
    let (marker_case, marker_token) = stack.open_verified_case(&marker).await;
    stack
        .wait_for_state(&marker_case, &marker_token, "reactivated", SETTLE)
        .await;
    assert!(!stack.provisioning_requests(&marker.msisdn).await.is_empty());
    assert!(stack.provisioning_requests(&s.msisdn).await.is_empty());
    assert_eq!(
        stack.status(&case, &token).await.1["state"],
        "security_review"
    );
}

#[tokio::test]
async fn half_the_provisioning_calls_failing_still_restores_each_number_exactly_once() {
    let stack = Stack::start().await;
    stack.sim_faults(0.5, 20).await;
    let subscribers: Vec<TestSubscriber> = (70..80).map(TestSubscriber::clean).collect();
    let mut cases = Vec::new();
    for s in &subscribers {
        stack.add_subscriber(s).await;
        let (case, token) = stack.open_case(s).await;
        let (status, _) = stack
            .verify(
                &case,
                &token,
                &json!({"method": "service_password", "password": s.password}),
            )
            .await;
        assert_eq!(status, 200);
        cases.push((case, token));
    }
    let mut duplicates = 0;
    for ((case, token), s) in cases.iter().zip(&subscribers) {
        stack
            .wait_for_state(case, token, "reactivated", Duration::from_secs(90))
            .await;
        let at_carrier = stack.sim_subscriber(&s.msisdn).await;
        assert_eq!(at_carrier["resume_count"], 1, "{at_carrier}");
        let requests = stack.provisioning_requests(&s.msisdn).await;
        let keys: std::collections::BTreeSet<&str> = requests
            .iter()
            .map(|r| r["idempotency_key"].as_str().unwrap())
            .collect();
        assert_eq!(keys.len(), 1, "one order, retried under one key");
        duplicates += requests.len() - 1;
    }
    assert!(
        duplicates > 0,
        "with half the calls failing, some orders must have been retried"
    );
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let stack = Stack::start_with(system_tests::StackOptions {
        services: vec!["gateway"],
        ..Default::default()
    })
    .await;
    let (status, doc) = stack
        .call(
            stack
                .http
                .get(format!("{}/openapi.json", stack.url("gateway"))),
        )
        .await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/cases", "post"),
        ("/v1/cases/{case_id}", "get"),
        ("/v1/cases/{case_id}/otp", "post"),
        ("/v1/cases/{case_id}/verifications", "post"),
        ("/v1/cases/{case_id}/cancel", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    // And every documented operation is served (an unserved one would answer the unmatched-route 404).
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let url = format!(
                "{}{}",
                stack.url("gateway"),
                path.replace("{case_id}", "01a23152-0000-7000-8000-000000000000")
            );
            let request = stack
                .http
                .request(method.to_uppercase().parse().unwrap(), url);
            let answer = stack.call(request).await;
            assert_ne!(
                answer.0, 405,
                "{method} {path} is documented but not served"
            );
        }
    }
}

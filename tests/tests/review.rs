//! Risk-graded review by agents over real HTTP: decisions, partial restoration,
//! concurrency, and the audit chain.

use std::time::Duration;

use serde_json::json;
use system_tests::{Stack, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

async fn review_stack() -> Stack {
    let stack = Stack::start().await;
    stack.create_agent("analyst.one", &["security"]);
    stack.create_agent("analyst.two", &["security"]);
    stack.create_agent("tech.one", &["technical"]);
    stack
}

#[tokio::test]
async fn partial_then_full_approval_sends_two_orders_with_the_right_restoration() {
    let stack = review_stack().await;
    let s = TestSubscriber::flagged(100);
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
    let at_carrier = stack.sim_subscriber(&s.msisdn).await;
    assert_eq!(
        (
            at_carrier["status"].as_str(),
            at_carrier["restoration"].as_str()
        ),
        (Some("active"), Some("inbound_only"))
    );

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
    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;

    let requests = stack.provisioning_requests(&s.msisdn).await;
    let levels: Vec<&str> = requests
        .iter()
        .map(|r| r["restoration"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["inbound_only", "full"]);
    let keys: std::collections::BTreeSet<&str> = requests
        .iter()
        .map(|r| r["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "two distinct orders");
    let at_carrier = stack.sim_subscriber(&s.msisdn).await;
    assert_eq!(
        (
            at_carrier["restoration"].as_str(),
            at_carrier["resume_count"].as_i64()
        ),
        (Some("full"), Some(2))
    );

    // Approved after review: each rule that flagged it is labelled a false positive.
    stack.create_agent("boss", &["supervisor"]);
    let boss = stack.login("boss").await;
    let (status, report) = stack
        .call(
            stack
                .http
                .get(format!(
                    "{}/v1/agent/reports/false-positives",
                    stack.url("gateway")
                ))
                .bearer_auth(&boss),
        )
        .await;
    assert_eq!(status, 200);
    let lines = report["reasons"].as_array().unwrap();
    assert_eq!(lines.len(), 3, "{report}");
    assert!(
        lines
            .iter()
            .all(|l| l["flagged"] == 1 && l["approved"] == 1 && l["false_positive_rate"] == 1.0),
        "{report}"
    );
}

#[tokio::test]
async fn a_hundred_concurrent_approvals_let_exactly_one_through() {
    let stack = review_stack().await;
    let s = TestSubscriber::flagged(110);
    let (case, token, review) = stack.case_in_security_review(&s).await;
    let version = review["version"].as_i64().unwrap();
    let tokens = [
        stack.login("analyst.one").await,
        stack.login("analyst.two").await,
    ];

    let mut calls = Vec::new();
    for i in 0..100 {
        let request = stack
            .http
            .post(format!(
                "{}/v1/agent/cases/{case}/actions",
                stack.url("gateway")
            ))
            .bearer_auth(&tokens[i % 2])
            .json(&json!({"action": "approve", "expected_version": version}));
        calls.push(tokio::spawn(async move {
            request
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let conflict = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((ok, conflict), (1, 99), "{statuses:?}");
    let approvals: i64 =
        sqlx::query_scalar("SELECT count(*) FROM case_events WHERE event = 'approved'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM provisioning_orders")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!((approvals, orders), (1, 1));
    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    assert_eq!(stack.provisioning_requests(&s.msisdn).await.len(), 1);
}

#[tokio::test]
async fn decisions_follow_the_table_and_the_claim() {
    let stack = review_stack().await;
    let s = TestSubscriber::flagged(120);
    let (case, token, review) = stack.case_in_security_review(&s).await;
    let v = review["version"].as_i64().unwrap();
    let (one, two, tech) = (
        stack.login("analyst.one").await,
        stack.login("analyst.two").await,
        stack.login("tech.one").await,
    );

    // A technical agent may not decide here, whatever the version: 403 before 409.
    assert_eq!(
        stack.act(&tech, &case, "approve", v, json!({})).await.0,
        403
    );
    assert_eq!(
        stack.act(&tech, &case, "approve", v + 5, json!({})).await.0,
        403
    );
    // Unknown action, missing reason code: 422, nothing changes.
    assert_eq!(
        stack
            .act(&one, &case, "restore_everything", v, json!({}))
            .await
            .0,
        422
    );
    assert_eq!(stack.act(&one, &case, "reject", v, json!({})).await.0, 422);
    // Illegal in this state: 409.
    assert_eq!(
        stack
            .act(
                &one,
                &case,
                "verify_identity",
                v,
                json!({"identity_check": "original_id_in_person"})
            )
            .await
            .0,
        409
    );
    // Analyst one claims; analyst two is refused while the claim holds.
    let (status, _) = stack
        .call(
            stack
                .http
                .post(format!(
                    "{}/v1/agent/cases/{case}/claim",
                    stack.url("gateway")
                ))
                .bearer_auth(&one),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stack.act(&two, &case, "approve", v, json!({})).await.0, 409);
    let view = stack.agent_case(&two, &case).await;
    assert_eq!(view["state"], "security_review");
    assert!(view["claimed_by"].is_string());
    assert_eq!(
        view["allowed_actions"],
        json!(["approve", "approve_partly", "request_info", "reject"])
    );
    // Stale version from the holder: 409.
    assert_eq!(
        stack.act(&one, &case, "approve", v + 1, json!({})).await.0,
        409
    );
    // The subscriber is asked for more; the reason is what they see.
    let (status, view) = stack
        .act(
            &one,
            &case,
            "request_info",
            v,
            json!({"reason": "Please upload your employment contract."}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let waiting = stack.status(&case, &token).await.1;
    assert_eq!(waiting["state"], "awaiting_customer_security");
    assert_eq!(
        waiting["timeline"].as_array().unwrap().last().unwrap()["reason"],
        "Please upload your employment contract."
    );
    assert_eq!(waiting["needs"], json!(["information"]));
    // Masked by default; unmasking needs a role and a reason, and is audited.
    let masked = stack.agent_case(&one, &case).await;
    assert_eq!(masked["proofs"]["id_number"].as_str().unwrap().len(), 18);
    assert!(
        masked["proofs"]["id_number"]
            .as_str()
            .unwrap()
            .starts_with("**************")
    );
    let unmask = |t: &str, reason: &str| {
        stack
            .http
            .post(format!(
                "{}/v1/agent/cases/{case}/unmask",
                stack.url("gateway")
            ))
            .bearer_auth(t)
            .json(&json!({"reason": reason}))
    };
    assert_eq!(
        stack.call(unmask(&tech, "checking the subscriber")).await.0,
        403
    );
    assert_eq!(stack.call(unmask(&one, "")).await.0, 422);
    let (status, clear) = stack
        .call(unmask(&one, "subscriber on the phone, confirming ID"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(clear["id_number"], s.id_number);
    let unmasks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'case.unmask' AND reason IS NOT NULL",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(unmasks, 1);
}

#[tokio::test]
async fn the_audit_chain_verifies_and_a_changed_row_is_named() {
    let stack = review_stack().await;
    let s = TestSubscriber::flagged(130);
    let (case, token, review) = stack.case_in_security_review(&s).await;
    let analyst = stack.login("analyst.one").await;
    stack.agent_case(&analyst, &case).await;
    let (status, _) = stack
        .act(
            &analyst,
            &case,
            "reject",
            review["version"].as_i64().unwrap(),
            json!({"reason_code": "insufficient_explanation"}),
        )
        .await;
    assert_eq!(status, 200);
    let rejected = stack.status(&case, &token).await.1;
    assert_eq!(rejected["state"], "rejected");
    assert!(
        rejected["timeline"].as_array().unwrap().last().unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("appeal")
    );

    let (ok, out) = stack.verify_audit();
    assert!(ok, "{out}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert!(rows >= 3, "login, view and decision are recorded");
    assert!(out.contains(&format!("{rows} rows")), "{out}");

    // The log refuses changes; a superuser who bypasses the triggers is caught by the verifier.
    assert!(
        sqlx::query("UPDATE audit_log SET reason = 'edited' WHERE seq = 2")
            .execute(&stack.pool)
            .await
            .is_err()
    );
    let mut conn = stack.pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET reason = 'edited' WHERE seq = 2")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SET session_replication_role = origin")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let (ok, out) = stack.verify_audit();
    assert!(!ok);
    assert!(out.contains("seq=2"), "{out}");
}

/// A small valid PNG (1×1 pixel).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

#[tokio::test]
async fn a_medium_tier_subscriber_explains_sends_one_more_document_and_gets_the_number_back() {
    let stack = review_stack().await;
    let s = TestSubscriber::flagged(140);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_verified_case(&s).await;
    let gateway = stack.url("gateway").to_owned();

    // Told up front what the tier requires.
    let review = stack
        .wait_for_state(&case, &token, "security_review", SETTLE)
        .await;
    assert_eq!(review["risk"]["tier"], "medium");
    assert_eq!(review["needs"], json!(["explanation", "security_review"]));
    let flagged: Vec<String> = stack.sim_subscriber(&s.msisdn).await["signals"]["flagged_contacts"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();

    // The subscriber explains the flagged contacts.
    let counterparties: Vec<_> = flagged
        .iter()
        .map(|n| json!({"msisdn": n, "relation": "colleague", "purpose": "project calls"}))
        .collect();
    let (status, body) = stack
        .call(stack.http.post(format!("{gateway}/v1/cases/{case}/explanations")).bearer_auth(&token).json(&json!({
            "statement": "These are colleagues from my project; the SMS were meeting reminders.",
            "counterparties": counterparties,
        })))
        .await;
    assert_eq!(status, 201, "{body}");
    let explained = stack.status(&case, &token).await.1;
    assert_eq!(
        explained["needs"],
        json!(["security_review"]),
        "{explained}"
    );

    // The analyst asks for one more document.
    let analyst = stack.login("analyst.one").await;
    let v = explained["version"].as_i64().unwrap();
    let (status, view) = stack
        .act(
            &analyst,
            &case,
            "request_info",
            v,
            json!({"reason": "Please upload your work certificate."}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        stack.status(&case, &token).await.1["state"],
        "awaiting_customer_security"
    );

    // The subscriber uploads it; the case returns to the analyst.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(PNG.to_vec())
            .file_name("certificate.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let (status, body) = stack
        .call(
            stack
                .http
                .post(format!("{gateway}/v1/cases/{case}/evidence"))
                .bearer_auth(&token)
                .multipart(form),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let back = stack
        .wait_for_state(&case, &token, "security_review", SETTLE)
        .await;
    let view = stack.agent_case(&analyst, &case).await;
    assert!(
        view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "customer_responded")
    );

    // Approved: the number is restored with one resume at the carrier.
    let (status, view) = stack
        .act(
            &analyst,
            &case,
            "approve",
            back["version"].as_i64().unwrap(),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    assert_eq!(stack.provisioning_requests(&s.msisdn).await.len(), 1);
    assert_eq!(stack.sim_subscriber(&s.msisdn).await["resume_count"], 1);
}

#[tokio::test]
async fn an_appeal_goes_to_a_different_analyst() {
    let stack = review_stack().await;
    let s = TestSubscriber::flagged(150);
    let (case, token, review) = stack.case_in_security_review(&s).await;
    let (one, two) = (
        stack.login("analyst.one").await,
        stack.login("analyst.two").await,
    );

    let (status, _) = stack
        .act(
            &one,
            &case,
            "reject",
            review["version"].as_i64().unwrap(),
            json!({"reason_code": "insufficient_explanation"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, appealed) = stack
        .call(
            stack
                .http
                .post(format!("{}/v1/cases/{case}/appeal", stack.url("gateway")))
                .bearer_auth(&token)
                .json(&json!({"statement": "They really are my colleagues."})),
        )
        .await;
    assert_eq!(status, 200, "{appealed}");
    let appealed = stack
        .wait_for_state(&case, &token, "security_review", SETTLE)
        .await;
    let v = appealed["version"].as_i64().unwrap();

    // The analyst who rejected may not decide the appeal, whatever they try.
    for action in ["approve", "approve_partly", "reject", "request_info"] {
        let (status, problem) = stack
            .act(
                &one,
                &case,
                action,
                v,
                json!({"reason_code": "fraud_confirmed", "reason": "x"}),
            )
            .await;
        assert_eq!(status, 403, "{action}: {problem}");
    }
    // A different analyst decides.
    let (status, view) = stack.act(&two, &case, "approve", v, json!({})).await;
    assert_eq!(status, 200, "{view}");
    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    // A second appeal is not possible (nothing to appeal, and only once).
    let (status, _) = stack
        .call(
            stack
                .http
                .post(format!("{}/v1/cases/{case}/appeal", stack.url("gateway")))
                .bearer_auth(&token)
                .json(&json!({"statement": "again"})),
        )
        .await;
    assert_eq!(status, 409);
}

//! Supervisors' tools over HTTP: a supervisor reassigns a claimed case and the new
//! agent decides it (to `reactivated`); a claim is broken; an agent escalates a case
//! by hand into the escalation queue; a supervisor withdraws a case on the
//! subscriber's behalf. Every bad input is a problem+json answer that changes
//! nothing; every act is audited with its reason.

use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Stack, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

async fn agent_id(stack: &Stack, username: &str) -> String {
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM agents WHERE username = $1")
        .bind(username)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    id.to_string()
}

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

async fn claim(stack: &Stack, token: &str, case: &str) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .post(format!(
                    "{}/v1/agent/cases/{case}/claim",
                    stack.url("gateway")
                ))
                .bearer_auth(token),
        )
        .await
}

async fn audit_reasons(stack: &Stack, case: &str, action: &str) -> Vec<(String, Value)> {
    let case: uuid::Uuid = case.parse().unwrap();
    sqlx::query_as::<_, (Option<String>, Value)>(
        "SELECT reason, detail FROM audit_log WHERE case_id = $1 AND action = $2 ORDER BY seq",
    )
    .bind(case)
    .bind(action)
    .fetch_all(&stack.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(r, d)| (r.unwrap_or_default(), d))
    .collect()
}

#[tokio::test]
async fn a_supervisor_reassigns_a_claimed_case_and_the_new_agent_decides_it() {
    let stack = Stack::start().await;
    stack.create_agent("analyst.away", &["security"]);
    stack.create_agent("analyst.here", &["security"]);
    stack.create_agent("cs.one", &["cs"]);
    stack.create_agent("boss.one", &["supervisor"]);
    let away = stack.login("analyst.away").await;
    let here = stack.login("analyst.here").await;
    let cs = stack.login("cs.one").await;
    let boss = stack.login("boss.one").await;
    let (here_id, away_id) = (
        agent_id(&stack, "analyst.here").await,
        agent_id(&stack, "analyst.away").await,
    );

    let s = TestSubscriber::flagged(700);
    let (case, token, review) = stack.case_in_security_review(&s).await;
    let version = review["version"].as_i64().unwrap();
    let (status, body) = claim(&stack, &away, &case).await;
    assert_eq!(status, 200, "{body}");
    // The absent analyst holds it: the other one may not decide it.
    let (status, problem) = stack.act(&here, &case, "approve", version, json!({})).await;
    assert_eq!(status, 409, "{problem}");

    let path = format!("/v1/agent/cases/{case}/reassign");
    let good = json!({"to": "analyst.here", "reason": "analyst.away is on leave", "expected_version": version});
    // Only supervisors reassign.
    for token in [&here, &cs] {
        let (status, problem) = post(&stack, token, &path, good.clone()).await;
        assert_eq!(status, 403, "{problem}");
        assert_eq!(problem["status"], 403);
    }
    // Bad input: problem+json, nothing changed.
    let refusals = [
        (
            json!({"to": "analyst.here", "expected_version": version}),
            422,
        ),
        (
            json!({"to": "analyst.here", "reason": "x", "expected_version": version}),
            422,
        ),
        (
            json!({"to": "nobody.at.all", "reason": "on leave today", "expected_version": version}),
            422,
        ),
        (
            json!({"to": "analyst.here", "reason": "on leave today", "expected_version": version, "extra": 1}),
            422,
        ),
        (
            json!({"to": "analyst.here", "reason": "on leave today", "expected_version": version - 1}),
            409,
        ),
        (
            json!({"to": "cs.one", "reason": "on leave today", "expected_version": version}),
            409,
        ),
        (
            json!({"to": "analyst.away", "reason": "on leave today", "expected_version": version}),
            409,
        ),
    ];
    for (body, want) in refusals {
        let (status, problem) = post(&stack, &boss, &path, body.clone()).await;
        assert_eq!(status, want, "{body}: {problem}");
        assert_eq!(
            problem["status"].as_u64(),
            Some(u64::from(want)),
            "{problem}"
        );
        let view = stack.agent_case(&boss, &case).await;
        assert_eq!(
            view["claimed_by"],
            away_id.as_str(),
            "{body} changed the claim"
        );
    }
    let (status, problem) = post(
        &stack,
        &boss,
        &path,
        json!({"to": "cs.one", "reason": "on leave today", "expected_version": version}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(problem["code"], "assignee_may_not_act", "{problem}");
    assert!(
        audit_reasons(&stack, &case, "case.reassign")
            .await
            .is_empty()
    );

    let (status, moved) = post(&stack, &boss, &path, good).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["claimed_by"], here_id.as_str());
    assert_eq!(moved["claimed_by_username"], "analyst.here");
    assert_eq!(moved["previous_holder"], away_id.as_str());
    assert_eq!(moved["version"], version, "a claim is not a transition");
    let view = stack.agent_case(&boss, &case).await;
    assert_eq!(view["claimed_by"], here_id.as_str());

    // The old holder's decision is refused; the new one decides.
    let (status, problem) = stack
        .act(
            &away,
            &case,
            "reject",
            version,
            json!({"reason_code": "fraud_confirmed"}),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    let (status, decided) = stack
        .act(
            &here,
            &case,
            "approve",
            version,
            json!({"reason": "explained"}),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;

    let audited = audit_reasons(&stack, &case, "case.reassign").await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].0, "analyst.away is on leave");
    assert_eq!(audited[0].1["from"], away_id.as_str());
    assert_eq!(audited[0].1["to"], here_id.as_str());
    let (ok, out) = stack.verify_audit();
    assert!(ok, "{out}");
}

#[tokio::test]
async fn claims_are_broken_cases_escalated_by_hand_and_withdrawn_with_a_reason() {
    let stack = Stack::start().await;
    stack.create_agent("analyst.one", &["security"]);
    stack.create_agent("analyst.two", &["security"]);
    stack.create_agent("boss.one", &["supervisor"]);
    stack.create_agent("admin.one", &["admin"]);
    let one = stack.login("analyst.one").await;
    let two = stack.login("analyst.two").await;
    let boss = stack.login("boss.one").await;
    let admin = stack.login("admin.one").await;

    // Break a claim.
    let s = TestSubscriber::flagged(710);
    let (case, token, review) = stack.case_in_security_review(&s).await;
    let version = review["version"].as_i64().unwrap();
    let brk = format!("/v1/agent/cases/{case}/break-claim");
    let (status, problem) = post(
        &stack,
        &boss,
        &brk,
        json!({"reason": "nobody holds it", "expected_version": version}),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("not_claimed")),
        "{problem}"
    );
    assert_eq!(claim(&stack, &one, &case).await.0, 200);
    let (status, _) = post(
        &stack,
        &two,
        &brk,
        json!({"reason": "mine now please", "expected_version": version}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(&stack, &boss, &brk, json!({"expected_version": version})).await;
    assert_eq!(status, 422);
    assert_eq!(claim(&stack, &two, &case).await.0, 409, "still held");
    let (status, broken) = post(
        &stack,
        &boss,
        &brk,
        json!({"reason": "analyst.one went home", "expected_version": version}),
    )
    .await;
    assert_eq!(status, 200, "{broken}");
    assert!(broken["claimed_by"].is_null());
    assert_eq!(claim(&stack, &two, &case).await.0, 200, "free to take");
    assert_eq!(
        audit_reasons(&stack, &case, "case.claim_broken").await[0].0,
        "analyst.one went home"
    );

    // Escalate by hand: any agent who works cases, not admins; once.
    let esc = format!("/v1/agent/cases/{case}/escalate");
    let (status, _) = post(
        &stack,
        &admin,
        &esc,
        json!({"reason": "please look", "expected_version": version}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &stack,
        &two,
        &esc,
        json!({"reason": "", "expected_version": version}),
    )
    .await;
    assert_eq!(status, 422);
    let (status, done) = post(
        &stack,
        &two,
        &esc,
        json!({"reason": "subscriber threatens to go to 12300", "expected_version": version}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["escalation_level"], 1);
    let (status, problem) = post(
        &stack,
        &two,
        &esc,
        json!({"reason": "once more, louder", "expected_version": version}),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("already_escalated")),
        "{problem}"
    );
    let (status, queue) = stack
        .call(
            stack
                .http
                .get(format!("{}/v1/agent/escalations", stack.url("gateway")))
                .bearer_auth(&boss),
        )
        .await;
    assert_eq!(status, 200, "{queue}");
    let listed = queue["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case_id"] == case.as_str())
        .cloned()
        .expect("escalated by hand");
    assert_eq!(listed["escalated_by"], "analyst.two");
    assert_eq!(
        listed["escalation_reason"],
        "subscriber threatens to go to 12300"
    );
    assert!(listed["msisdn"].as_str().unwrap().starts_with("+86*******"));

    // Withdraw on the subscriber's behalf: supervisors only, with a reason.
    let s3 = TestSubscriber::flagged(711);
    let (case3, token3, review3) = stack.case_in_security_review(&s3).await;
    let v3 = review3["version"].as_i64().unwrap();
    let view = stack.agent_case(&boss, &case3).await;
    assert!(
        view["allowed_actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "cancel"),
        "{view}"
    );
    let view = stack.agent_case(&one, &case3).await;
    assert!(
        !view["allowed_actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "cancel")
    );
    let (status, _) = stack
        .act(&one, &case3, "cancel", v3, json!({"reason": "asked to"}))
        .await;
    assert_eq!(status, 403);
    let (status, problem) = stack.act(&boss, &case3, "cancel", v3, json!({})).await;
    assert_eq!(status, 422, "{problem}");
    let (_, still) = stack.status(&case3, &token3).await;
    assert_eq!(still["state"], "security_review");
    let (status, cancelled) = stack
        .act(
            &boss,
            &case3,
            "cancel",
            v3,
            json!({"reason": "The subscriber withdrew by phone (hotline call)."}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let (_, done) = stack.status(&case3, &token3).await;
    assert_eq!(done["state"], "cancelled");
    let last = done["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["reason"],
        "The subscriber withdrew by phone (hotline call)."
    );

    // The first case is untouched by all this.
    let (_, first) = stack.status(&case, &token).await;
    assert_eq!(first["state"], "security_review");
    let (ok, out) = stack.verify_audit();
    assert!(ok, "{out}");
}

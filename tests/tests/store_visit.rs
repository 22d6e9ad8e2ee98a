//! The store-visit remedy end to end (issue 14 item 2): an extreme-tier case (the
//! carrier stopped the number on a police request) is asked for a store visit before
//! anything else (the verification ladder) and waits in
//! `awaiting_store_visit`; a store agent looks the number up, records the in-person
//! check (original ID card seen, face compared: the proof `in_person_id`), the case
//! goes through risk assessment to a security analyst, who approves, and the real
//! provisioning service restores the number at the carrier simulator: `reactivated`.

use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Stack, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

async fn post(stack: &Stack, token: &str, path: &str, body: &Value) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .post(format!("{}{path}", stack.url("gateway")))
                .bearer_auth(token)
                .json(body),
        )
        .await
}

async fn lookup(stack: &Stack, token: &str, msisdn: &str) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .get(format!("{}/v1/agent/store-visits", stack.url("gateway")))
                .query(&[("msisdn", msisdn)])
                .bearer_auth(token),
        )
        .await
}

#[tokio::test]
async fn a_store_agent_completes_the_store_visit_remedy_of_an_extreme_tier_case() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(731);
    stack
        .add_subscriber_suspended_for(&s, "police_request")
        .await;
    let (case, token) = stack.open_verified_case(&s).await;
    let waiting = stack
        .wait_for_state(&case, &token, "awaiting_store_visit", SETTLE)
        .await;
    assert_eq!(waiting["needs"], json!(["store_visit"]), "{waiting}");
    assert_eq!(waiting["department"], "subscriber");

    stack.create_agent("store.ana", &["store"]);
    stack.create_agent("cs.li", &["cs"]);
    stack.create_agent("sec.wu", &["security"]);
    let store = stack.login("store.ana").await;
    let cs = stack.login("cs.li").await;
    let security = stack.login("sec.wu").await;

    // Only store agents (and supervisors) look numbers up; a bad number is 422.
    assert_eq!(lookup(&stack, &cs, &s.msisdn).await.0, 403);
    let (status, problem) = lookup(&stack, &store, "12345").await;
    assert_eq!(status, 422, "{problem}");
    let (status, found) = lookup(&stack, &store, &s.msisdn).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["msisdn"], "+86*******0731");
    assert_eq!(found["cases"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["cases"][0]["case_id"], case.as_str());
    let version = found["cases"][0]["version"].as_i64().unwrap();

    let path = format!("/v1/agent/cases/{case}/store-visit");
    let good = json!({
        "expected_version": version,
        "documents_seen": ["resident_id_card", "police_release_letter"],
        "id_number": s.id_number,
        "face_compared": true,
    });
    // A CS agent may not record it.
    assert_eq!(post(&stack, &cs, &path, &good).await.0, 403);
    // Bad input changes nothing: no ID card, face not compared, a stale version,
    // another person's ID card.
    let mut no_card = good.clone();
    no_card["documents_seen"] = json!(["household_register"]);
    let (status, problem) = post(&stack, &store, &path, &no_card).await;
    assert_eq!(status, 422, "{problem}");
    let mut no_face = good.clone();
    no_face["face_compared"] = json!(false);
    assert_eq!(post(&stack, &store, &path, &no_face).await.0, 422);
    let mut stale = good.clone();
    stale["expected_version"] = json!(version - 1);
    assert_eq!(post(&stack, &store, &path, &stale).await.0, 409);
    let mut other = good.clone();
    other["id_number"] = json!(TestSubscriber::clean(732).id_number);
    let (status, problem) = post(&stack, &store, &path, &other).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("id_number_mismatch")),
        "{problem}"
    );
    assert_eq!(
        stack.status(&case, &token).await.1["state"],
        "awaiting_store_visit"
    );

    // The check itself: the case leaves the store-visit wait.
    let (status, view) = post(&stack, &store, &path, &good).await;
    assert_eq!(status, 200, "{view}");
    // A second recording is refused: the case no longer waits for a visit.
    let (status, problem) = post(&stack, &store, &path, &good).await;
    assert_eq!(status, 409, "{problem}");

    // After the visit the extreme tier is not refused again: an analyst decides.
    let reviewed = stack
        .wait_for_state(&case, &token, "security_review", SETTLE)
        .await;
    assert_eq!(reviewed["needs"], json!(["security_review"]), "{reviewed}");
    let agent_view = stack.agent_case(&security, &case).await;
    let v = agent_view["version"].as_i64().unwrap();
    let (status, answer) = stack
        .act(
            &security,
            &case,
            "approve",
            v,
            json!({"reason": "store visit: original ID seen, police release letter checked"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let done = stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    let events: Vec<&str> = done["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        events.windows(3).any(|w| w
            == [
                "store_visit_required",
                "store_visit_verified",
                "risk_flagged"
            ]),
        "{events:?}"
    );
    // The ladder asked for the visit before anything else: nothing was refused online.
    assert!(!events.contains(&"risk_refused"), "{events:?}");
    let store_step = done["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "store_visit_verified")
        .unwrap();
    assert_eq!(store_step["actor"], "store");
    assert_eq!(
        stack.sim_subscriber(&s.msisdn).await["status"],
        "active",
        "the carrier restored the number"
    );

    // What was stored is minimal and masked; the check and the lookups are audited.
    let (documents, masked): (Vec<String>, String) = sqlx::query_as(
        "SELECT documents_seen, id_number_masked FROM store_visits WHERE case_id = $1::uuid",
    )
    .bind(&case)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(documents, ["resident_id_card", "police_release_letter"]);
    assert!(masked.starts_with("**************"), "{masked}");
    assert!(!masked.contains(&s.id_number[..14]));
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE action LIKE 'store_visit.%' ORDER BY seq",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert!(
        actions.iter().any(|a| a == "store_visit.lookup"),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a == "store_visit.id_mismatch"),
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "store_visit.record")
            .count(),
        1,
        "{actions:?}"
    );
    let (ok, report) = stack.verify_audit();
    assert!(ok, "{report}");
}

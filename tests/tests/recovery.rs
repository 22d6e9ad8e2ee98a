//! A lost case token, over real processes: the gateway asks the identity service
//! (with its internal token) to start and finish a recovery; the code goes through
//! the carrier simulator to the contact on file; the new token works and the old
//! one answers 404.

use serde_json::json;
use system_tests::{Stack, StackOptions, TestSubscriber};

const SERVICES: &[&str] = &["carrier-sim", "identity", "gateway"];

#[tokio::test]
async fn a_lost_token_is_replaced_through_the_identity_service() {
    let stack = Stack::start_with(StackOptions {
        services: SERVICES.to_vec(),
        ..StackOptions::default()
    })
    .await;
    let s = TestSubscriber::clean(907);
    stack.add_subscriber(&s).await;
    let contact = s.backup_sms.clone().expect("a contact on file");
    let (case, old_token) = stack.open_verified_case(&s).await;

    // The identity service's recovery routes answer only the internal token.
    let (status, _, body) = stack
        .call_raw(
            stack
                .http
                .post(format!("{}/internal/v1/recoveries", stack.url("identity")))
                .json(&json!({"msisdn": s.msisdn})),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        stack
            .sim_outbox(&contact)
            .await
            .iter()
            .all(|m| !m["body"].as_str().unwrap_or_default().contains("recover")),
        "a code was sent without the internal token"
    );

    let gateway = stack.url("gateway");
    let (status, started) = stack
        .call(
            stack
                .http
                .post(format!("{gateway}/v1/cases/recovery"))
                .json(&json!({"msisdn": s.msisdn})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(
        started["detail"],
        "If this number has an open request past identity verification and a contact on file, a code was sent to it.",
        "{started}"
    );
    let recovery_id = started["recovery_id"].as_str().expect("recovery_id");

    let messages = stack.sim_outbox(&contact).await;
    let body = messages
        .iter()
        .rev()
        .filter_map(|m| m["body"].as_str())
        .find(|b| b.contains("recover"))
        .expect("a recovery code sent to the contact on file");
    let code = body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("six digits");

    let (status, done) = stack
        .call(
            stack
                .http
                .post(format!("{gateway}/v1/cases/recovery/{recovery_id}"))
                .json(&json!({ "code": code })),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["recovered"], true, "{done}");
    assert_eq!(done["case_id"], case.as_str());
    let new_token = done["case_token"].as_str().expect("case_token");

    let (status, seen) = stack.status(&case, new_token).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["case_id"], case.as_str());
    let (status, _) = stack.status(&case, &old_token).await;
    assert_eq!(status, 404);

    // Used once: the same code again recovers nothing.
    let (status, again) = stack
        .call(
            stack
                .http
                .post(format!("{gateway}/v1/cases/recovery/{recovery_id}"))
                .json(&json!({ "code": code })),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["recovered"], false, "{again}");
    let (ok, why) = stack.verify_audit();
    assert!(ok, "{why}");
}

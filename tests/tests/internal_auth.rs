//! Service-to-service authentication: the identity service's internal API answers
//! only calls that carry one of `REACTIVATION_INTERNAL_TOKENS` as a bearer token, so a
//! webhook receiver that learnt a case id cannot send codes or try proofs; the gateway
//! sends its token, and a token is rotated by listing the new one beside the old.

use data_protection::TokenHash;
use serde_json::json;
use system_tests::{Stack, StackOptions, TestSubscriber, random_secret};

const SERVICES: &[&str] = &["carrier-sim", "identity", "gateway"];

/// `POST` to an internal route with an optional `Authorization` value and the hash of
/// the case token `holder` (as the gateway sends it); (status, content type, body).
async fn internal(
    stack: &Stack,
    case: &str,
    what: &str,
    authorization: Option<&str>,
    holder: Option<&str>,
) -> (u16, String, String) {
    let mut request = stack.http.post(format!(
        "{}/internal/v1/cases/{case}/{what}",
        stack.url("identity")
    ));
    if what == "verifications" {
        request = request.json(&json!({"method": "otp", "code": "000000"}));
    }
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    if let Some(token) = holder {
        request = request.header("case-token-hash", TokenHash::of(token).encode());
    }
    stack.call_raw(request).await
}

async fn otp_sends(stack: &Stack, case: &str) -> i32 {
    sqlx::query_scalar("SELECT otp_sends FROM case_identities WHERE case_id = $1::uuid")
        .bind(case)
        .fetch_one(&stack.pool)
        .await
        .expect("the case's identity row")
}

#[tokio::test]
async fn internal_calls_without_the_internal_token_are_refused_and_change_nothing() {
    let stack = Stack::start_with(StackOptions {
        services: SERVICES.to_vec(),
        ..StackOptions::default()
    })
    .await;
    let s = TestSubscriber::clean(801);
    stack.add_subscriber(&s).await;
    let contact = s.backup_sms.clone().expect("a contact on file");
    let (case, case_token) = stack.open_case(&s).await;

    let wrong = [
        None,
        Some(format!("Bearer {}", random_secret())),
        Some(format!("Basic {}", stack.internal_token)),
        Some(format!("Bearer {case_token}")),
        Some(format!("Bearer {}x", stack.internal_token)),
        Some(stack.internal_token.clone()),
    ];
    for authorization in &wrong {
        for what in ["otp", "verifications"] {
            let (status, content_type, body) = internal(
                &stack,
                &case,
                what,
                authorization.as_deref(),
                Some(&case_token),
            )
            .await;
            assert_eq!(status, 401, "{what} with {authorization:?}: {body}");
            assert_eq!(content_type, "application/problem+json");
            let problem: serde_json::Value = serde_json::from_str(&body).expect("problem JSON");
            assert_eq!(
                problem["type"],
                "https://reactivation.example/problems/unauthenticated"
            );
            assert!(
                !body.contains(&stack.internal_token),
                "the token leaks: {body}"
            );
        }
    }
    // Nothing happened: no code sent, no attempt counted.
    assert_eq!(otp_sends(&stack, &case).await, 0);
    assert!(stack.sim_outbox(&contact).await.is_empty());
    let failed: i32 =
        sqlx::query_scalar("SELECT failed_attempts FROM case_identities WHERE case_id = $1::uuid")
            .bind(&case)
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(failed, 0);

    // With the internal token, a case call still needs the hash of the case's own token
    // (the gateway passes it on): without it, or with another, the case is unknown.
    let bearer = format!("Bearer {}", stack.internal_token);
    let other = TestSubscriber::clean(802);
    stack.add_subscriber(&other).await;
    let (_, other_token) = stack.open_case(&other).await;
    let unknown = r#""type":"https://reactivation.example/problems/not-found""#;
    for holder in [None, Some(other_token.as_str()), Some("not-a-token")] {
        for what in ["otp", "verifications"] {
            let (status, _, body) = internal(&stack, &case, what, Some(&bearer), holder).await;
            assert_eq!(status, 404, "{what} with {holder:?}: {body}");
            assert!(body.contains(unknown), "{body}");
        }
    }
    let bad_hash = stack
        .call_raw(
            stack
                .http
                .post(format!(
                    "{}/internal/v1/cases/{case}/otp",
                    stack.url("identity")
                ))
                .header("authorization", &bearer)
                .header("case-token-hash", "x".repeat(43)),
        )
        .await;
    assert_eq!(bad_hash.0, 404, "{}", bad_hash.2);
    assert_eq!(otp_sends(&stack, &case).await, 0);
    assert!(stack.sim_outbox(&contact).await.is_empty());

    // With both, the same call works.
    let (status, _, body) = internal(&stack, &case, "otp", Some(&bearer), Some(&case_token)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(otp_sends(&stack, &case).await, 1);
    assert_eq!(stack.sim_outbox(&contact).await.len(), 1);

    // And the gateway, which sends its token, proves identity through the service.
    let (status, body) = stack.request_otp(&case, &case_token).await;
    assert_eq!(status, 202, "{body}");
    let code = stack.latest_code(&contact).await;
    let (status, body) = stack
        .verify(&case, &case_token, &json!({"method": "otp", "code": code}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], true, "{body}");

    // Health and metrics stay open for probes.
    let (status, _, _) = stack
        .call_raw(stack.http.get(format!("{}/readyz", stack.url("identity"))))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_rotated_internal_token_is_accepted_beside_the_old_one() {
    let (old, new) = (random_secret(), random_secret());
    // Mid-rotation: the identity service accepts both, the gateway still sends the old one.
    let stack = Stack::start_with(StackOptions {
        services: SERVICES.to_vec(),
        service_env: vec![
            (
                "identity",
                "REACTIVATION_INTERNAL_TOKENS".into(),
                format!("{new} {old}"),
            ),
            (
                "gateway",
                "REACTIVATION_INTERNAL_TOKENS".into(),
                old.clone(),
            ),
        ],
        ..StackOptions::default()
    })
    .await;
    let mut cases = Vec::new();
    for n in 0..4 {
        let s = TestSubscriber::clean(810 + n);
        stack.add_subscriber(&s).await;
        let (case, token) = stack.open_case(&s).await;
        cases.push((case, token));
    }

    // The gateway's calls (old token) go through.
    let (status, body) = stack.request_otp(&cases[0].0, &cases[0].1).await;
    assert_eq!(status, 202, "{body}");
    // A caller that already has the new token is accepted too, and so is the old one.
    for (token, (case, holder)) in [(&new, &cases[1]), (&old, &cases[2])] {
        let (status, _, body) = internal(
            &stack,
            case,
            "otp",
            Some(&format!("Bearer {token}")),
            Some(holder),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    // Any other token is still refused.
    let (status, _, _) = internal(
        &stack,
        &cases[3].0,
        "otp",
        Some(&format!("Bearer {}", random_secret())),
        Some(&cases[3].1),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(otp_sends(&stack, &cases[3].0).await, 0);
}

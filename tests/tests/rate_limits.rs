//! Per-client rate limits over the real binary, configured through its environment:
//! past the budget an address gets 429 problem+json with `Retry-After`; behind the
//! trusted proxy (here 127.0.0.1, where the test connects from) each real client named
//! by `X-Forwarded-For` has its own budget; `REACTIVATION_RATE_LIMITS=off` lifts them.

use system_tests::{Stack, StackOptions};
use uuid::Uuid;

async fn gateway_with(env: &[(&str, &str)]) -> Stack {
    Stack::start_with(StackOptions {
        services: vec!["gateway"],
        // Later entries win: these override the harness's `off`.
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..StackOptions::default()
    })
    .await
}

/// A case-token read from the client `forwarded` (404 while within the budget).
async fn read(stack: &Stack, forwarded: &str) -> reqwest::Response {
    stack
        .http
        .get(format!(
            "{}/v1/cases/{}",
            stack.url("gateway"),
            Uuid::now_v7()
        ))
        .bearer_auth("not-a-token")
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .expect("request sent")
}

#[tokio::test]
async fn past_the_budget_each_real_client_behind_the_proxy_gets_429() {
    let stack = gateway_with(&[
        ("REACTIVATION_RATE_LIMITS", "on"),
        ("REACTIVATION_RATE_LIMIT_ANONYMOUS_BURST", "3"),
        ("REACTIVATION_RATE_LIMIT_ANONYMOUS_PERIOD_MS", "60000"),
        ("REACTIVATION_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    for _ in 0..3 {
        assert_eq!(read(&stack, "203.0.113.1").await.status(), 404);
    }
    let limited = read(&stack, "203.0.113.1").await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["status"], 429);
    // Another subscriber behind the same proxy is not held back by the first.
    assert_eq!(read(&stack, "203.0.113.2").await.status(), 404);
    assert!(
        stack
            .metric(
                "gateway",
                "gateway_rate_limited_total",
                &[("class", "anonymous")]
            )
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn with_rate_limits_off_one_address_is_never_throttled() {
    // The harness's default for every other system test.
    let stack = gateway_with(&[]).await;
    for _ in 0..60 {
        assert_eq!(read(&stack, "203.0.113.1").await.status(), 404);
    }
}

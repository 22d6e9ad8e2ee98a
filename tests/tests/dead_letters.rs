//! Dead letters over real processes: a carrier webhook the processor gave up on is
//! counted in the webhooks service's /metrics, listed for admins only (no payload),
//! and an admin retry (audited) puts it back so that the webhooks service, woken at
//! once, processes it.

use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::{Stack, StackOptions};

const SETTLE: Duration = Duration::from_secs(30);

async fn dead_gauge(stack: &Stack) -> f64 {
    stack
        .metric(
            "webhooks",
            "queue_dead_items",
            &[("queue", "carrier_webhooks")],
        )
        .await
}

/// Waits until the webhooks service's dead-letter gauge for carrier webhooks reads `want`.
async fn wait_for_gauge(stack: &Stack, want: f64) {
    let started = Instant::now();
    loop {
        let now = dead_gauge(stack).await;
        if now == want {
            return;
        }
        assert!(
            started.elapsed() < SETTLE,
            "queue_dead_items{{queue=\"carrier_webhooks\"}} is {now}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_dead_carrier_webhook_is_counted_listed_and_retried_by_an_admin() {
    let stack = Stack::start_with(StackOptions {
        services: vec!["webhooks", "gateway"],
        ..StackOptions::default()
    })
    .await;
    stack.create_agent("dl.admin", &["admin"]);
    stack.create_agent("dl.supervisor", &["supervisor"]);
    let admin = stack.login("dl.admin").await;
    let supervisor = stack.login("dl.supervisor").await;
    let gateway = stack.url("gateway").to_owned();

    // A webhook the processor gave up on after its tenth attempt.
    let body = json!({"type": "subscriber.signals", "timestamp": "2026-12-01T00:00:00Z",
                      "data": {"msisdn": "+8613800138077",
                               "signals": {"fraud_linked_contacts": 0, "sms_peak_per_hour": 0, "intl_calls_24h": 0}}});
    sqlx::query(
        "INSERT INTO carrier_webhooks (id, type, payload, attempts, failed_at, error)
         VALUES ('msg_dead_1', 'subscriber.signals', $1, 10, now(), 'the database was away')",
    )
    .bind(&body)
    .execute(&stack.pool)
    .await
    .unwrap();
    wait_for_gauge(&stack, 1.0).await;

    let list_url = format!("{gateway}/v1/agent/admin/dead-letters");
    let (status, refused) = stack
        .call(stack.http.get(&list_url).bearer_auth(&supervisor))
        .await;
    assert_eq!(status, 403, "{refused}");
    let (status, list) = stack
        .call(stack.http.get(&list_url).bearer_auth(&admin))
        .await;
    assert_eq!(status, 200, "{list}");
    let queues = list["queues"].as_array().unwrap();
    let names: Vec<&str> = queues
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["outbox", "carrier_webhooks", "webhook_deliveries"],
        "{list}"
    );
    let carrier = &queues[1];
    assert_eq!(carrier["dead"], 1, "{list}");
    assert_eq!(carrier["max_attempts"], 10, "{list}");
    let item = &carrier["items"][0];
    assert_eq!(item["id"], "msg_dead_1");
    assert_eq!(item["kind"], "subscriber.signals");
    assert_eq!(item["attempts"], 10);
    assert_eq!(item["last_error"], "the database was away");
    assert!(item["died_at"].is_string(), "{item}");
    assert!(
        !list.to_string().contains("+8613800138077"),
        "no personal data: {list}"
    );

    let retry_url =
        format!("{gateway}/v1/agent/admin/dead-letters/carrier_webhooks/msg_dead_1/retry");
    let (status, refused) = stack
        .call(stack.http.post(&retry_url).bearer_auth(&supervisor))
        .await;
    assert_eq!(status, 403, "{refused}");
    let (status, missing) = stack
        .call(
            stack
                .http
                .post(format!(
                    "{gateway}/v1/agent/admin/dead-letters/no_such_queue/msg_dead_1/retry"
                ))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    let (status, retried) = stack
        .call(stack.http.post(&retry_url).bearer_auth(&admin))
        .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["id"], "msg_dead_1");
    let (status, again) = stack
        .call(stack.http.post(&retry_url).bearer_auth(&admin))
        .await;
    assert_eq!(status, 404, "no longer dead: {again}");

    // The webhooks service is woken (its fallback poll is an hour) and processes it.
    let started = Instant::now();
    loop {
        let (processed, failed): (bool, bool) = sqlx::query_as(
            "SELECT processed_at IS NOT NULL, failed_at IS NOT NULL FROM carrier_webhooks WHERE id = 'msg_dead_1'",
        )
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        if processed {
            assert!(!failed);
            break;
        }
        assert!(
            started.elapsed() < SETTLE,
            "the retried webhook was not processed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'dead_letter.retry'
           AND detail->>'queue' = 'carrier_webhooks' AND detail->>'id' = 'msg_dead_1'",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    let (ok, report) = stack.verify_audit();
    assert!(ok, "{report}");
    wait_for_gauge(&stack, 0.0).await;
}

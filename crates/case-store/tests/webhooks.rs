//! The webhook tables against a real Postgres: replay dedupe, fenced claims, the
//! case-event feed the trigger fills, deliveries once per endpoint and event.

use case_store::testing::{cancel_in, open_case};
use std::time::Duration;

use case_domain::CaseEvent;
use case_store::{
    MIGRATOR, StoreError,
    webhooks::{self as store, AttemptOutcome, Disposition},
};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

async fn cancel(pool: &PgPool, case_id: Uuid) {
    let mut tx = pool.begin().await.unwrap();
    cancel_in(&mut tx, case_id).await;
    tx.commit().await.unwrap();
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

fn payload() -> serde_json::Value {
    json!({"type": "subscriber.suspended", "timestamp": "2026-12-01T00:00:00Z",
           "data": {"msisdn": "+8613800138000", "reason": "x"}})
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_webhook_id_is_stored_once_even_when_delivered_concurrently(pool: PgPool) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let pool = pool.clone();
        tasks.spawn(async move {
            store::receive_carrier_webhook(&pool, "msg_1", "subscriber.suspended", &payload())
                .await
                .unwrap()
        });
    }
    let mut new = 0;
    while let Some(done) = tasks.join_next().await {
        new += usize::from(done.unwrap());
    }
    assert_eq!(new, 1);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM carrier_webhooks").await,
        1
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_claimed_webhook_is_fenced_by_its_attempt(pool: PgPool) {
    store::receive_carrier_webhook(&pool, "msg_1", "subscriber.suspended", &payload())
        .await
        .unwrap();
    // A lease that ends at once: a second worker may claim the webhook again.
    let first = store::claim_carrier_webhook(&pool, "w1", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let second = store::claim_carrier_webhook(&pool, "w2", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.attempts, second.attempts), (1, 2));
    assert!(
        store::claim_carrier_webhook(&pool, "w3", LEASE)
            .await
            .unwrap()
            .is_none()
    );
    // The first worker's late write is refused; the holder's counts.
    let late = store::mark_carrier_webhook_processed(&pool, &first, None).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    store::mark_carrier_webhook_processed(&pool, &second, Some("nothing to do"))
        .await
        .unwrap();
    let row = store::load_carrier_webhook(&pool, "msg_1")
        .await
        .unwrap()
        .unwrap();
    assert!(row.processed_at.is_some());
    assert_eq!(row.error.as_deref(), Some("nothing to do"));
    assert_eq!(store::next_carrier_webhook_due(&pool).await.unwrap(), None);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_failed_processing_waits_for_its_back_off(pool: PgPool) {
    store::receive_carrier_webhook(&pool, "msg_1", "subscriber.suspended", &payload())
        .await
        .unwrap();
    let claim = store::claim_carrier_webhook(&pool, "w1", LEASE)
        .await
        .unwrap()
        .unwrap();
    store::retry_carrier_webhook(&pool, &claim, Duration::from_secs(60), "db hiccup")
        .await
        .unwrap();
    assert!(
        store::claim_carrier_webhook(&pool, "w1", LEASE)
            .await
            .unwrap()
            .is_none()
    );
    let due = store::next_carrier_webhook_due(&pool)
        .await
        .unwrap()
        .unwrap();
    assert!(due > chrono::Utc::now() + chrono::Duration::seconds(50));
}

async fn endpoint(pool: &PgPool, types: &[&str]) -> Uuid {
    let id = Uuid::now_v7();
    let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    store::create_endpoint(
        pool,
        id,
        "https://hooks.example.com/",
        &types,
        b"sealed",
        None,
    )
    .await
    .unwrap();
    id
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_feed_fills_only_while_an_endpoint_is_registered(pool: PgPool) {
    let quiet = open_case(&pool, "+8613800138001").await;
    cancel(&pool, quiet).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM webhook_event_feed").await,
        0
    );

    endpoint(&pool, &["case.state_changed"]).await;
    let case = open_case(&pool, "+8613800138002").await;
    cancel(&pool, case).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM webhook_event_feed").await,
        2
    );

    // A fan-out holding the rows hides them from another; a rollback gives them back.
    let mut a = pool.begin().await.unwrap();
    let taken = store::take_feed_batch(&mut a, 100).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert!(taken[0].seq < taken[1].seq);
    assert_eq!(taken[1].event, CaseEvent::Cancelled);
    let mut b = pool.begin().await.unwrap();
    assert!(
        store::take_feed_batch(&mut b, 100)
            .await
            .unwrap()
            .is_empty()
    );
    b.rollback().await.unwrap();
    a.rollback().await.unwrap();
    let mut c = pool.begin().await.unwrap();
    assert_eq!(store::take_feed_batch(&mut c, 100).await.unwrap().len(), 2);
    c.commit().await.unwrap();
    assert!(!store::feed_pending(&pool).await.unwrap());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn deliveries_are_once_per_endpoint_and_event_fenced_and_logged(pool: PgPool) {
    let endpoint_id = endpoint(&pool, &["case.state_changed"]).await;
    let case = open_case(&pool, "+8613800138003").await;
    cancel(&pool, case).await;
    let event_id: Uuid =
        sqlx::query_scalar("SELECT id FROM case_events WHERE case_id = $1 AND event = 'cancelled'")
            .bind(case)
            .fetch_one(&pool)
            .await
            .unwrap();
    let body = json!({"type": "case.state_changed"});
    let mut conn = pool.acquire().await.unwrap();
    assert!(
        store::insert_delivery(
            &mut conn,
            endpoint_id,
            event_id,
            "case.state_changed",
            &body
        )
        .await
        .unwrap()
    );
    assert!(
        !store::insert_delivery(
            &mut conn,
            endpoint_id,
            event_id,
            "case.state_changed",
            &body
        )
        .await
        .unwrap()
    );

    let first = store::claim_delivery(&pool, "w1", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert!(first.endpoint_active);
    assert_eq!(first.secret_sealed.as_deref(), Some(&b"sealed"[..]));
    let failed = AttemptOutcome {
        status_code: Some(500),
        error: Some("the endpoint answered 500"),
        duration: Duration::from_millis(12),
        disposition: Disposition::RetryAfter(Duration::ZERO),
    };
    store::record_attempt(&mut conn, &first, &failed)
        .await
        .unwrap();
    let second = store::claim_delivery(&pool, "w2", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.attempts, 2);
    // The first claim can no longer write.
    assert!(
        store::record_attempt(&mut conn, &first, &failed)
            .await
            .is_err()
    );
    let delivered = AttemptOutcome {
        status_code: Some(204),
        error: None,
        duration: Duration::from_millis(3),
        disposition: Disposition::Delivered,
    };
    store::record_attempt(&mut conn, &second, &delivered)
        .await
        .unwrap();
    let log = store::delivery_log(&mut conn, endpoint_id, 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    let (delivery, attempts) = &log[0];
    assert_eq!(
        (
            delivery.status.as_str(),
            delivery.attempts,
            delivery.last_status
        ),
        ("delivered", 2, Some(204))
    );
    let codes: Vec<Option<i32>> = attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(204)]);
    assert_eq!(store::next_delivery_due(&pool).await.unwrap(), None);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn deleting_or_disabling_an_endpoint_cancels_what_is_pending(pool: PgPool) {
    let (a, b) = (
        endpoint(&pool, &["case.state_changed"]).await,
        endpoint(&pool, &["case.state_changed"]).await,
    );
    let case = open_case(&pool, "+8613800138004").await;
    cancel(&pool, case).await;
    let event_id: Uuid =
        sqlx::query_scalar("SELECT id FROM case_events WHERE case_id = $1 AND event = 'cancelled'")
            .bind(case)
            .fetch_one(&pool)
            .await
            .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    for endpoint in [a, b] {
        store::insert_delivery(
            &mut conn,
            endpoint,
            event_id,
            "case.state_changed",
            &json!({}),
        )
        .await
        .unwrap();
    }
    assert!(store::delete_endpoint(&mut conn, a).await.unwrap());
    assert!(!store::delete_endpoint(&mut conn, a).await.unwrap());
    store::disable_endpoint(&mut conn, b, "410").await.unwrap();
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'cancelled'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM webhook_endpoints WHERE secret_sealed IS NULL"
        )
        .await,
        1
    );
    let listed = store::list_endpoints(&pool).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].disabled_at.is_some());
    assert!(store::active_endpoints(&pool).await.unwrap().is_empty());
}

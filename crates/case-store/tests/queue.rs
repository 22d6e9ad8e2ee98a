//! The one leased-queue mechanism against a real Postgres: SKIP LOCKED claims, lease
//! expiry and fencing, back-off, the attempt ceiling and the dead state (by failure
//! and by crashed workers), the admin requeue, and the dead-letter metrics.

use std::time::Duration;

use case_store::{
    MIGRATOR, StoreError,
    queue::{self, CARRIER_WEBHOOKS, Failed, Queue, WEBHOOK_DELIVERIES},
    webhooks as store,
};
use serde_json::json;
use sqlx::PgPool;

const LEASE: Duration = Duration::from_secs(30);
/// A small ceiling so tests reach it quickly.
const THREE: Queue = CARRIER_WEBHOOKS.with_max_attempts(3);

async fn receive(pool: &PgPool, id: &str) {
    let body = json!({"type": "subscriber.signals", "timestamp": "2026-12-01T00:00:00Z",
                      "data": {"msisdn": "+8613800138000"}});
    assert!(
        store::receive_carrier_webhook(pool, id, "subscriber.signals", &body)
            .await
            .unwrap()
    );
}

async fn claim(pool: &PgPool, q: &Queue, worker: &str, lease: Duration) -> Option<queue::Lease> {
    queue::claim(pool, q, &[], worker, lease)
        .await
        .unwrap()
        .map(|c| c.lease)
}

async fn dead_of(pool: &PgPool, q: &Queue) -> i64 {
    queue::dead_counts(pool)
        .await
        .unwrap()
        .into_iter()
        .find(|(name, _)| *name == q.name)
        .unwrap()
        .1
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_claimers_get_distinct_items(pool: PgPool) {
    for i in 0..6 {
        receive(&pool, &format!("msg_{i}")).await;
    }
    // A claim in an open transaction keeps its row locked: a second claimer skips it.
    let mut tx = pool.begin().await.unwrap();
    let held = queue::claim(&mut *tx, &CARRIER_WEBHOOKS, &[], "a", LEASE)
        .await
        .unwrap()
        .unwrap()
        .lease;
    let other = claim(&pool, &CARRIER_WEBHOOKS, "b", LEASE).await.unwrap();
    assert_ne!(held.item, other.item);
    tx.commit().await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..6 {
        let pool = pool.clone();
        tasks.spawn(async move { claim(&pool, &CARRIER_WEBHOOKS, &format!("w{w}"), LEASE).await });
    }
    let mut items = vec![held.item, other.item];
    while let Some(done) = tasks.join_next().await {
        if let Some(lease) = done.unwrap() {
            items.push(lease.item);
        }
    }
    let all = items.len();
    items.sort();
    items.dedup();
    assert_eq!((all, items.len()), (6, 6), "every item once: {items:?}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_expired_lease_passes_on_and_the_late_write_is_refused(pool: PgPool) {
    receive(&pool, "msg_1").await;
    let first = claim(&pool, &CARRIER_WEBHOOKS, "w1", Duration::ZERO)
        .await
        .unwrap();
    let second = claim(&pool, &CARRIER_WEBHOOKS, "w2", LEASE).await.unwrap();
    assert_eq!((second.item.as_str(), second.attempt), ("msg_1", 2));
    for late in [
        queue::done(&pool, &CARRIER_WEBHOOKS, &first, None).await,
        queue::renew(&pool, &CARRIER_WEBHOOKS, &first, LEASE).await,
        queue::fail(&pool, &CARRIER_WEBHOOKS, &first, "late").await,
        queue::retry(&pool, &CARRIER_WEBHOOKS, &first, LEASE, "late")
            .await
            .map(|_| ()),
    ] {
        assert!(
            matches!(
                late,
                Err(StoreError::QueueLeaseLost {
                    queue: "carrier_webhooks",
                    attempt: 1,
                    ..
                })
            ),
            "{late:?}"
        );
    }
    queue::renew(&pool, &CARRIER_WEBHOOKS, &second, LEASE)
        .await
        .unwrap();
    queue::done(&pool, &CARRIER_WEBHOOKS, &second, None)
        .await
        .unwrap();
    assert_eq!(
        queue::next_due(&pool, &CARRIER_WEBHOOKS, &[])
            .await
            .unwrap(),
        None
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_retry_waits_for_its_back_off(pool: PgPool) {
    receive(&pool, "msg_1").await;
    let lease = claim(&pool, &CARRIER_WEBHOOKS, "w1", LEASE).await.unwrap();
    let before = chrono::Utc::now();
    let outcome = queue::retry(
        &pool,
        &CARRIER_WEBHOOKS,
        &lease,
        Duration::from_secs(120),
        "db hiccup",
    )
    .await
    .unwrap();
    assert_eq!(outcome, Failed::Retried);
    assert!(claim(&pool, &CARRIER_WEBHOOKS, "w2", LEASE).await.is_none());
    let due = queue::next_due(&pool, &CARRIER_WEBHOOKS, &[])
        .await
        .unwrap()
        .unwrap();
    let wait = (due - before).num_seconds();
    assert!((115..=125).contains(&wait), "due in {wait} s");
    let row = store::load_carrier_webhook(&pool, "msg_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.error.as_deref(), Some("db hiccup"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_item_failing_at_the_ceiling_is_dead_and_no_longer_claimed(pool: PgPool) {
    receive(&pool, "msg_1").await;
    for attempt in 1..=3 {
        let lease = claim(&pool, &THREE, "w1", LEASE).await.unwrap();
        assert_eq!(lease.attempt, attempt);
        let outcome = queue::retry(&pool, &THREE, &lease, Duration::ZERO, "still broken")
            .await
            .unwrap();
        let expected = if attempt < 3 {
            Failed::Retried
        } else {
            Failed::Dead
        };
        assert_eq!(outcome, expected, "attempt {attempt}");
    }
    assert!(claim(&pool, &THREE, "w1", LEASE).await.is_none());
    assert_eq!(queue::next_due(&pool, &THREE, &[]).await.unwrap(), None);
    assert_eq!(dead_of(&pool, &THREE).await, 1);
    let dead = queue::list_dead(&pool, &THREE, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].queue.as_str(),
            dead[0].id.as_str(),
            dead[0].kind.as_str(),
            dead[0].attempts,
            dead[0].last_error.as_deref()
        ),
        (
            "carrier_webhooks",
            "msg_1",
            "subscriber.signals",
            3,
            Some("still broken")
        )
    );
    assert!(dead[0].died_at.is_some());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_worker_crashing_every_time_leaves_the_item_dead(pool: PgPool) {
    receive(&pool, "msg_1").await;
    // Three claims whose leases end at once and are never settled (the worker died).
    for attempt in 1..=3 {
        let lease = claim(&pool, &THREE, &format!("w{attempt}"), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(lease.attempt, attempt);
    }
    assert!(claim(&pool, &THREE, "w4", LEASE).await.is_none());
    let row = store::load_carrier_webhook(&pool, "msg_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.attempts, 3);
    assert!(row.failed_at.is_some());
    assert!(
        row.error.as_deref().unwrap().contains("lease expired"),
        "{:?}",
        row.error
    );
    assert_eq!(dead_of(&pool, &THREE).await, 1);
    assert_eq!(queue::next_due(&pool, &THREE, &[]).await.unwrap(), None);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_admin_requeue_makes_a_dead_item_claimable_again(pool: PgPool) {
    receive(&pool, "msg_1").await;
    let lease = claim(&pool, &CARRIER_WEBHOOKS, "w1", LEASE).await.unwrap();
    queue::fail(&pool, &CARRIER_WEBHOOKS, &lease, "gave up")
        .await
        .unwrap();
    assert!(claim(&pool, &CARRIER_WEBHOOKS, "w1", LEASE).await.is_none());
    // Only dead items are requeued; a uuid queue refuses an id that is no uuid.
    assert_eq!(
        queue::requeue(&pool, &CARRIER_WEBHOOKS, "msg_2")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        queue::requeue(&pool, &WEBHOOK_DELIVERIES, "not-a-uuid")
            .await
            .unwrap(),
        None
    );
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener
        .listen(store::CARRIER_WEBHOOK_CHANNEL)
        .await
        .unwrap();
    let was = queue::requeue(&pool, &CARRIER_WEBHOOKS, "msg_1")
        .await
        .unwrap()
        .unwrap();
    // The processor is woken, not left to its fallback poll.
    let woken = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification")
        .unwrap();
    assert_eq!(woken.payload(), "msg_1");
    assert_eq!(
        (was.attempts, was.last_error.as_deref()),
        (1, Some("gave up"))
    );
    assert_eq!(dead_of(&pool, &CARRIER_WEBHOOKS).await, 0);
    assert_eq!(
        queue::requeue(&pool, &CARRIER_WEBHOOKS, "msg_1")
            .await
            .unwrap(),
        None,
        "no longer dead"
    );
    let again = claim(&pool, &CARRIER_WEBHOOKS, "w2", LEASE).await.unwrap();
    assert_eq!((again.item.as_str(), again.attempt), ("msg_1", 1));
    queue::done(&pool, &CARRIER_WEBHOOKS, &again, None)
        .await
        .unwrap();
    let row = store::load_carrier_webhook(&pool, "msg_1")
        .await
        .unwrap()
        .unwrap();
    assert!(row.processed_at.is_some() && row.failed_at.is_none());
}

#[test]
fn each_queue_wakes_its_workers_on_their_channel() {
    assert_eq!(
        CARRIER_WEBHOOKS.wake,
        format!("'{}'", store::CARRIER_WEBHOOK_CHANNEL)
    );
    assert_eq!(
        WEBHOOK_DELIVERIES.wake,
        format!("'{}'", store::DELIVERY_CHANNEL)
    );
    assert_eq!(
        case_store::outbox_channel("provisioning.order"),
        "outbox_provisioning_order"
    );
    assert_eq!(
        queue::OUTBOX.wake,
        "'outbox_' || replace(t.topic, '.', '_')"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_requeued_outbox_message_wakes_the_deliverers_of_its_topic(pool: PgPool) {
    let case_id = case_store::testing::open_case(&pool, "+8613800138009").await;
    sqlx::query(
        "INSERT INTO outbox (id, case_id, topic, dedupe_key, payload, attempts, failed_at, last_error)
         VALUES ($1, $2, 'provisioning.order', 'k1', '{}', 20, now(), 'the carrier was away')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(case_id)
    .execute(&pool)
    .await
    .unwrap();
    let dead = queue::list_dead(&pool, &queue::OUTBOX, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, "provisioning.order");
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener
        .listen(&case_store::outbox_channel("provisioning.order"))
        .await
        .unwrap();
    queue::requeue(&pool, &queue::OUTBOX, &dead[0].id)
        .await
        .unwrap()
        .unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification")
        .unwrap();
    assert_eq!(woken.payload(), dead[0].id);
    let topics = vec!["provisioning.order".to_owned()];
    let claim = case_store::claim_outbox(&pool, &topics, "w1", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (claim.id.to_string(), claim.attempts),
        (dead[0].id.clone(), 1)
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn dead_items_show_in_the_prometheus_metrics(pool: PgPool) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // The test runtime is single-threaded: the local recorder sees every await below.
    let _guard = metrics::set_default_local_recorder(&recorder);
    receive(&pool, "msg_1").await;
    for _ in 1..=3 {
        let lease = claim(&pool, &THREE, "w1", LEASE).await.unwrap();
        queue::retry(&pool, &THREE, &lease, Duration::ZERO, "still broken")
            .await
            .unwrap();
    }
    // msg_2's worker crashes at every attempt: the claim after the last buries it.
    receive(&pool, "msg_2").await;
    for _ in 1..=3 {
        claim(&pool, &THREE, "w1", Duration::ZERO).await.unwrap();
    }
    assert!(claim(&pool, &THREE, "w1", LEASE).await.is_none());
    let counts = queue::publish_dead_gauges(&pool).await.unwrap();
    assert_eq!(
        counts,
        vec![
            ("outbox", 0),
            ("carrier_webhooks", 2),
            ("webhook_deliveries", 0)
        ]
    );
    let text = handle.render();
    for line in [
        r#"queue_dead_items{queue="carrier_webhooks"} 2"#,
        r#"queue_dead_items{queue="outbox"} 0"#,
        r#"queue_dead_items{queue="webhook_deliveries"} 0"#,
        r#"queue_items_dead_total{queue="carrier_webhooks"} 2"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing in:\n{text}"
        );
    }
}

/// `n` due outbox messages of `topic`, the oldest first by `available_at`, straight
/// into the table (a backlog the deliverers have not caught up with).
async fn outbox_backlog(pool: &PgPool, topic: &str, n: i32, first_due_secs_ago: f64) {
    sqlx::query(
        "INSERT INTO outbox (id, topic, dedupe_key, payload, created_at, available_at)
         SELECT gen_random_uuid(), $1, $1 || '/' || i, '{}',
                now() - make_interval(secs => $3 - i), now() - make_interval(secs => $3 - i)
         FROM generate_series(1, $2) i",
    )
    .bind(topic)
    .bind(n)
    .bind(first_due_secs_ago)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE outbox").execute(pool).await.unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_claim_reads_about_its_batch_whatever_the_backlog(pool: PgPool) {
    // Two topics' backlogs, interleaved in due time: 3,000 and 2,000 messages, one a
    // second apart each, b's half a second after a's from a's second message on.
    outbox_backlog(&pool, "a.topic", 3000, 4000.0).await;
    outbox_backlog(&pool, "b.topic", 2000, 3998.5).await;
    let topics = ["a.topic".to_owned(), "b.topic".to_owned()];
    // Each plan the statement may get, one batch each: the second batch goes on
    // where the first stopped.
    let batches = [
        (
            "force_custom_plan",
            ["a", "a", "b", "a", "b", "a", "b", "a"],
        ),
        (
            "force_generic_plan",
            ["b", "a", "b", "a", "b", "a", "b", "a"],
        ),
    ];
    for (plan, expected) in batches {
        let mut tx = planned_tx(&pool, plan).await;
        let (claimed, due) =
            queue::claim_batch_due(&mut *tx, &queue::OUTBOX, &topics, "w", LEASE, 8)
                .await
                .unwrap();
        // The rows the statement fetched through an index, in this transaction.
        let fetched: i64 = sqlx::query_scalar(
            "SELECT idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = 'outbox'",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(claimed.len(), 8, "{plan}");
        assert_eq!(due, None, "a full batch reads no due time");
        // Both topics, the longest due first, whichever topic it is in.
        let kinds: Vec<String> = claimed
            .iter()
            .map(|c| sqlx::Row::get::<String, _>(&c.row, "topic"))
            .collect();
        assert_eq!(kinds, expected.map(|t| format!("{t}.topic")), "{plan}");
        assert!(
            fetched < 100,
            "{plan}: the claim fetched {fetched} rows for a batch of 8 out of 5,000"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_item_at_the_ceiling_is_buried_in_due_order_and_the_batch_still_fills(pool: PgPool) {
    for i in 1..=4 {
        receive(&pool, &format!("msg_{i}")).await;
    }
    // msg_1's worker died on its last attempt: its lease ran out at the ceiling.
    sqlx::query(
        "UPDATE carrier_webhooks SET attempts = 3, lease_owner = 'gone',
                lease_expires_at = now() - interval '1 second', available_at = now() - interval '1 hour'
         WHERE id = 'msg_1'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (claimed, due) = queue::claim_batch_due(&pool, &THREE, &[], "w", LEASE, 3)
        .await
        .unwrap();
    // msg_1 took a slot and was buried; two of the three others were claimed, and the
    // claim says more is due now, so the worker comes back at once.
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.lease.item != "msg_1"));
    assert_eq!(dead_of(&pool, &THREE).await, 1);
    let due = due.expect("the fourth message is due");
    assert!(due <= chrono::Utc::now());
    let (rest, _) = queue::claim_batch_due(&pool, &THREE, &[], "w", LEASE, 3)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
}

/// A worker's claims keep one plan: after Postgres's five custom plans, the claim
/// runs on its cached generic plan instead of being planned on every run (planning
/// it took 1.3 ms, more than running it, on every claim of a busy deliverer).
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_busy_claimer_keeps_its_plan(pool: PgPool) {
    use sqlx::{ConnectOptions, Connection};
    outbox_backlog(&pool, "a.topic", 3000, 4000.0).await;
    outbox_backlog(&pool, "b.topic", 2000, 3998.5).await;
    let topics = ["a.topic".to_owned(), "b.topic".to_owned()];
    // A connection with the settings of the product's pools (plan_cache_mode auto).
    let mut conn = (*pool.connect_options()).clone().connect().await.unwrap();
    for _ in 0..12 {
        let (claimed, _) =
            queue::claim_batch_due(&mut conn, &queue::OUTBOX, &topics, "w", LEASE, 8)
                .await
                .unwrap();
        assert_eq!(claimed.len(), 8);
    }
    let (generic, custom) =
        case_store::testing::plans_of(&mut conn, "WITH next AS%FROM outbox%").await;
    assert!(
        custom <= 5 && generic >= 7,
        "generic {generic}, custom {custom}"
    );
    conn.close().await.unwrap();
}

/// Statistics of an outbox of 4,000 delivered messages of `topic` with nothing
/// pending: a young deployment's, on which every pending index looks empty.
async fn young_statistics(pool: &PgPool, topic: &str) {
    sqlx::query(
        "INSERT INTO outbox (id, topic, dedupe_key, payload, delivered_at)
         SELECT gen_random_uuid(), $1, 'sent/' || i, '{}', now() FROM generate_series(1, 4000) i",
    )
    .bind(topic)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE outbox").execute(pool).await.unwrap();
}

/// `n` messages of `topic` (of the case `case_id`, if any) held for 20 seconds.
async fn hold_messages(pool: &PgPool, topic: &str, case_id: Option<uuid::Uuid>, n: i32) {
    sqlx::query(
        "INSERT INTO outbox (id, case_id, topic, dedupe_key, payload, available_at)
         SELECT gen_random_uuid(), $2, $1, 'held/' || gen_random_uuid(), '{}',
                now() + interval '20 seconds'
         FROM generate_series(1, $3) i",
    )
    .bind(topic)
    .bind(case_id)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

/// A transaction whose statements are planned as `plan` says (`plan_cache_mode`).
async fn planned_tx(pool: &PgPool, plan: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("SET LOCAL plan_cache_mode = {plan}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// A connection of its own whose statements are planned under `plan` (a
/// `plan_cache_mode`) for as long as it lives, so a plan it caches stays cached.
async fn planned_conn(pool: &PgPool, plan: &str) -> sqlx::PgConnection {
    use sqlx::ConnectOptions;
    (*pool.connect_options())
        .clone()
        .options([("plan_cache_mode", plan)])
        .connect()
        .await
        .unwrap()
}

/// Outbox rows this backend has read so far (pending statistics included: a
/// connection's counts of earlier transactions may not be flushed yet, so callers
/// take the difference around what they measure).
async fn outbox_rows_read(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0)
           FROM pg_stat_xact_user_tables WHERE relname = 'outbox'",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

/// 2,000 messages of `topic` held for other cases (dedupe keys prefixed `tag`).
async fn hold_for_other_cases(pool: &PgPool, topic: &str, tag: &str) {
    sqlx::query(
        "INSERT INTO outbox (id, topic, dedupe_key, payload, available_at, supersede_key, supersede_until)
         SELECT gen_random_uuid(), $1, $2 || '/held/' || i, '{}', now() + interval '20 seconds',
                'case:' || gen_random_uuid() || ':status', now() + interval '20 seconds'
         FROM generate_series(1, 2000) i",
    )
    .bind(topic)
    .bind(tag)
    .execute(pool)
    .await
    .unwrap();
}

/// Replacing a case's held message reads that case's messages, not every held one,
/// even on a plan cached while nothing was pending (a young deployment's): the
/// connection plans the statement on statistics of an outbox of delivered messages,
/// then 2,000 messages of other cases are held, and the statement runs again on its
/// cached plan.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_held_message_is_replaced_through_its_case_whatever_the_statistics(pool: PgPool) {
    use case_store::{messages::enqueue_superseding, testing::open_case, timers::NewMessage};
    use sqlx::Connection;
    let topic = "notification.subscriber";
    young_statistics(&pool, topic).await;
    let case_id = open_case(&pool, "+8613900000141").await;
    let key = format!("case:{case_id}:status");
    for plan in ["force_custom_plan", "force_generic_plan"] {
        let mut conn = planned_conn(&pool, plan).await;
        let enqueue = async |conn: &mut sqlx::PgConnection, n: &str| {
            let mut tx = conn.begin().await.unwrap();
            let before = outbox_rows_read(&mut tx).await;
            let now = chrono::Utc::now();
            let dedupe = format!("{case_id}/{plan}/{n}");
            let done = enqueue_superseding(
                &mut tx,
                &NewMessage {
                    topic,
                    case_id: Some(case_id),
                    event_id: None,
                    dedupe_key: &dedupe,
                    payload: json!({ "n": n }),
                },
                &key,
                now,
                now + chrono::Duration::seconds(20),
            )
            .await
            .unwrap();
            let read = outbox_rows_read(&mut tx).await - before;
            tx.commit().await.unwrap();
            (done, read)
        };
        // Planned (and, generic, cached) while no other message is held.
        let (first, _) = enqueue(&mut conn, "first").await;
        assert!(first.id.is_some(), "{plan}");
        hold_for_other_cases(&pool, topic, plan).await;
        let (second, read) = enqueue(&mut conn, "second").await;
        assert!(second.id.is_some(), "{plan}");
        assert_eq!(second.superseded, 1, "{plan}: the one held before");
        assert!(read < 50, "{plan}: {read} outbox rows read for one message");
        conn.close().await.unwrap();
    }
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE supersede_key = $1 AND delivered_at IS NULL",
    )
    .bind(&key)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(held, 1, "one message about the case is held");
}

/// The claim's check that a message is its case's oldest pending one, and the due
/// time of the next lease to run out that a short claim reads, read that case's
/// messages and the leased ones only, even on statistics of an empty outbox, while
/// 2,000 held messages of other cases wait: custom and generic plans alike.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_in_order_check_reads_one_case_whatever_the_statistics(pool: PgPool) {
    use case_store::testing::open_case;
    let topic = "notification.subscriber";
    young_statistics(&pool, topic).await;
    // Held messages of cases (of one case here: the reads below must not touch them
    // whichever case they belong to), and of no case.
    let other = open_case(&pool, "+8613900000159").await;
    hold_messages(&pool, topic, Some(other), 1000).await;
    hold_messages(&pool, topic, None, 1000).await;
    let topics = [topic.to_owned()];
    for (n, plan) in ["force_custom_plan", "force_generic_plan"]
        .iter()
        .enumerate()
    {
        let case_id = open_case(&pool, &format!("+861390000015{n}")).await;
        // Two due messages of the case: the second waits for the first.
        for i in 0..2 {
            sqlx::query(
                "INSERT INTO outbox (id, case_id, topic, dedupe_key, payload, created_at, available_at)
                 VALUES (gen_random_uuid(), $1, $2, $1 || '/' || $3, '{}',
                         now() - make_interval(secs => 10 - $3), now() - interval '1 second')",
            )
            .bind(case_id)
            .bind(topic)
            .bind(i)
            .execute(&pool)
            .await
            .unwrap();
        }
        let mut tx = planned_tx(&pool, plan).await;
        let before = outbox_rows_read(&mut tx).await;
        let (claimed, _) = queue::claim_batch_due(&mut *tx, &queue::OUTBOX, &topics, "w", LEASE, 8)
            .await
            .unwrap();
        let read = outbox_rows_read(&mut tx).await - before;
        tx.commit().await.unwrap();
        assert_eq!(claimed.len(), 1, "{plan}: the case's first message only");
        assert!(read < 50, "{plan}: {read} outbox rows read for one claim");
        // Delivered, so the next plan's case is the only one due.
        sqlx::query("UPDATE outbox SET delivered_at = now() WHERE case_id = $1")
            .bind(case_id)
            .execute(&pool)
            .await
            .unwrap();
    }
}

/// A short claim's due time of the next lease to run out names no case, so it
/// cannot be served by the in-order index, which holds every pending message of the
/// topic (held ones included): a cached plan that took it read 2,274 rows for one
/// claim at 100/s. The leased index is taken away inside the transaction to see what
/// else the planner would use, on the statistics of a young outbox.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_next_lease_is_never_looked_for_in_the_in_order_index(pool: PgPool) {
    use case_store::testing::open_case;
    let topic = "notification.subscriber";
    young_statistics(&pool, topic).await;
    let case_id = open_case(&pool, "+8613900000161").await;
    hold_messages(&pool, topic, Some(case_id), 200).await;
    let topics = [topic.to_owned()];
    for plan in ["force_custom_plan", "force_generic_plan"] {
        let mut tx = planned_tx(&pool, plan).await;
        sqlx::query("DROP INDEX outbox_leased_due")
            .execute(&mut *tx)
            .await
            .unwrap();
        let (claimed, due) =
            queue::claim_batch_due(&mut *tx, &queue::OUTBOX, &topics, "w", LEASE, 8)
                .await
                .unwrap();
        assert!(claimed.is_empty(), "{plan}: nothing is due");
        assert!(due.is_some(), "{plan}: the held messages are due later");
        let in_order_scans: i64 = sqlx::query_scalar(
            "SELECT pg_stat_get_xact_numscans('outbox_pending_in_order'::regclass)",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(
            in_order_scans, 0,
            "{plan}: the leased read went through the in-order index"
        );
    }
}

/// Every lease and every delivery leaves a dead entry in the leased index (neither
/// update is HOT). A short claim's read of the next lease to run out steps over them
/// once, marking them dead, and no claim after it reads them again: a bitmap scan of
/// the index, as a `min()` over it and then an ordered read of the claim's topics were
/// planned, visited the heap page of every message leased since the last vacuum on
/// every claim. A lease that ran out (of another topic, whose worker died) is no due
/// time: it would wake the claimer at once, again and again.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_short_claim_does_not_revisit_the_messages_leased_before(pool: PgPool) {
    let topic = "notification.subscriber";
    // Statistics of a busy queue: delivered messages and 1,000 in flight, whose
    // leases end in no particular order (on these, a `min()` was planned as a bitmap
    // scan).
    young_statistics(&pool, topic).await;
    let run = async |sql: &str, like: &str| {
        sqlx::query(sql)
            .bind(like)
            .bind(topic)
            .execute(&pool)
            .await
            .unwrap();
    };
    let enqueue = "INSERT INTO outbox (id, topic, dedupe_key, payload)
                   SELECT gen_random_uuid(), $2, $1 || i, '{}'
                   FROM generate_series(1, CASE $1 WHEN 'busy/' THEN 1000 ELSE 4001 END) i";
    let lease_all = "UPDATE outbox SET lease_owner = 'w', attempts = 1,
                            lease_expires_at = now() + interval '10 seconds' + random() * interval '1 minute'
                      WHERE dedupe_key LIKE $1 || '%' AND topic = $2";
    let deliver =
        "UPDATE outbox SET delivered_at = now(), lease_owner = NULL, lease_expires_at = NULL
                    WHERE dedupe_key LIKE $1 || '%' AND dedupe_key <> 'worked/4001' AND topic = $2";
    run(enqueue, "busy/").await;
    run(lease_all, "busy/").await;
    sqlx::query("ANALYZE outbox").execute(&pool).await.unwrap();
    run(deliver, "busy/").await;
    // Then 4,000 messages leased and delivered: each leaves a dead entry in the
    // leased index. One more is being worked on.
    run(enqueue, "worked/").await;
    run(lease_all, "worked/").await;
    run(deliver, "worked/").await;
    // The one in flight is of a topic the statistics hardly know (so its filter looks
    // selective); another topic's message is still leased to a worker that died.
    sqlx::query("UPDATE outbox SET topic = 'provisioning.order' WHERE dedupe_key = 'worked/4001'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO outbox (id, topic, dedupe_key, payload, lease_owner, lease_expires_at, attempts)
         VALUES (gen_random_uuid(), 'carrier.orphaned', 'orphaned', '{}', 'gone',
                 now() - interval '1 minute', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let topics = ["provisioning.order".to_owned()];
    // A dead entry is marked once no transaction of the database may still see its
    // row; tests running beside this one can delay that for a moment, so the claims
    // repeat until one reads little (a bitmap scan never gets there).
    for plan in ["force_custom_plan", "force_generic_plan"] {
        let mut pages = Vec::new();
        while pages.last().is_none_or(|&p| p >= 20) && pages.len() < 50 {
            let mut tx = planned_tx(&pool, plan).await;
            let read = "SELECT pg_stat_get_xact_blocks_fetched('outbox'::regclass)";
            let before: i64 = sqlx::query_scalar(read).fetch_one(&mut *tx).await.unwrap();
            let (claimed, due) =
                queue::claim_batch_due(&mut *tx, &queue::OUTBOX, &topics, "w2", LEASE, 8)
                    .await
                    .unwrap();
            let after: i64 = sqlx::query_scalar(read).fetch_one(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
            assert!(
                claimed.is_empty(),
                "{plan}: the one pending message is leased"
            );
            let due = due.expect("the lease in flight runs out");
            assert!(due > chrono::Utc::now(), "{plan}: {due}");
            pages.push(after - before);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            pages.last().is_some_and(|&p| p < 20),
            "{plan}: outbox heap pages read by the claims: {pages:?}"
        );
    }
}

/// When a worker of some topics sleeps until: the first lease still running to run
/// out (another topic's may wake it early, never late), or now when an item of its
/// topics has a lease that ran out; a lease of another topic that ran out (its
/// workers gone) is no reason to wake.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_next_due_time_counts_running_leases_and_its_own_topics_lapsed_ones(pool: PgPool) {
    let lease = async |topic: &str, key: &str, ends_in_secs: i32| {
        sqlx::query(
            "INSERT INTO outbox (id, topic, dedupe_key, payload, available_at, lease_owner,
                                 lease_expires_at, attempts)
             VALUES (gen_random_uuid(), $1, $2, '{}', now() - interval '2 minutes', 'w',
                     now() + make_interval(secs => $3), 1)",
        )
        .bind(topic)
        .bind(key)
        .bind(f64::from(ends_in_secs))
        .execute(&pool)
        .await
        .unwrap();
    };
    let topics = ["a.x".to_owned()];
    let due_in = async || {
        let due = queue::next_due(&pool, &queue::OUTBOX, &topics)
            .await
            .unwrap();
        due.map(|d| (d - chrono::Utc::now()).num_seconds())
    };
    assert_eq!(due_in().await, None, "nothing pending");
    lease("a.x", "a1", 60).await;
    assert!(
        due_in().await.is_some_and(|s| (55..=60).contains(&s)),
        "{:?}",
        due_in().await
    );
    lease("b.y", "b1", 30).await;
    assert!(
        due_in().await.is_some_and(|s| (25..=30).contains(&s)),
        "{:?}",
        due_in().await
    );
    lease("c.z", "c1", -60).await;
    assert!(
        due_in().await.is_some_and(|s| (25..=30).contains(&s)),
        "{:?}",
        due_in().await
    );
    lease("a.x", "a2", -60).await;
    assert!(
        due_in().await.is_some_and(|s| s <= 0),
        "{:?}",
        due_in().await
    );
    let claimed = queue::claim_batch(&pool, &queue::OUTBOX, &topics, "w2", LEASE, 8)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the lapsed one");
}

/// Several held messages written in one call do what writing them one by one does:
/// each replaces its own case's held message, a case's second message in the call
/// replaces its first, a dedupe key already used writes nothing, and only a message
/// that replaced nothing asks for a wake-up.
#[sqlx::test(migrator = "MIGRATOR")]
async fn held_messages_of_several_cases_are_written_as_one_by_one(pool: PgPool) {
    use case_store::{
        messages::{Held, enqueue_superseding, enqueue_superseding_many},
        testing::open_case,
        timers::NewMessage,
    };
    let topic = "notification.subscriber";
    let (a, b, c) = (
        open_case(&pool, "+8613900000151").await,
        open_case(&pool, "+8613900000152").await,
        open_case(&pool, "+8613900000153").await,
    );
    let key = |case: uuid::Uuid| format!("case:{case}:status");
    let (ka, kb, kc) = (key(a), key(b), key(c));
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::seconds(20);
    let msg = |case, dedupe: &'static str| NewMessage {
        topic,
        case_id: Some(case),
        event_id: None,
        dedupe_key: dedupe,
        payload: json!({ "dedupe": dedupe }),
    };
    // Held before the call: one message of a, one of c.
    let mut conn = pool.acquire().await.unwrap();
    for (case, dedupe, k) in [(a, "a1", &ka), (c, "c1", &kc)] {
        let done = enqueue_superseding(&mut conn, &msg(case, dedupe), k, now, until)
            .await
            .unwrap();
        assert!(done.wakes());
    }
    let (a2, b1, a3, c1) = (msg(a, "a2"), msg(b, "b1"), msg(a, "a3"), msg(c, "c1"));
    let held = |message, key| Held {
        message,
        key,
        caused_at: now,
        hold_until: until,
    };
    let done = enqueue_superseding_many(
        &mut conn,
        &[
            held(&a2, &ka),
            held(&b1, &kb),
            held(&a3, &ka),
            held(&c1, &kc),
        ],
    )
    .await
    .unwrap();
    assert_eq!(done.len(), 4);
    assert!(
        done[0].id.is_some() && done[0].superseded == 1,
        "{:?}",
        done[0]
    );
    assert!(
        done[1].id.is_some() && done[1].superseded == 0,
        "{:?}",
        done[1]
    );
    assert!(
        done[2].id.is_some() && done[2].superseded == 1,
        "{:?}",
        done[2]
    );
    assert_eq!(done[3].id, None, "c1 was enqueued before");
    assert_eq!(done[3].superseded, 0, "a replay replaces nothing");
    let wakes: Vec<bool> = done.iter().map(|d| d.wakes()).collect();
    assert_eq!(wakes, [false, true, false, false]);

    let pending: Vec<(String, Option<uuid::Uuid>)> = sqlx::query_as(
        "SELECT dedupe_key, superseded_by FROM outbox WHERE topic = $1 ORDER BY dedupe_key",
    )
    .bind(topic)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        pending,
        vec![
            ("a1".to_owned(), done[0].id),
            ("a2".to_owned(), done[2].id),
            ("a3".to_owned(), None),
            ("b1".to_owned(), None),
            ("c1".to_owned(), None),
        ],
        "a1 replaced by a2, a2 by a3; b1 and c1 held"
    );
    let a3_due: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT available_at FROM outbox WHERE dedupe_key = 'a3'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        a3_due <= until,
        "a replacement is due no later than what it replaced"
    );
}

/// The same for a call that writes many messages (the follower's pass): each
/// message's held one is found through its own case, on a plan made while nothing
/// was held, not by reading every held message once per message of the call.
#[sqlx::test(migrator = "MIGRATOR")]
async fn held_messages_of_a_call_are_replaced_through_their_cases_whatever_the_statistics(
    pool: PgPool,
) {
    use case_store::{
        messages::{Held, enqueue_superseding_many},
        testing::open_case,
        timers::NewMessage,
    };
    use sqlx::Connection;
    let topic = "notification.subscriber";
    // Statistics of an outbox that never held anything (a fresh deployment's).
    sqlx::query("ANALYZE outbox").execute(&pool).await.unwrap();
    let mut cases = Vec::new();
    for i in 0..10 {
        cases.push(open_case(&pool, &format!("+86139000002{i:02}")).await);
    }
    let keys: Vec<String> = cases.iter().map(|c| format!("case:{c}:status")).collect();
    for plan in ["force_custom_plan", "force_generic_plan"] {
        let mut conn = planned_conn(&pool, plan).await;
        let enqueue = async |conn: &mut sqlx::PgConnection, n: &str| {
            let mut tx = conn.begin().await.unwrap();
            let before = outbox_rows_read(&mut tx).await;
            let now = chrono::Utc::now();
            let dedupe: Vec<String> = cases.iter().map(|c| format!("{c}/{plan}/{n}")).collect();
            let messages: Vec<NewMessage<'_>> = cases
                .iter()
                .zip(&dedupe)
                .map(|(case, dedupe)| NewMessage {
                    topic,
                    case_id: Some(*case),
                    event_id: None,
                    dedupe_key: dedupe,
                    payload: json!({ "n": n }),
                })
                .collect();
            let held: Vec<Held<'_>> = messages
                .iter()
                .zip(&keys)
                .map(|(message, key)| Held {
                    message,
                    key,
                    caused_at: now,
                    hold_until: now + chrono::Duration::seconds(20),
                })
                .collect();
            let done = enqueue_superseding_many(&mut tx, &held).await.unwrap();
            let read = outbox_rows_read(&mut tx).await - before;
            tx.commit().await.unwrap();
            (done, read)
        };
        let (first, _) = enqueue(&mut conn, "first").await;
        assert!(first.iter().all(|d| d.id.is_some()), "{plan}");
        hold_for_other_cases(&pool, topic, plan).await;
        let (second, read) = enqueue(&mut conn, "second").await;
        assert!(
            second.iter().all(|d| d.id.is_some() && d.superseded == 1),
            "{plan}: {second:?}"
        );
        assert!(
            read < 100,
            "{plan}: {read} outbox rows read for ten messages"
        );
        conn.close().await.unwrap();
    }
}

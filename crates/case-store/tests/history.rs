//! The partitioned history and pruning against a real Postgres: partitions created
//! ahead (idempotent, append-only on every partition, the DEFAULT partition catching
//! the rest), a detach refused while the chain of its range is broken, and each kind
//! of finished row pruned after its cutoff by two runners at once, nothing else.

use case_domain::{Actor, Role};
use case_store::{
    MIGRATOR,
    audit::AuditEntry,
    history::{self, HistoryError},
    prune::{Prunable, prune_batch},
    testing::{cancel_in, open_case, record_audit_at},
};
use chrono::{NaiveDate, TimeZone, Utc};
use sqlx::PgPool;
use uuid::Uuid;

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn partitions_are_created_ahead_once_and_stay_append_only(pool: PgPool) {
    // The migration created this month's partitions and the DEFAULT ones.
    let this_month = history::month_of(Utc::now().date_naive());
    let attached = history::partitions(&pool).await.unwrap();
    for table in history::PARTITIONED {
        assert!(
            attached
                .iter()
                .any(|p| p.table == table && p.month == Some(this_month))
        );
        assert!(
            attached
                .iter()
                .any(|p| p.table == table && p.month.is_none())
        );
    }

    assert_eq!(
        history::ensure_partitions(&pool, day(2031, 1, 15), 3)
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        history::ensure_partitions(&pool, day(2031, 1, 1), 3)
            .await
            .unwrap(),
        0,
        "idempotent"
    );
    let refused = history::ensure_partitions(&pool, day(2031, 1, 1), 0).await;
    assert!(refused.is_err(), "zero months is refused");

    // Rows go to their month's partition; a month without one goes to DEFAULT.
    let case_id = open_case(&pool, "+8613900000101").await;
    sqlx::raw_sql(&format!(
        "INSERT INTO case_events (id, case_id, version, from_state, to_state, event, actor_role, actor_id, at)
         VALUES ('{}', '{case_id}', 2, 'awaiting_identity', 'cancelled', 'cancelled', 'customer', 'subscriber', '2031-02-03 00:00+00'),
                ('{}', '{case_id}', 3, 'cancelled', 'closed', 'closed', 'system', 'case-timers', '2035-06-01 00:00+00')",
        Uuid::now_v7(),
        Uuid::now_v7()
    ))
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM history.case_events_p203102").await,
        1
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM history.case_events_default").await,
        1
    );
    // A month whose rows already are in DEFAULT is skipped (with a warning), not an error.
    assert_eq!(
        history::ensure_partitions(&pool, day(2035, 6, 1), 1)
            .await
            .unwrap(),
        1,
        "only audit_log's partition of 2035-06"
    );

    // Append-only on every partition: through the parent, and on the partition itself.
    for sql in [
        "UPDATE case_events SET reason = 'x'",
        "DELETE FROM history.case_events_p203102",
        "TRUNCATE history.case_events_p203102",
        "TRUNCATE history.audit_log_p203101",
        "TRUNCATE history.case_events_default",
    ] {
        let e = sqlx::query(sql).execute(&pool).await.expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_detach_is_refused_while_the_chain_of_its_range_is_broken(pool: PgPool) {
    history::ensure_partitions(&pool, day(2025, 1, 1), 1)
        .await
        .unwrap();
    let actor = Actor {
        role: Role::Cs,
        id: "store.test".into(),
    };
    for d in 1..=3 {
        record_audit_at(
            &pool,
            &AuditEntry {
                actor: &actor,
                action: "case.view",
                case_id: None,
                detail: serde_json::json!({ "d": d }),
                reason: None,
            },
            Utc.with_ymd_and_hms(2025, 1, d, 8, 0, 0).unwrap(),
        )
        .await;
    }
    sqlx::raw_sql(
        "BEGIN; SET LOCAL session_replication_role = replica;
         UPDATE audit_log SET detail = '{\"d\": 9}' WHERE seq = 2; COMMIT;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let system = Actor::system("store.test");
    let today = Utc::now().date_naive();
    match history::detach_before(&pool, day(2025, 2, 1), today, &system).await {
        Err(HistoryError::Refused(why)) => assert!(why.contains("broken at seq 2"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Nothing changed: the partitions are attached, no checkpoint, no audit row.
    assert!(
        history::partitions(&pool)
            .await
            .unwrap()
            .iter()
            .any(|p| p.name == "audit_log_p202501")
    );
    assert!(history::checkpoints(&pool).await.unwrap().is_empty());
    assert_eq!(scalar(&pool, "SELECT count(*) FROM audit_log").await, 3);

    // Not the first day of a month, or not in the past: refused.
    for before in [
        day(2025, 2, 2),
        history::month_of(today) + chrono::Months::new(1),
    ] {
        assert!(matches!(
            history::detach_before(&pool, before, today, &system).await,
            Err(HistoryError::Refused(_))
        ));
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn finished_rows_are_pruned_after_their_cutoff_and_nothing_else(pool: PgPool) {
    let old = "now() - interval '40 days'";
    let recent = "now() - interval '1 day'";
    let done = open_case(&pool, "+8613900000102").await;
    let open = open_case(&pool, "+8613900000103").await;
    sqlx::query("UPDATE reactivation_cases SET state = 'cancelled', version = 2 WHERE id = $1")
        .bind(done)
        .execute(&pool)
        .await
        .unwrap();
    let agent: Uuid = sqlx::query_scalar(
        "INSERT INTO agents (id, username, password_hash, roles) VALUES ($1, 'prune.agent', 'x', '{cs}') RETURNING id",
    )
    .bind(Uuid::now_v7())
    .fetch_one(&pool)
    .await
    .unwrap();
    let endpoint = Uuid::now_v7();
    let mut seed = format!(
        "INSERT INTO webhook_endpoints (id, url, event_types, created_at, deleted_at)
         VALUES ('{endpoint}', 'https://example.com/hook', '{{case.state_changed}}', now(), now());"
    );
    for (n, at) in [(0, old), (1, old), (2, recent)] {
        let id = Uuid::now_v7();
        seed.push_str(&format!(
            "INSERT INTO outbox (id, topic, dedupe_key, payload, delivered_at)
               VALUES ('{id}', 'notification.sms', 'prune/{n}', '{{}}', {at});
             INSERT INTO agent_sessions (token_hash, agent_id, created_at, expires_at)
               VALUES (sha256('s{n}'), '{agent}', {at} - interval '1 hour', {at});
             INSERT INTO carrier_webhooks (id, type, payload, processed_at)
               VALUES ('evt_prune_{n}', 'subscriber.signals', '{{}}', {at});
             INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload, status, attempts, finished_at)
               VALUES ('{id}', '{endpoint}', '{}', 'case.state_changed', '{{}}', 'delivered', 1, {at});
             INSERT INTO webhook_delivery_attempts (delivery_id, attempt, status_code, duration_ms)
               VALUES ('{id}', 1, 200, 5);",
            Uuid::now_v7()
        ));
    }
    // Still to do, or waiting for an admin: never pruned.
    seed.push_str(&format!(
        "INSERT INTO outbox (id, topic, dedupe_key, payload, failed_at)
           VALUES ('{}', 'notification.sms', 'prune/failed', '{{}}', {old});
         INSERT INTO outbox (id, topic, dedupe_key, payload) VALUES ('{}', 'notification.sms', 'prune/pending', '{{}}');
         INSERT INTO carrier_webhooks (id, type, payload, failed_at) VALUES ('evt_prune_failed', 'subscriber.signals', '{{}}', {old});
         INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload, status, attempts, finished_at)
           VALUES ('{}', '{endpoint}', '{}', 'case.state_changed', '{{}}', 'failed', 8, {old});",
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7()
    ));
    // Timers fired long ago: of a finished case (pruned), of an open case's current
    // version (kept: the sweep would arm it again), and one fired recently.
    for (case_id, version, ordinal, at) in [
        (done, 1, 1, old),
        (done, 1, 2, old),
        (open, 1, 1, old),
        (done, 2, 1, recent),
    ] {
        seed.push_str(&format!(
            "INSERT INTO case_timers (id, case_id, case_version, state, kind, ordinal, due_at, fired_at, outcome)
               VALUES ('{}', '{case_id}', {version}, 'awaiting_identity', 'reminder', {ordinal}, {at}, {at}, 'reminded');",
            Uuid::now_v7()
        ));
    }
    sqlx::raw_sql(&seed).execute(&pool).await.unwrap();

    let cutoff = Utc::now() - chrono::Duration::days(30);
    for kind in Prunable::ALL {
        // Two runners at once, batches of one: together they delete exactly the two
        // old rows (one each, or both by one while the other finds none left).
        let (a, b) = tokio::join!(
            prune_batch(&pool, kind, cutoff, 1),
            prune_batch(&pool, kind, cutoff, 1)
        );
        let first = a.unwrap() + b.unwrap();
        let mut rest = 0;
        loop {
            let n = prune_batch(&pool, kind, cutoff, 1).await.unwrap();
            if n == 0 {
                break;
            }
            rest += n;
        }
        assert_eq!(first + rest, 2, "{kind:?}");
    }
    assert_eq!(
        sqlx::query_scalar::<_, String>("SELECT dedupe_key FROM outbox ORDER BY dedupe_key")
            .fetch_all(&pool)
            .await
            .unwrap(),
        ["prune/2", "prune/failed", "prune/pending"]
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM agent_sessions").await,
        1
    );
    assert_eq!(
        sqlx::query_scalar::<_, String>("SELECT id FROM carrier_webhooks ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap(),
        ["evt_prune_2", "evt_prune_failed"]
    );
    assert_eq!(
        sqlx::query_scalar::<_, String>("SELECT status FROM webhook_deliveries ORDER BY status")
            .fetch_all(&pool)
            .await
            .unwrap(),
        ["delivered", "failed"]
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM webhook_delivery_attempts").await,
        1
    );
    assert_eq!(
        sqlx::query_scalar::<_, i32>(
            "SELECT case_version * 10 + ordinal FROM case_timers WHERE case_id = $1 OR case_id = $2 ORDER BY 1"
        )
        .bind(done)
        .bind(open)
        .fetch_all(&pool)
        .await
        .unwrap(),
        [11, 21],
        "the open case's timer (11) and the recent one (21) stay"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_case_reads_only_the_months_of_the_log_from_its_opening_on(pool: PgPool) {
    // Fourteen months of history before this one, as a carrier's first year leaves.
    let today = Utc::now().date_naive();
    let first = today - chrono::Months::new(14);
    history::ensure_partitions(&pool, first, 15).await.unwrap();

    // A transaction that began before the case was opened (its now() is older than
    // the case) records the case's next event: the event is not older than the case.
    let mut early = pool.begin().await.unwrap();
    sqlx::query("SELECT now()")
        .execute(&mut *early)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let case_id = open_case(&pool, "+8613900000088").await;
    cancel_in(&mut early, case_id).await;
    early.commit().await.unwrap();
    assert_eq!(
        scalar(
            &pool,
            &format!(
                "SELECT count(*) FROM case_events e JOIN reactivation_cases c ON c.id = e.case_id
                  WHERE c.id = '{case_id}' AND e.at >= c.created_at"
            )
        )
        .await,
        2
    );

    // The case's reads find both events and probe no partition of a month before
    // the case was opened.
    // The counters below are the backend's unpublished ones: publish what this
    // connection did before (the partitions' creation scanned them) first.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    let events = case_store::timeline(&mut *tx, case_id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        case_store::agent_work::state_at_version(&mut *tx, case_id, 2)
            .await
            .unwrap(),
        Some(case_domain::CaseState::Cancelled)
    );
    let this_month = today.format("%Y%m").to_string();
    let probed: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_stat_xact_user_tables
          WHERE schemaname = 'history' AND relname LIKE 'case_events_p%'
            AND coalesce(idx_scan, 0) + coalesce(seq_scan, 0) > 0
          ORDER BY relname",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let before: Vec<&String> = probed
        .iter()
        .filter(|p| p["case_events_p".len()..] < *this_month.as_str())
        .collect();
    assert!(
        before.is_empty(),
        "months before the case probed: {before:?}"
    );
    assert!(
        probed.iter().any(|p| p.ends_with(&this_month)),
        "{probed:?}"
    );
}

/// The stage statistics of `awaiting_identity` over the last day (exits in the last
/// hour as the recent ones).
async fn awaiting_identity_figures(pool: &PgPool) -> case_store::stage_stats::StateFigures {
    case_store::stage_stats::state_figures(
        pool,
        Utc::now() - chrono::Duration::days(1),
        Utc::now() - chrono::Duration::hours(1),
    )
    .await
    .unwrap()
    .into_iter()
    .find(|f| f.state == case_domain::CaseState::AwaitingIdentity)
    .expect("figures of the state the cases left")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_stage_statistics_time_each_exit_from_its_entering_event(pool: PgPool) {
    let today = Utc::now().date_naive();
    history::ensure_partitions(&pool, today - chrono::Months::new(3), 4)
        .await
        .unwrap();
    let case_id = open_case(&pool, "+8613900000089").await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut tx = pool.begin().await.unwrap();
    cancel_in(&mut tx, case_id).await;
    tx.commit().await.unwrap();
    let (opened, left): (chrono::DateTime<Utc>, chrono::DateTime<Utc>) =
        sqlx::query_as("SELECT min(at), max(at) FROM case_events WHERE case_id = $1")
            .bind(case_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    let waiting = awaiting_identity_figures(&pool).await;
    assert_eq!((waiting.samples, waiting.recent_exits), (1, 1));
    let expected = (left - opened).num_microseconds().unwrap() as f64 / 1e6;
    let median = waiting.median_secs.expect("a median");
    assert!((median - expected).abs() < 1e-3, "{median} vs {expected}");
    assert!(median >= 0.05, "{median}");
    // The exit carries when the case entered the state it left: the opening.
    let since: Option<chrono::DateTime<Utc>> = sqlx::query_scalar(
        "SELECT from_state_since FROM case_events WHERE case_id = $1 AND version = 2",
    )
    .bind(case_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(since, Some(opened));
}

/// An exit written before `case_events.from_state_since` existed (NULL) is timed from
/// its entering event, looked up in the log; a written one from the column alone, even
/// where the log disagrees; an exit whose entering event is gone is left out.
#[sqlx::test(migrator = "MIGRATOR")]
async fn exits_without_their_entry_time_are_timed_from_the_log(pool: PgPool) {
    let mut cases = Vec::new();
    for n in 0..3 {
        cases.push(open_case(&pool, &format!("+861390000012{n}")).await);
    }
    // Raw exits out of awaiting_identity, 60 s after an opening moved back 60 s: the
    // first without from_state_since (the log says 60 s), the second with a
    // from_state_since 30 s before the exit (the column wins), the third without it
    // and without an opening event in the months after the case (nothing to time).
    for (i, case_id) in cases.iter().enumerate() {
        let since = match i {
            1 => "now() - interval '30 seconds'",
            _ => "NULL",
        };
        sqlx::raw_sql(&format!(
            "INSERT INTO case_events (id, case_id, version, from_state, to_state, event, actor_role, actor_id, at, from_state_since)
             VALUES ('{}', '{case_id}', 2, 'awaiting_identity', 'cancelled', 'cancelled', 'customer', 'subscriber', now(), {since})",
            Uuid::now_v7()
        ))
        .execute(&pool)
        .await
        .unwrap();
    }
    // Move the openings 60 s back (the log is append-only: through a copy of each row
    // under a session that skips the triggers, as a restore would).
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql(&format!(
        "SET session_replication_role = replica;
         UPDATE reactivation_cases SET created_at = created_at - interval '60 seconds'
          WHERE id IN ('{a}', '{b}', '{c}');
         UPDATE case_events SET at = at - interval '60 seconds'
          WHERE version = 1 AND case_id IN ('{a}', '{b}');
         DELETE FROM case_events WHERE version = 1 AND case_id = '{c}';
         SET session_replication_role = origin;",
        a = cases[0],
        b = cases[1],
        c = cases[2],
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);

    let waiting = awaiting_identity_figures(&pool).await;
    assert_eq!(waiting.samples, 2, "the exit without an entry is left out");
    let median = waiting.median_secs.expect("a median");
    assert!(
        (median - 45.0).abs() < 1.0,
        "median of 60 s and 30 s: {median}"
    );

    let dashboard =
        case_store::dashboard::stage_throughput(&pool, Utc::now() - chrono::Duration::days(1))
            .await
            .unwrap();
    let left = dashboard
        .iter()
        .find(|r| r.state == case_domain::CaseState::AwaitingIdentity)
        .expect("dashboard row");
    assert_eq!(left.left, 2);
    assert!(
        (left.median_secs - 45.0).abs() < 1.0,
        "{}",
        left.median_secs
    );

    let times = case_store::reports::stage_times(
        &pool,
        Utc::now() - chrono::Duration::days(1),
        Utc::now() + chrono::Duration::minutes(1),
        &[(case_domain::CaseState::AwaitingIdentity, 40.0)],
    )
    .await
    .unwrap();
    let row = times
        .iter()
        .find(|r| r.state == case_domain::CaseState::AwaitingIdentity)
        .expect("report row");
    assert_eq!((row.exits, row.sla_met), (2, Some(1)));
    assert!((row.p50_secs - 45.0).abs() < 1.0, "{}", row.p50_secs);
}

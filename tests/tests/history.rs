//! Partitioned history (issue 15 item 3): an old month of the event and audit logs is
//! detached with `reactivation history detach`, and `reactivation audit verify` then
//! passes from the checkpoint that detach recorded, and still catches a row tampered
//! with in an attached partition. The timers service creates partitions ahead and
//! prunes finished rows after their retention, with counts in its `/metrics`.

use std::time::{Duration, Instant};

use case_domain::{Actor, Role};
use case_store::audit::AuditEntry;
use chrono::{TimeZone, Utc};
use system_tests::{Stack, StackOptions};
use uuid::Uuid;

async fn count(stack: &Stack, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&stack.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn an_old_month_is_detached_and_the_audit_chain_verifies_from_its_checkpoint() {
    let mut stack = Stack::start_with(StackOptions {
        services: vec!["timers"],
        ..StackOptions::default()
    })
    .await;

    // The timers service created this month's partitions and the next ones at start.
    let this_month = Utc::now().format("%Y%m").to_string();
    assert_eq!(
        count(
            &stack,
            &format!(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'history' \
                 AND tablename IN ('case_events_p{this_month}', 'audit_log_p{this_month}')"
            )
        )
        .await,
        2
    );

    // January 2025: a case with its events, and audit rows, back-dated.
    sqlx::query("SELECT history_ensure_partitions('2025-01-01', 2)")
        .execute(&stack.pool)
        .await
        .expect("partitions of January and February 2025");
    let case_id = Uuid::now_v7();
    sqlx::raw_sql(&format!(
        "INSERT INTO reactivation_cases (id, msisdn, state, version, channel, locale, token_hash, created_at)
         VALUES ('{case_id}', '+8613900000077', 'cancelled', 2, 'app', 'en', sha256('{case_id}'), '2025-01-10');
         INSERT INTO case_events (id, case_id, version, from_state, to_state, event, actor_role, actor_id, at)
         VALUES ('{}', '{case_id}', 1, NULL, 'awaiting_identity', 'opened', 'customer', 'subscriber', '2025-01-10 09:00+00'),
                ('{}', '{case_id}', 2, 'awaiting_identity', 'cancelled', 'cancelled', 'customer', 'subscriber', '2025-01-10 09:05+00');",
        Uuid::now_v7(),
        Uuid::now_v7()
    ))
    .execute(&stack.pool)
    .await
    .expect("January's case");
    let agent = Actor {
        role: Role::Cs,
        id: "history.agent".into(),
    };
    for (i, day) in [10, 11, 12].into_iter().enumerate() {
        case_store::testing::record_audit_at(
            &stack.pool,
            &AuditEntry {
                actor: &agent,
                action: "case.view",
                case_id: Some(case_id),
                detail: serde_json::json!({ "n": i }),
                reason: None,
            },
            Utc.with_ymd_and_hms(2025, 1, day, 10, 0, 0).unwrap(),
        )
        .await;
    }
    // This month: an account created on the command line (audited now).
    stack.create_agent("history.sup", &["supervisor"]);
    let (ok, out) = stack.verify_audit();
    assert!(ok, "{out}");
    assert!(out.contains("from the first row"), "{out}");

    // The current month cannot be detached; nothing changes.
    let next = (Utc::now() + chrono::Duration::days(40))
        .format("%Y-%m")
        .to_string();
    let (ok, out) = stack.cli(&["history", "detach", "--before", &next], &[]);
    assert!(!ok && out.contains("only past months"), "{out}");

    let (ok, out) = stack.cli(&["history", "detach", "--before", "2025-03"], &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("checkpoint 1 recorded: audit rows up to seq 3 (3 verified)"),
        "{out}"
    );
    for name in [
        "case_events_p202501",
        "case_events_p202502",
        "audit_log_p202501",
        "audit_log_p202502",
    ] {
        assert!(out.contains(&format!("history_archive.{name}")), "{out}");
    }
    // January's rows left the logs and wait, append-only, in history_archive.
    assert_eq!(
        count(
            &stack,
            &format!("SELECT count(*) FROM case_events WHERE case_id = '{case_id}'")
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM history_archive.case_events_p202501"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM history_archive.audit_log_p202501"
        )
        .await,
        3
    );
    assert_eq!(count(&stack, "SELECT min(seq) FROM audit_log").await, 4);
    let refused = sqlx::query("DELETE FROM history_archive.audit_log_p202501")
        .execute(&stack.pool)
        .await
        .expect_err("an archived partition stays append-only");
    assert!(refused.to_string().contains("append-only"), "{refused}");
    // The detach is itself in the chain, attesting the checkpoint.
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM audit_log WHERE action = 'history.detach'"
        )
        .await,
        1
    );

    // The chain verifies from the checkpoint, by default and by name.
    let (ok, out) = stack.verify_audit();
    assert!(ok, "{out}");
    assert!(out.contains("from checkpoint 1 (seq 3)"), "{out}");
    let (ok, out) = stack.cli(&["audit", "verify", "--from-checkpoint", "1"], &[]);
    assert!(ok && out.contains("from checkpoint 1"), "{out}");
    let (ok, out) = stack.cli(&["audit", "verify", "--from-checkpoint", "9"], &[]);
    assert!(!ok && out.contains("there is no checkpoint 9"), "{out}");
    let (ok, out) = stack.cli(&["history", "partitions"], &[]);
    assert!(ok && out.contains("checkpoint 1\tseq 3"), "{out}");
    assert!(!out.contains("p202501"), "{out}");

    // Nothing left to detach before March 2025.
    let (ok, out) = stack.cli(&["history", "detach", "--before", "2025-03"], &[]);
    assert!(!ok && out.contains("no attached partition"), "{out}");

    // A row of an attached partition rewritten by someone who can bypass the triggers.
    let last: i64 = count(&stack, "SELECT max(seq) FROM audit_log").await;
    sqlx::raw_sql(&format!(
        "BEGIN; SET LOCAL session_replication_role = replica;
         UPDATE audit_log SET reason = 'rewritten' WHERE seq = {last}; COMMIT;"
    ))
    .execute(&stack.pool)
    .await
    .expect("tamper");
    let (ok, out) = stack.verify_audit();
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("seq={last}")) && out.contains("does not match its hash"),
        "{out}"
    );

    // Pruning: an outbox message delivered long ago and one delivered now; the timers
    // service's pass at start deletes the first only, and counts it.
    sqlx::raw_sql(&format!(
        "INSERT INTO outbox (id, topic, dedupe_key, payload, delivered_at)
         VALUES ('{}', 'notification.sms', 'history/old', '{{}}', now() - interval '90 days'),
                ('{}', 'notification.sms', 'history/new', '{{}}', now());",
        Uuid::now_v7(),
        Uuid::now_v7()
    ))
    .execute(&stack.pool)
    .await
    .expect("outbox rows");
    stack.restart("timers").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack
        .metric("timers", "pruned_rows_total", &[("table", "outbox")])
        .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "no pruning counted in /metrics");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left: Vec<String> =
        sqlx::query_scalar("SELECT dedupe_key FROM outbox WHERE dedupe_key LIKE 'history/%'")
            .fetch_all(&stack.pool)
            .await
            .unwrap();
    assert_eq!(left, vec!["history/new".to_owned()]);
}

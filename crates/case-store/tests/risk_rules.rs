//! The versions of the risk rules and the history a replay reads, against Postgres.

use case_domain::{
    Role,
    risk::{ReasonCode, RiskSignals, RiskTier},
    risk_rules::{ReplayCase, RiskThresholds, RuleThresholds},
};
use case_store::{
    MIGRATOR,
    risk_rules::{self, Activation},
    testing::open_case,
};
use chrono::{Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

async fn supervisor(pool: &PgPool, name: &str) -> Uuid {
    case_store::agents::create_agent(pool, name, "x", &[Role::Supervisor])
        .await
        .unwrap()
}

fn lenient() -> RiskThresholds {
    RiskThresholds {
        bulk_sms: RuleThresholds {
            medium: 400,
            high: 800,
        },
        ..RiskThresholds::default()
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn version_one_is_the_old_rules_and_exactly_one_version_is_current(pool: PgPool) {
    let current = risk_rules::current(&pool).await.unwrap();
    assert_eq!(
        (current.version, current.thresholds),
        (1, RiskThresholds::default())
    );
    let boss = supervisor(&pool, "boss").await;
    let mut tx = pool.begin().await.unwrap();
    let made = risk_rules::activate_next(&mut tx, 1, &lenient(), "SMS bursts of shops", boss)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(
        made,
        Activation::Activated { version: 2, previous, .. } if previous == RiskThresholds::default()
    ));
    let versions = risk_rules::versions(&pool, 10).await.unwrap();
    let summary: Vec<(i32, bool, Option<&str>)> = versions
        .iter()
        .map(|v| (v.version, v.activated, v.created_by_username.as_deref()))
        .collect();
    assert_eq!(summary, [(2, true, Some("boss")), (1, false, None)]);
    assert_eq!(versions[0].thresholds, lenient());
    assert_eq!(versions[0].reason, "SMS bursts of shops");

    // Based on a version that is not current any more: nothing changes.
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(
        risk_rules::activate_next(&mut tx, 1, &lenient(), "again", boss)
            .await
            .unwrap(),
        Activation::NotCurrent
    );
    tx.commit().await.unwrap();
    assert_eq!(risk_rules::current(&pool).await.unwrap().version, 2);

    // The schema itself refuses a second current version and an empty reason.
    let second = sqlx::query(
        "INSERT INTO risk_rule_versions (version, thresholds, reason, activated) VALUES (3, '{}', 'x', true)",
    )
    .execute(&pool)
    .await;
    assert!(second.is_err());
    let empty = sqlx::query(
        "INSERT INTO risk_rule_versions (version, thresholds, reason) VALUES (3, '{}', '  ')",
    )
    .execute(&pool)
    .await;
    assert!(empty.is_err());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn of_two_changes_from_the_same_version_the_second_waits_and_is_refused(pool: PgPool) {
    let (one, two) = (
        supervisor(&pool, "one").await,
        supervisor(&pool, "two").await,
    );
    let mut first = pool.begin().await.unwrap();
    assert!(matches!(
        risk_rules::activate_next(&mut first, 1, &lenient(), "first", one)
            .await
            .unwrap(),
        Activation::Activated { version: 2, .. }
    ));
    let racing = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let answer =
                risk_rules::activate_next(&mut tx, 1, &RiskThresholds::default(), "second", two)
                    .await
                    .unwrap();
            tx.commit().await.unwrap();
            answer
        }
    });
    // The second blocks on the row lock until the first commits.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!racing.is_finished());
    first.commit().await.unwrap();
    assert_eq!(racing.await.unwrap(), Activation::NotCurrent);
    let current = risk_rules::current(&pool).await.unwrap();
    assert_eq!((current.version, current.thresholds), (2, lenient()));
}

/// Inserts an assessment of `case` at `at` days ago.
async fn assess(
    pool: &PgPool,
    case: Uuid,
    days_ago: i64,
    tier: RiskTier,
    codes: &[&str],
    signals: (u32, u32, u32),
) {
    sqlx::query(
        "INSERT INTO risk_assessments (id, case_id, tier, reason_codes, needs, signals, assessed_at)
         VALUES ($1, $2, $3, $4, '{}', $5, now() - make_interval(days => $6))",
    )
    .bind(Uuid::now_v7())
    .bind(case)
    .bind(tier)
    .bind(codes.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>())
    .bind(serde_json::json!({
        "fraud_linked_contacts": signals.0, "sms_peak_per_hour": signals.1,
        "intl_calls_24h": signals.2, "suspension_reason": null,
        "flagged_contacts": ["+8613900000001"],
    }))
    .bind(i32::try_from(days_ago).unwrap())
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_replay_reads_each_recent_case_once_with_its_labels_and_only_recent_rows(pool: PgPool) {
    let analyst = supervisor(&pool, "analyst").await;
    let old = open_case(&pool, "+8613800138100").await;
    let rescored = open_case(&pool, "+8613800138101").await;
    let labelled = open_case(&pool, "+8613800138102").await;
    // A long history before the window (on one case: the planner sees many rows).
    sqlx::query(
        "INSERT INTO risk_assessments (id, case_id, tier, reason_codes, needs, signals, assessed_at)
         SELECT gen_random_uuid(), $1, 'medium', '{bulk_sms}', '{}',
                '{\"fraud_linked_contacts\": 0, \"sms_peak_per_hour\": 150, \"intl_calls_24h\": 0, \"suspension_reason\": null}',
                now() - interval '100 days' - make_interval(secs => g)
         FROM generate_series(1, 20000) AS g",
    )
    .bind(old)
    .execute(&pool)
    .await
    .unwrap();
    // In the window: a case graded twice (the latest counts), a labelled case.
    assess(
        &pool,
        rescored,
        5,
        RiskTier::Medium,
        &["bulk_sms"],
        (0, 150, 0),
    )
    .await;
    assess(&pool, rescored, 2, RiskTier::Low, &[], (0, 50, 0)).await;
    assess(
        &pool,
        labelled,
        3,
        RiskTier::Medium,
        &["fraud_linked_contacts", "bulk_sms"],
        (1, 300, 0),
    )
    .await;
    case_store::agent_work::label_false_positives(
        &pool,
        labelled,
        &["fraud_linked_contacts".into(), "bulk_sms".into()],
        analyst,
    )
    .await
    .unwrap();
    sqlx::query("ANALYZE risk_assessments")
        .execute(&pool)
        .await
        .unwrap();

    let mut conn = pool.acquire().await.unwrap();
    let scans = "SELECT coalesce(seq_scan, 0), coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'risk_assessments'";
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .unwrap();
    let before: (i64, i64) = sqlx::query_as(scans).fetch_one(&mut *conn).await.unwrap();
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut cases = Vec::new();
    risk_rules::replay_history(&mut *conn, Utc::now() - Duration::days(7), |c| {
        cases.push(c)
    })
    .await
    .unwrap();
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .unwrap();
    let after: (i64, i64) = sqlx::query_as(scans).fetch_one(&mut *conn).await.unwrap();
    assert_eq!(after.0, before.0, "the replay scanned the whole history");
    assert!(after.1 > before.1, "the replay used no index");
    conn.close().await.unwrap();

    cases.sort_by_key(|c| c.signals.sms_peak_per_hour);
    assert_eq!(
        cases,
        [
            ReplayCase {
                signals: RiskSignals {
                    sms_peak_per_hour: 50,
                    ..RiskSignals::default()
                },
                tier: RiskTier::Low,
                reasons: vec![],
                false_positives: vec![],
            },
            ReplayCase {
                signals: RiskSignals {
                    fraud_linked_contacts: 1,
                    sms_peak_per_hour: 300,
                    ..RiskSignals::default()
                },
                tier: RiskTier::Medium,
                reasons: vec![ReasonCode::FraudLinkedContacts, ReasonCode::BulkSms],
                false_positives: vec![ReasonCode::BulkSms, ReasonCode::FraudLinkedContacts],
            },
        ]
    );
}

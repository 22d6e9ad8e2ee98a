//! The audit appender's group commit against a real Postgres (`#[sqlx::test]`): a
//! burst of concurrent entries is written in fewer transactions than entries, every
//! caller gets its own committed sequence number, and the chain stays gap-free and
//! verifies; a database that cannot be reached is reported to the caller and nothing
//! is written.

use case_domain::Actor;
use case_store::{
    MIGRATOR,
    audit::{ChainReport, verify_chain},
};
use case_workflows::audit_appender::{Appender, OwnedEntry};
use sqlx::PgPool;
use uuid::Uuid;

fn entry(case_id: Uuid) -> OwnedEntry {
    OwnedEntry {
        actor: Actor::system("identity-verification"),
        action: "identity.decrypt",
        case_id: Some(case_id),
        detail: serde_json::json!({"fields": ["full_name", "id_number"]}),
        reason: Some("test"),
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_burst_is_written_in_few_transactions_and_each_caller_gets_its_row(pool: PgPool) {
    let appender = Appender::new(pool.clone());
    let cases: Vec<Uuid> = (0..60).map(|_| Uuid::now_v7()).collect();
    let tasks: Vec<_> = cases
        .iter()
        .map(|&case_id| {
            let appender = appender.clone();
            tokio::spawn(async move { (case_id, appender.append(entry(case_id)).await) })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        let (case_id, seq) = task.await.expect("task");
        let seq = seq.expect("appended");
        // Each caller's number is its own row.
        let row_case: Option<Uuid> =
            sqlx::query_scalar("SELECT case_id FROM audit_log WHERE seq = $1")
                .bind(seq)
                .fetch_one(&pool)
                .await
                .expect("row of the caller's seq");
        assert_eq!(row_case, Some(case_id));
        seqs.push(seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=60).collect::<Vec<i64>>(), "gap-free, no repeats");
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM audit_log")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert!(
        transactions < 60,
        "60 concurrent entries took {transactions} transactions: no burst was grouped"
    );
    let mut conn = pool.acquire().await.expect("connection");
    assert_eq!(
        verify_chain(&mut conn).await.expect("verify"),
        ChainReport::Intact(60)
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn entries_one_after_another_each_commit_before_the_answer(pool: PgPool) {
    let appender = Appender::new(pool.clone());
    for n in 1..=3i64 {
        let seq = appender
            .append(entry(Uuid::now_v7()))
            .await
            .expect("appended");
        assert_eq!(seq, n);
        // Committed: another connection sees it at once.
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(seen, n);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_unreachable_database_is_reported_and_nothing_is_written(pool: PgPool) {
    let closed = PgPool::connect_with((*pool.connect_options()).clone())
        .await
        .expect("second pool");
    closed.close().await;
    let appender = Appender::new(closed);
    let error = appender
        .append(entry(Uuid::now_v7()))
        .await
        .expect_err("a closed pool cannot append");
    assert!(
        matches!(error, case_store::StoreError::Db(sqlx::Error::PoolClosed)),
        "{error:?}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 0);
}

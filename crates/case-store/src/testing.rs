//! Fixtures for tests of this crate and of the crates built on it (feature
//! `test-support`): opening a case straight in the store, without the gateway.
//! Not for production code: it panics on any failure.

use case_domain::{Actor, Msisdn};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{NewCase, TransitionRequest, create_case, transition_in};

/// Opens a case for `msisdn` (English) and returns its id.
pub async fn open_case(pool: &PgPool, msisdn: &str) -> Uuid {
    open_case_in(pool, msisdn, "en").await
}

/// Opens a case for `msisdn` in `locale` and returns its id. Its token hash is random.
pub async fn open_case_in(pool: &PgPool, msisdn: &str, locale: &str) -> Uuid {
    let id = Uuid::now_v7();
    let mut token_hash = [0u8; 32];
    token_hash[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    token_hash[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    let new = NewCase {
        id,
        msisdn: Msisdn::parse(msisdn).expect("a valid test number"),
        channel: case_domain::Channel::App,
        locale: case_domain::Locale::parse(locale).expect("a valid test locale"),
        token_hash,
    };
    let mut tx = pool.begin().await.expect("a transaction");
    create_case(&mut tx, &new, &Actor::customer())
        .await
        .expect("the case opens");
    tx.commit().await.expect("commit");
    id
}

/// Appends an audit row stamped `at` (a back-dated row, e.g. of a month to detach),
/// chained to the head like any other; returns its `seq`.
pub async fn record_audit_at(
    pool: &PgPool,
    entry: &crate::audit::AuditEntry<'_>,
    at: chrono::DateTime<chrono::Utc>,
) -> i64 {
    let mut tx = pool.begin().await.expect("a transaction");
    let seq = crate::audit::append_at(&mut tx, entry, at)
        .await
        .expect("the audit row is appended");
    tx.commit().await.expect("commit");
    seq
}

/// The customer cancels a just-opened case (version 1) in `conn`'s transaction.
pub async fn cancel_in(conn: &mut PgConnection, case_id: Uuid) {
    let customer = Actor::customer();
    transition_in(
        conn,
        TransitionRequest {
            case_id,
            expected_version: 1,
            event: case_domain::CaseEvent::Cancelled,
            actor: &customer,
            reason: None,
            fence: None,
            outbox: vec![],
        },
    )
    .await
    .expect("the customer cancels the case");
}

/// The generic and custom plans made so far on `conn` for the prepared statement
/// whose text is `LIKE pattern` (exactly one must match).
pub async fn plans_of(conn: &mut PgConnection, pattern: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements
          WHERE statement LIKE $1 AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .bind(pattern)
    .fetch_one(conn)
    .await
    .expect("one prepared statement of that text")
}

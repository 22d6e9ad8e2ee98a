//! Retention and per-case data keys against a real Postgres: finished cases past
//! their periods lose their codes, explanations, evidence and data key (their name
//! and ID number no longer open), batch by batch, once; younger and open cases keep
//! everything; the event log and the audit chain stay intact; the backfill gives old
//! cases a data key, and key rotation re-wraps the keys.

use case_domain::{Actor, retention::DataKind};
use case_store::{
    MIGRATOR,
    audit::{self, ChainReport},
    data_keys::{self, BackfillProgress},
    identity::{NewIdentity, insert_otp, load_identity, save_identity},
    key_rotation::{self, PLACES},
    material::{Counterparty, insert_evidence, insert_explanation},
    retention::{self, Due},
    testing::open_case,
};
use chrono::{DateTime, Duration, Utc};
use data_protection::{CaseKey, Keys};
use sqlx::PgPool;
use uuid::Uuid;

const A: [u8; 32] = [0xa1; 32];
const B: [u8; 32] = [0xb2; 32];

/// Opens a case whose name and ID number are sealed under its own data key, with a
/// code, an explanation naming a third party and an evidence file.
async fn case_with_data(pool: &PgPool, keys: &Keys, msisdn: &str) -> Uuid {
    let case_id = open_case(pool, msisdn).await;
    let key = CaseKey::generate();
    data_keys::save_data_key(pool, case_id, &keys.wrap_case_key(&key, &case_id))
        .await
        .unwrap();
    save_identity(
        pool,
        case_id,
        &NewIdentity {
            full_name_enc: key.encrypt("Zhang San", &case_id),
            id_number_enc: key.encrypt("110105194912310021", &case_id),
            full_name_masked: "Z********".into(),
            id_number_last4: "0021".into(),
        },
    )
    .await
    .unwrap();
    add_material(pool, case_id).await;
    case_id
}

async fn add_material(pool: &PgPool, case_id: Uuid) {
    insert_otp(
        pool,
        Uuid::now_v7(),
        case_id,
        &[7u8; 32],
        "+86*******0001",
        Utc::now(),
    )
    .await
    .unwrap();
    insert_explanation(
        pool,
        case_id,
        "my brother called me",
        &[Counterparty {
            msisdn: "+8613900000001".into(),
            relation: "brother".into(),
            purpose: "family".into(),
        }],
    )
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    insert_evidence(&mut conn, case_id, "application/pdf", b"%PDF-1.4 evidence")
        .await
        .unwrap();
}

/// Ends a case (cancelled) at `ended_at`, as the test's clock has it.
async fn finish(pool: &PgPool, case_id: Uuid, ended_at: DateTime<Utc>) {
    sqlx::query(
        "UPDATE reactivation_cases SET state = 'cancelled', state_entered_at = $2 WHERE id = $1",
    )
    .bind(case_id)
    .bind(ended_at)
    .execute(pool)
    .await
    .unwrap();
}

async fn count(pool: &PgPool, table: &str, case_id: Uuid) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE case_id = $1"))
        .bind(case_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The whole event log, as text, to compare before and after.
async fn event_log(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT row_to_json(e)::text FROM case_events e ORDER BY seq")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn chain(pool: &PgPool) -> i64 {
    let mut conn = pool.acquire().await.unwrap();
    match audit::verify_chain(&mut conn).await.unwrap() {
        ChainReport::Intact(rows) => rows,
        broken => panic!("{broken:?}"),
    }
}

fn cutoffs(now: DateTime<Utc>) -> [(DataKind, DateTime<Utc>); 4] {
    let policy = case_domain::retention::RetentionPolicy::default();
    DataKind::PER_CASE.map(|k| (k, policy.cutoff(k, now)))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn retention_shreds_finished_cases_past_their_period_once_and_keeps_the_history(
    pool: PgPool,
) {
    let keys = Keys::from_master(&A);
    let now = Utc::now();
    let actor = Actor::system("retention-test");
    let old = case_with_data(&pool, &keys, "+8613800000001").await;
    let recent = case_with_data(&pool, &keys, "+8613800000002").await;
    let open = case_with_data(&pool, &keys, "+8613800000003").await;
    finish(&pool, old, now - Duration::days(800)).await;
    finish(&pool, recent, now - Duration::days(10)).await;
    let events_before = event_log(&pool).await;
    let audit_before = chain(&pool).await;

    for (kind, cutoff) in cutoffs(now) {
        let due = retention::due(&pool, kind, cutoff).await.unwrap();
        // One row of each kind (for identity: the data key).
        assert_eq!(due, Due { cases: 1, rows: 1 }, "{kind:?}");
    }
    // Another runner holding a kind: this one leaves it alone.
    let mut other = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM retention_cursors WHERE kind = 'identity' FOR UPDATE")
        .execute(&mut *other)
        .await
        .unwrap();
    let (_, identity_cutoff) = cutoffs(now)[3];
    assert_eq!(
        retention::run_batch(&pool, DataKind::Identity, identity_cutoff, now, 10, &actor)
            .await
            .unwrap(),
        None
    );
    other.rollback().await.unwrap();

    for (kind, cutoff) in cutoffs(now) {
        let done = retention::run_batch(&pool, kind, cutoff, now, 1, &actor)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.cases, vec![old], "{kind:?}");
        assert_eq!(done.rows, 1, "{kind:?}");
        // The next batch finds nothing more: a rerun is a no-op.
        let again = retention::run_batch(&pool, kind, cutoff, now, 1, &actor)
            .await
            .unwrap()
            .unwrap();
        assert!(again.cases.is_empty(), "{kind:?}");
        assert_eq!(
            retention::due(&pool, kind, cutoff).await.unwrap(),
            Due::default()
        );
    }

    // The old case: data key gone, its name and ID number open under nothing.
    assert_eq!(data_keys::load_data_key(&pool, old).await.unwrap(), None);
    let identity = load_identity(&pool, old).await.unwrap().unwrap();
    assert!(
        keys.open_personal(None, &identity.full_name_enc, &old)
            .is_err()
    );
    assert!(
        keys.open_personal(None, &identity.id_number_enc, &old)
            .is_err()
    );
    assert_eq!(identity.full_name_masked, "");
    assert_eq!(identity.id_number_last4, "****");
    for table in ["otp_codes", "case_explanations", "case_evidence"] {
        assert_eq!(count(&pool, table, old).await, 0, "{table}");
    }
    let gone = retention::deletions(&pool, old).await.unwrap().unwrap();
    assert_eq!(
        gone.identity_deleted_at.map(|t| t.timestamp()),
        Some(now.timestamp())
    );
    assert!(gone.codes_deleted_at.is_some() && gone.explanations_deleted_at.is_some());
    assert_eq!(
        (
            gone.codes_deleted,
            gone.explanations_deleted,
            gone.evidence_deleted
        ),
        (1, 1, 1)
    );
    // The others keep everything, and still open.
    for case_id in [recent, open] {
        let wrapped = data_keys::load_data_key(&pool, case_id).await.unwrap();
        let identity = load_identity(&pool, case_id).await.unwrap().unwrap();
        assert_eq!(
            keys.open_personal(wrapped.as_deref(), &identity.full_name_enc, &case_id)
                .unwrap(),
            "Zhang San"
        );
        for table in ["otp_codes", "case_explanations", "case_evidence"] {
            assert_eq!(count(&pool, table, case_id).await, 1, "{table}");
        }
        assert_eq!(retention::deletions(&pool, case_id).await.unwrap(), None);
    }
    // The event log is the same rows; the audit chain holds, with one row per
    // case and kind.
    assert_eq!(event_log(&pool).await, events_before);
    assert_eq!(chain(&pool).await, audit_before + 4);

    // Years later, the recent case's turn comes; the open case is never touched.
    let later = now + Duration::days(800);
    for (kind, cutoff) in cutoffs(later) {
        let done = retention::run_batch(&pool, kind, cutoff, later, 100, &actor)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.cases, vec![recent], "{kind:?}");
    }
    assert!(
        data_keys::load_data_key(&pool, open)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(count(&pool, "case_evidence", open).await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_retention_scan_walks_the_index_on_the_end_time(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id, state_entered_at FROM reactivation_cases
          WHERE state IN ('reactivated', 'cancelled', 'expired', 'closed')
            AND (state_entered_at, id) > (now() - interval '900 days', '00000000-0000-0000-0000-000000000000'::uuid)
            AND state_entered_at <= now() - interval '730 days'
          ORDER BY state_entered_at, id LIMIT 200",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("reactivation_cases_finished_by_end"),
        "{plan}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn old_cases_get_a_data_key_and_rotation_rewraps_it(pool: PgPool) {
    let only_a = Keys::from_master(&A);
    // Two cases opened before data keys existed: sealed straight under A.
    let mut old = vec![];
    for i in 0..2 {
        let case_id = open_case(&pool, &format!("+861380000010{i}")).await;
        save_identity(
            &pool,
            case_id,
            &NewIdentity {
                full_name_enc: only_a.encrypt("Li Si", &case_id),
                id_number_enc: only_a.encrypt("11010519491231002X", &case_id),
                full_name_masked: "L****".into(),
                id_number_last4: "002X".into(),
            },
        )
        .await
        .unwrap();
        old.push(case_id);
    }
    assert_eq!(data_keys::without_data_key(&pool).await.unwrap(), 2);
    let envelope = |case_id: &Uuid, name: &[u8], id_number: &[u8]| {
        let name = only_a
            .open_personal(None, name, case_id)
            .map_err(|e| e.to_string())?;
        let id_number = only_a
            .open_personal(None, id_number, case_id)
            .map_err(|e| e.to_string())?;
        let key = CaseKey::generate();
        Ok((
            only_a.wrap_case_key(&key, case_id),
            key.encrypt(&name, case_id),
            key.encrypt(&id_number, case_id),
        ))
    };
    let mut batches = 0;
    let done = data_keys::backfill(&pool, &envelope, 1, |_| batches += 1)
        .await
        .unwrap();
    assert_eq!(
        done,
        BackfillProgress {
            to_do: 2,
            moved: 2,
            unreadable: 0
        }
    );
    assert_eq!(batches, 2);
    // A rerun has nothing to do.
    let again = data_keys::backfill(&pool, &envelope, 10, |_| {})
        .await
        .unwrap();
    assert_eq!(again, BackfillProgress::default());
    for case_id in &old {
        let wrapped = data_keys::load_data_key(&pool, *case_id).await.unwrap();
        let identity = load_identity(&pool, *case_id).await.unwrap().unwrap();
        assert!(CaseKey::is_sealed_under_case_key(&identity.full_name_enc));
        assert_eq!(
            only_a
                .open_personal(wrapped.as_deref(), &identity.id_number_enc, case_id)
                .unwrap(),
            "11010519491231002X"
        );
        // The master secret alone no longer opens it.
        assert!(only_a.decrypt(&identity.full_name_enc, case_id).is_err());
    }

    // Rotating A to B re-wraps the data keys and leaves the identities alone.
    let b_then_a = Keys::from_master(&B).with_old(&A).unwrap();
    let prefix = b_then_a.current_prefix();
    assert_eq!(
        key_rotation::pending(&pool, &prefix).await.unwrap(),
        vec![
            (PLACES[0], 0),
            (PLACES[1], 0),
            (PLACES[2], 0),
            (PLACES[3], 2),
            (PLACES[4], 0)
        ]
    );
    let reseal =
        |sealed: &[u8], row: &Uuid| b_then_a.reseal(sealed, row).map_err(|e| e.to_string());
    key_rotation::rotate(&pool, &prefix, &reseal, 1, |_| {})
        .await
        .unwrap();
    let only_b = Keys::from_master(&B);
    for case_id in &old {
        let wrapped = data_keys::load_data_key(&pool, *case_id).await.unwrap();
        let identity = load_identity(&pool, *case_id).await.unwrap().unwrap();
        assert_eq!(
            only_b
                .open_personal(wrapped.as_deref(), &identity.full_name_enc, case_id)
                .unwrap(),
            "Li Si"
        );
    }

    // A finished legacy case that never got a key: retention empties its sealed values.
    let legacy = open_case(&pool, "+8613800000199").await;
    save_identity(
        &pool,
        legacy,
        &NewIdentity {
            full_name_enc: only_b.encrypt("Wang Wu", &legacy),
            id_number_enc: only_b.encrypt("110105194912310021", &legacy),
            full_name_masked: "W*******".into(),
            id_number_last4: "0021".into(),
        },
    )
    .await
    .unwrap();
    let now = Utc::now();
    finish(&pool, legacy, now - Duration::days(1000)).await;
    let (_, cutoff) = cutoffs(now)[3];
    let done = retention::run_batch(
        &pool,
        DataKind::Identity,
        cutoff,
        now,
        10,
        &Actor::system("retention-test"),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(done.cases, vec![legacy]);
    let identity = load_identity(&pool, legacy).await.unwrap().unwrap();
    assert!(identity.full_name_enc.is_empty() && identity.id_number_enc.is_empty());
    // The backfill does not resurrect a deleted identity.
    assert_eq!(data_keys::without_data_key(&pool).await.unwrap(), 0);
}

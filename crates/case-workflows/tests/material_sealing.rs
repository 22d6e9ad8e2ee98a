//! Crypto-shredding of the subscriber's material against a real Postgres
//! (`#[sqlx::test]`, no mocks): explanations, evidence files and the appeal statement
//! are sealed under per-case, per-kind data keys before they are stored (the raw
//! rows hold none of the plaintext), read back through the workflows, rows written
//! before sealing still read, retention destroys the keys so a copy of the sealed
//! rows taken before no longer opens, and key rotation re-wraps the material keys.

use case_domain::{Actor, retention::RetentionPolicy, sla::SlaConfig};
use case_store::{
    MIGRATOR,
    key_rotation::{self, PLACES},
    material::{self as store, Counterparty, StoredEvidence},
    testing::open_case,
};
use case_workflows::{
    WorkflowError,
    material::{
        self, CounterpartyInput, ExplanationInput, explained_contacts, open_evidence, read_appeal,
        read_explanations,
    },
    retention::{self, RunOptions},
};
use chrono::Utc;
use data_protection::{Keys, MaterialKind};
use sqlx::PgPool;
use uuid::Uuid;

const A: [u8; 32] = [0xa1; 32];
const B: [u8; 32] = [0xb2; 32];

const STATEMENT: &str = "STATEMENT-my brother Wang Wu calls me every evening";
const APPEAL: &str = "APPEAL-the calls were to my own shop";
const COUNTERPARTY: &str = "+8613900000001";

/// A PNG (recognised by its magic) with a recognisable body.
fn file() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend_from_slice(b"SECRET-SCAN-OF-A-RESIDENT-ID-CARD-110105194912310021");
    png.extend((0..4000u32).map(|i| (i % 251) as u8));
    png
}

fn explanation() -> ExplanationInput {
    ExplanationInput {
        statement: STATEMENT.into(),
        counterparties: vec![CounterpartyInput {
            msisdn: COUNTERPARTY.into(),
            relation: "RELATION-brother".into(),
            purpose: "PURPOSE-family dinner".into(),
        }],
    }
}

/// A case under security review (it takes material).
async fn in_review(pool: &PgPool, msisdn: &str) -> Uuid {
    let id = open_case(pool, msisdn).await;
    set_state(pool, id, "security_review").await;
    id
}

async fn set_state(pool: &PgPool, id: Uuid, state: &str) {
    sqlx::query(
        "UPDATE reactivation_cases SET state = $2::case_state, state_entered_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .execute(pool)
    .await
    .unwrap();
}

/// A case with a sealed explanation, a sealed evidence file and a sealed appeal.
async fn case_with_material(pool: &PgPool, keys: &Keys, msisdn: &str) -> (Uuid, Uuid) {
    let case = in_review(pool, msisdn).await;
    material::explain(pool, keys, case, explanation())
        .await
        .unwrap();
    let added = material::add_evidence(pool, keys, case, &file())
        .await
        .unwrap();
    assert!(!added.duplicate);
    set_state(pool, case, "rejected").await;
    material::appeal(pool, keys, &SlaConfig::default(), case, APPEAL)
        .await
        .unwrap();
    (case, added.evidence_id)
}

async fn scalar(pool: &PgPool, sql: &str, case: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(case)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn stored_evidence(pool: &PgPool, case: Uuid, id: Uuid) -> StoredEvidence {
    store::load_evidence_content(pool, case, id)
        .await
        .unwrap()
        .expect("the evidence row")
}

async fn read_all(pool: &PgPool, keys: &Keys, case: Uuid, evidence: Uuid) -> (String, Vec<u8>) {
    let mut conn = pool.acquire().await.unwrap();
    let explanations = read_explanations(&mut conn, keys, case).await.unwrap();
    let stored = stored_evidence(pool, case, evidence).await;
    let content = open_evidence(&mut conn, keys, case, evidence, stored)
        .await
        .unwrap();
    (explanations[0].statement.clone(), content)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn material_is_sealed_at_rest_and_reads_back_through_the_workflows(pool: PgPool) {
    let keys = Keys::from_master(&A);
    let (case, evidence) = case_with_material(&pool, &keys, "+8613800138000").await;

    // The evidence row holds the file sealed: none of its bytes in clear, 29 bytes more.
    let file = file();
    let (position, sealed, length): (i32, bool, i32) = sqlx::query_as(
        "SELECT position($2::bytea IN content), sealed, octet_length(content)
           FROM case_evidence WHERE id = $1",
    )
    .bind(evidence)
    .bind(&file[16..60])
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((position, sealed), (0, true));
    assert_eq!(
        length as usize,
        file.len() + data_protection::SEALED_OVERHEAD
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM case_evidence WHERE case_id = $1 AND position('\\x89504e47'::bytea IN content) > 0",
            case
        )
        .await,
        0,
        "not even the PNG magic is in clear"
    );
    // The explanation and appeal rows: no statement, number, relation or purpose in
    // any column (row_to_json renders every column, bytea as hex).
    for needle in [
        "STATEMENT",
        "13900000001",
        "RELATION",
        "PURPOSE",
        "Wang Wu",
        "APPEAL",
    ] {
        for table in ["case_explanations", "case_appeals", "case_material_keys"] {
            assert_eq!(
                sqlx::query_scalar::<_, i64>(&format!(
                    "SELECT count(*) FROM {table} t WHERE case_id = $1 AND row_to_json(t)::text LIKE '%' || $2 || '%'"
                ))
                .bind(case)
                .bind(needle)
                .fetch_one(&pool)
                .await
                .unwrap(),
                0,
                "{needle} in {table}"
            );
        }
        // Nor in the sealed bytes themselves.
        assert_eq!(
            scalar(
                &pool,
                &format!(
                    "SELECT count(*) FROM case_explanations WHERE case_id = $1 AND position(convert_to('{needle}', 'UTF8') IN body_sealed) > 0"
                ),
                case
            )
            .await,
            0
        );
    }
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM case_explanations WHERE case_id = $1 AND statement IS NULL AND counterparties IS NULL AND body_sealed IS NOT NULL",
            case
        )
        .await,
        1
    );
    // One key per kind, wrapped (format 0x01 under the master secret).
    let kinds: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT kind, wrapped_key FROM case_material_keys WHERE case_id = $1 ORDER BY kind",
    )
    .bind(case)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        kinds.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["evidence", "explanations"]
    );
    assert!(kinds.iter().all(|(_, w)| w[0] == 1));
    // The evidence key does not open as the explanations key.
    assert!(
        keys.unwrap_material_key(&kinds[0].1, &case, MaterialKind::Explanations)
            .is_err()
    );

    // Read back through the workflows.
    let mut conn = pool.acquire().await.unwrap();
    let opened = read_explanations(&mut conn, &keys, case).await.unwrap();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].statement, STATEMENT);
    assert_eq!(
        opened[0].counterparties,
        [Counterparty {
            msisdn: COUNTERPARTY.into(),
            relation: "RELATION-brother".into(),
            purpose: "PURPOSE-family dinner".into(),
        }]
    );
    assert_eq!(explained_contacts(&opened), [COUNTERPARTY]);
    assert!(!format!("{opened:?}").contains("STATEMENT"));
    let stored = stored_evidence(&pool, case, evidence).await;
    assert_eq!(
        open_evidence(&mut conn, &keys, case, evidence, stored)
            .await
            .unwrap(),
        file
    );
    assert_eq!(
        read_appeal(&mut conn, &keys, case)
            .await
            .unwrap()
            .as_deref(),
        Some(APPEAL)
    );

    // A second file and a second explanation reuse the case's keys.
    set_state(&pool, case, "security_review").await;
    material::explain(&pool, &keys, case, explanation())
        .await
        .unwrap();
    let again = material::add_evidence(&pool, &keys, case, &file)
        .await
        .unwrap();
    assert!(
        again.duplicate,
        "the same file is still recognised by its hash"
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM case_material_keys WHERE case_id = $1",
            case
        )
        .await,
        2
    );
    assert_eq!(
        read_explanations(&mut conn, &keys, case)
            .await
            .unwrap()
            .len(),
        2
    );

    // Another master secret cannot open any of it.
    let other = Keys::from_master(&B);
    assert!(read_explanations(&mut conn, &other, case).await.is_err());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn material_stored_before_sealing_still_reads_next_to_sealed_material(pool: PgPool) {
    let keys = Keys::from_master(&A);
    let case = in_review(&pool, "+8613800138000").await;
    // Legacy rows, in clear, as the store wrote them before sealing existed.
    store::insert_explanation(
        &pool,
        case,
        "LEGACY statement",
        &[Counterparty {
            msisdn: "+8613900000002".into(),
            relation: "colleague".into(),
            purpose: "work".into(),
        }],
    )
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let legacy_file = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRlegacy".to_vec();
    let legacy = store::insert_evidence(&mut conn, case, "image/png", &legacy_file)
        .await
        .unwrap()
        .meta()
        .id;
    store::record_appeal(&pool, case, "LEGACY appeal", Utc::now())
        .await
        .unwrap();
    // New material on the same case is sealed.
    material::explain(&pool, &keys, case, explanation())
        .await
        .unwrap();
    let new = material::add_evidence(&pool, &keys, case, &file())
        .await
        .unwrap()
        .evidence_id;

    let opened = read_explanations(&mut conn, &keys, case).await.unwrap();
    assert_eq!(
        opened
            .iter()
            .map(|e| e.statement.as_str())
            .collect::<Vec<_>>(),
        ["LEGACY statement", STATEMENT]
    );
    assert_eq!(
        explained_contacts(&opened),
        [COUNTERPARTY, "+8613900000002"]
    );
    let stored = stored_evidence(&pool, case, legacy).await;
    assert!(!stored.sealed);
    assert_eq!(
        open_evidence(&mut conn, &keys, case, legacy, stored)
            .await
            .unwrap(),
        legacy_file
    );
    let stored = stored_evidence(&pool, case, new).await;
    assert!(stored.sealed);
    assert_eq!(
        open_evidence(&mut conn, &keys, case, new, stored)
            .await
            .unwrap(),
        file()
    );
    assert_eq!(
        read_appeal(&mut conn, &keys, case)
            .await
            .unwrap()
            .as_deref(),
        Some("LEGACY appeal")
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn retention_destroys_the_material_keys_so_an_old_copy_of_the_rows_no_longer_opens(
    pool: PgPool,
) {
    let keys = Keys::from_master(&A);
    let (case, evidence) = case_with_material(&pool, &keys, "+8613800138000").await;
    let (young, young_evidence) = case_with_material(&pool, &keys, "+8613800138001").await;

    // The "old backup": the sealed rows copied out before the pass.
    let backup_evidence = stored_evidence(&pool, case, evidence).await;
    let (backup_id, backup_body): (Uuid, Vec<u8>) =
        sqlx::query_as("SELECT id, body_sealed FROM case_explanations WHERE case_id = $1")
            .bind(case)
            .fetch_one(&pool)
            .await
            .unwrap();
    let backup_appeal: Vec<u8> =
        sqlx::query_scalar("SELECT statement_sealed FROM case_appeals WHERE case_id = $1")
            .bind(case)
            .fetch_one(&pool)
            .await
            .unwrap();
    // (A backup that also holds the wrapped key: see below.)
    let backup_wrapped: Vec<u8> = sqlx::query_scalar(
        "SELECT wrapped_key FROM case_material_keys WHERE case_id = $1 AND kind = 'evidence'",
    )
    .bind(case)
    .fetch_one(&pool)
    .await
    .unwrap();

    // The clock: one case ended 200 days ago (past evidence and explanations, 180
    // days; not identity, 730), the other yesterday.
    for (id, days) in [(case, 200), (young, 1)] {
        sqlx::query(
            "UPDATE reactivation_cases SET state = 'cancelled',
                    state_entered_at = now() - make_interval(days => $2) WHERE id = $1",
        )
        .bind(id)
        .bind(days)
        .execute(&pool)
        .await
        .unwrap();
    }
    let policy = RetentionPolicy::default();
    let now = Utc::now();
    let dry = retention::run(
        &pool,
        &policy,
        now,
        RunOptions {
            dry_run: true,
            ..RunOptions::default()
        },
        &Actor::system("retention"),
        |_| {},
    )
    .await
    .unwrap();
    let due = |kind: &str| {
        dry.iter()
            .find(|r| r.kind.as_str() == kind)
            .map(|r| (r.due.cases, r.due.rows))
            .unwrap()
    };
    assert_eq!(due("evidence"), (1, 1));
    assert_eq!(due("explanations"), (1, 1));
    assert_eq!(due("identity"), (0, 0));

    retention::run(
        &pool,
        &policy,
        now,
        RunOptions::default(),
        &Actor::system("retention"),
        |_| {},
    )
    .await
    .unwrap();

    // The rows and both material keys are gone; the appeal statement is blanked.
    for (sql, expected) in [
        (
            "SELECT count(*) FROM case_material_keys WHERE case_id = $1",
            0,
        ),
        ("SELECT count(*) FROM case_evidence WHERE case_id = $1", 0),
        (
            "SELECT count(*) FROM case_explanations WHERE case_id = $1",
            0,
        ),
        (
            "SELECT count(*) FROM case_appeals WHERE case_id = $1 AND statement = '[deleted]' AND statement_sealed IS NULL",
            1,
        ),
    ] {
        assert_eq!(scalar(&pool, sql, case).await, expected, "{sql}");
    }
    // The younger case keeps everything.
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM case_material_keys WHERE case_id = $1",
            young
        )
        .await,
        2
    );
    assert_eq!(
        read_all(&pool, &keys, young, young_evidence).await,
        (STATEMENT.to_owned(), file())
    );

    // The old copy of the sealed rows cannot be opened with the current keys: the
    // key row is gone, and the reader says when it was deleted.
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(
        store::load_material_key(&mut *conn, case, store::KeyKind::Evidence)
            .await
            .unwrap(),
        None
    );
    match open_evidence(&mut conn, &keys, case, evidence, backup_evidence.clone()).await {
        Err(WorkflowError::Refused { code, detail }) => {
            assert_eq!(code, "personal_data_deleted");
            assert!(
                detail.contains(&now.format("%Y-%m-%d").to_string()),
                "{detail}"
            );
        }
        other => panic!("the old copy opened or failed otherwise: {other:?}"),
    }
    // Restoring the sealed rows into the live database does not help either.
    sqlx::query(
        "INSERT INTO case_explanations (id, case_id, statement, counterparties, body_sealed)
         VALUES ($1, $2, NULL, NULL, $3)",
    )
    .bind(backup_id)
    .bind(case)
    .bind(&backup_body)
    .execute(&pool)
    .await
    .unwrap();
    let restored = read_explanations(&mut conn, &keys, case).await.unwrap();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].statement, "");
    assert!(restored[0].counterparties.is_empty());
    assert_eq!(
        restored[0].deleted_on.map(|d| d.date_naive()),
        Some(now.date_naive())
    );
    assert!(!backup_appeal.is_empty());
    // No key of the current configuration is the material key.
    assert!(
        keys.unwrap_case_key(&backup_wrapped, &case).is_err(),
        "the identity key is another key"
    );

    // A backup that holds the wrapped key as well still opens while master secret A
    // is configured; once the keys are rotated to B and A is retired, it does not.
    let opened = keys
        .unwrap_material_key(&backup_wrapped, &case, MaterialKind::Evidence)
        .unwrap();
    assert_eq!(
        opened
            .decrypt_bytes(&backup_evidence.content, &evidence)
            .unwrap(),
        file()
    );
    let only_b = Keys::from_master(&B);
    assert!(
        only_b
            .unwrap_material_key(&backup_wrapped, &case, MaterialKind::Evidence)
            .is_err()
    );

    // The dossier-facing record says what was deleted and when.
    let gone = case_store::retention::deletions(&pool, case)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((gone.evidence_deleted, gone.explanations_deleted), (1, 1));
    assert!(gone.evidence_deleted_at.is_some() && gone.explanations_deleted_at.is_some());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn key_rotation_rewraps_the_material_keys_and_the_material_still_opens(pool: PgPool) {
    let only_a = Keys::from_master(&A);
    let (case, evidence) = case_with_material(&pool, &only_a, "+8613800138000").await;
    let wrapped_before: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT wrapped_key FROM case_material_keys WHERE case_id = $1 ORDER BY kind",
    )
    .bind(case)
    .fetch_all(&pool)
    .await
    .unwrap();
    let sealed_before: Vec<u8> =
        sqlx::query_scalar("SELECT content FROM case_evidence WHERE id = $1")
            .bind(evidence)
            .fetch_one(&pool)
            .await
            .unwrap();

    let b_then_a = Keys::from_master(&B).with_old(&A).unwrap();
    let prefix = b_then_a.current_prefix();
    let pending = key_rotation::pending(&pool, &prefix).await.unwrap();
    assert_eq!(pending[4], (PLACES[4], 2));
    let reseal =
        |sealed: &[u8], row: &Uuid| b_then_a.reseal(sealed, row).map_err(|e| e.to_string());
    let done = key_rotation::rotate(&pool, &prefix, &reseal, 1, |_| {})
        .await
        .unwrap();
    let material_keys = done.iter().find(|p| p.place == PLACES[4]).unwrap();
    assert_eq!((material_keys.moved, material_keys.unreadable), (2, 0));
    assert_eq!(
        key_rotation::pending(&pool, &prefix).await.unwrap()[4],
        (PLACES[4], 0)
    );

    // Only B is configured now: everything still opens; the material itself was not
    // rewritten, only its keys were re-wrapped.
    let only_b = Keys::from_master(&B);
    assert_eq!(
        read_all(&pool, &only_b, case, evidence).await,
        (STATEMENT.to_owned(), file())
    );
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(
        read_appeal(&mut conn, &only_b, case)
            .await
            .unwrap()
            .as_deref(),
        Some(APPEAL)
    );
    let sealed_after: Vec<u8> =
        sqlx::query_scalar("SELECT content FROM case_evidence WHERE id = $1")
            .bind(evidence)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(sealed_after, sealed_before);
    let wrapped_after: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT wrapped_key FROM case_material_keys WHERE case_id = $1 ORDER BY kind",
    )
    .bind(case)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_ne!(wrapped_after, wrapped_before);
    // The keys wrapped under A (an old backup's) open no more under B alone.
    for (kind, wrapped) in [MaterialKind::Evidence, MaterialKind::Explanations]
        .into_iter()
        .zip(&wrapped_before)
    {
        assert!(only_b.unwrap_material_key(wrapped, &case, kind).is_err());
    }
    // A second run has nothing to do.
    let again = key_rotation::rotate(&pool, &prefix, &reseal, 1, |_| {})
        .await
        .unwrap();
    assert!(again.iter().all(|p| p.moved == 0));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn keys_envelope_material_seals_what_was_stored_in_clear_once(pool: PgPool) {
    let keys = Keys::from_master(&A);
    let mut cases = vec![];
    for n in 0..3 {
        let case = in_review(&pool, &format!("+861380013800{n}")).await;
        store::insert_explanation(
            &pool,
            case,
            "LEGACY-statement of a cousin",
            &[Counterparty {
                msisdn: "+8613900000002".into(),
                relation: "LEGACY-cousin".into(),
                purpose: "work".into(),
            }],
        )
        .await
        .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let id = store::insert_evidence(&mut conn, case, "image/png", &file())
            .await
            .unwrap()
            .meta()
            .id;
        store::record_appeal(&pool, case, "LEGACY-appeal", Utc::now())
            .await
            .unwrap();
        cases.push((case, id));
    }
    // One case's appeal was blanked by retention already: left alone.
    sqlx::query("UPDATE case_appeals SET statement = '[deleted]' WHERE case_id = $1")
        .bind(cases[2].0)
        .execute(&pool)
        .await
        .unwrap();
    // And one case already has sealed material under its key: the key is reused.
    material::explain(&pool, &keys, cases[0].0, explanation())
        .await
        .unwrap();

    let mut reports = vec![];
    let done = material::seal_clear_material(&pool, &keys, 2, |p| reports.push(*p))
        .await
        .unwrap();
    assert_eq!(
        (done.cases, done.evidence, done.explanations, done.appeals),
        (3, 3, 3, 2)
    );
    assert_eq!(reports.len(), 2, "two batches of at most two cases");

    for needle in ["LEGACY", "13900000002"] {
        for table in ["case_explanations", "case_appeals"] {
            assert_eq!(
                sqlx::query_scalar::<_, i64>(&format!(
                    "SELECT count(*) FROM {table} t WHERE row_to_json(t)::text LIKE '%' || $1 || '%'"
                ))
                .bind(needle)
                .fetch_one(&pool)
                .await
                .unwrap(),
                0,
                "{needle} in {table}"
            );
        }
    }
    let clear_files: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM case_evidence WHERE NOT sealed OR position($1::bytea IN content) > 0",
    )
    .bind(&file()[16..60])
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(clear_files, 0);
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM case_material_keys")
            .fetch_one(&pool)
            .await
            .unwrap(),
        6
    );
    // Everything reads back as it was.
    let mut conn = pool.acquire().await.unwrap();
    for (n, (case, evidence)) in cases.iter().enumerate() {
        let opened = read_explanations(&mut conn, &keys, *case).await.unwrap();
        assert_eq!(opened[0].statement, "LEGACY-statement of a cousin");
        assert_eq!(opened[0].counterparties[0].relation, "LEGACY-cousin");
        let stored = stored_evidence(&pool, *case, *evidence).await;
        assert!(stored.sealed);
        assert_eq!(
            open_evidence(&mut conn, &keys, *case, *evidence, stored)
                .await
                .unwrap(),
            file()
        );
        assert_eq!(
            read_appeal(&mut conn, &keys, *case)
                .await
                .unwrap()
                .as_deref(),
            Some(if n == 2 { "[deleted]" } else { "LEGACY-appeal" })
        );
    }
    assert_eq!(
        read_explanations(&mut conn, &keys, cases[0].0)
            .await
            .unwrap()
            .len(),
        2
    );
    // A second run has nothing to do.
    let again = material::seal_clear_material(&pool, &keys, 2, |_| {})
        .await
        .unwrap();
    assert_eq!(again, material::SealProgress::default());
}

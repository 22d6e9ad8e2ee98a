//! The subscriber's material against a real Postgres: a fresh database per test.

use case_domain::risk::RiskTier;
use case_store::testing::open_case;
use case_store::{
    MIGRATOR, StoreError,
    material::{
        self, Counterparty, EvidenceStored, ExplanationBody, MaterialCounts, StoredEvidence,
        count_material, insert_evidence, insert_explanation, list_evidence, list_explanations,
        load_evidence_content,
    },
    risk,
};
use chrono::{Duration, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

fn counterparty(msisdn: &str) -> Counterparty {
    Counterparty {
        msisdn: msisdn.into(),
        relation: "colleague".into(),
        purpose: "work calls".into(),
    }
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

#[sqlx::test(migrator = "MIGRATOR")]
async fn explanations_are_stored_listed_and_counted(pool: PgPool) {
    let case = open_case(&pool, "+8613800138000").await;
    let other = open_case(&pool, "+8613800138001").await;
    let first = insert_explanation(
        &pool,
        case,
        "They are my colleagues.",
        &[
            counterparty("+8613700137001"),
            counterparty("+8613700137002"),
        ],
    )
    .await
    .unwrap();
    insert_explanation(
        &pool,
        case,
        "And my brother.",
        &[counterparty("+8613700137001")],
    )
    .await
    .unwrap();
    insert_explanation(
        &pool,
        other,
        "Unrelated.",
        &[counterparty("+8613700137009")],
    )
    .await
    .unwrap();

    let listed = list_explanations(&pool, case).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, first);
    let ExplanationBody::Clear { counterparties, .. } = &listed[0].body else {
        panic!("a clear row reads as sealed")
    };
    assert_eq!(counterparties[1], counterparty("+8613700137002"));
    assert_eq!(
        count_material(&pool, case).await.unwrap(),
        MaterialCounts {
            explanations: 2,
            evidence: 0
        }
    );
    // Debug output never shows a counterparty's number.
    assert!(!format!("{:?}", listed[0]).contains("13700137001"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_table_refuses_what_the_api_refuses(pool: PgPool) {
    let case = open_case(&pool, "+8613800138000").await;
    let long = "字".repeat(4001);
    assert!(matches!(
        insert_explanation(&pool, case, &long, &[]).await,
        Err(StoreError::Db(_))
    ));
    let many: Vec<Counterparty> = (0..21)
        .map(|i| counterparty(&format!("+86137001370{i:02}")))
        .collect();
    assert!(insert_explanation(&pool, case, "s", &many).await.is_err());
    let mut conn = pool.acquire().await.unwrap();
    assert!(
        insert_evidence(&mut conn, case, "application/x-msdownload", b"MZ")
            .await
            .is_err()
    );
    assert_eq!(
        count_material(&pool, case).await.unwrap(),
        MaterialCounts::default()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn evidence_is_stored_once_per_case_with_its_hash(pool: PgPool) {
    let case = open_case(&pool, "+8613800138000").await;
    let other = open_case(&pool, "+8613800138001").await;
    let mut conn = pool.acquire().await.unwrap();

    let first = insert_evidence(&mut conn, case, "image/png", PNG)
        .await
        .unwrap();
    let EvidenceStored::New(meta) = &first else {
        panic!("not new: {first:?}")
    };
    assert_eq!(meta.sha256, Sha256::digest(PNG).to_vec());
    assert_eq!(
        (meta.media_type.as_str(), meta.size_bytes),
        ("image/png", PNG.len() as i32)
    );

    let again = insert_evidence(&mut conn, case, "image/png", PNG)
        .await
        .unwrap();
    assert_eq!(again, EvidenceStored::Duplicate(meta.clone()));
    // The same file on another case is that case's own evidence.
    let elsewhere = insert_evidence(&mut conn, other, "image/png", PNG)
        .await
        .unwrap();
    assert!(matches!(elsewhere, EvidenceStored::New(ref m) if m.id != meta.id));

    assert_eq!(
        list_evidence(&pool, case).await.unwrap(),
        std::slice::from_ref(meta)
    );
    assert_eq!(count_material(&pool, case).await.unwrap().evidence, 1);
    assert_eq!(
        load_evidence_content(&pool, case, meta.id).await.unwrap(),
        Some(StoredEvidence {
            media_type: "image/png".to_owned(),
            content: PNG.to_vec(),
            sealed: false
        })
    );
    // Another case's token cannot reach it.
    assert_eq!(
        load_evidence_content(&pool, other, meta.id).await.unwrap(),
        None
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_case_is_appealed_at_most_once(pool: PgPool) {
    let case = open_case(&pool, "+8613800138000").await;
    assert_eq!(material::load_appeal(&pool, case).await.unwrap(), None);
    let rejected_at = Utc::now() - Duration::days(3);
    let appeal = material::record_appeal(&pool, case, "I disagree.", rejected_at)
        .await
        .unwrap();
    assert_eq!(appeal.statement.as_deref(), Some("I disagree."));
    assert_eq!(appeal.statement_sealed, None);
    assert!(appeal.appealed_at >= appeal.rejected_at);
    let second = material::record_appeal(&pool, case, "Again.", rejected_at).await;
    assert!(
        matches!(second, Err(StoreError::AlreadyAppealed)),
        "{second:?}"
    );
    assert_eq!(
        material::load_appeal(&pool, case).await.unwrap(),
        Some(appeal)
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_rescore_keeps_tier_reasons_and_signals_and_becomes_the_latest(pool: PgPool) {
    let case = open_case(&pool, "+8613800138000").await;
    let signals = case_domain::risk::RecordedSignals {
        fraud_linked_contacts: 2,
        flagged_contacts: vec!["+8613700137001".to_owned()],
        ..Default::default()
    };
    let codes = vec!["fraud_linked_contacts".to_owned()];
    // A re-score in a transaction that began before the assessment was written is still the latest.
    let mut early = pool.begin().await.unwrap();
    let began: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *early)
        .await
        .unwrap();
    // Wait (bounded) until the server's clock has moved past that transaction's start,
    // instead of sleeping a fixed while and hoping it did.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let moved: bool = sqlx::query_scalar("SELECT clock_timestamp() > $1")
            .bind(began)
            .fetch_one(&pool)
            .await
            .unwrap();
        if moved {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the clock never moved"
        );
        tokio::task::yield_now().await;
    }
    let first = risk::save_assessment(
        &pool,
        case,
        RiskTier::Medium,
        &codes,
        &["explanation".to_owned(), "security_review".to_owned()],
        &signals,
        1,
    )
    .await
    .unwrap();
    let assessed: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT assessed_at FROM risk_assessments WHERE id = $1")
            .bind(first)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        assessed > began,
        "the assessment is newer than the re-scoring transaction"
    );
    let rescored =
        material::rescore_assessment(&mut *early, first, &["security_review".to_owned()])
            .await
            .unwrap();
    early.commit().await.unwrap();
    let latest = risk::latest_assessment(&pool, case).await.unwrap().unwrap();
    assert_eq!(latest.id, rescored);
    assert_eq!(
        (
            latest.tier,
            latest.reason_codes,
            latest.needs,
            latest.signals
        ),
        (
            RiskTier::Medium,
            codes,
            vec!["security_review".to_owned()],
            signals
        )
    );
    assert!(matches!(
        material::rescore_assessment(&pool, Uuid::now_v7(), &[]).await,
        Err(StoreError::Invariant(_))
    ));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn locking_a_missing_case_is_not_found(pool: PgPool) {
    let mut tx = pool.begin().await.unwrap();
    let missing = Uuid::now_v7();
    assert!(matches!(
        material::lock_case(&mut tx, missing).await,
        Err(StoreError::NotFound(id)) if id == missing
    ));
    let case = open_case(&pool, "+8613800138000").await;
    let locked = material::lock_case(&mut tx, case).await.unwrap();
    assert_eq!(locked.id, case);
}

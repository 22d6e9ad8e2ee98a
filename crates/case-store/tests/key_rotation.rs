//! `reactivation keys rotate` against a real Postgres: data written under key A,
//! keys configured as [B, A], the rotation (the function the command calls) in small
//! batches; afterwards every sealed value is under B and a stack knowing only B
//! reads it all. Reruns are safe and pick up what an earlier run left.

use case_store::{
    MIGRATOR,
    identity::{NewIdentity, save_identity},
    key_rotation::{self, PLACES, Progress},
    testing::open_case,
    webhooks::create_endpoint,
};
use data_protection::{Keys, PREFIX_LEN};
use serde_json::json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

const A: [u8; 32] = [0xa1; 32];
const B: [u8; 32] = [0xb2; 32];
const C: [u8; 32] = [0xc3; 32];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A ciphertext as written before ciphertexts named their key.
fn legacy(keys: &Keys, plain: &str, row: &Uuid) -> Vec<u8> {
    keys.encrypt(plain, row)[PREFIX_LEN..].to_vec()
}

struct Written {
    identities: Vec<(Uuid, String, String)>,
    endpoints: Vec<(Uuid, String)>,
    answers: Vec<(String, Uuid, String)>,
}

/// Cases, endpoints and stored opening answers, sealed under `keys` (half of them in
/// the legacy format).
async fn write_data(pool: &PgPool, keys: &Keys, cases: usize) -> Written {
    let mut written = Written {
        identities: vec![],
        endpoints: vec![],
        answers: vec![],
    };
    for i in 0..cases {
        let case_id = open_case(pool, &format!("+8613800{i:06}")).await;
        let (name, id_number) = (format!("Name {i}"), format!("11010519491231{i:04}"));
        let seal = |plain: &str| {
            if i % 2 == 0 {
                keys.encrypt(plain, &case_id)
            } else {
                legacy(keys, plain, &case_id)
            }
        };
        let identity = NewIdentity {
            full_name_enc: seal(&name),
            id_number_enc: seal(&id_number),
            full_name_masked: "N*****".into(),
            id_number_last4: format!("{:04}", i % 10_000),
        };
        save_identity(pool, case_id, &identity).await.unwrap();
        written.identities.push((case_id, name, id_number));
        if i % 3 == 0 {
            let key = format!("retry-{i}");
            let token = format!("token-{i}");
            case_store::begin_idempotent(pool, "POST /v1/cases", &key, &[i as u8; 32])
                .await
                .unwrap();
            let body = json!({
                "case_id": case_id,
                "case_token": null,
                "case_token_enc": hex(&seal(&token)),
            });
            case_store::complete_idempotent(pool, "POST /v1/cases", &key, 201, &body)
                .await
                .unwrap();
            written.answers.push((key, case_id, token));
        }
    }
    for i in 0..4 {
        let id = Uuid::now_v7();
        let secret = format!("whsec_endpoint{i}");
        let sealed = if i % 2 == 0 {
            keys.encrypt(&secret, &id)
        } else {
            legacy(keys, &secret, &id)
        };
        let types = vec!["case.state_changed".to_owned()];
        create_endpoint(pool, id, "https://example.com/hook", &types, &sealed, None)
            .await
            .unwrap();
        written.endpoints.push((id, secret));
    }
    written
}

/// Every sealed value is under `keys`' current key and opens with `keys` alone.
async fn assert_all_under(pool: &PgPool, keys: &Keys, written: &Written) {
    for (case_id, name, id_number) in &written.identities {
        let row = sqlx::query(
            "SELECT full_name_enc, id_number_enc FROM case_identities WHERE case_id = $1",
        )
        .bind(case_id)
        .fetch_one(pool)
        .await
        .unwrap();
        let (n, d): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
        assert!(keys.is_current(&n) && keys.is_current(&d));
        assert_eq!(&keys.decrypt(&n, case_id).unwrap(), name);
        assert_eq!(&keys.decrypt(&d, case_id).unwrap(), id_number);
    }
    for (id, secret) in &written.endpoints {
        let sealed: Vec<u8> =
            sqlx::query_scalar("SELECT secret_sealed FROM webhook_endpoints WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert!(keys.is_current(&sealed));
        assert_eq!(&keys.decrypt(&sealed, id).unwrap(), secret);
    }
    for (key, case_id, token) in &written.answers {
        let body: serde_json::Value = sqlx::query_scalar(
            "SELECT response_body FROM idempotency_keys WHERE scope = 'POST /v1/cases' AND key = $1",
        )
        .bind(key)
        .fetch_one(pool)
        .await
        .unwrap();
        let sealed = unhex(body["case_token_enc"].as_str().unwrap());
        assert!(keys.is_current(&sealed));
        assert_eq!(&keys.decrypt(&sealed, case_id).unwrap(), token);
        assert_eq!(
            body["case_id"],
            json!(case_id),
            "the rest of the answer is kept"
        );
        assert_eq!(body["case_token"], serde_json::Value::Null);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn rotation_moves_everything_from_a_to_b_in_batches(pool: PgPool) {
    let only_a = Keys::from_master(&A);
    let written = write_data(&pool, &only_a, 10).await;
    let b_then_a = Keys::from_master(&B).with_old(&A).unwrap();
    let only_b = Keys::from_master(&B);
    let prefix = b_then_a.current_prefix();
    // Before: A's data is read by [B, A] (reads work throughout), not by B alone.
    let (case_id, name, _) = &written.identities[0];
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT full_name_enc FROM case_identities WHERE case_id = $1")
            .bind(case_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(&b_then_a.decrypt(&sealed, case_id).unwrap(), name);
    assert!(only_b.decrypt(&sealed, case_id).is_err());
    assert_eq!(
        key_rotation::pending(&pool, &prefix).await.unwrap(),
        vec![
            (PLACES[0], 10),
            (PLACES[1], 4),
            (PLACES[2], 4),
            (PLACES[3], 0),
            (PLACES[4], 0)
        ]
    );

    let reseal =
        |sealed: &[u8], row: &Uuid| b_then_a.reseal(sealed, row).map_err(|e| e.to_string());
    let mut reports: Vec<Progress> = vec![];
    let done = key_rotation::rotate(&pool, &prefix, &reseal, 3, |p| reports.push(p.clone()))
        .await
        .unwrap();
    let moved: Vec<(&str, i64, i64, i64)> = done
        .iter()
        .map(|p| (p.place, p.to_do, p.moved, p.unreadable))
        .collect();
    assert_eq!(
        moved,
        vec![
            (PLACES[0], 10, 10, 0),
            (PLACES[1], 4, 4, 0),
            (PLACES[2], 4, 4, 0),
            (PLACES[3], 0, 0, 0),
            (PLACES[4], 0, 0, 0)
        ]
    );
    // Progress after every batch of 3: 4 + 2 + 2 batches, counting up.
    let identity_progress: Vec<i64> = reports
        .iter()
        .filter(|p| p.place == PLACES[0])
        .map(|p| p.moved)
        .collect();
    assert_eq!(identity_progress, vec![3, 6, 9, 10]);
    assert_eq!(reports.len(), 8);

    assert_all_under(&pool, &only_b, &written).await;
    assert_eq!(
        key_rotation::pending(&pool, &prefix).await.unwrap(),
        vec![
            (PLACES[0], 0),
            (PLACES[1], 0),
            (PLACES[2], 0),
            (PLACES[3], 0),
            (PLACES[4], 0)
        ]
    );
    // A second run finds nothing to do and changes nothing.
    let again = key_rotation::rotate(&pool, &prefix, &reseal, 3, |_| {})
        .await
        .unwrap();
    assert!(again.iter().all(|p| p.to_do == 0 && p.moved == 0));
    assert_all_under(&pool, &only_b, &written).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_interrupted_rotation_resumes_and_unreadable_rows_are_left_and_counted(pool: PgPool) {
    let only_a = Keys::from_master(&A);
    let written = write_data(&pool, &only_a, 6).await;
    // A row under a key nobody configured (C): never rewritten, counted every run.
    let stray = open_case(&pool, "+8613900000001").await;
    let stray_sealed = Keys::from_master(&C).encrypt("stray", &stray);
    let identity = NewIdentity {
        full_name_enc: stray_sealed.clone(),
        id_number_enc: stray_sealed.clone(),
        full_name_masked: "s****".into(),
        id_number_last4: "0001".into(),
    };
    save_identity(&pool, stray, &identity).await.unwrap();

    let keys = Keys::from_master(&B).with_old(&A).unwrap();
    let prefix = keys.current_prefix();
    // A first run that stops partway: its re-encryption gives up after 3 values (as
    // if the process died), which the store sees as values that do not open.
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let dying = |sealed: &[u8], row: &Uuid| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 3 {
            return Err("stopped".to_owned());
        }
        keys.reseal(sealed, row).map_err(|e| e.to_string())
    };
    let first = key_rotation::rotate(&pool, &prefix, &dying, 2, |_| {})
        .await
        .unwrap();
    assert!(first[0].moved >= 1 && first[0].moved < 7, "{first:?}");

    // The rerun does only what is left; everything readable ends under B.
    let pending = key_rotation::pending(&pool, &prefix).await.unwrap();
    assert_eq!(pending[0].1, 7 - first[0].moved);
    let reseal = |sealed: &[u8], row: &Uuid| keys.reseal(sealed, row).map_err(|e| e.to_string());
    let second = key_rotation::rotate(&pool, &prefix, &reseal, 2, |_| {})
        .await
        .unwrap();
    assert_eq!(second[0].to_do, 7 - first[0].moved);
    assert_eq!(second[0].moved + first[0].moved, 6);
    assert_eq!(second[0].unreadable, 1);
    assert_all_under(&pool, &Keys::from_master(&B), &written).await;
    let left: Vec<u8> =
        sqlx::query_scalar("SELECT full_name_enc FROM case_identities WHERE case_id = $1")
            .bind(stray)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        left, stray_sealed,
        "a value that does not open is left as it was"
    );
    assert_eq!(
        key_rotation::pending(&pool, &prefix).await.unwrap(),
        vec![
            (PLACES[0], 1),
            (PLACES[1], 0),
            (PLACES[2], 0),
            (PLACES[3], 0),
            (PLACES[4], 0)
        ]
    );
}

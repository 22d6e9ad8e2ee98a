//! `reactivation keys rotate` with the subscriber's material present (issue 15's
//! sealing, on the rotation of the hardening issue): the real command re-wraps the
//! case's data key and its per-kind material keys under the new master secret, and a
//! gateway that knows only the new secret still opens the evidence file and the
//! explanation. A second run moves nothing.

use reqwest::header;
use system_tests::{
    Stack, TestSubscriber,
    console::{client, login},
    random_secret,
};

const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
const STATEMENT: &str = "Rotation-statement: the number is the shop of my cousin.";

/// Runs `reactivation keys rotate` with `keys` as `REACTIVATION_SECRET_KEYS`.
fn rotate(stack: &Stack, keys: &str) -> (bool, String) {
    stack.cli(&["keys", "rotate"], &[("REACTIVATION_SECRET_KEYS", keys)])
}

/// The case's wrapped material keys, by kind.
async fn material_keys(stack: &Stack, case: &str) -> Vec<(String, Vec<u8>)> {
    sqlx::query_as(
        "SELECT kind, wrapped_key FROM case_material_keys WHERE case_id = $1::uuid ORDER BY kind",
    )
    .bind(case)
    .fetch_all(&stack.pool)
    .await
    .unwrap()
}

async fn data_key(stack: &Stack, case: &str) -> Vec<u8> {
    sqlx::query_scalar("SELECT wrapped_key FROM case_data_keys WHERE case_id = $1::uuid")
        .bind(case)
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn keys_rotate_rewraps_the_material_keys_so_the_new_secret_alone_opens_them() {
    let mut stack = Stack::start().await;
    stack.create_agent("rotation.analyst", &["security"]);
    let gw = stack.url("gateway").to_owned();

    // A flagged case in security review, with an evidence file and an explanation.
    let s = TestSubscriber::flagged(940);
    let (case, token, _) = stack.case_in_security_review(&s).await;
    stack.upload_pdf(&case, &token, "payslip.pdf", PDF).await;
    stack.explain(&case, &token, STATEMENT).await;
    let before = material_keys(&stack, &case).await;
    let kinds: Vec<&str> = before.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["evidence", "explanations"]);
    let data_before = data_key(&stack, &case).await;

    // Rotate: the new secret first, the old one still listed.
    let new = random_secret();
    let (ok, out) = rotate(&stack, &format!("{new} {}", stack.secret_key));
    assert!(ok, "{out}");
    assert!(
        out.contains("0 unreadable") && out.contains("every value is under key"),
        "{out}"
    );
    let after = material_keys(&stack, &case).await;
    assert_eq!(after.len(), 2);
    for ((kind, old), (_, rewrapped)) in before.iter().zip(&after) {
        assert_ne!(old, rewrapped, "{kind} key was not re-wrapped");
    }
    assert_ne!(
        data_key(&stack, &case).await,
        data_before,
        "the data key was not re-wrapped"
    );

    // Run again: nothing left to move.
    let (ok, again) = rotate(&stack, &format!("{new} {}", stack.secret_key));
    assert!(ok, "{again}");
    assert_eq!(material_keys(&stack, &case).await, after);

    // The gateway restarted with the new secret alone still opens the material (the
    // old single-key variable must go too: a gateway given a key that the list does
    // not hold refuses to start).
    stack.unset_env("gateway", "REACTIVATION_SECRET_KEY");
    stack.set_env("gateway", "REACTIVATION_SECRET_KEYS", &new);
    stack.restart("gateway").await;
    let cookie = login(&stack, "rotation.analyst").await;
    let page = client()
        .get(format!("{gw}/console/cases/{case}"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(STATEMENT), "the explanation does not open");
    let start = html.find("/evidence/").expect("evidence link");
    let evidence = format!(
        "{gw}/console/cases/{case}{}",
        &html[start..start + html[start..].find('"').unwrap()]
    );
    let file = client()
        .get(evidence)
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.bytes().await.unwrap().as_ref(), PDF);
}

//! The subscriber's side of a risk-graded review, end to end: flagged contacts to
//! explain, evidence uploads (size and content checks), answers to an analyst's
//! information request, and the one appeal of a rejection.

use std::time::Duration;

use case_domain::{Actor, CaseEvent, Role};
use case_store::TransitionRequest;
use serde_json::{Value, json};
use system_tests::{Stack, TestSubscriber};
use uuid::Uuid;

const SETTLE: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";

/// Registers `s` at the simulator with explicit flagged contacts and suspension reason.
async fn add_subscriber(stack: &Stack, s: &TestSubscriber, flagged: &[&str], reason: &str) {
    let mut body = s.sim_body();
    body["signals"]["flagged_contacts"] = json!(flagged);
    body["suspension_reason"] = json!(reason);
    let (status, answer) = stack
        .call(
            stack
                .http
                .post(format!("{}/sim/subscribers", stack.url("carrier-sim")))
                .json(&body),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
}

/// Opens a case for `s`, proves identity as its tier asks (the service password, and
/// the code too for a flagged number) and waits for `state`.
async fn open_and_verify(stack: &Stack, s: &TestSubscriber, state: &str) -> (String, String) {
    let (case, token) = stack.open_case(s).await;
    stack.prove_identity(&case, &token, s).await;
    stack.wait_for_state(&case, &token, state, SETTLE).await;
    (case, token)
}

/// A flagged (medium-tier) subscriber in security review, with the two contacts flagged.
async fn in_security_review(stack: &Stack, n: u32) -> (TestSubscriber, String, String) {
    let s = TestSubscriber::flagged(n);
    let flagged: Vec<&str> = s.recent[..2].iter().map(String::as_str).collect();
    add_subscriber(stack, &s, &flagged, "fraud_linked_contacts").await;
    let (case, token) = open_and_verify(stack, &s, "security_review").await;
    (s, case, token)
}

async fn post_json(
    stack: &Stack,
    case: &str,
    token: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .post(format!("{}/v1/cases/{case}/{path}", stack.url("gateway")))
                .bearer_auth(token)
                .json(body),
        )
        .await
}

const BOUNDARY: &str = "reactivation-test-boundary-5b1e0c";

/// A multipart/form-data body from (name, file name, content type, bytes) parts.
fn multipart(parts: &[(&str, &str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file_name, content_type, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload_parts(
    stack: &Stack,
    case: &str,
    token: &str,
    parts: &[(&str, &str, &str, &[u8])],
) -> (u16, String, Value) {
    let (status, content_type, text) = stack
        .call_raw(
            stack
                .http
                .post(format!("{}/v1/cases/{case}/evidence", stack.url("gateway")))
                .bearer_auth(token)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(multipart(parts)),
        )
        .await;
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn upload(
    stack: &Stack,
    case: &str,
    token: &str,
    file_name: &str,
    content_type: &str,
    bytes: &[u8],
) -> (u16, String, Value) {
    upload_parts(
        stack,
        case,
        token,
        &[("file", file_name, content_type, bytes)],
    )
    .await
}

async fn count(stack: &Stack, table: &str, case: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {table} WHERE case_id = $1::uuid"
    ))
    .bind(case)
    .fetch_one(&stack.pool)
    .await
    .unwrap()
}

/// Moves the case as a security analyst would (through the store's one door).
async fn analyst(stack: &Stack, case: &str, event: CaseEvent) {
    let id: Uuid = case.parse().unwrap();
    let current = case_store::load_case(&stack.pool, id)
        .await
        .unwrap()
        .unwrap();
    let actor = Actor::agent(Role::Security, "analyst-1");
    case_store::transition(
        &stack.pool,
        TransitionRequest {
            case_id: id,
            expected_version: current.version,
            event,
            actor: &actor,
            reason: Some("security review"),
            fence: None,
            outbox: vec![],
        },
    )
    .await
    .unwrap();
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_flagged_subscriber_explains_each_contact_and_uploads_evidence() {
    let stack = Stack::start().await;
    let (s, case, token) = in_security_review(&stack, 200).await;
    let (flagged_a, flagged_b) = (s.recent[0].clone(), s.recent[1].clone());

    // The subscriber is told what is needed and which contacts to explain, masked.
    let (_, review) = stack.status(&case, &token).await;
    assert_eq!(review["needs"], json!(["explanation", "security_review"]));
    let masked = |n: &str| format!("+86*******{}", &n[n.len() - 4..]);
    assert_eq!(
        strings(&review["flagged_contacts"]),
        [masked(&flagged_a), masked(&flagged_b)]
    );
    assert_eq!(
        (review["explanations"].as_i64(), review["evidence"].as_i64()),
        (Some(0), Some(0))
    );
    let raw = review.to_string();
    assert!(
        !raw.contains(&flagged_a[3..]) && !raw.contains(&flagged_b[3..]),
        "{raw}"
    );

    // Bad input changes nothing.
    for bad in [
        json!({"statement": "x", "unexpected": true}),
        json!({"statement": ""}),
        json!({"statement": "x".repeat(4001)}),
        json!({"statement": "x", "counterparties": [{"msisdn": "12345", "relation": "r", "purpose": "p"}]}),
        json!({"statement": "x", "counterparties": [{"msisdn": flagged_a, "relation": "", "purpose": "p"}]}),
    ] {
        let (status, problem) = post_json(&stack, &case, &token, "explanations", &bad).await;
        assert_eq!(status, 422, "{bad} -> {problem}");
        assert_eq!(problem["status"], 422);
    }
    assert_eq!(count(&stack, "case_explanations", &case).await, 0);

    // One contact explained: the explanation is still owed for the other.
    let (status, first) = post_json(
        &stack,
        &case,
        &token,
        "explanations",
        &json!({"statement": "A colleague from the warehouse.", "counterparties": [{"msisdn": flagged_a, "relation": "colleague", "purpose": "shift planning"}]}),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert!(
        first["explanation_id"]
            .as_str()
            .unwrap()
            .parse::<Uuid>()
            .is_ok()
    );
    assert_eq!(strings(&first["counterparties"]), [masked(&flagged_a)]);
    assert_eq!(first["needs"], json!(["explanation", "security_review"]));
    assert_eq!(first["state"], "security_review");

    // Both explained: only the analyst's review is left.
    let (status, second) = post_json(
        &stack,
        &case,
        &token,
        "explanations",
        &json!({"statement": "My brother; we talk every week.", "counterparties": [{"msisdn": flagged_b, "relation": "brother", "purpose": "family"}]}),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["needs"], json!(["security_review"]));
    let (_, after) = stack.status(&case, &token).await;
    assert_eq!(after["needs"], json!(["security_review"]));
    assert_eq!(after["state"], "security_review");
    assert_eq!(after["explanations"], 2);
    assert_eq!(after["risk"]["tier"], "medium");
    // At rest the statements, numbers, relations and purposes are sealed (the
    // re-score above opened them to see both contacts explained).
    for needle in [
        "warehouse".to_owned(),
        "brother".to_owned(),
        "shift planning".to_owned(),
        flagged_a[3..].to_owned(),
        flagged_b[3..].to_owned(),
    ] {
        let found: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM case_explanations x WHERE x.case_id = $1::uuid
                AND (row_to_json(x)::text LIKE '%' || $2 || '%'
                     OR position(convert_to($2, 'UTF8') IN x.body_sealed) > 0)",
        )
        .bind(&case)
        .bind(&needle)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        assert_eq!(found, 0, "{needle} in clear");
    }
    // Each piece of material re-scored the case: the first grading plus two.
    assert_eq!(count(&stack, "risk_assessments", &case).await, 3);

    // Over 5 MiB: 413, nothing stored.
    let just_over = {
        let mut v = b"\xff\xd8\xff\xe0".to_vec();
        v.resize(5 * MIB + 1, 0);
        v
    };
    let (status, content_type, problem) =
        upload(&stack, &case, &token, "scan.jpg", "image/jpeg", &just_over).await;
    assert_eq!(
        (status, content_type.as_str()),
        (413, "application/problem+json"),
        "{problem}"
    );
    assert_eq!(problem["status"], 413);
    let far_over = vec![0xffu8; 6 * MIB];
    let (status, _, problem) =
        upload(&stack, &case, &token, "big.jpg", "image/jpeg", &far_over).await;
    assert_eq!(status, 413, "{problem}");

    // A renamed program, whatever it is called and however it is declared: 415, nothing stored.
    let mut program = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0".to_vec();
    program.extend_from_slice(&[0u8; 512]);
    let (status, content_type, problem) =
        upload(&stack, &case, &token, "photo.jpg", "image/jpeg", &program).await;
    assert_eq!(
        (status, content_type.as_str()),
        (415, "application/problem+json"),
        "{problem}"
    );
    let pdf_with_script = b"%PDF-1.7\n1 0 obj << /Type /Catalog /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >> endobj\n%%EOF\n";
    let (status, _, problem) = upload(
        &stack,
        &case,
        &token,
        "contract.pdf",
        "application/pdf",
        pdf_with_script,
    )
    .await;
    assert_eq!(status, 415, "{problem}");
    // Not exactly one `file` part: 422; not multipart at all: 400.
    let (status, _, problem) = upload_parts(
        &stack,
        &case,
        &token,
        &[
            ("file", "a.png", "image/png", PNG),
            ("file", "b.png", "image/png", PNG),
        ],
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let (status, _, problem) = upload_parts(
        &stack,
        &case,
        &token,
        &[("photo", "a.png", "image/png", PNG)],
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let (status, _) = post_json(&stack, &case, &token, "evidence", &json!({"file": "x"})).await;
    assert_eq!(status, 400);
    assert_eq!(count(&stack, "case_evidence", &case).await, 0);

    // A real PNG (declared as anything) is stored with its hash.
    let (status, _, stored) = upload(
        &stack,
        &case,
        &token,
        "chat.bin",
        "application/octet-stream",
        PNG,
    )
    .await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["media_type"], "image/png");
    assert_eq!(stored["size_bytes"], PNG.len());
    let expected_hash: String = sqlx::query_scalar("SELECT encode(sha256($1), 'hex')")
        .bind(PNG)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(stored["sha256"], expected_hash);
    // At rest the file is sealed under the case's evidence key: not one run of its
    // bytes in clear, 29 bytes longer (format, nonce, tag).
    let (stored_hash, content, sealed, position): (String, Vec<u8>, bool, i32) = sqlx::query_as(
        "SELECT encode(sha256, 'hex'), content, sealed, position($2::bytea IN content)
           FROM case_evidence WHERE id = $1::uuid",
    )
    .bind(stored["evidence_id"].as_str().unwrap())
    .bind(&PNG[..16])
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(stored_hash, expected_hash);
    assert_eq!((sealed, position), (true, 0));
    assert_eq!(content.len(), PNG.len() + 29);
    assert_eq!(content[0], 2);

    // The same file again: the first file's id, stored once.
    let (status, _, again) = upload(&stack, &case, &token, "again.png", "image/png", PNG).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["evidence_id"], stored["evidence_id"]);
    assert_eq!(count(&stack, "case_evidence", &case).await, 1);
    let (_, after) = stack.status(&case, &token).await;
    assert_eq!(
        (after["evidence"].as_i64(), after["explanations"].as_i64()),
        (Some(1), Some(2))
    );

    // Another token cannot add material to this case.
    let (status, _) = post_json(
        &stack,
        &case,
        "not-the-token",
        "explanations",
        &json!({"statement": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = upload(&stack, &case, "not-the-token", "a.png", "image/png", PNG).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn material_answers_an_information_request_and_is_refused_outside_a_review() {
    let stack = Stack::start().await;
    let (_, case, token) = in_security_review(&stack, 210).await;

    analyst(&stack, &case, CaseEvent::InfoRequested).await;
    let (_, waiting) = stack.status(&case, &token).await;
    assert_eq!(waiting["state"], "awaiting_customer_security");
    assert_eq!(waiting["needs"], json!(["information"]));

    // The upload is the answer: the case is back with the analyst, in one transaction.
    let (status, _, stored) = upload(&stack, &case, &token, "payslip.png", "image/png", PNG).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["state"], "security_review");
    let (_, back) = stack.status(&case, &token).await;
    assert_eq!(back["state"], "security_review");
    let last = back["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (
            last["event"].as_str(),
            last["actor"].as_str(),
            last["from"].as_str()
        ),
        (
            Some("customer_responded"),
            Some("customer"),
            Some("awaiting_customer_security")
        )
    );
    // Evidence alone does not explain the flagged contacts.
    assert_eq!(back["needs"], json!(["explanation", "security_review"]));

    // An explanation answers a request too.
    analyst(&stack, &case, CaseEvent::InfoRequested).await;
    let (status, answer) = post_json(
        &stack,
        &case,
        &token,
        "explanations",
        &json!({"statement": "Both numbers belong to my employer's dispatch team."}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["state"], "security_review");

    // The longest explanation the rules allow fits the route's body limit.
    let counterparties: Vec<Value> = (0..20)
        .map(|i| json!({"msisdn": format!("+86137001370{i:02}"), "relation": "同".repeat(200), "purpose": "事".repeat(200)}))
        .collect();
    let (status, answer) = post_json(
        &stack,
        &case,
        &token,
        "explanations",
        &json!({"statement": "说".repeat(4000), "counterparties": counterparties}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");

    // A wrong token gets exactly the answer of a missing case, on every material route.
    let gateway = stack.url("gateway");
    let missing = stack
        .call_raw(
            stack
                .http
                .get(format!("{gateway}/v1/cases/{case}"))
                .bearer_auth("not-the-token"),
        )
        .await;
    assert_eq!(missing.0, 404);
    for path in ["explanations", "evidence", "appeal"] {
        let answer = stack
            .call_raw(
                stack
                    .http
                    .post(format!("{gateway}/v1/cases/{case}/{path}"))
                    .bearer_auth("not-the-token")
                    .json(&json!({"statement": "x"})),
            )
            .await;
        assert_eq!(answer, missing, "{path}");
    }

    // Outside a review (here: identity not yet proven) material is refused and nothing is stored.
    let fresh = TestSubscriber::clean(211);
    stack.add_subscriber(&fresh).await;
    let (other, other_token) = stack.open_case(&fresh).await;
    let (status, problem) = post_json(
        &stack,
        &other,
        &other_token,
        "explanations",
        &json!({"statement": "hello"}),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "material_not_accepted");
    let (status, _, problem) =
        upload(&stack, &other, &other_token, "a.png", "image/png", PNG).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(count(&stack, "case_explanations", &other).await, 0);
    assert_eq!(count(&stack, "case_evidence", &other).await, 0);
}

#[tokio::test]
async fn a_rejection_is_appealed_once_within_fifteen_days_and_never_for_the_extreme_tier() {
    let stack = Stack::start().await;
    let appeal =
        json!({"statement": "The flagged numbers are my colleagues; I can show my contract."});

    // Appealing a case that is not rejected.
    let (_, case, token) = in_security_review(&stack, 220).await;
    let (status, problem) = post_json(&stack, &case, &token, "appeal", &appeal).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("not_rejected")),
        "{problem}"
    );

    // Rejected by an analyst: one appeal puts it back into security review.
    analyst(&stack, &case, CaseEvent::Rejected).await;
    let (status, problem) =
        post_json(&stack, &case, &token, "appeal", &json!({"statement": ""})).await;
    assert_eq!(status, 422, "{problem}");
    let (status, appealed) = post_json(&stack, &case, &token, "appeal", &appeal).await;
    assert_eq!(status, 200, "{appealed}");
    assert_eq!(appealed["state"], "security_review");
    assert_eq!(appealed["department"], "security");
    let last = appealed["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["event"].as_str(), last["actor"].as_str()),
        (Some("appealed"), Some("customer"))
    );
    // A second appeal, even after a second rejection, is refused.
    let (status, problem) = post_json(&stack, &case, &token, "appeal", &appeal).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("already_appealed")),
        "{problem}"
    );
    analyst(&stack, &case, CaseEvent::Rejected).await;
    let (status, problem) = post_json(&stack, &case, &token, "appeal", &appeal).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("already_appealed")),
        "{problem}"
    );
    assert_eq!(problem["status"], 409);
    assert_eq!(stack.status(&case, &token).await.1["state"], "rejected");
    assert_eq!(count(&stack, "case_appeals", &case).await, 1);

    // Sixteen days after the rejection the window has closed.
    let (_, late, late_token) = in_security_review(&stack, 221).await;
    analyst(&stack, &late, CaseEvent::Rejected).await;
    sqlx::query(
        "UPDATE reactivation_cases SET state_entered_at = now() - interval '16 days' WHERE id = $1::uuid",
    )
    .bind(&late)
    .execute(&stack.pool)
    .await
    .unwrap();
    let (status, problem) = post_json(&stack, &late, &late_token, "appeal", &appeal).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("appeal_window_passed")),
        "{problem}"
    );
    assert!(problem["detail"].as_str().unwrap().contains("15-day"));
    assert_eq!(
        stack.status(&late, &late_token).await.1["state"],
        "rejected"
    );
    assert_eq!(count(&stack, "case_appeals", &late).await, 0);

    // The extreme tier's remedy is a store visit, not an appeal.
    let extreme = TestSubscriber::clean(222);
    add_subscriber(&stack, &extreme, &[], "police_request").await;
    let (refused, refused_token) = open_and_verify(&stack, &extreme, "awaiting_store_visit").await;
    let (_, status_body) = stack.status(&refused, &refused_token).await;
    assert_eq!(status_body["needs"], json!(["store_visit"]));
    let (status, problem) = post_json(&stack, &refused, &refused_token, "appeal", &appeal).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("store_visit_required")),
        "{problem}"
    );
    assert_eq!(count(&stack, "case_appeals", &refused).await, 0);
}

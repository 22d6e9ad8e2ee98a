//! The agent API in process (tower `oneshot` on a fresh database): log in, read the
//! queue, decide; the role check comes before the version check; an appeal is
//! decided by a different analyst than the one who rejected.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use case_domain::{Actor, CaseEvent, CaseState, Role};
use case_store::{MIGRATOR, TransitionRequest, testing::open_case};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

fn app(pool: &PgPool) -> Router {
    gateway::app(gateway::AppState {
        pool: pool.clone(),
        keys: Arc::new(data_protection::Keys::from_master(&[7; 32])),
        identity: Arc::new(
            gateway::identity_client::HttpIdentity::new("http://127.0.0.1:9").unwrap(),
        ),
        webhooks: gateway::webhooks::WebhookConfig {
            carrier_secrets: Arc::new(vec![]),
            policy: webhooks::DestinationPolicy {
                allow_private: false,
            },
        },
        sla: Arc::new(case_domain::sla::SlaConfig::default()),
        console: gateway::console::ConsoleConfig::default(),
        live: gateway::live::LiveHub::default(),
    })
}

async fn call(
    pool: &PgPool,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(b) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app(pool).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Creates an agent and logs them in through the API; returns (id, token).
async fn agent(pool: &PgPool, username: &str, roles: &[Role]) -> (Uuid, String) {
    let hash = data_protection::hash_password("a long enough password".into())
        .await
        .unwrap();
    let id = case_store::agents::create_agent(pool, username, &hash, roles)
        .await
        .unwrap();
    let (status, body) = call(
        pool,
        "POST",
        "/v1/agent/login",
        None,
        Some(json!({ "username": username, "password": "a long enough password" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (id, body["token"].as_str().unwrap().to_owned())
}

async fn step(pool: &PgPool, case_id: Uuid, event: CaseEvent, actor: &Actor) {
    let case = case_store::load_case(pool, case_id).await.unwrap().unwrap();
    case_store::transition(
        pool,
        TransitionRequest {
            case_id,
            expected_version: case.version,
            event,
            actor,
            reason: None,
            fence: None,
            outbox: vec![],
        },
    )
    .await
    .unwrap();
}

/// A case waiting for the security department.
async fn in_security_review(pool: &PgPool, msisdn: &str) -> (Uuid, i32) {
    let id = open_case(pool, msisdn).await;
    let system = Actor::system("test");
    step(pool, id, CaseEvent::ProofsAccepted, &system).await;
    step(pool, id, CaseEvent::RiskFlagged, &system).await;
    let case = case_store::load_case(pool, id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::SecurityReview);
    (id, case.version)
}

async fn act(pool: &PgPool, token: &str, case_id: Uuid, body: Value) -> (StatusCode, Value) {
    call(
        pool,
        "POST",
        &format!("/v1/agent/cases/{case_id}/actions"),
        Some(token),
        Some(body),
    )
    .await
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_analyst_finds_the_case_in_the_queue_and_approves_it_at_the_current_version(
    pool: PgPool,
) {
    let (case_id, version) = in_security_review(&pool, "+8613800138100").await;
    let (_, analyst) = agent(&pool, "analyst", &[Role::Security]).await;
    let (_, tech) = agent(&pool, "tech", &[Role::Technical]).await;

    let (status, queue) = call(
        &pool,
        "GET",
        "/v1/agent/queue?department=security",
        Some(&analyst),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    let item = &queue["cases"][0];
    assert_eq!(item["case_id"], case_id.to_string());
    assert_eq!(item["state"], "security_review");
    assert_eq!(item["version"], version);
    assert!(!item["msisdn"].as_str().unwrap().contains("13800138100"));
    // Another department's agent may not read this queue.
    let (status, _) = call(
        &pool,
        "GET",
        "/v1/agent/queue?department=security",
        Some(&tech),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        &pool,
        "GET",
        "/v1/agent/queue?department=nowhere",
        Some(&analyst),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // The role check comes before the version check: 403 even when stale.
    let (status, _) = act(
        &pool,
        &tech,
        case_id,
        json!({ "action": "approve", "expected_version": version + 1 }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A stale version: 409, and nothing changes.
    let (status, problem) = act(
        &pool,
        &analyst,
        case_id,
        json!({ "action": "approve", "expected_version": version + 1 }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let case = case_store::load_case(&pool, case_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(case.version, version);
    // Illegal here: 409.
    let (status, _) = act(
        &pool,
        &analyst,
        case_id,
        json!({ "action": "verify_identity", "identity_check": "original_id_in_person", "expected_version": version }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A rejection needs its code: 422.
    let (status, _) = act(
        &pool,
        &analyst,
        case_id,
        json!({ "action": "reject", "expected_version": version }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, view) = act(
        &pool,
        &analyst,
        case_id,
        json!({ "action": "approve", "expected_version": version }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "provisioning");
    assert_eq!(view["version"], version + 1);
    assert_eq!(view["orders"].as_array().unwrap().len(), 1);
    assert_eq!(view["orders"][0]["restoration"], "full");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE case_id = $1 AND action = 'case.decision'",
    )
    .bind(case_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_appeal_is_decided_by_a_different_analyst(pool: PgPool) {
    let (case_id, version) = in_security_review(&pool, "+8613800138101").await;
    let (first_id, first) = agent(&pool, "first", &[Role::Security]).await;
    let (_, second) = agent(&pool, "second", &[Role::Security]).await;

    let (status, view) = act(
        &pool,
        &first,
        case_id,
        json!({ "action": "reject", "reason_code": "fraud_confirmed", "expected_version": version }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "rejected");
    step(&pool, case_id, CaseEvent::Appealed, &Actor::customer()).await;

    let (status, view) = call(
        &pool,
        "GET",
        &format!("/v1/agent/cases/{case_id}"),
        Some(&second),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["appealed"], true);
    assert_eq!(view["rejected_by"], first_id.to_string());
    let version = view["version"].as_i64().unwrap();

    for action in ["approve", "request_info"] {
        let (status, problem) = act(
            &pool,
            &first,
            case_id,
            json!({ "action": action, "reason": "more please", "expected_version": version }),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{action}: {problem}");
    }
    let (status, view) = act(
        &pool,
        &second,
        case_id,
        json!({ "action": "approve", "expected_version": version }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "provisioning");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn claims_hold_one_agent_at_a_time_and_notes_and_unmasking_follow_the_roles(pool: PgPool) {
    let (case_id, version) = in_security_review(&pool, "+8613800138102").await;
    let (_, one) = agent(&pool, "one", &[Role::Security]).await;
    let (_, two) = agent(&pool, "two", &[Role::Security]).await;
    let (_, cs) = agent(&pool, "cs", &[Role::Cs]).await;
    let claim = format!("/v1/agent/cases/{case_id}/claim");
    let release = format!("/v1/agent/cases/{case_id}/release");

    let (status, body) = call(&pool, "POST", &claim, Some(&one), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(&pool, "POST", &claim, Some(&two), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = act(
        &pool,
        &two,
        case_id,
        json!({ "action": "approve", "expected_version": version }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "held by another");
    // CS may not work a security case.
    let (status, _) = call(&pool, "POST", &claim, Some(&cs), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&pool, "POST", &release, Some(&two), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "two does not hold it");
    let (status, _) = call(&pool, "POST", &release, Some(&one), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &pool,
        "POST",
        &claim,
        Some(&two),
        Some(json!({ "expected_version": version + 5 })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "stale claim");

    let notes = format!("/v1/agent/cases/{case_id}/notes");
    let (status, note) = call(
        &pool,
        "POST",
        &notes,
        Some(&cs),
        Some(json!({ "body": "  called back " })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{note}");
    assert_eq!(note["body"], "called back");
    assert_eq!(note["author"], "cs");
    let (status, _) = call(
        &pool,
        "POST",
        &notes,
        Some(&cs),
        Some(json!({ "body": "  " })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let unmask = format!("/v1/agent/cases/{case_id}/unmask");
    let (status, _) = call(
        &pool,
        "POST",
        &unmask,
        Some(&cs),
        Some(json!({ "reason": "hotline call" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        &pool,
        "POST",
        &unmask,
        Some(&one),
        Some(json!({ "reason": "why" })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_dossier_and_the_supervisors_views_follow_their_rules(pool: PgPool) {
    let (case_id, version) = in_security_review(&pool, "+8613800138103").await;
    let (_, analyst) = agent(&pool, "analyst", &[Role::Security]).await;
    let (_, tech) = agent(&pool, "tech", &[Role::Technical]).await;
    let (_, boss) = agent(&pool, "boss", &[Role::Supervisor]).await;
    let (status, _) = act(
        &pool,
        &analyst,
        case_id,
        json!({ "action": "approve", "expected_version": version }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let dossier = format!("/v1/agent/cases/{case_id}/dossier?format=json");
    let (status, _) = call(&pool, "GET", &dossier, Some(&tech), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, d) = call(&pool, "GET", &dossier, Some(&boss), None).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["case_id"], case_id.to_string());
    assert_eq!(d["generated_by"], "boss");
    let timeline = d["timeline"].as_array().unwrap();
    assert_eq!(timeline.last().unwrap()["event"], "approved");
    assert_eq!(timeline.last().unwrap()["actor_name"], "analyst");
    assert!(!d.to_string().contains("13800138103"));
    let (status, _) = call(
        &pool,
        "GET",
        &format!("/v1/agent/cases/{}/dossier", Uuid::now_v7()),
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let exports: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE case_id = $1 AND action = 'case.dossier'",
    )
    .bind(case_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(exports, 1);

    for path in ["/v1/agent/reports/false-positives", "/v1/agent/escalations"] {
        let (status, _) = call(&pool, "GET", path, Some(&analyst), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        let (status, body) = call(&pool, "GET", path, Some(&boss), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (_, escalated) = call(&pool, "GET", "/v1/agent/escalations", Some(&boss), None).await;
    assert_eq!(escalated["cases"], json!([]));
}

/// A case in identity review whose name and ID the carrier answered `matched`, with
/// two proofs offered (one failed, one never judged) and one evidence file.
async fn in_identity_review(pool: &PgPool, msisdn: &str, matched: Option<bool>) -> (Uuid, i32) {
    use case_store::number_budget::{self, BudgetKind, ProofOutcome, Reservation, Reserve};
    let id = open_case(pool, msisdn).await;
    case_store::identity::save_identity(
        pool,
        id,
        &case_store::identity::NewIdentity {
            full_name_enc: vec![1; 40],
            id_number_enc: vec![2; 40],
            full_name_masked: "王*明".into(),
            id_number_last4: "123X".into(),
        },
    )
    .await
    .unwrap();
    if let Some(m) = matched {
        case_store::identity::record_subscriber_match(pool, id, m)
            .await
            .unwrap();
    }
    for (method, outcome) in [
        ("service_password", ProofOutcome::Failed),
        ("otp", ProofOutcome::Released),
    ] {
        let reservation = number_budget::reserve(
            pool,
            &Reserve {
                msisdn,
                kind: BudgetKind::Proof,
                case_id: Some(id),
                method: Some(method),
                cause: None,
                limit: 5,
                window: chrono::Duration::hours(24),
            },
        )
        .await
        .unwrap();
        let Reservation::Granted { id: slot, .. } = reservation else {
            panic!("a slot: {reservation:?}");
        };
        number_budget::settle_proof(pool, slot, outcome)
            .await
            .unwrap();
    }
    let mut conn = pool.acquire().await.unwrap();
    let png = [b"\x89PNG\r\n\x1a\n".as_slice(), &[0u8; 64]].concat();
    case_store::material::insert_evidence(&mut conn, id, "image/png", &png)
        .await
        .unwrap();
    drop(conn);
    step(
        pool,
        id,
        CaseEvent::IdentityEscalated,
        &Actor::system("test"),
    )
    .await;
    let case = case_store::load_case(pool, id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::IdentityReview);
    (id, case.version)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_identity_review_shows_the_match_the_proofs_tried_and_the_evidence(pool: PgPool) {
    let (_, cs) = agent(&pool, "cs.facts", &[Role::Cs]).await;
    let (matched, _) = in_identity_review(&pool, "+8613800138301", Some(true)).await;
    let (status, view) = call(
        &pool,
        "GET",
        &format!("/v1/agent/cases/{matched}"),
        Some(&cs),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["proofs"]["name_id_match"], "matched");
    let tried = view["proofs"]["tried"].as_array().unwrap();
    assert_eq!(tried.len(), 2, "{view}");
    assert_eq!(tried[0]["method"], "service_password");
    assert_eq!(tried[0]["outcome"], "failed");
    assert_eq!(tried[1]["method"], "otp");
    assert_eq!(tried[1]["outcome"], "released");
    assert!(tried[0]["at"].as_str().is_some());
    let evidence = view["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 1, "{view}");
    assert_eq!(evidence[0]["media_type"], "image/png");
    assert_eq!(evidence[0]["sha256"].as_str().unwrap().len(), 64);
    assert!(
        view["allowed_actions"]
            .as_array()
            .unwrap()
            .contains(&json!("verify_identity"))
    );

    let (mismatch, _) = in_identity_review(&pool, "+8613800138302", Some(false)).await;
    let (_, view) = call(
        &pool,
        "GET",
        &format!("/v1/agent/cases/{mismatch}"),
        Some(&cs),
        None,
    )
    .await;
    assert_eq!(view["proofs"]["name_id_match"], "did_not_match");
    // The CS agent is not offered what the server would refuse.
    assert!(
        !view["allowed_actions"]
            .as_array()
            .unwrap()
            .contains(&json!("verify_identity")),
        "{view}"
    );
    let (unasked, _) = in_identity_review(&pool, "+8613800138303", None).await;
    let (_, view) = call(
        &pool,
        "GET",
        &format!("/v1/agent/cases/{unasked}"),
        Some(&cs),
        None,
    )
    .await;
    assert_eq!(view["proofs"]["name_id_match"], "not_yet_asked");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn verify_identity_needs_to_say_how_identity_was_checked(pool: PgPool) {
    let (_, cs) = agent(&pool, "cs.how", &[Role::Cs]).await;
    let (case_id, version) = in_identity_review(&pool, "+8613800138311", Some(true)).await;
    for body in [
        json!({ "action": "verify_identity", "expected_version": version }),
        json!({ "action": "verify_identity", "reason": "saw them", "expected_version": version }),
        json!({ "action": "verify_identity", "identity_check": "trust_me", "expected_version": version }),
        json!({ "action": "verify_identity", "identity_check": "", "expected_version": version }),
    ] {
        let (status, problem) = act(&pool, &cs, case_id, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} {problem}");
        assert_eq!(problem["errors"][0]["field"], "identity_check", "{problem}");
    }
    // identity_check belongs to verify_identity only.
    let (status, problem) = act(
        &pool,
        &cs,
        case_id,
        json!({ "action": "request_info", "reason": "ID photo", "identity_check": "documents_reviewed", "expected_version": version }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "identity_check");
    // Nothing changed, nobody claimed the case.
    let case = case_store::load_case(&pool, case_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (case.state, case.version),
        (CaseState::IdentityReview, version)
    );
    assert_eq!(case.lease_owner, None);

    let (status, view) = act(
        &pool,
        &cs,
        case_id,
        json!({ "action": "verify_identity", "identity_check": "original_id_in_person", "reason": "store 12, counter 3", "expected_version": version }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["version"], version + 1);
    let last = view["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "identity_verified");
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("original ID document seen in person"),
        "{reason}"
    );
    assert!(reason.contains("store 12, counter 3"), "{reason}");
    let check: String = sqlx::query_scalar(
        "SELECT detail->>'identity_check' FROM audit_log WHERE case_id = $1 AND action = 'case.decision'",
    )
    .bind(case_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(check, "original_id_in_person");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_name_id_mismatch_takes_a_supervisor_to_verify(pool: PgPool) {
    let (_, cs) = agent(&pool, "cs.mismatch", &[Role::Cs]).await;
    let (_, boss) = agent(&pool, "boss.mismatch", &[Role::Supervisor]).await;
    let (case_id, version) = in_identity_review(&pool, "+8613800138321", Some(false)).await;
    let body = json!({ "action": "verify_identity", "identity_check": "video_call_face_match", "expected_version": version });
    let (status, problem) = act(&pool, &cs, case_id, body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["code"], "supervisor_required_name_id_mismatch");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("supervisor-required-name-id-mismatch"),
        "{problem}"
    );
    let case = case_store::load_case(&pool, case_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (case.state, case.version),
        (CaseState::IdentityReview, version)
    );
    assert_eq!(
        case.lease_owner, None,
        "a refused verification claims nothing"
    );

    let (status, view) = act(&pool, &boss, case_id, body).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["version"], version + 1);
    assert_eq!(
        view["timeline"].as_array().unwrap().last().unwrap()["event"],
        "identity_verified"
    );
    // Where the carrier matched (or was not asked), CS verifies as before.
    let (case_id, version) = in_identity_review(&pool, "+8613800138322", None).await;
    let (status, view) = act(
        &pool,
        &cs,
        case_id,
        json!({ "action": "verify_identity", "identity_check": "callback_to_contact_on_file", "expected_version": version }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
}

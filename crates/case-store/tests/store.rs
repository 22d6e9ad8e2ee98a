//! The store against a real Postgres: a fresh database per test (`#[sqlx::test]`).

use case_store::testing::open_case;
use std::time::Duration;

use case_domain::{Actor, CaseEvent, CaseState, Msisdn, Role, TransitionError, risk::RiskTier};
use case_store::{
    IdempotencyBegin, MIGRATOR, NewCase, OutboxMessage, StoreError, TransitionRequest,
    begin_idempotent, claim_next, claim_outbox, complete_idempotent, create_case, load_case,
    mark_delivered, release, renew_lease, timeline, transition,
};
use sqlx::{PgPool, postgres::PgListener};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

fn request<'a>(
    case_id: Uuid,
    version: i32,
    event: CaseEvent,
    actor: &'a Actor,
) -> TransitionRequest<'a> {
    TransitionRequest {
        case_id,
        expected_version: version,
        event,
        actor,
        reason: None,
        fence: None,
        outbox: vec![],
    }
}

async fn event_count(pool: &PgPool, case_id: Uuid) -> i64 {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM case_events WHERE case_id = $1"#,
        case_id
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Moves a fresh case to risk_assessment (a worker-owned state) and returns its version.
async fn case_in_risk_assessment(pool: &PgPool, msisdn: &str) -> (Uuid, i32) {
    let id = open_case(pool, msisdn).await;
    let system = Actor::system("identity-verification");
    let done = transition(pool, request(id, 1, CaseEvent::ProofsAccepted, &system))
        .await
        .unwrap();
    (id, done.case.version)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn opening_a_case_writes_the_opened_row(pool: PgPool) {
    let id = open_case(&pool, "+8613800138000").await;
    let case = load_case(&pool, id).await.unwrap().unwrap();
    assert_eq!((case.state, case.version), (CaseState::AwaitingIdentity, 1));
    let log = timeline(&pool, id).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].from_state, log[0].to_state, log[0].event),
        (None, CaseState::AwaitingIdentity, CaseEvent::Opened)
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sixty_four_concurrent_transitions_with_one_version_let_exactly_one_through(pool: PgPool) {
    let id = open_case(&pool, "+8613800138001").await;
    let before = event_count(&pool, id).await;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let system = Actor::system("identity-verification");
            transition(&pool, request(id, 1, CaseEvent::ProofsAccepted, &system)).await
        }));
    }
    let mut won = 0;
    let mut stale = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::StaleVersion {
                expected: 1,
                actual: 2,
                ..
            }) => stale += 1,
            Err(other) => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!((won, stale), (1, 63));
    assert_eq!(event_count(&pool, id).await, before + 1);
    let case = load_case(&pool, id).await.unwrap().unwrap();
    assert_eq!((case.state, case.version), (CaseState::RiskAssessment, 2));
}

/// A transition that does not prove identity reads and moves the case in one
/// statement, choosing where the event goes from the state the case is in: racing
/// events of different actors at one version let exactly one through, and each
/// event row names the state left and since when the case was in it.
#[sqlx::test(migrator = "MIGRATOR")]
async fn one_statement_transitions_move_from_the_state_the_case_is_in(pool: PgPool) {
    // `cancelled` leaves many states: from awaiting_identity here…
    let waiting = open_case(&pool, "+8613800138011").await;
    let opened = load_case(&pool, waiting).await.unwrap().unwrap();
    let customer = Actor::customer();
    let done = transition(&pool, request(waiting, 1, CaseEvent::Cancelled, &customer))
        .await
        .unwrap();
    assert_eq!(
        (done.from, done.case.state, done.case.version),
        (CaseState::AwaitingIdentity, CaseState::Cancelled, 2)
    );

    // …and from risk_assessment, racing the risk service's own verdict.
    let (id, version) = case_in_risk_assessment(&pool, "+8613800138012").await;
    let entered = load_case(&pool, id).await.unwrap().unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let (event, actor) = if i % 2 == 0 {
                (CaseEvent::Cancelled, Actor::customer())
            } else {
                (CaseEvent::RiskFlagged, Actor::system("risk-assessment"))
            };
            transition(&pool, request(id, version, event, &actor)).await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(done) => winners.push(done),
            Err(StoreError::StaleVersion {
                expected, actual, ..
            }) => {
                assert_eq!((expected, actual), (version, version + 1));
            }
            // A loser that finds the case already moved on is refused for the state
            // it is in now (the role is checked before the version).
            Err(StoreError::Refused(
                TransitionError::Forbidden { from, .. } | TransitionError::Illegal { from, .. },
            )) => assert_ne!(from, CaseState::RiskAssessment),
            Err(other) => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let won = &winners[0];
    assert_eq!(won.from, CaseState::RiskAssessment);
    assert!(matches!(
        won.case.state,
        CaseState::Cancelled | CaseState::SecurityReview
    ));
    let now = load_case(&pool, id).await.unwrap().unwrap();
    assert_eq!((now.state, now.version), (won.case.state, version + 1));

    for (case, left, since) in [
        (
            waiting,
            CaseState::AwaitingIdentity,
            opened.state_entered_at,
        ),
        (id, CaseState::RiskAssessment, entered.state_entered_at),
    ] {
        let last: (String, String, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
            "SELECT from_state::text, to_state::text, from_state_since FROM case_events
             WHERE case_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(case)
        .fetch_one(&pool)
        .await
        .unwrap();
        let now = load_case(&pool, case).await.unwrap().unwrap();
        assert_eq!(
            last,
            (
                left.as_str().to_owned(),
                now.state.as_str().to_owned(),
                Some(since)
            )
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn illegal_or_forbidden_events_change_nothing(pool: PgPool) {
    let id = open_case(&pool, "+8613800138002").await;
    let before = load_case(&pool, id).await.unwrap().unwrap();
    let analyst = Actor::agent(Role::Security, "a1");
    let system = Actor::system("risk-assessment");
    let outbox = vec![OutboxMessage {
        topic: "provisioning.order".into(),
        payload: serde_json::json!({}),
        dedupe_suffix: "x".into(),
    }];

    // The system may act in awaiting_identity, but risk_cleared is not one of its events there.
    let illegal = transition(
        &pool,
        TransitionRequest {
            outbox: outbox.clone(),
            ..request(id, 1, CaseEvent::RiskCleared, &system)
        },
    )
    .await;
    assert!(
        matches!(
            illegal,
            Err(StoreError::Refused(TransitionError::Illegal { .. }))
        ),
        "{illegal:?}"
    );
    // A security analyst has no business in awaiting_identity.
    let forbidden = transition(&pool, request(id, 1, CaseEvent::Approved, &analyst)).await;
    assert!(
        matches!(
            forbidden,
            Err(StoreError::Refused(TransitionError::Forbidden { .. }))
        ),
        "{forbidden:?}"
    );
    // The role is checked before the version.
    let forbidden_stale = transition(&pool, request(id, 7, CaseEvent::Approved, &analyst)).await;
    assert!(matches!(
        forbidden_stale,
        Err(StoreError::Refused(TransitionError::Forbidden { .. }))
    ));
    let stale = transition(&pool, request(id, 7, CaseEvent::ProofsAccepted, &system)).await;
    assert!(matches!(
        stale,
        Err(StoreError::StaleVersion {
            expected: 7,
            actual: 1,
            ..
        })
    ));
    let missing = transition(
        &pool,
        request(Uuid::now_v7(), 1, CaseEvent::ProofsAccepted, &system),
    )
    .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));

    assert_eq!(load_case(&pool, id).await.unwrap().unwrap(), before);
    assert_eq!(event_count(&pool, id).await, 1);
    let outbox_rows = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM outbox"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbox_rows, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_transition_commits_its_outbox_rows_with_it(pool: PgPool) {
    let (id, version) = case_in_risk_assessment(&pool, "+8613800138003").await;
    let system = Actor::system("risk-assessment");
    let order = OutboxMessage {
        topic: "provisioning.order".into(),
        payload: serde_json::json!({"level": "full"}),
        dedupe_suffix: "order".into(),
    };
    let done = transition(
        &pool,
        TransitionRequest {
            outbox: vec![order],
            reason: Some("no risk signals"),
            ..request(id, version, CaseEvent::RiskCleared, &system)
        },
    )
    .await
    .unwrap();
    assert_eq!(done.case.state, CaseState::Provisioning);
    let row = sqlx::query!(
        "SELECT case_id, event_id, topic FROM outbox WHERE id = $1",
        done.outbox_ids[0]
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (row.case_id, row.event_id, row.topic.as_str()),
        (Some(id), Some(done.event_id), "provisioning.order")
    );
    let last = timeline(&pool, id).await.unwrap().pop().unwrap();
    assert_eq!(last.reason.as_deref(), Some("no risk signals"));
    assert_eq!(
        (last.actor_role, last.actor_id.as_str()),
        (Role::System, "risk-assessment")
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_expired_lease_is_claimed_again_and_the_first_workers_late_write_is_refused(
    pool: PgPool,
) {
    let (id, _) = case_in_risk_assessment(&pool, "+8613800138004").await;
    let states = [CaseState::RiskAssessment];

    let first = claim_next(&pool, &states, "worker-a", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.case_id, id);
    // While the lease holds, nobody else gets the case.
    assert!(
        claim_next(&pool, &states, "worker-b", LEASE)
            .await
            .unwrap()
            .is_none()
    );

    // Worker A stalls; its lease runs out (seeded, as River's rescuer tests do, instead of sleeping).
    sqlx::query!("UPDATE reactivation_cases SET lease_expires_at = now() - interval '1 second' WHERE id = $1", id)
        .execute(&pool)
        .await
        .unwrap();
    let second = claim_next(&pool, &states, "worker-b", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.case_id, id);
    assert_eq!(second.fence.attempt, first.fence.attempt + 1);

    // A wakes up and tries to write its outcome: refused, nothing changes.
    let system = Actor::system("risk-assessment");
    let late = transition(
        &pool,
        TransitionRequest {
            fence: Some(&first.fence),
            ..request(id, first.version, CaseEvent::RiskFlagged, &system)
        },
    )
    .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost { .. })),
        "{late:?}"
    );
    assert!(matches!(
        renew_lease(&pool, id, &first.fence, LEASE).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        release(&pool, id, &first.fence, Duration::ZERO).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(
        load_case(&pool, id).await.unwrap().unwrap().state,
        CaseState::RiskAssessment
    );

    // B holds the newer lease and its write goes through, clearing the lease.
    renew_lease(&pool, id, &second.fence, LEASE).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let done = case_store::risk::transition_into_provisioning(
        &mut tx,
        TransitionRequest {
            fence: Some(&second.fence),
            ..request(id, second.version, CaseEvent::RiskCleared, &system)
        },
        case_domain::Restoration::Full,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(done.case.state, CaseState::Provisioning);
    assert_eq!(done.case.lease_owner, None);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_move_into_provisioning_without_its_order_is_refused(pool: PgPool) {
    let (id, version) = case_in_risk_assessment(&pool, "+8613800138010").await;
    let system = Actor::system("risk-assessment");
    let refused = transition(&pool, request(id, version, CaseEvent::RiskCleared, &system)).await;
    assert!(
        matches!(refused, Err(StoreError::Invariant(_))),
        "{refused:?}"
    );
    assert_eq!(
        load_case(&pool, id).await.unwrap().unwrap().state,
        CaseState::RiskAssessment
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_released_case_waits_out_its_back_off(pool: PgPool) {
    let (id, _) = case_in_risk_assessment(&pool, "+8613800138005").await;
    let states = [CaseState::RiskAssessment];
    let claim = claim_next(&pool, &states, "w", LEASE)
        .await
        .unwrap()
        .unwrap();
    release(&pool, id, &claim.fence, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        claim_next(&pool, &states, "w", LEASE)
            .await
            .unwrap()
            .is_none()
    );
    let again = claim_next(&pool, &states, "w", LEASE).await.unwrap();
    assert!(again.is_none());
    let claim = {
        sqlx::query!(
            "UPDATE reactivation_cases SET lease_expires_at = now() WHERE id = $1",
            id
        )
        .execute(&pool)
        .await
        .unwrap();
        claim_next(&pool, &states, "w", LEASE)
            .await
            .unwrap()
            .unwrap()
    };
    release(&pool, id, &claim.fence, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        claim_next(&pool, &states, "w", LEASE)
            .await
            .unwrap()
            .is_some()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_event_log_refuses_update_delete_and_truncate(pool: PgPool) {
    let id = open_case(&pool, "+8613800138006").await;
    for statement in [
        "UPDATE case_events SET reason = 'rewritten'",
        "DELETE FROM case_events",
        "TRUNCATE case_events CASCADE",
    ] {
        let err = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
    assert_eq!(event_count(&pool, id).await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unproven_cases_never_block_and_the_first_proof_supersedes_them(pool: PgPool) {
    let id = open_case(&pool, "+8613800138007").await;
    let err =
        sqlx::query("UPDATE reactivation_cases SET state = 'approved_by_magic' WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid input value for enum case_state"),
        "{err}"
    );

    // A second request for the number, before either proved identity: allowed.
    let open = |token: u8| NewCase {
        id: Uuid::now_v7(),
        msisdn: Msisdn::parse("+8613800138007").unwrap(),
        channel: case_domain::Channel::App,
        locale: case_domain::Locale::ZhCn,
        token_hash: [token; 32],
    };
    let second = open(7);
    let mut tx = pool.begin().await.unwrap();
    create_case(&mut tx, &second, &Actor::customer())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The first proves identity: the second is closed as superseded, its token dead.
    let system = Actor::system("identity-verification");
    transition(&pool, request(id, 1, CaseEvent::ProofsAccepted, &system))
        .await
        .unwrap();
    let gone = load_case(&pool, second.id).await.unwrap().unwrap();
    assert_eq!(gone.state, CaseState::Cancelled);
    let last = timeline(&pool, second.id).await.unwrap().pop().unwrap();
    assert_eq!(last.event, CaseEvent::Superseded);
    assert!(
        case_store::load_case_by_token(&pool, second.id, &[7; 32])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        case_store::identity_proven_at(&pool, id)
            .await
            .unwrap()
            .is_some()
    );

    // A third opens, but cannot prove identity while the first is past identity.
    let third = open(9);
    let mut tx = pool.begin().await.unwrap();
    create_case(&mut tx, &third, &Actor::customer())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let refused = transition(
        &pool,
        request(third.id, 1, CaseEvent::ProofsAccepted, &system),
    )
    .await;
    assert!(
        matches!(refused, Err(StoreError::OpenCaseExists)),
        "{refused:?}"
    );
    assert_eq!(
        load_case(&pool, third.id).await.unwrap().unwrap().state,
        CaseState::AwaitingIdentity
    );

    // Once the first case is finished, the third may.
    transition(
        &pool,
        request(id, 2, CaseEvent::Cancelled, &Actor::customer()),
    )
    .await
    .unwrap();
    transition(
        &pool,
        request(third.id, 1, CaseEvent::ProofsAccepted, &system),
    )
    .await
    .unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn transitions_notify_the_next_owner_and_the_change_feed(pool: PgPool) {
    let id = open_case(&pool, "+8613800138008").await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener
        .listen_all(["case_work_risk_assessment", "case_changed"])
        .await
        .unwrap();
    let system = Actor::system("identity-verification");
    transition(&pool, request(id, 1, CaseEvent::ProofsAccepted, &system))
        .await
        .unwrap();
    // One notification: the change, naming the next owner's channel to wake.
    let n = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.channel(), "case_changed");
    let change: serde_json::Value = serde_json::from_str(n.payload()).unwrap();
    assert_eq!(change["case_id"], id.to_string());
    assert_eq!(change["state"], "risk_assessment");
    assert_eq!(change["version"], 2);
    assert_eq!(
        change["wake"],
        serde_json::json!(["case_work_risk_assessment"])
    );
    // Nothing else was sent by that commit: a marker sent afterwards comes next.
    sqlx::query("SELECT pg_notify('case_changed', 'marker')")
        .execute(&pool)
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.payload(), "marker");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_proof_that_supersedes_cases_with_webhooks_registered_sends_one_notification(
    pool: PgPool,
) {
    // Two more unproven requests for the number, and an outbound webhook endpoint: the
    // proof's transaction changes three cases and queues events for the fan-out.
    let number = "+8613800138009";
    let winner = open_case(&pool, number).await;
    let mut losers = Vec::new();
    for token in [8u8, 9] {
        let new = NewCase {
            id: Uuid::now_v7(),
            msisdn: Msisdn::parse(number).unwrap(),
            channel: case_domain::Channel::App,
            locale: case_domain::Locale::ZhCn,
            token_hash: [token; 32],
        };
        let mut conn = pool.acquire().await.unwrap();
        create_case(&mut conn, &new, &Actor::system("test"))
            .await
            .unwrap();
        losers.push(new.id);
    }
    case_store::webhooks::create_endpoint(
        &pool,
        Uuid::now_v7(),
        "https://receiver.example/hook",
        &["case.state_changed".to_owned()],
        &[1, 2, 3],
        None,
    )
    .await
    .unwrap();
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener
        .listen_all([
            "case_changed",
            "case_work_risk_assessment",
            case_store::webhooks::EVENT_FEED_CHANNEL,
        ])
        .await
        .unwrap();

    let system = Actor::system("identity-verification");
    transition(
        &pool,
        request(winner, 1, CaseEvent::ProofsAccepted, &system),
    )
    .await
    .unwrap();

    let n = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.channel(), "case_changed");
    let change: serde_json::Value = serde_json::from_str(n.payload()).unwrap();
    assert_eq!(change["case_id"], winner.to_string());
    assert_eq!(change["state"], "risk_assessment");
    // The fan-out's wake-up rides on it (an endpoint is registered) ...
    assert_eq!(
        change["wake"],
        serde_json::json!(["case_work_risk_assessment", "webhook_event_feed"])
    );
    // ... and so do the superseded cases.
    let mut also: Vec<(String, String)> = change["also"]
        .as_array()
        .expect("also")
        .iter()
        .map(|c| {
            (
                c["case_id"].as_str().unwrap().to_owned(),
                c["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    also.sort();
    let mut expected: Vec<(String, String)> = losers
        .iter()
        .map(|id| (id.to_string(), "cancelled".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(also, expected);
    // The events were queued for the fan-out all the same (the trigger still writes
    // the feed; it no longer notifies).
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_event_feed")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(queued >= 3, "{queued}");
    // Nothing else was sent by that commit: a marker sent afterwards comes next.
    sqlx::query("SELECT pg_notify('case_changed', 'marker')")
        .execute(&pool)
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.payload(), "marker");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn idempotency_keys_replay_refuse_mismatches_and_report_in_flight(pool: PgPool) {
    let scope = "POST /v1/cases";
    let body = [1u8; 32];
    assert_eq!(
        begin_idempotent(&pool, scope, "k1", &body).await.unwrap(),
        IdempotencyBegin::Started
    );
    assert_eq!(
        begin_idempotent(&pool, scope, "k1", &body).await.unwrap(),
        IdempotencyBegin::InFlight
    );
    assert_eq!(
        begin_idempotent(&pool, scope, "k1", &[2u8; 32])
            .await
            .unwrap(),
        IdempotencyBegin::Mismatch
    );
    let response = serde_json::json!({"case_id": "x"});
    complete_idempotent(&pool, scope, "k1", 201, &response)
        .await
        .unwrap();
    assert_eq!(
        begin_idempotent(&pool, scope, "k1", &body).await.unwrap(),
        IdempotencyBegin::Replay {
            status: 201,
            body: response
        }
    );
    // Another scope has its own keys.
    assert_eq!(
        begin_idempotent(&pool, "other", "k1", &[2u8; 32])
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
    // An in-flight claim abandoned by a dead process is taken over after a minute.
    sqlx::query!("UPDATE idempotency_keys SET created_at = now() - interval '2 minutes' WHERE scope = 'other'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        begin_idempotent(&pool, "other", "k1", &[2u8; 32])
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn outbox_rows_are_claimed_once_and_fenced(pool: PgPool) {
    let (id, version) = case_in_risk_assessment(&pool, "+8613800138009").await;
    let system = Actor::system("risk-assessment");
    let order = OutboxMessage {
        topic: "provisioning.order".into(),
        payload: serde_json::json!({}),
        dedupe_suffix: "order".into(),
    };
    transition(
        &pool,
        TransitionRequest {
            outbox: vec![order],
            ..request(id, version, CaseEvent::RiskCleared, &system)
        },
    )
    .await
    .unwrap();
    let topics = vec!["provisioning.order".to_owned()];
    let a = claim_outbox(&pool, &topics, "a", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert!(
        claim_outbox(&pool, &topics, "b", LEASE)
            .await
            .unwrap()
            .is_none()
    );
    sqlx::query!("UPDATE outbox SET lease_expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    let b = claim_outbox(&pool, &topics, "b", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b.id, b.attempts), (a.id, a.attempts + 1));
    assert!(matches!(
        mark_delivered(&pool, &a).await,
        Err(StoreError::LeaseLost { .. })
    ));
    mark_delivered(&pool, &b).await.unwrap();
    assert!(
        claim_outbox(&pool, &topics, "c", LEASE)
            .await
            .unwrap()
            .is_none()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_table_and_column_has_a_comment(pool: PgPool) {
    let missing = sqlx::query_scalar!(
        r#"SELECT c.relname::text AS "name!"
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
           WHERE c.relkind IN ('r', 'p') AND c.relname <> '_sqlx_migrations' AND obj_description(c.oid, 'pg_class') IS NULL
           UNION ALL
           SELECT c.relname || '.' || a.attname
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           WHERE c.relkind IN ('r', 'p') AND c.relname <> '_sqlx_migrations' AND col_description(c.oid, a.attnum) IS NULL"#
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(missing.is_empty(), "uncommented: {missing:?}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn postgres_enums_list_exactly_the_domain_values(pool: PgPool) {
    async fn labels(pool: &PgPool, type_name: &str) -> Vec<String> {
        sqlx::query_scalar!(
            "SELECT e.enumlabel::text AS \"l!\" FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = $1 ORDER BY e.enumsortorder",
            type_name
        )
        .fetch_all(pool)
        .await
        .unwrap()
    }
    let states: Vec<String> = CaseState::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    let events: Vec<String> = CaseEvent::ALL
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect();
    let roles: Vec<String> = Role::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    assert_eq!(labels(&pool, "case_state").await, states);
    assert_eq!(labels(&pool, "case_event").await, events);
    assert_eq!(labels(&pool, "actor_role").await, roles);
    let tiers: Vec<String> = [
        RiskTier::Low,
        RiskTier::Medium,
        RiskTier::High,
        RiskTier::Extreme,
    ]
    .iter()
    .map(|t| t.as_str().to_owned())
    .collect();
    assert_eq!(labels(&pool, "risk_tier").await, tiers);
}

/// The follower's cursor reads keep one generic plan per connection (planning them
/// over every partition of the event log cost ten times running them), and the rest
/// of its transaction keeps the connection's own plan cache setting.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_follower_reads_its_cursor_on_a_cached_plan_and_nothing_else(pool: PgPool) {
    use case_store::timers::{Cursor, events_pending, next_pass};
    use sqlx::{ConnectOptions, Connection};

    open_case(&pool, "+8613900000131").await;
    // The opening is followable once no transaction that began before it is running
    // on the server (other tests' included): wait for that first.
    let start = Cursor { tx_id: 0, seq: 0 };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut tx = pool.begin().await.unwrap();
        let n = next_pass(&mut tx, start, 10, &[])
            .await
            .unwrap()
            .events
            .len();
        tx.rollback().await.unwrap();
        if n == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the opening never became followable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for setting in ["auto", "force_custom_plan"] {
        // The connection's own setting, as service_runtime::db gives it (options).
        let options = (*pool.connect_options())
            .clone()
            .options([("plan_cache_mode", setting)]);
        let mut conn = options.connect().await.unwrap();
        for _ in 0..8 {
            let mut tx = conn.begin().await.unwrap();
            let events = next_pass(&mut tx, start, 10, &[]).await.unwrap().events;
            assert_eq!(events.len(), 1, "the opening");
            let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            assert_eq!(mode, setting, "after the cursor read");
            assert!(!events_pending(&mut tx, events[0].cursor).await.unwrap());
            assert!(events_pending(&mut tx, start).await.unwrap());
            tx.commit().await.unwrap();
        }
        let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(mode, setting, "after the transaction");
        let plans: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT left(statement, 40), generic_plans, custom_plans FROM pg_prepared_statements
              WHERE statement LIKE '%case_events%tx_id%'
                AND statement NOT LIKE '%pg_prepared_statements%' ORDER BY statement",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(plans.len(), 2, "{plans:?}");
        for (statement, generic, custom) in plans {
            assert_eq!(custom, 0, "{setting}: {statement}");
            assert!(generic >= 8, "{setting}: {statement}: {generic}");
        }
    }
}

/// A worker's case claims keep one plan: the states and the batch size are part of
/// the statement, so after Postgres's five custom plans the claim runs on its cached
/// generic plan (with them bound, it was planned on every claim).
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_busy_case_claimer_keeps_its_plan(pool: PgPool) {
    use sqlx::{ConnectOptions, Connection};
    // 3,000 open cases waiting, statistics taken.
    sqlx::query(
        "INSERT INTO reactivation_cases (id, msisdn, state, channel, locale, token_hash)
         SELECT gen_random_uuid(), '+8613' || lpad(i::text, 9, '0'), 'awaiting_identity',
                'app', 'en', sha256(convert_to('claim-test-' || i, 'UTF8'))
         FROM generate_series(1, 3000) i",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE reactivation_cases")
        .execute(&pool)
        .await
        .unwrap();
    let states = [CaseState::AwaitingIdentity];
    let mut conn = (*pool.connect_options()).clone().connect().await.unwrap();
    let mut claimed = 0;
    for _ in 0..12 {
        claimed += case_store::claim_batch(&mut conn, &states, "w", LEASE, 2)
            .await
            .unwrap()
            .len();
    }
    assert_eq!(claimed, 24, "two cases a claim, each once (leased)");
    let (generic, custom) =
        case_store::testing::plans_of(&mut conn, "WITH next AS%FROM reactivation_cases%").await;
    assert!(
        custom <= 5 && generic >= 7,
        "generic {generic}, custom {custom}"
    );
    conn.close().await.unwrap();
}

/// A follower pass reads its cases' logs and latest assessments in one go: the same
/// logs as one read per case, a case opened months ago included (each case's log is
/// read from its own creation on), and nothing for the cases of skipped events.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_pass_reads_each_case_log_whole_and_only_for_the_events_it_handles(pool: PgPool) {
    use case_store::{
        risk::latest_assessments,
        timelines,
        timers::{Cursor, next_pass},
    };

    let (recent, _) = case_in_risk_assessment(&pool, "+8613900000141").await;
    // A case opened 40 days ago, its opening in that month's partition, moved now.
    sqlx::query("SELECT history_ensure_partitions((now() - interval '40 days')::date, 3)")
        .execute(&pool)
        .await
        .unwrap();
    let old = Uuid::now_v7();
    sqlx::query(
        "WITH c AS (
             INSERT INTO reactivation_cases (id, msisdn, state, channel, locale, token_hash,
                                             created_at, updated_at, state_entered_at)
             VALUES ($1, '+8613900000142', 'awaiting_identity', 'web', 'en', sha256('old'),
                     now() - interval '40 days', now() - interval '40 days', now() - interval '40 days')
             RETURNING id, created_at)
         INSERT INTO case_events (id, case_id, version, from_state, to_state, event, actor_role, actor_id, at)
         SELECT gen_random_uuid(), id, 1, NULL, 'awaiting_identity', 'opened', 'customer', 'subscriber', created_at
         FROM c",
    )
    .bind(old)
    .execute(&pool)
    .await
    .unwrap();
    let system = Actor::system("identity-verification");
    transition(&pool, request(old, 1, CaseEvent::ProofsAccepted, &system))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO risk_assessments (id, case_id, tier, reason_codes, needs, signals, assessed_at)
         VALUES ($1, $2, 'medium', '{velocity}', '{call_records}',
                 '{\"fraud_linked_contacts\": 0, \"sms_peak_per_hour\": 0, \"intl_calls_24h\": 0,
                   \"suspension_reason\": null}', now())",
    )
    .bind(Uuid::now_v7())
    .bind(recent)
    .execute(&pool)
    .await
    .unwrap();

    let both = [recent, old];
    let read = timelines(&pool, &both).await.unwrap();
    for case in both {
        let batch: Vec<_> = read
            .iter()
            .filter(|(c, _)| *c == case)
            .map(|(_, e)| e.clone())
            .collect();
        let one = timeline(&pool, case).await.unwrap();
        assert_eq!(batch, one, "{case}");
        assert_eq!(one.len(), 2);
    }
    let assessed = latest_assessments(&pool, &both).await.unwrap();
    assert_eq!(assessed.len(), 1);
    assert_eq!(
        (assessed[0].case_id, assessed[0].tier),
        (recent, RiskTier::Medium)
    );

    // The pass: once the four events are followable (no older transaction running).
    let start = Cursor { tx_id: 0, seq: 0 };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let pass = loop {
        let mut tx = pool.begin().await.unwrap();
        let pass = next_pass(&mut tx, start, 10, &[]).await.unwrap();
        tx.rollback().await.unwrap();
        if pass.events.len() == 4 {
            break pass;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the events never became followable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cases = pass.cases.unwrap();
    assert_eq!(cases.timelines.len(), 2);
    assert_eq!(cases.timelines[&old], timeline(&pool, old).await.unwrap());
    assert_eq!(cases.assessments.len(), 1);
    assert!(cases.assessments.contains_key(&recent));

    // The old case's events skipped: its log is not read.
    let skip: Vec<Uuid> = pass
        .events
        .iter()
        .filter(|e| e.case_id == old)
        .map(|e| e.id)
        .collect();
    let mut tx = pool.begin().await.unwrap();
    let skipped = next_pass(&mut tx, start, 10, &skip).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(skipped.events.len(), 4, "the events are still returned");
    let cases = skipped.cases.unwrap();
    assert_eq!(cases.timelines.keys().collect::<Vec<_>>(), vec![&recent]);
}

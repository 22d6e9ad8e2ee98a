//! The console's read models against a real Postgres (a fresh database per test).

use case_domain::{Actor, CaseEvent, CaseState, Role};
use case_store::testing::open_case;
use case_store::{MIGRATOR, TransitionRequest, dashboard, transition};
use chrono::{Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

async fn moved(pool: &PgPool, case_id: Uuid, version: i32, event: CaseEvent) {
    let system = Actor::system("test");
    transition(
        pool,
        TransitionRequest {
            case_id,
            expected_version: version,
            event,
            actor: &system,
            reason: None,
            fence: None,
            outbox: vec![],
        },
    )
    .await
    .unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn load_breaches_and_throughput_per_stage(pool: PgPool) {
    let _waiting = open_case(&pool, "+8613800138101").await;
    let escalated = open_case(&pool, "+8613800138102").await;
    moved(&pool, escalated, 1, CaseEvent::IdentityEscalated).await;
    let flagged = open_case(&pool, "+8613800138103").await;
    moved(&pool, flagged, 1, CaseEvent::ProofsAccepted).await;
    moved(&pool, flagged, 2, CaseEvent::RiskFlagged).await;

    let open: Vec<CaseState> = CaseState::ALL
        .into_iter()
        .filter(|s| !s.is_terminal())
        .collect();
    let slas = [
        (CaseState::IdentityReview, 4.0 * 3600.0),
        (CaseState::SecurityReview, 24.0 * 3600.0),
    ];
    // Five hours on: the identity review (4 h) is late, the security review (24 h) is not.
    let later = Utc::now() + Duration::hours(5);
    let load = dashboard::stage_load(&pool, &open, &slas, later)
        .await
        .unwrap();
    let by_state: Vec<(CaseState, i64, i64)> =
        load.iter().map(|l| (l.state, l.open, l.breached)).collect();
    assert_eq!(
        by_state,
        [
            (CaseState::AwaitingIdentity, 1, 0),
            (CaseState::IdentityReview, 1, 1),
            (CaseState::SecurityReview, 1, 0),
        ]
    );
    assert!(load.iter().all(|l| l.oldest_entered_at <= Utc::now()));
    // Now nothing is late; states outside the list are not counted.
    let now = dashboard::stage_load(&pool, &[CaseState::IdentityReview], &slas, Utc::now())
        .await
        .unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!((now[0].open, now[0].breached), (1, 0));

    let day = dashboard::stage_throughput(&pool, Utc::now() - Duration::hours(24))
        .await
        .unwrap();
    let left: Vec<(CaseState, i64)> = day.iter().map(|t| (t.state, t.left)).collect();
    assert_eq!(
        left,
        [
            (CaseState::AwaitingIdentity, 2),
            (CaseState::RiskAssessment, 1),
        ]
    );
    assert!(day.iter().all(|t| t.median_secs >= 0.0));
    let none = dashboard::stage_throughput(&pool, Utc::now() + Duration::hours(1))
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn agent_names_are_looked_up_by_id(pool: PgPool) {
    let id = case_store::agents::create_agent(&pool, "name.lookup", "x", &[Role::Security])
        .await
        .unwrap();
    let names = dashboard::agent_names(&pool, &[id, Uuid::now_v7()])
        .await
        .unwrap();
    assert_eq!(names.len(), 1);
    assert_eq!(names[&id], "name.lookup");
    assert!(dashboard::agent_names(&pool, &[]).await.unwrap().is_empty());
}

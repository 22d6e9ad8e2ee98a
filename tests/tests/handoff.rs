//! Foundation scenario: real worker processes hand a case on, woken by NOTIFY.

use std::time::{Duration, Instant};

use case_domain::{Actor, CaseEvent, Msisdn};
use case_store::{NewCase, TransitionRequest};
use system_tests::{Stack, StackOptions, TestSubscriber};
use uuid::Uuid;

#[tokio::test]
async fn a_committed_transition_wakes_the_next_service_at_once_not_at_the_poll() {
    // Workers poll only once an hour: anything faster than that was a NOTIFY.
    let stack = Stack::start_with(StackOptions {
        services: vec!["carrier-sim", "risk", "provisioning"],
        poll_secs: 3600,
        ..StackOptions::default()
    })
    .await;
    let subscriber = TestSubscriber::clean(1);
    stack.add_subscriber(&subscriber).await;
    // Wait until both workers listen (each LISTENs on one connection before its start-up
    // drain): from then on a committed transition reaches them as a notification. A
    // fixed pause here would only guess at it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN %'",
        )
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        if listening >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the risk and provisioning workers never listened ({listening} listening)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The identity stage, played here straight on the store: open a case and accept its proofs.
    let case_id = Uuid::now_v7();
    let mut tx = stack.pool.begin().await.unwrap();
    let new = NewCase {
        id: case_id,
        msisdn: Msisdn::parse(&subscriber.msisdn).unwrap(),
        channel: case_domain::Channel::Web,
        locale: case_domain::Locale::En,
        token_hash: [3; 32],
    };
    case_store::create_case(&mut tx, &new, &Actor::customer())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let started = Instant::now();
    let identity = Actor::system("identity-verification");
    case_store::transition(
        &stack.pool,
        TransitionRequest {
            case_id,
            expected_version: 1,
            event: CaseEvent::ProofsAccepted,
            actor: &identity,
            reason: Some("identity verified"),
            fence: None,
            outbox: vec![],
        },
    )
    .await
    .unwrap();

    // risk (separate process) → provisioning (separate process) → reactivated.
    loop {
        let case = case_store::load_case(&stack.pool, case_id)
            .await
            .unwrap()
            .unwrap();
        if case.state == case_domain::CaseState::Reactivated {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "stuck in {}",
            case.state
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "hand-offs took {took:?}");

    let log = case_store::timeline(&stack.pool, case_id).await.unwrap();
    let steps: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.event.as_str(), e.actor_id.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("opened", "subscriber"),
            ("proofs_accepted", "identity-verification"),
            ("risk_cleared", "risk-assessment"),
            ("restored", "provisioning")
        ]
    );
    // Both workers were woken by notifications and never by their (hour-long) poll.
    assert!(
        stack
            .metric("risk", "worker_wakeups_total", &[("source", "notify")])
            .await
            >= 1.0
    );
    assert!(
        stack
            .metric(
                "provisioning",
                "worker_wakeups_total",
                &[("source", "notify")]
            )
            .await
            >= 1.0
    );
    assert_eq!(
        stack
            .metric("risk", "worker_wakeups_total", &[("source", "poll")])
            .await,
        0.0
    );
    assert_eq!(
        stack
            .metric(
                "provisioning",
                "worker_wakeups_total",
                &[("source", "poll")]
            )
            .await,
        0.0
    );
    assert!(
        stack
            .metric(
                "risk",
                "handoff_latency_seconds_count",
                &[("state", "risk_assessment")]
            )
            .await
            >= 1.0
    );
    assert_eq!(
        stack.provisioning_requests(&subscriber.msisdn).await.len(),
        1
    );
}

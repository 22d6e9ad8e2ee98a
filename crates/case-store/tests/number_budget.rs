//! Per-number budgets against a real Postgres: every outcome of a reservation, and
//! the limit held when many reservations for one number race.

use case_store::{
    MIGRATOR,
    number_budget::{self, BudgetKind, ProofOutcome, Reservation, Reserve},
    testing::open_case,
};
use chrono::{Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

const NUMBER: &str = "+8613800138070";

fn slot<'a>(kind: BudgetKind, case_id: Uuid, cause: Option<&'a str>, limit: i64) -> Reserve<'a> {
    Reserve {
        msisdn: NUMBER,
        kind,
        case_id: Some(case_id),
        method: (kind == BudgetKind::Proof).then_some("otp"),
        cause,
        limit,
        window: Duration::hours(24),
    }
}

/// Reserves `slot(kind, case_id, cause, limit)` in a transaction of its own.
async fn reserve(
    pool: &PgPool,
    kind: BudgetKind,
    case_id: Uuid,
    cause: Option<&str>,
    limit: i64,
) -> Reservation {
    number_budget::reserve(pool, &slot(kind, case_id, cause, limit))
        .await
        .unwrap()
}

async fn uses(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM number_budget_uses WHERE msisdn = $1")
        .bind(NUMBER)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_slot_is_granted_counting_the_others_and_a_cause_is_paid_once(pool: PgPool) {
    let case = open_case(&pool, NUMBER).await;
    let first = reserve(&pool, BudgetKind::Notice, case, Some("a"), 3).await;
    assert!(
        matches!(first, Reservation::Granted { used: 1, .. }),
        "{first:?}"
    );
    let second = reserve(&pool, BudgetKind::Notice, case, Some("b"), 3).await;
    assert!(
        matches!(second, Reservation::Granted { used: 2, .. }),
        "{second:?}"
    );

    // The same cause again: nothing written, whatever the room left.
    let again = reserve(&pool, BudgetKind::Notice, case, Some("a"), 3).await;
    assert_eq!(again, Reservation::AlreadyPaid);
    assert_eq!(uses(&pool).await, 2);

    // Another kind has a budget of its own.
    let code = reserve(&pool, BudgetKind::Code, case, None, 1).await;
    assert!(
        matches!(code, Reservation::Granted { used: 1, .. }),
        "{code:?}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_spent_budget_says_when_it_frees_and_writes_nothing(pool: PgPool) {
    let case = open_case(&pool, NUMBER).await;
    for cause in ["a", "b"] {
        let r = reserve(&pool, BudgetKind::Notice, case, Some(cause), 2).await;
        assert!(matches!(r, Reservation::Granted { .. }), "{r:?}");
    }
    let oldest: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT min(at) FROM number_budget_uses WHERE msisdn = $1")
            .bind(NUMBER)
            .fetch_one(&pool)
            .await
            .unwrap();
    let spent = reserve(&pool, BudgetKind::Notice, case, Some("c"), 2).await;
    assert_eq!(
        spent,
        Reservation::Spent {
            frees_at: oldest + Duration::hours(24)
        }
    );
    assert_eq!(uses(&pool).await, 2);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn proofs_being_judged_make_the_budget_busy_until_settled(pool: PgPool) {
    let case = open_case(&pool, NUMBER).await;
    let Reservation::Granted { id: judged, .. } =
        reserve(&pool, BudgetKind::Proof, case, None, 2).await
    else {
        panic!("first proof refused")
    };
    let Reservation::Granted { .. } = reserve(&pool, BudgetKind::Proof, case, None, 2).await else {
        panic!("second proof refused")
    };
    // Both slots pending: not spent, but no room either.
    let busy = reserve(&pool, BudgetKind::Proof, case, None, 2).await;
    assert_eq!(busy, Reservation::Busy);
    assert_eq!(uses(&pool).await, 2);

    // An accepted proof stops counting: the slot is free again.
    number_budget::settle_proof(&pool, judged, ProofOutcome::Accepted)
        .await
        .unwrap();
    let freed = reserve(&pool, BudgetKind::Proof, case, None, 2).await;
    assert!(
        matches!(freed, Reservation::Granted { used: 2, .. }),
        "{freed:?}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn racing_reservations_for_one_number_never_pass_the_limit(pool: PgPool) {
    let case = open_case(&pool, NUMBER).await;
    let causes: Vec<String> = (0..24).map(|i| format!("cause-{i}")).collect();
    let tasks: Vec<_> = causes
        .iter()
        .map(|cause| {
            let pool = pool.clone();
            let cause = cause.clone();
            tokio::spawn(
                async move { reserve(&pool, BudgetKind::Notice, case, Some(&cause), 5).await },
            )
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Reservation::Granted { used, .. } => {
                assert!((1..=5).contains(&used), "{used}");
                granted += 1;
            }
            Reservation::Spent { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(granted, 5);
    assert_eq!(uses(&pool).await, 5);
}

/// Several slots reserved in one call are answered as if reserved one by one, in
/// their order: a number's second and third slot see the first, another number's
/// budget is its own, a cause paid before (or earlier in the call) is paid once.
#[sqlx::test(migrator = "MIGRATOR")]
async fn many_slots_at_once_are_answered_as_one_by_one(pool: PgPool) {
    const OTHER: &str = "+8613800138071";
    let case = open_case(&pool, NUMBER).await;
    let other_case = open_case(&pool, OTHER).await;
    let before = reserve(&pool, BudgetKind::Notice, case, Some("paid"), 3).await;
    assert!(matches!(before, Reservation::Granted { used: 1, .. }));
    let other = |cause| Reserve {
        msisdn: OTHER,
        case_id: Some(other_case),
        ..slot(BudgetKind::Notice, other_case, Some(cause), 3)
    };
    let slots = [
        slot(BudgetKind::Notice, case, Some("a"), 3),
        other("x"),
        slot(BudgetKind::Notice, case, Some("paid"), 3),
        slot(BudgetKind::Notice, case, Some("b"), 3),
        slot(BudgetKind::Notice, case, Some("c"), 3),
        other("x"),
        slot(BudgetKind::Code, case, None, 1),
    ];
    let mut tx = pool.begin().await.unwrap();
    let done = number_budget::reserve_many_in(&mut tx, &slots)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(done.len(), slots.len());
    assert!(
        matches!(done[0], Reservation::Granted { used: 2, .. }),
        "{:?}",
        done[0]
    );
    assert!(
        matches!(done[1], Reservation::Granted { used: 1, .. }),
        "{:?}",
        done[1]
    );
    assert_eq!(done[2], Reservation::AlreadyPaid);
    assert!(
        matches!(done[3], Reservation::Granted { used: 3, .. }),
        "{:?}",
        done[3]
    );
    assert!(
        matches!(done[4], Reservation::Spent { .. }),
        "{:?}",
        done[4]
    );
    assert_eq!(
        done[5],
        Reservation::AlreadyPaid,
        "x was paid earlier in the call"
    );
    assert!(
        matches!(done[6], Reservation::Granted { used: 1, .. }),
        "{:?}",
        done[6]
    );
    // paid + a + b of the notice budget, and the code.
    assert_eq!(uses(&pool).await, 4);
    let granted: Vec<Uuid> = done
        .iter()
        .filter_map(|r| match r {
            Reservation::Granted { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let written: i64 =
        sqlx::query_scalar("SELECT count(*) FROM number_budget_uses WHERE id = ANY($1)")
            .bind(&granted)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(written, 4, "every granted slot is the row written for it");
    assert!(
        number_budget::reserve_many_in(&mut pool.acquire().await.unwrap(), &[])
            .await
            .unwrap()
            .is_empty()
    );
}

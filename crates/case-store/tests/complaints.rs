//! Complaints against a real Postgres: a fresh database per test.

use case_domain::{
    CaseState, Role,
    complaint::{self, ComplaintChannel, ComplaintStatus},
};
use case_store::testing::open_case;
use case_store::{
    MIGRATOR, agent_work, agents,
    complaints::{
        AnswerRefusal, OpenRefusal, answer_complaint, list_by_status, list_for_case, open_complaint,
    },
};
use chrono::Duration;
use sqlx::PgPool;
use uuid::Uuid;

async fn agent(pool: &PgPool, name: &str) -> Uuid {
    agents::create_agent(pool, name, "$argon2id$not-used", &[Role::Cs])
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_complaint_is_due_in_fifteen_days_and_closed_by_one_answer(pool: PgPool) {
    let case = open_case(&pool, "+8613800138000").await;
    let cs = agent(&pool, "cs.one").await;
    let mut conn = pool.acquire().await.unwrap();
    let row = open_complaint(
        &mut conn,
        case,
        ComplaintChannel::App,
        "Nobody calls me back.",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        row.due_at - row.created_at,
        Duration::days(complaint::ANSWER_DAYS)
    );
    assert_eq!(row.status(), ComplaintStatus::Open);
    assert_eq!(
        (row.channel.as_str(), row.body.as_str()),
        ("app", "Nobody calls me back.")
    );
    assert!(
        !format!("{row:?}").contains("Nobody"),
        "Debug leaves the text out"
    );

    // Another case's id, or an unknown complaint: not found.
    let other = open_case(&pool, "+8613800138001").await;
    assert_eq!(
        answer_complaint(&mut conn, other, row.id, cs, "x")
            .await
            .unwrap(),
        Err(AnswerRefusal::NotFound)
    );
    assert_eq!(
        answer_complaint(&mut conn, case, Uuid::now_v7(), cs, "x")
            .await
            .unwrap(),
        Err(AnswerRefusal::NotFound)
    );

    let answered = answer_complaint(&mut conn, case, row.id, cs, "We restored it today.")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answered.status(), ComplaintStatus::Answered);
    assert_eq!(answered.answer.as_deref(), Some("We restored it today."));
    assert_eq!(answered.answered_by, Some(cs));
    assert_eq!(answered.answered_by_username.as_deref(), Some("cs.one"));
    assert_eq!(
        answer_complaint(&mut conn, case, row.id, cs, "again")
            .await
            .unwrap(),
        Err(AnswerRefusal::AlreadyAnswered)
    );
    let listed = list_for_case(&pool, case).await.unwrap();
    assert_eq!(listed, vec![answered]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn open_complaints_are_capped_per_case_and_unknown_cases_refused(pool: PgPool) {
    let case = open_case(&pool, "+8613800138000").await;
    let mut conn = pool.acquire().await.unwrap();
    for i in 0..complaint::MAX_OPEN_PER_CASE {
        open_complaint(
            &mut conn,
            case,
            ComplaintChannel::Web,
            &format!("complaint {i}"),
        )
        .await
        .unwrap()
        .unwrap();
    }
    assert_eq!(
        open_complaint(&mut conn, case, ComplaintChannel::Web, "one more")
            .await
            .unwrap(),
        Err(OpenRefusal::TooManyOpen)
    );
    assert_eq!(
        open_complaint(&mut conn, Uuid::now_v7(), ComplaintChannel::Web, "x")
            .await
            .unwrap(),
        Err(OpenRefusal::NotFound)
    );
    // Answering one makes room for one more.
    let cs = agent(&pool, "cs.one").await;
    let first = list_for_case(&pool, case).await.unwrap()[0].id;
    answer_complaint(&mut conn, case, first, cs, "answered")
        .await
        .unwrap()
        .unwrap();
    assert!(
        open_complaint(&mut conn, case, ComplaintChannel::Hotline, "one more")
            .await
            .unwrap()
            .is_ok()
    );
    // The table refuses what the API would (empty text).
    let fresh = open_case(&pool, "+8613800138009").await;
    assert!(
        open_complaint(&mut conn, fresh, ComplaintChannel::Web, "")
            .await
            .is_err()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn complaint_cases_lead_the_queue_and_the_list_is_by_due_date(pool: PgPool) {
    let calm = open_case(&pool, "+8613800138000").await;
    let upset = open_case(&pool, "+8613800138001").await;
    let later = open_case(&pool, "+8613800138002").await;
    let states = [CaseState::AwaitingIdentity];
    let before = agent_work::queue(&pool, &states, 10).await.unwrap();
    assert_eq!(
        before.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![calm, upset, later]
    );
    assert!(before.iter().all(|r| !r.complaint));

    let mut conn = pool.acquire().await.unwrap();
    let a = open_complaint(&mut conn, upset, ComplaintChannel::Social, "first")
        .await
        .unwrap()
        .unwrap();
    let b = open_complaint(&mut conn, later, ComplaintChannel::Regulator, "second")
        .await
        .unwrap()
        .unwrap();
    let queue = agent_work::queue(&pool, &states, 10).await.unwrap();
    assert_eq!(
        queue.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![upset, later, calm]
    );
    assert_eq!(
        queue.iter().map(|r| r.complaint).collect::<Vec<_>>(),
        vec![true, true, false]
    );

    let open = list_by_status(&pool, Some(ComplaintStatus::Open), 10)
        .await
        .unwrap();
    assert_eq!(
        open.iter().map(|r| r.complaint.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    assert_eq!(open[0].case_state, Some(CaseState::AwaitingIdentity));
    assert_eq!(open[0].msisdn.e164(), "+8613800138001");

    let cs = agent(&pool, "cs.one").await;
    answer_complaint(&mut conn, upset, a.id, cs, "done")
        .await
        .unwrap()
        .unwrap();
    let open = list_by_status(&pool, Some(ComplaintStatus::Open), 10)
        .await
        .unwrap();
    assert_eq!(
        open.iter().map(|r| r.complaint.id).collect::<Vec<_>>(),
        vec![b.id]
    );
    let answered = list_by_status(&pool, Some(ComplaintStatus::Answered), 10)
        .await
        .unwrap();
    assert_eq!(
        answered.iter().map(|r| r.complaint.id).collect::<Vec<_>>(),
        vec![a.id]
    );
    assert_eq!(list_by_status(&pool, None, 10).await.unwrap().len(), 2);
    // Answered: the case drops back to its place.
    let queue = agent_work::queue(&pool, &states, 10).await.unwrap();
    assert_eq!(
        queue.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![later, calm, upset]
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn usernames_name_agents_only(pool: PgPool) {
    let a = agent(&pool, "cs.one").await;
    let names = agents::usernames(&pool, &[a, Uuid::now_v7()])
        .await
        .unwrap();
    assert_eq!(names, vec![(a, "cs.one".to_owned())]);
    assert!(agents::usernames(&pool, &[]).await.unwrap().is_empty());
}

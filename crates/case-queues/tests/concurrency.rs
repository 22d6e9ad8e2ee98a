//! The concurrent worker loop over the real case table and outbox: batch claims
//! give distinct items with their own fences, a loop keeps K items in flight,
//! shutdown finishes them, a lost lease's late write is refused, and a routed case
//! change wakes an idle loop.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use case_domain::CaseState;
use case_queues::{CaseClaims, OutboxTopics};
use case_store::{
    StoreError,
    testing::open_case,
    timers::{NewMessage, enqueue_message},
};
use service_runtime::{
    Shutdown,
    worker::{
        CaseStep, ClaimSource, OutboxSource, StepOutcome, Wakeups, WorkerSettings, run_case_worker,
    },
};
use sqlx::PgPool;
use tokio::sync::{Barrier, Notify};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);
/// How long a test waits for an outcome before failing (never a pass condition).
const DEADLINE: Duration = Duration::from_secs(20);

fn numbers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("+86138001{i:05}")).collect()
}

async fn open_cases(pool: &PgPool, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for msisdn in numbers(n) {
        ids.push(open_case(pool, &msisdn).await);
    }
    ids
}

/// Polls `done` until it holds, failing after [`DEADLINE`].
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_batch_claim_gives_distinct_cases_each_with_its_own_fence(pool: PgPool) {
    let ids = open_cases(&pool, 5).await;
    let claims = CaseClaims::new(vec![CaseState::INITIAL]);
    let first = claims.claim_batch(&pool, "w1", LEASE, 3).await.unwrap();
    let second = claims.claim_batch(&pool, "w2", LEASE, 3).await.unwrap();
    assert_eq!((first.len(), second.len()), (3, 2));
    let mut claimed: Vec<Uuid> = first.iter().chain(&second).map(|c| c.case_id).collect();
    claimed.sort();
    claimed.dedup();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(claimed, expected, "every case once, none twice");
    // Oldest first, each with its own fence.
    assert_eq!(first[0].case_id, ids[0]);
    for claim in &first {
        assert_eq!(claim.fence.owner, "w1");
        assert_eq!(claim.fence.attempt, 1);
    }
    assert!(
        claims
            .claim_batch(&pool, "w3", LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "all leased"
    );
    // Each fence guards its own case: releasing one leaves the others leased.
    claims
        .release(&pool, &first[1], Duration::ZERO)
        .await
        .unwrap();
    let again = claims.claim_batch(&pool, "w3", LEASE, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].case_id, first[1].case_id);
    assert_eq!(again[0].fence.attempt, 2);
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_batch_claim_of_the_outbox_gives_distinct_messages_of_its_topics(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    for (topic, key) in [("a.topic", "k1"), ("a.topic", "k2"), ("b.topic", "k3")] {
        enqueue_message(
            &mut conn,
            &NewMessage {
                topic,
                case_id: None,
                event_id: None,
                dedupe_key: key,
                payload: serde_json::json!({ "k": key }),
            },
        )
        .await
        .unwrap()
        .expect("written");
    }
    drop(conn);
    let source = OutboxTopics::one("a.topic");
    let batch = source.claim_batch(&pool, "w1", LEASE, 5).await.unwrap();
    assert_eq!(batch.len(), 2, "only its topic");
    assert_ne!(batch[0].id, batch[1].id);
    assert!(batch.iter().all(|m| m.attempts == 1 && m.owner == "w1"));
    assert!(
        source
            .claim_batch(&pool, "w2", LEASE, 5)
            .await
            .unwrap()
            .is_empty()
    );
    source.delivered(&pool, &batch[0]).await.unwrap();
    source.delivered(&pool, &batch[1]).await.unwrap();
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_lost_lease_late_write_is_refused_and_a_crashed_batch_is_claimable_again(pool: PgPool) {
    open_cases(&pool, 2).await;
    let claims = CaseClaims::new(vec![CaseState::INITIAL]);
    // A worker claims both and "crashes": it never writes again.
    let crashed = claims.claim_batch(&pool, "w1", LEASE, 2).await.unwrap();
    assert_eq!(crashed.len(), 2);
    assert!(
        claims
            .claim_batch(&pool, "w2", LEASE, 2)
            .await
            .unwrap()
            .is_empty()
    );
    // Their leases end.
    sqlx::query(
        "UPDATE reactivation_cases SET lease_expires_at = now() - interval '1 second'
         WHERE lease_owner = 'w1'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let taken = claims.claim_batch(&pool, "w2", LEASE, 2).await.unwrap();
    assert_eq!(taken.len(), 2, "every item is claimable after its lease");
    assert!(taken.iter().all(|c| c.fence.attempt == 2));
    // The first worker wakes up: its writes are refused, the new claims stand.
    for old in &crashed {
        let err = claims.renew(&pool, old, LEASE).await.unwrap_err();
        assert!(claims.superseded(&err), "{err}");
        let err = claims
            .release(&pool, old, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(
            err.downcast_ref::<StoreError>(),
            Some(StoreError::LeaseLost { attempt: 1, .. })
        ));
    }
    for new in &taken {
        claims.renew(&pool, new, LEASE).await.unwrap();
    }
}

/// A step that holds every case until `gate` lets it go, then asks to retry much
/// later (so the case is released and not claimed again).
struct Held {
    claims: CaseClaims,
    /// Every started item waits here for the others (None: no barrier).
    barrier: Option<Barrier>,
    gate: Notify,
    open: std::sync::atomic::AtomicBool,
    started: Mutex<Vec<Uuid>>,
    finished: Mutex<Vec<Uuid>>,
}

impl Held {
    fn new(barrier: Option<usize>) -> Self {
        Self {
            claims: CaseClaims::new(vec![CaseState::INITIAL]),
            barrier: barrier.map(Barrier::new),
            gate: Notify::new(),
            open: std::sync::atomic::AtomicBool::new(barrier.is_some()),
            started: Mutex::new(Vec::new()),
            finished: Mutex::new(Vec::new()),
        }
    }

    fn open_gate(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
        self.gate.notify_waiters();
    }

    fn started(&self) -> usize {
        self.started.lock().unwrap().len()
    }

    fn finished(&self) -> usize {
        self.finished.lock().unwrap().len()
    }
}

impl CaseStep for Held {
    type Source = CaseClaims;

    fn service(&self) -> &'static str {
        "held-test"
    }

    fn source(&self) -> &CaseClaims {
        &self.claims
    }

    async fn process(&self, _: &PgPool, claim: &case_store::Claim) -> anyhow::Result<StepOutcome> {
        self.started.lock().unwrap().push(claim.case_id);
        if let Some(barrier) = &self.barrier {
            barrier.wait().await;
        }
        loop {
            let notified = self.gate.notified();
            if self.open.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            notified.await;
        }
        self.finished.lock().unwrap().push(claim.case_id);
        Ok(StepOutcome::RetryAfter(Duration::from_secs(3600)))
    }
}

fn settings(concurrency: usize, wakeups: Wakeups) -> WorkerSettings {
    WorkerSettings {
        // Long enough that only notifications and freed slots drive the loop.
        poll: Duration::from_secs(3600),
        lease: LEASE,
        concurrency,
        wakeups,
    }
}

async fn leased(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM reactivation_cases WHERE lease_owner IS NOT NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_loop_works_k_cases_at_once(pool: PgPool) {
    const K: usize = 6;
    open_cases(&pool, K).await;
    // Each item waits at a barrier of K: it is passed only if all K are in flight
    // together (one at a time would never get past it).
    let step = Arc::new(Held::new(Some(K)));
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(run_case_worker(
        pool.clone(),
        step.clone(),
        settings(K, Wakeups::new()),
        shutdown.clone(),
    ));
    eventually("all K cases pass the barrier together", || {
        step.finished() == K
    })
    .await;
    shutdown.trigger();
    worker.await.unwrap().unwrap();
    assert_eq!(leased(&pool).await, 0, "every case released");
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn shutdown_finishes_the_cases_in_flight(pool: PgPool) {
    open_cases(&pool, 3).await;
    let step = Arc::new(Held::new(None));
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(run_case_worker(
        pool.clone(),
        step.clone(),
        settings(4, Wakeups::new()),
        shutdown.clone(),
    ));
    eventually("three cases in flight", || step.started() == 3).await;
    shutdown.trigger();
    // The loop stops claiming but waits for its items.
    tokio::task::yield_now().await;
    assert!(!worker.is_finished(), "the loop waits for its items");
    assert_eq!(step.finished(), 0);
    step.open_gate();
    tokio::time::timeout(DEADLINE, worker)
        .await
        .expect("the loop stops once its items are done")
        .unwrap()
        .unwrap();
    assert_eq!(step.finished(), 3, "every item in flight was finished");
    assert_eq!(leased(&pool).await, 0, "and released with its own fence");
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_case_change_routed_through_the_change_channel_wakes_an_idle_loop(pool: PgPool) {
    let step = Arc::new(Held::new(Some(1)));
    let shutdown = Shutdown::new();
    let wakeups = Wakeups::routed_through(case_store::CASE_CHANGED_CHANNEL);
    let worker = tokio::spawn(run_case_worker(
        pool.clone(),
        step.clone(),
        settings(2, wakeups.clone()),
        shutdown.clone(),
    ));
    eventually("the loop subscribed", || wakeups.subscribers() == 1).await;
    // The poll is an hour: only the case change's routed wake-up can start it.
    let id = open_case(&pool, "+8613800138555").await;
    eventually("the new case is worked", || {
        step.finished.lock().unwrap().contains(&id)
    })
    .await;
    shutdown.trigger();
    worker.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn a_cases_messages_of_one_topic_are_handed_out_one_at_a_time_in_order(pool: PgPool) {
    let case_id = open_case(&pool, "+8613800138777").await;
    let other_case = open_case(&pool, "+8613800138778").await;
    let mut conn = pool.acquire().await.unwrap();
    let mut ids = Vec::new();
    for (case, topic, key) in [
        (case_id, "notify.t", "first"),
        (case_id, "notify.t", "second"),
        (case_id, "other.t", "elsewhere"),
        (other_case, "notify.t", "other case"),
    ] {
        let id = enqueue_message(
            &mut conn,
            &NewMessage {
                topic,
                case_id: Some(case),
                event_id: None,
                dedupe_key: key,
                payload: serde_json::json!({ "k": key }),
            },
        )
        .await
        .unwrap()
        .expect("written");
        ids.push(id);
    }
    drop(conn);
    let source = OutboxTopics::new(vec!["notify.t".into(), "other.t".into()]);
    let batch = source.claim_batch(&pool, "w1", LEASE, 10).await.unwrap();
    let mut got: Vec<Uuid> = batch.iter().map(|m| m.id).collect();
    got.sort();
    let mut expected = vec![ids[0], ids[2], ids[3]];
    expected.sort();
    assert_eq!(
        got, expected,
        "the case's second message waits for its first"
    );
    assert!(
        source
            .claim_batch(&pool, "w2", LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let first = batch.iter().find(|m| m.id == ids[0]).unwrap();
    source.delivered(&pool, first).await.unwrap();
    let next = source.claim_batch(&pool, "w2", LEASE, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].id, ids[1], "then the second");
}

//! All SQL of the reactivation product.
//!
//! Owns: the migrations ([`MIGRATOR`]), the case table and its append-only event
//! log, the **one door for state changes** ([`transition`]), work claiming for
//! workers (leases plus a fencing token), the outbox and idempotency keys.
//!
//! Must not: decide anything the domain decides (every transition is checked
//! against `case_domain`'s table before the `UPDATE`), speak HTTP, or log personal
//! data (log case ids, never numbers or names).

/// A [`CaseRow`] from a `query!` record `$r` that selected the case's columns under
/// their own names (with more columns of its own, which stay usable).
macro_rules! case_row_of {
    ($r:ident) => {
        $crate::CaseRow {
            id: $r.id,
            msisdn: $r.msisdn,
            state: $r.state,
            version: $r.version,
            channel: $r.channel,
            locale: $r.locale,
            created_at: $r.created_at,
            updated_at: $r.updated_at,
            state_entered_at: $r.state_entered_at,
            lease_owner: $r.lease_owner,
            lease_expires_at: $r.lease_expires_at,
            attempt: $r.attempt,
        }
    };
}

pub mod agent_work;
pub mod agents;
pub mod assisted;
pub mod audit;
mod cases;
mod claims;
pub mod complaints;
pub mod dashboard;
pub mod data_keys;
pub mod demo;
mod error;
pub mod expedite;
pub mod history;
mod idempotency;
pub mod identity;
pub mod key_rotation;
pub mod material;
pub mod messages;
pub mod number_budget;
mod outbox;
pub mod prune;
pub mod queue;
pub mod recovery;
pub mod reports;
pub mod retention;
pub mod risk;
pub mod risk_rules;
pub mod stage_stats;
pub mod store_visits;
pub mod supervision;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod timers;
pub mod webhooks;

pub use cases::{
    CaseRow, EventRow, NewCase, OutboxMessage, Sealed, TransitionRequest, Transitioned,
    cases_per_state, create_case, create_sealed_case, identity_proven_at, load_case,
    load_case_by_token, load_cases, timeline, timelines, transition, transition_in,
};
pub use claims::{
    Claim, Fence, claim_batch, claim_batch_due, claim_next, next_case_due, release, renew_lease,
};
pub use error::StoreError;
pub use idempotency::{
    IdempotencyBegin, begin_idempotent, complete_idempotent, forget_idempotent, prune_idempotency,
};
pub use outbox::{
    OutboxClaim, claim_outbox, claim_outbox_batch, claim_outbox_batch_due, mark_delivered,
    mark_failed, next_outbox_due, outbox_channel, renew_outbox_lease, retry_later,
};

/// Splits `items` into rounds for a statement that writes many at once but must see
/// its earlier writes of the same key (a number's budget, a case's held message):
/// indexes of items with different keys share a round, and the k-th item of a key
/// goes in round k, so running the rounds in order is running the items in order
/// for every key.
pub(crate) fn rounds<T, K: Eq + std::hash::Hash>(
    items: &[T],
    key: impl Fn(&T) -> K,
) -> Vec<Vec<usize>> {
    let mut seen: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let count = seen.entry(key(item)).or_insert(0);
        if rounds.len() <= *count {
            rounds.push(Vec::new());
        }
        rounds[*count].push(i);
        *count += 1;
    }
    rounds
}

/// `SET LOCAL plan_cache_mode TO <mode>` (one of Postgres's values, or `DEFAULT`).
async fn set_local_plan_cache_mode(
    conn: &mut sqlx::PgConnection,
    mode: &'static str,
) -> Result<(), StoreError> {
    sqlx::query(&format!("SET LOCAL plan_cache_mode TO {mode}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Asks for plans made for this run's values for the rest of the transaction on
/// `conn` (`SET LOCAL plan_cache_mode = force_custom_plan`; outside a transaction it
/// does nothing). For the statements whose good plan depends on the values: a range
/// over a table that grows with history (a report's time window). Their generic
/// plan, which Postgres may switch a prepared statement to after five runs, is
/// costed on an average range and is a sequential scan of the history once it is
/// large. Every other statement keeps
/// Postgres's plan cache choice (see `service_runtime::db`), which saves planning
/// them on every run.
pub async fn plan_for_values(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    set_local_plan_cache_mode(conn, "force_custom_plan").await
}

/// Begins a read-only transaction on one snapshot (`REPEATABLE READ`), for reads
/// that must agree with each other; the isolation is set by the `BEGIN` itself, not
/// by a statement of its own.
pub async fn begin_snapshot(
    pool: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
    Ok(pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?)
}

/// Asks for the cached generic plan for the rest of the transaction on `conn`
/// (`SET LOCAL plan_cache_mode = force_generic_plan`): for a hot statement over a
/// partitioned table whose generic plan is known to be good (pruned or bounded at
/// run time, checked against a large history by `tests/tests/hot_paths.rs`) but which
/// Postgres's own choice would plan on every run, because a custom plan always looks
/// cheaper there. Planning the timers follower's cursor reads over every monthly
/// partition of the event log took 1.7 ms a run, ten times running them.
pub async fn plan_generic(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    set_local_plan_cache_mode(conn, "force_generic_plan").await
}

/// Undoes [`plan_for_values`] or [`plan_generic`] for the rest of the transaction on
/// `conn`: the statements after it use Postgres's plan cache choice again (the
/// connection's setting). For a transaction that plans one read its own way and then
/// does other work (the timers follower).
pub async fn plan_as_usual(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    set_local_plan_cache_mode(conn, "DEFAULT").await
}

/// A transaction whose statements are planned for their values ([`plan_for_values`]):
/// for a read over a time window or with optional filters, which the caller commits.
pub async fn begin_planned(
    pool: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
    let mut tx = pool.begin().await?;
    plan_for_values(&mut tx).await?;
    Ok(tx)
}

/// The product's migrations, embedded at compile time from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// The channel that carries every case change (payload: JSON with case_id, version, state and at, when the state was entered),
/// for live status streams and dashboards. Its `wake` field lists the channels whose workers
/// the change gives work (the new state's work channel, the outbox channels of the messages
/// written with it): worker processes route on it (`service_runtime::wake`), so a change is
/// one notification.
pub const CASE_CHANGED_CHANNEL: &str = "case_changed";

#[cfg(test)]
mod rounds_tests {
    use super::rounds;

    #[test]
    fn items_of_one_key_go_in_successive_rounds_in_order() {
        let items = ["a", "b", "a", "c", "a", "b"];
        assert_eq!(
            rounds(&items, |s| *s),
            vec![vec![0, 1, 3], vec![2, 5], vec![4]]
        );
    }

    #[test]
    fn distinct_keys_make_one_round_and_nothing_makes_none() {
        assert_eq!(rounds(&[1, 2, 3], |n| *n), vec![vec![0, 1, 2]]);
        assert!(rounds(&[] as &[u8], |n| *n).is_empty());
    }
}

//! `--history N`: finished cases written straight into the product's database before
//! anything is measured, so the figures show how the product behaves with a year of
//! past cases behind it rather than on an empty database.
//!
//! Each batch is one `INSERT … SELECT … FROM generate_series` statement (data-modifying
//! CTEs) that writes, per case, the `reactivation_cases` row, its `case_identities` row
//! (ciphertext-sized byte strings), its `case_events` rows, and for a reactivated case
//! its `risk_assessments` and `provisioning_orders` rows. The tables stay logged, as in
//! production. Afterwards `VACUUM (ANALYZE)` gives the planner and the visibility map
//! the state autovacuum would have reached. Each batch also moves the timers service's
//! follower past the events it wrote, as if the history had been followed as it
//! happened (otherwise the follower would plan messages and timers for a year of old
//! cases before reaching the measured ones).
//!
//! The shape of the history:
//! - **Outcomes:** 85 % reactivated (opened, proofs accepted, risk cleared, restored), 10 %
//!   cancelled by the customer, 5 % expired. None is open, so no seeded case stands in
//!   the way of a new one.
//! - **Numbers:** `+8613…` (the bench's measured cases use other blocks). Four cases in
//!   five have a number of their own; the fifth goes to one of `N / 10` numbers picked
//!   by a multiplicative hash, so those numbers collect several old cases each (up to
//!   about ten).
//! - **Times:** opened at some second of the past year (spread by a hash), finished
//!   minutes (or, expired, three days) later; ids are time-ordered like the product's
//!   UUIDv7s.

use std::time::{Duration, Instant};

use sqlx::PgPool;

/// Cases per statement.
pub const BATCH: u64 = 50_000;

/// One batch of history: cases `$1 ≤ g < $2` of a history whose shared-number pool has
/// `$3` numbers; `$4` is a salt that keeps token hashes distinct between seedings.
const SEED_BATCH: &str = r#"
WITH src AS (
    SELECT g,
           '+8613' || lpad((CASE WHEN g % 5 = 0 THEN (g * 2654435761) % $3 ELSE g END)::text, 9, '0') AS msisdn,
           now() - interval '1 day'
                 - make_interval(secs => ((g * 7919) % 31536000)::float8) AS opened_at,
           (CASE WHEN g % 20 < 17 THEN 'reactivated'
                 WHEN g % 20 < 19 THEN 'cancelled'
                 ELSE 'expired' END)::case_state AS state
    FROM generate_series($1::bigint, $2::bigint - 1) AS g
),
timed AS (
    SELECT src.*,
           opened_at + CASE state WHEN 'reactivated' THEN interval '123 seconds'
                                  WHEN 'cancelled' THEN interval '5 minutes'
                                  ELSE interval '72 hours' END AS closed_at,
           (lpad(to_hex((extract(epoch FROM opened_at) * 1000)::bigint), 12, '0') || '7'
               || substr(md5($4 || ':' || g), 1, 19))::uuid AS id
    FROM src
),
cases AS (
    INSERT INTO reactivation_cases
        (id, msisdn, state, version, channel, locale, token_hash,
         created_at, updated_at, state_entered_at, identity_proven_at)
    SELECT id, msisdn, state, CASE state WHEN 'reactivated' THEN 4 ELSE 2 END,
           (ARRAY['app', 'web', 'hotline', 'store'])[1 + g % 4],
           CASE WHEN g % 3 = 0 THEN 'en' ELSE 'zh-CN' END,
           sha256(convert_to($4 || ':token:' || g, 'UTF8')),
           opened_at, closed_at, closed_at,
           CASE WHEN state = 'reactivated' THEN opened_at + interval '120 seconds' END
    FROM timed
    RETURNING id, state, created_at
),
identities AS (
    INSERT INTO case_identities
        (case_id, full_name_enc, id_number_enc, full_name_masked, id_number_last4,
         subscriber_match, match_checked_at, verified_method, verified_at)
    SELECT id,
           sha256(uuid_send(id)) || substr(sha256(uuid_send(id)), 1, 5),
           sha256(uuid_send(id) || '\x01'::bytea) || substr(sha256(uuid_send(id)), 1, 14),
           '王**', lpad((abs(hashtext(id::text)) % 10000)::text, 4, '0'),
           true, created_at + interval '1 second',
           CASE WHEN state = 'reactivated' THEN 'otp' END,
           CASE WHEN state = 'reactivated' THEN created_at + interval '120 seconds' END
    FROM cases
),
events AS (
    INSERT INTO case_events
        (id, case_id, version, from_state, to_state, event, actor_role, actor_id, at,
         from_state_since)
    SELECT (substr(replace(c.id::text, '-', ''), 1, 24) || lpad(to_hex(v.version), 8, '0'))::uuid,
           c.id, v.version, v.from_state::case_state, v.to_state::case_state,
           v.event::case_event, v.role::actor_role, v.actor, c.created_at + v.after,
           c.created_at + v.entered
    FROM cases c
    JOIN (VALUES
        ('reactivated', 1, NULL, 'awaiting_identity', 'opened', 'customer', 'subscriber', interval '0', NULL),
        ('reactivated', 2, 'awaiting_identity', 'risk_assessment', 'proofs_accepted', 'system', 'identity-verification', interval '120 seconds', interval '0'),
        ('reactivated', 3, 'risk_assessment', 'provisioning', 'risk_cleared', 'system', 'risk-assessment', interval '121 seconds', interval '120 seconds'),
        ('reactivated', 4, 'provisioning', 'reactivated', 'restored', 'system', 'provisioning', interval '123 seconds', interval '121 seconds'),
        ('cancelled', 1, NULL, 'awaiting_identity', 'opened', 'customer', 'subscriber', interval '0', NULL),
        ('cancelled', 2, 'awaiting_identity', 'cancelled', 'cancelled', 'customer', 'subscriber', interval '5 minutes', interval '0'),
        ('expired', 1, NULL, 'awaiting_identity', 'opened', 'customer', 'subscriber', interval '0', NULL),
        ('expired', 2, 'awaiting_identity', 'expired', 'expired', 'system', 'timers', interval '72 hours', interval '0')
    ) AS v (state, version, from_state, to_state, event, role, actor, after, entered)
      ON v.state = c.state::text
),
risk AS (
    INSERT INTO risk_assessments (id, case_id, tier, reason_codes, needs, signals, assessed_at)
    SELECT (substr(replace(id::text, '-', ''), 1, 24) || 'a0000001')::uuid, id, 'low',
           '{}', '{}',
           '{"fraud_linked_contacts": 0, "sms_peak_per_hour": 0, "intl_calls_24h": 0,
             "suspension_reason": null, "flagged_contacts": []}'::jsonb,
           created_at + interval '121 seconds'
    FROM cases WHERE state = 'reactivated'
),
orders AS (
    INSERT INTO provisioning_orders (id, case_id, restoration, state, carrier_ref, created_at, updated_at)
    SELECT (substr(replace(id::text, '-', ''), 1, 24) || 'b0000001')::uuid, id, 'full', 'completed',
           'SO-' || substr(md5(id::text), 1, 12), created_at + interval '121 seconds',
           created_at + interval '123 seconds'
    FROM cases WHERE state = 'reactivated'
)
SELECT count(*) FROM cases"#;

/// Size of the shared-number pool for a history of `total` cases.
pub fn shared_numbers(total: u64) -> u64 {
    (total / 10).max(1)
}

/// The batches `[from, to)` that seed cases `from..to`, [`BATCH`] at a time.
pub fn batches(from: u64, to: u64) -> Vec<(u64, u64)> {
    (from..to)
        .step_by(usize::try_from(BATCH).unwrap_or(usize::MAX))
        .map(|lo| (lo, (lo + BATCH).min(to)))
        .collect()
}

/// The timers service's follower of the event log (`case_timers::follow::CONSUMER`).
const CONSUMER: &str = "case-timers";

/// Moves the follower's cursor past the events this transaction wrote: a year of
/// history was followed as it happened (its messages sent, its timers fired), so the
/// follower must not plan messages and timers for it now. Run in the batch's
/// transaction, while nothing else writes events (the bench seeds between figures,
/// after the follower caught up).
const FOLLOWED: &str = r#"
INSERT INTO event_cursors AS c (consumer, tx_id, seq)
SELECT $1, e.tx_id, max(e.seq)
FROM case_events e
WHERE e.tx_id = pg_current_xact_id()::text::bigint
GROUP BY e.tx_id
ON CONFLICT (consumer) DO UPDATE SET tx_id = EXCLUDED.tx_id, seq = EXCLUDED.seq, updated_at = now()
WHERE (c.tx_id, c.seq) < (EXCLUDED.tx_id, EXCLUDED.seq)
"#;

/// What a seeding did.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Cases written.
    pub cases: u64,
    /// Time spent writing them.
    pub insert_time: Duration,
    /// Time spent in `VACUUM (ANALYZE)` afterwards.
    pub vacuum_time: Duration,
}

/// Writes finished cases `from..to` of a history that will have `total` cases (the pool
/// of shared numbers is sized on `total`), printing progress per batch to stderr.
/// `salt` keeps token hashes and ids distinct from any earlier seeding of the database.
pub async fn seed(
    pool: &PgPool,
    from: u64,
    to: u64,
    total: u64,
    salt: &str,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    // The monthly partitions of the past year (the timers service creates them ahead
    // in production), so the seeded events do not all land in the DEFAULT partition.
    sqlx::query("SELECT history_ensure_partitions((now() - interval '367 days')::date, 14)")
        .execute(pool)
        .await?;
    let mut cases = 0u64;
    for (lo, hi) in batches(from, to) {
        let mut tx = pool.begin().await?;
        let written: i64 = sqlx::query_scalar(SEED_BATCH)
            .bind(i64::try_from(lo)?)
            .bind(i64::try_from(hi)?)
            .bind(i64::try_from(shared_numbers(total))?)
            .bind(salt)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(FOLLOWED)
            .bind(CONSUMER)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        cases += u64::try_from(written)?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "  history: {hi}/{to} cases ({:.0} cases/s)",
            cases as f64 / secs.max(1e-9)
        );
    }
    let insert_time = started.elapsed();
    let vacuum_started = Instant::now();
    for table in [
        "reactivation_cases",
        "case_identities",
        "case_events",
        "risk_assessments",
        "provisioning_orders",
    ] {
        sqlx::query(&format!("VACUUM (ANALYZE) {table}"))
            .execute(pool)
            .await?;
    }
    Ok(Seeded {
        cases,
        insert_time,
        vacuum_time: vacuum_started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_the_range_once() {
        assert_eq!(batches(0, 0), []);
        assert_eq!(batches(0, 10), [(0, 10)]);
        let b = batches(10_000, 1_000_000);
        assert_eq!(b.first(), Some(&(10_000, 60_000)));
        assert_eq!(b.last(), Some(&(960_000, 1_000_000)));
        assert!(b.windows(2).all(|w| w[0].1 == w[1].0));
        assert_eq!(shared_numbers(1_000_000), 100_000);
        assert_eq!(shared_numbers(3), 1);
    }

    #[sqlx::test(migrator = "case_store::MIGRATOR")]
    async fn seeded_history_is_finished_varied_and_consistent(pool: PgPool) {
        let first = seed(&pool, 0, 3_000, 5_000, "a").await.unwrap();
        let rest = seed(&pool, 3_000, 5_000, 5_000, "a").await.unwrap();
        assert_eq!(first.cases + rest.cases, 5_000);

        let (cases, numbers, open): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT msisdn),
                    count(*) FILTER (WHERE state NOT IN ('reactivated', 'cancelled', 'expired'))
             FROM reactivation_cases",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((cases, open), (5_000, 0));
        // Most numbers are distinct, and some carry several old cases.
        assert!(numbers > 4_000 && numbers < 5_000, "{numbers}");
        let most: i64 = sqlx::query_scalar(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM reactivation_cases GROUP BY msisdn) t",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(most >= 3, "{most}");

        // Every case has its identity row, and its log ends in its state at its version.
        let inconsistent: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM reactivation_cases c
             LEFT JOIN case_identities i ON i.case_id = c.id
             LEFT JOIN case_events e ON e.case_id = c.id AND e.version = c.version
             WHERE i.case_id IS NULL OR e.to_state IS DISTINCT FROM c.state",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(inconsistent, 0);
        let (events, reactivated, orders): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM case_events),
                    (SELECT count(*) FROM reactivation_cases WHERE state = 'reactivated'),
                    (SELECT count(*) FROM provisioning_orders WHERE state = 'completed')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(reactivated, 4_250);
        assert_eq!(events, 4 * 4_250 + 2 * 750);
        assert_eq!(orders, reactivated);

        // A second seeding with another salt adds to it (distinct ids and token hashes).
        seed(&pool, 0, 100, 100, "b").await.unwrap();
        let all: i64 = sqlx::query_scalar("SELECT count(*) FROM reactivation_cases")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(all, 5_100);
    }
}

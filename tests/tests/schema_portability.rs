//! Keeps the schema ready for sharding the case data on Citus (docs/scaling.md,
//! "Sharding on Citus"): on a distributed table a trigger runs on the worker node that
//! holds the shard, so a `pg_notify` in it wakes listeners of that worker, not of the
//! coordinator the services listen on. Wake-ups are therefore sent by the application
//! (`case_store`), and a trigger function may call `pg_notify` only when it is listed
//! below with the reason it is there and what replaces it before sharding.
//!
//! The check reads the catalog of a database with every migration applied, so it sees
//! what the migrations really created (including functions replaced by later ones).

use std::collections::BTreeMap;

use sqlx::PgPool;

/// Trigger functions allowed to call `pg_notify`: (function, why and what to do before
/// the table it fires on is distributed).
/// Empty: the last one, `feed_case_event_to_webhooks`, no longer notifies (the
/// transition's one `case_changed` notification wakes the webhook fan-out).
const NOTIFYING_TRIGGERS_ALLOWED: &[(&str, &str)] = &[];

/// Every function in the `public` schema that a trigger executes, with whether its
/// source calls `pg_notify`, and the tables it fires on.
async fn trigger_functions(pool: &PgPool) -> BTreeMap<String, (bool, Vec<String>)> {
    let rows: Vec<(String, bool, String)> = sqlx::query_as(
        "SELECT p.proname::text,
                p.prosrc ~* '\\mpg_notify\\s*\\(' OR p.prosrc ~* '\\mNOTIFY\\M',
                t.tgrelid::regclass::text
           FROM pg_trigger t
           JOIN pg_proc p ON p.oid = t.tgfoid
           JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE NOT t.tgisinternal AND n.nspname = 'public'
          ORDER BY 1, 3",
    )
    .fetch_all(pool)
    .await
    .expect("read pg_trigger and pg_proc");
    let mut functions: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
    for (function, notifies, table) in rows {
        let entry = functions.entry(function).or_default();
        entry.0 |= notifies;
        entry.1.push(table);
    }
    functions
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn no_trigger_outside_the_allow_list_calls_pg_notify(pool: PgPool) {
    let functions = trigger_functions(&pool).await;
    // The catalog query sees the triggers at all: the append-only guards exist.
    assert!(
        functions.contains_key("refuse_change"),
        "the append-only triggers were not found; is the catalog query right? {functions:?}"
    );

    let notifying: Vec<(&String, &Vec<String>)> = functions
        .iter()
        .filter(|(_, (notifies, _))| *notifies)
        .map(|(name, (_, tables))| (name, tables))
        .collect();
    let unexpected: Vec<String> = notifying
        .iter()
        .filter(|(name, _)| {
            !NOTIFYING_TRIGGERS_ALLOWED
                .iter()
                .any(|(allowed, _)| allowed == name)
        })
        .map(|(name, tables)| format!("{name} (on {})", tables.join(", ")))
        .collect();
    assert!(
        unexpected.is_empty(),
        "trigger functions calling pg_notify outside the allow-list: {}. On Citus a trigger \
         runs on the worker holding the shard, so its NOTIFY never reaches the services; \
         send the wake-up from case_store in the same transaction instead (docs/scaling.md, \
         \"Sharding on Citus\"), or add it to NOTIFYING_TRIGGERS_ALLOWED with the reason",
        unexpected.join("; ")
    );

    // Every allow-list entry still exists and still notifies: a stale entry would let a
    // new function of the same name in unreviewed.
    for (allowed, reason) in NOTIFYING_TRIGGERS_ALLOWED {
        assert!(!reason.is_empty());
        assert!(
            notifying.iter().any(|(name, _)| name == allowed),
            "{allowed} is on the allow-list but no trigger runs it or it no longer calls \
             pg_notify: remove it from NOTIFYING_TRIGGERS_ALLOWED"
        );
    }
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn the_check_sees_a_trigger_that_notifies(pool: PgPool) {
    // A trigger added the wrong way is caught: the detector is not blind.
    sqlx::raw_sql(
        "CREATE FUNCTION wake_someone() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_notify('case_changed', NEW.id::text); RETURN NULL; END; $$;
         CREATE TRIGGER reactivation_cases_wake AFTER UPDATE ON reactivation_cases
             FOR EACH ROW EXECUTE FUNCTION wake_someone();
         CREATE FUNCTION wake_by_statement() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NOTIFY case_changed; RETURN NULL; END; $$;
         CREATE TRIGGER outbox_wake AFTER INSERT ON outbox
             FOR EACH STATEMENT EXECUTE FUNCTION wake_by_statement();",
    )
    .execute(&pool)
    .await
    .expect("create the notifying triggers");
    let functions = trigger_functions(&pool).await;
    assert_eq!(
        functions.get("wake_someone"),
        Some(&(true, vec!["reactivation_cases".to_owned()]))
    );
    assert_eq!(
        functions.get("wake_by_statement"),
        Some(&(true, vec!["outbox".to_owned()]))
    );
    assert_eq!(
        functions
            .get("refuse_change")
            .map(|(notifies, _)| *notifies),
        Some(false)
    );
}

//! `reactivation keys rotate`: moves every sealed value to the current master secret
//! (the first of `REACTIVATION_SECRET_KEYS`), in batches, with progress. Safe to stop
//! and run again; the services keep reading throughout (they know every listed key).

use data_protection::Keys;
use service_runtime::Settings;
use uuid::Uuid;

/// Rotates, printing progress; fails when a value opens under no configured key.
pub async fn rotate(settings: &Settings, batch: i64) -> anyhow::Result<()> {
    let variable = settings.secret_key_variable;
    let current = settings.require_secret_key()?;
    crate::checks::check_settings(crate::Service::Webhooks, settings)?;
    let keys = Keys::from_list(current, &settings.old_secret_keys)
        .map_err(|e| anyhow::anyhow!("{variable}: {e}"))?;
    let pool = service_runtime::db::connect(settings.require_database_url()?, 2).await?;
    let ids: Vec<String> = keys.ids().iter().map(ToString::to_string).collect();
    println!(
        "current key {}; old keys: {}",
        ids[0],
        if ids.len() > 1 {
            ids[1..].join(" ")
        } else {
            "none".into()
        }
    );
    let reseal = |sealed: &[u8], row: &Uuid| keys.reseal(sealed, row).map_err(|e| e.to_string());
    let done =
        case_store::key_rotation::rotate(&pool, &keys.current_prefix(), &reseal, batch, |p| {
            println!(
                "{}: {}/{} moved, {} unreadable",
                p.place, p.moved, p.to_do, p.unreadable
            )
        })
        .await?;
    let unreadable: i64 = done.iter().map(|p| p.unreadable).sum();
    for p in &done {
        println!(
            "{}: done, {} moved, {} unreadable",
            p.place, p.moved, p.unreadable
        );
    }
    if unreadable > 0 {
        anyhow::bail!(
            "{unreadable} values open under no key of {variable} and were left as they are (logged by row id); find their key before removing any"
        );
    }
    println!(
        "every value is under key {}; the old keys can now be removed from {variable}",
        ids[0]
    );
    Ok(())
}

//! `reactivation retention run [--dry-run]`: deletes the personal data of finished
//! cases past their retention periods (`REACTIVATION_RETENTION_*_DAYS`), in batches,
//! with progress; and `reactivation keys envelope`: gives cases opened before data
//! keys existed a data key of their own. Both are resumable and idempotent.

use case_domain::{Actor, retention::RetentionPolicy};
use case_workflows::retention::{self, RunOptions};
use data_protection::Keys;
use service_runtime::Settings;

/// Who the audit log names for deletions made by this command.
pub const ACTOR: &str = "retention-cli";

/// Runs retention to the end (or counts, dry); prints one line per kind.
pub async fn run(settings: &Settings, dry_run: bool, batch: i64) -> anyhow::Result<()> {
    let policy = RetentionPolicy::from_lookup(|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pool = service_runtime::db::connect(settings.require_database_url()?, 2).await?;
    let now = chrono::Utc::now();
    let options = RunOptions {
        dry_run,
        batch,
        ..RunOptions::default()
    };
    let reports = retention::run(&pool, &policy, now, options, &Actor::system(ACTOR), |r| {
        println!(
            "{}: {}/{} cases done",
            r.kind.as_str(),
            r.cases,
            r.due.cases
        )
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut busy = false;
    for r in &reports {
        let cutoff = r.cutoff.format("%Y-%m-%dT%H:%M:%SZ");
        if dry_run {
            println!(
                "{}: {} cases ended before {cutoff} are due, holding {} rows (dry run: nothing deleted)",
                r.kind.as_str(),
                r.due.cases,
                r.due.rows
            );
        } else if r.busy {
            busy = true;
            println!(
                "{}: another retention run holds this kind; left to it",
                r.kind.as_str()
            );
        } else {
            println!(
                "{}: {} cases ended before {cutoff} done, {} rows deleted",
                r.kind.as_str(),
                r.cases,
                r.rows
            );
        }
    }
    if busy {
        println!("some kinds were being handled by another run; run again to finish them");
    }
    Ok(())
}

/// Gives every case without a data key one, printing progress; fails when some
/// identity opens under no configured master secret.
pub async fn envelope(settings: &Settings, batch: i64) -> anyhow::Result<()> {
    let variable = settings.secret_key_variable;
    let current = settings.require_secret_key()?;
    let keys = Keys::from_list(current, &settings.old_secret_keys)
        .map_err(|e| anyhow::anyhow!("{variable}: {e}"))?;
    let pool = service_runtime::db::connect(settings.require_database_url()?, 2).await?;
    let done = retention::backfill_data_keys(&pool, &keys, batch, |p| {
        println!(
            "case_data_keys: {}/{} moved, {} unreadable",
            p.moved, p.to_do, p.unreadable
        )
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "case_data_keys: done, {} moved, {} unreadable",
        done.moved, done.unreadable
    );
    if done.unreadable > 0 {
        anyhow::bail!(
            "{} identities open under no key of {variable} and were left as they are (logged by case id)",
            done.unreadable
        );
    }
    Ok(())
}

/// `reactivation keys envelope --material`: seals the evidence files, explanations
/// and appeal statements stored in clear before material keys existed, printing
/// progress.
pub async fn seal_material(settings: &Settings, batch: i64) -> anyhow::Result<()> {
    let variable = settings.secret_key_variable;
    let current = settings.require_secret_key()?;
    let keys = Keys::from_list(current, &settings.old_secret_keys)
        .map_err(|e| anyhow::anyhow!("{variable}: {e}"))?;
    let pool = service_runtime::db::connect(settings.require_database_url()?, 2).await?;
    let done = case_workflows::material::seal_clear_material(&pool, &keys, batch, |p| {
        println!(
            "material: {} cases, {} evidence files, {} explanations, {} appeals sealed",
            p.cases, p.evidence, p.explanations, p.appeals
        )
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "material: done, {} cases, {} evidence files, {} explanations, {} appeals sealed",
        done.cases, done.evidence, done.explanations, done.appeals
    );
    Ok(())
}

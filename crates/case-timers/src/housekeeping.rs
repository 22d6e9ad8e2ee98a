//! Housekeeping of the timers service: the monthly partitions of the history are
//! created ahead, and finished operational rows are pruned after their retention.
//!
//! One pass ([`pass`]) at start and then every [`HousekeepingConfig::every`]:
//! 1. `history_ensure_partitions` from the current month for
//!    [`HousekeepingConfig::months_ahead`] months (nothing to do most of the time);
//! 2. for each [`Prunable`] kind, batches of [`HousekeepingConfig::batch`] rows (each
//!    its own transaction, `FOR UPDATE SKIP LOCKED`, so two services share the work)
//!    until a batch comes back short or [`MAX_BATCHES`] batches ran.
//!
//! `/metrics`: `history_partitions_created_total`, `pruned_rows_total{table}`,
//! `housekeeping_passes_total{outcome}` and `housekeeping_last_pass_timestamp_seconds`.

use std::time::Duration;

use case_domain::sla::SlaConfigError;
use case_store::prune::{Prunable, prune_batch};
use chrono::{DateTime, Utc};
use service_runtime::Shutdown;
use sqlx::PgPool;

/// Batches of one kind per pass at most, so a large backlog cannot hold a pass for
/// long (the next pass goes on).
pub const MAX_BATCHES: u32 = 100;

/// `REACTIVATION_HOUSEKEEPING_EVERY_MINUTES`: minutes between passes (default 60).
pub const EVERY_VARIABLE: &str = "REACTIVATION_HOUSEKEEPING_EVERY_MINUTES";
/// `REACTIVATION_PRUNE_BATCH`: rows deleted per transaction (default 1000).
pub const BATCH_VARIABLE: &str = "REACTIVATION_PRUNE_BATCH";
/// `REACTIVATION_HISTORY_MONTHS_AHEAD`: monthly partitions kept ready from the current
/// month on (default 3).
pub const MONTHS_AHEAD_VARIABLE: &str = "REACTIVATION_HISTORY_MONTHS_AHEAD";

/// Retention per kind: (kind, variable, default days).
pub const RETENTION: [(Prunable, &str, u32); 5] = [
    (
        Prunable::DeliveredOutbox,
        "REACTIVATION_PRUNE_OUTBOX_DAYS",
        30,
    ),
    (Prunable::FiredTimers, "REACTIVATION_PRUNE_TIMERS_DAYS", 30),
    (
        Prunable::EndedSessions,
        "REACTIVATION_PRUNE_SESSIONS_DAYS",
        30,
    ),
    (
        Prunable::FinishedDeliveries,
        "REACTIVATION_PRUNE_WEBHOOK_DELIVERIES_DAYS",
        30,
    ),
    (
        Prunable::ProcessedCarrierWebhooks,
        "REACTIVATION_PRUNE_CARRIER_WEBHOOKS_DAYS",
        90,
    ),
];

/// Housekeeping settings, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HousekeepingConfig {
    /// Time between passes.
    pub every: Duration,
    /// Rows per pruning transaction.
    pub batch: i64,
    /// Monthly partitions kept ready (the current month included).
    pub months_ahead: i32,
    /// Retention in days per kind.
    pub retention: Vec<(Prunable, u32)>,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(3600),
            batch: 1000,
            months_ahead: 3,
            retention: RETENTION.iter().map(|(k, _, d)| (*k, *d)).collect(),
        }
    }
}

impl HousekeepingConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SlaConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup`. Errors name the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SlaConfigError> {
        let number = |name: &str, default: u32, min: u32, max: u32| match lookup(name)
            .map(|v| v.trim().to_owned())
        {
            None => Ok(default),
            Some(v) if v.is_empty() => Ok(default),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(SlaConfigError {
                    variable: name.into(),
                    problem: format!("must be a whole number from {min} to {max}, got `{v}`"),
                }),
            },
        };
        let mut retention = vec![];
        for (kind, variable, default) in RETENTION {
            retention.push((kind, number(variable, default, 1, 3650)?));
        }
        Ok(Self {
            every: Duration::from_secs(u64::from(number(EVERY_VARIABLE, 60, 1, 1440)?) * 60),
            batch: i64::from(number(BATCH_VARIABLE, 1000, 1, 100_000)?),
            months_ahead: i32::try_from(number(MONTHS_AHEAD_VARIABLE, 3, 2, 24)?).unwrap_or(3),
            retention,
        })
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Partitions created.
    pub partitions_created: i32,
    /// Rows deleted per table.
    pub pruned: Vec<(&'static str, u64)>,
}

/// One housekeeping pass at `now`.
pub async fn pass(
    pool: &PgPool,
    config: &HousekeepingConfig,
    now: DateTime<Utc>,
) -> anyhow::Result<PassReport> {
    let partitions_created =
        case_store::history::ensure_partitions(pool, now.date_naive(), config.months_ahead).await?;
    if partitions_created > 0 {
        metrics::counter!("history_partitions_created_total").increment(partitions_created as u64);
        tracing::info!(
            partitions = partitions_created,
            "created history partitions ahead"
        );
    }
    let mut pruned = vec![];
    for (kind, days) in &config.retention {
        let cutoff = now - chrono::Duration::days(i64::from(*days));
        let mut total = 0u64;
        for _ in 0..MAX_BATCHES {
            let n = prune_batch(pool, *kind, cutoff, config.batch).await?;
            total += n;
            if n > 0 {
                metrics::counter!("pruned_rows_total", "table" => kind.table()).increment(n);
            }
            if (n as i64) < config.batch {
                break;
            }
        }
        if total > 0 {
            tracing::info!(table = kind.table(), rows = total, "pruned past retention");
        }
        pruned.push((kind.table(), total));
    }
    Ok(PassReport {
        partitions_created,
        pruned,
    })
}

/// Runs a pass at start and then every `config.every` until shutdown. A failed pass is
/// logged and counted; the next one tries again.
pub async fn run(
    pool: PgPool,
    config: HousekeepingConfig,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    loop {
        let outcome = match pass(&pool, &config, Utc::now()).await {
            Ok(_) => "ok",
            Err(e) => {
                tracing::warn!(error = %e, "housekeeping pass failed");
                "error"
            }
        };
        metrics::counter!("housekeeping_passes_total", "outcome" => outcome).increment(1);
        metrics::gauge!("housekeeping_last_pass_timestamp_seconds")
            .set(Utc::now().timestamp() as f64);
        tokio::select! {
            () = shutdown.wait() => return Ok(()),
            () = tokio::time::sleep(config.every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<HousekeepingConfig, SlaConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HousekeepingConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(config(&[]).unwrap(), HousekeepingConfig::default());
        let c = config(&[
            ("REACTIVATION_PRUNE_OUTBOX_DAYS", "7"),
            ("REACTIVATION_PRUNE_BATCH", "50"),
            ("REACTIVATION_HOUSEKEEPING_EVERY_MINUTES", "5"),
            ("REACTIVATION_HISTORY_MONTHS_AHEAD", "6"),
        ])
        .unwrap();
        assert_eq!(c.batch, 50);
        assert_eq!(c.every, Duration::from_secs(300));
        assert_eq!(c.months_ahead, 6);
        assert_eq!(c.retention[0], (Prunable::DeliveredOutbox, 7));
        assert_eq!(c.retention[4], (Prunable::ProcessedCarrierWebhooks, 90));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("REACTIVATION_PRUNE_SESSIONS_DAYS", "0"),
            ("REACTIVATION_PRUNE_BATCH", "lots"),
            ("REACTIVATION_HISTORY_MONTHS_AHEAD", "1"),
            ("REACTIVATION_HOUSEKEEPING_EVERY_MINUTES", "-5"),
        ] {
            assert_eq!(config(&[(name, value)]).unwrap_err().variable, name);
        }
    }
}

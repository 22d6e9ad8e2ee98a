//! `reactivation history …` and `reactivation audit verify`: the partitioned history
//! (list, detach old months after checkpointing the audit chain) and verification of
//! the audit chain from its anchor.

use case_store::{
    audit::ChainReport,
    history::{self, HistoryError},
};
use clap::Subcommand;
use service_runtime::Settings;

use crate::CLI_ACTOR;

#[derive(Debug, Subcommand)]
pub(crate) enum HistoryCommand {
    /// Lists the attached monthly partitions of case_events and audit_log, and the
    /// audit checkpoints.
    Partitions,
    /// Verifies the audit rows of every month before --before, records their checkpoint
    /// (last seq and hash, attested by a history.detach audit row), then detaches those
    /// months' partitions of case_events and audit_log into the schema history_archive
    /// (to be dumped with pg_dump and dropped). One transaction; refuses and changes
    /// nothing when the chain of the range is broken.
    Detach {
        /// The first month kept attached, as YYYY-MM (every earlier month is detached);
        /// at most the current month.
        #[arg(long, value_parser = parse_month)]
        before: chrono::NaiveDate,
    },
}

/// `YYYY-MM` as the first day of that month.
fn parse_month(text: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(&format!("{}-01", text.trim()), "%Y-%m-%d")
        .ok()
        .filter(|_| text.trim().len() == 7)
        .ok_or_else(|| format!("expected a month as YYYY-MM, got `{text}`"))
}

fn cli_error(e: HistoryError) -> anyhow::Error {
    match e {
        HistoryError::Refused(why) => anyhow::anyhow!("{why}"),
        HistoryError::Store(e) => anyhow::Error::new(e),
    }
}

pub(crate) async fn run(settings: &Settings, command: HistoryCommand) -> anyhow::Result<()> {
    let pool = service_runtime::db::connect(settings.require_database_url()?, 2).await?;
    match command {
        HistoryCommand::Partitions => {
            for p in history::partitions(&pool).await? {
                let month = p
                    .month
                    .map_or_else(|| "DEFAULT".to_owned(), |m| m.format("%Y-%m").to_string());
                println!("{}\t{month}\thistory.{}", p.table, p.name);
            }
            for c in history::checkpoints(&pool).await? {
                println!(
                    "checkpoint {}\tseq {}\tbefore {}\t{} rows\tattested by seq {}",
                    c.id,
                    c.seq,
                    c.before.format("%Y-%m-%d"),
                    c.rows,
                    c.attested_by
                );
            }
            Ok(())
        }
        HistoryCommand::Detach { before } => {
            let actor = case_domain::Actor::system(CLI_ACTOR);
            let today = chrono::Utc::now().date_naive();
            let done = history::detach_before(&pool, before, today, &actor)
                .await
                .map_err(cli_error)?;
            match &done.checkpoint {
                Some(c) => println!(
                    "checkpoint {} recorded: audit rows up to seq {} ({} verified), attested by seq {}",
                    c.id, c.seq, c.rows, c.attested_by
                ),
                None => println!(
                    "no audit row before {}: no checkpoint needed",
                    before.format("%Y-%m")
                ),
            }
            for name in &done.partitions {
                println!("detached history_archive.{name}");
            }
            Ok(())
        }
    }
}

/// `audit verify [--from-checkpoint N]`.
pub(crate) async fn verify_audit(
    settings: &Settings,
    from_checkpoint: Option<i64>,
) -> anyhow::Result<()> {
    let pool = service_runtime::db::connect(settings.require_database_url()?, 2).await?;
    let mut conn = pool.acquire().await?;
    let verification = history::verify(&mut conn, from_checkpoint)
        .await
        .map_err(cli_error)?;
    let from = verification.anchor.as_ref().map_or_else(
        || "from the first row".to_owned(),
        |c| format!("from checkpoint {} (seq {})", c.id, c.seq),
    );
    match verification.report {
        ChainReport::Intact(rows) => {
            println!("audit chain intact: {rows} rows {from}");
            Ok(())
        }
        ChainReport::Broken { seq, problem } => {
            anyhow::bail!("audit chain broken at row seq={seq} ({from}): {problem}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_strictly() {
        assert_eq!(
            parse_month("2025-01"),
            Ok(chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap())
        );
        for bad in ["2025-1", "2025-13", "January", "2025-01-01", ""] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
    }
}

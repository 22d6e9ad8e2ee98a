//! Supervisors tune the risk rules: read the current thresholds and their history,
//! replay recent assessed cases under a proposal (nothing changes), and make the
//! proposal the next version (audited: who, old and new thresholds, why).
//!
//! Each checks the role first (`Forbidden`), then the input (`Invalid`, every
//! problem at once), then, for a change, that it is based on the current version
//! (`Refused` with code `rules_changed`). Nothing changes when any check fails.

use case_domain::{
    Role,
    agent_policy::SUPERVISORS,
    risk_rules::{ReplayReport, RiskThresholds},
    supervision,
};
use case_store::{
    audit::{self, AuditEntry},
    risk_rules::{self as store, Activation, RuleVersionRow},
};
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

use crate::{FieldError, WorkflowError, agent::Agent};

/// How many versions the history shows.
pub const HISTORY_LIMIT: i64 = 200;

/// How far back a replay may look, in days.
pub const REPLAY_DAYS: std::ops::RangeInclusive<u32> = 1..=90;

/// The versions of the rules, newest first: the first is the current one.
pub async fn versions(pool: &PgPool, agent: &Agent) -> Result<Vec<RuleVersionRow>, WorkflowError> {
    agent.require_any(SUPERVISORS)?;
    Ok(store::versions(pool, HISTORY_LIMIT).await?)
}

fn threshold_errors(thresholds: &RiskThresholds) -> Vec<FieldError> {
    thresholds
        .problems()
        .iter()
        .map(|p| FieldError::new(p.field(), p.to_string()))
        .collect()
}

/// A version made by a supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    /// Its number (current now).
    pub version: i32,
    /// The version it replaced.
    pub based_on: i32,
    /// Its thresholds.
    pub thresholds: RiskThresholds,
    /// The replaced version's thresholds.
    pub previous: RiskThresholds,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A supervisor makes `thresholds` the next version of the rules, based on version
/// `based_on`, which must be the current one (of two supervisors racing from the
/// same version, exactly one succeeds; the other gets `rules_changed`). Audited as
/// `risk_rules.change` with the old and new thresholds and the reason, in the same
/// transaction.
pub async fn change(
    pool: &PgPool,
    agent: &Agent,
    based_on: i32,
    thresholds: RiskThresholds,
    reason: &str,
) -> Result<NewVersion, WorkflowError> {
    agent.require_any(SUPERVISORS)?;
    let reason = reason.trim();
    let mut errors = Vec::new();
    if based_on < 1 {
        errors.push(FieldError::new(
            "based_on",
            "the version the change is based on (1 or more)",
        ));
    }
    errors.extend(threshold_errors(&thresholds));
    if !supervision::reason_ok(reason) {
        errors.push(FieldError::new("reason", "say why, in 5 to 500 characters"));
    }
    if !errors.is_empty() {
        return Err(WorkflowError::Invalid(errors));
    }
    let mut tx = pool.begin().await?;
    let (version, previous, created_at) = match store::activate_next(
        &mut tx,
        based_on,
        &thresholds,
        reason,
        agent.id,
    )
    .await?
    {
        Activation::Activated {
            version,
            previous,
            created_at,
        } => (version, previous, created_at),
        Activation::NotCurrent => {
            let current = store::current(&mut *tx).await?;
            return Err(WorkflowError::Refused {
                code: "rules_changed",
                detail: format!(
                    "The risk rules are at version {}, not {based_on}: read them again and base the change on the current version.",
                    current.version
                ),
            });
        }
    };
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &agent.actor(Role::Supervisor),
            action: "risk_rules.change",
            case_id: None,
            detail: serde_json::json!({
                "based_on": based_on,
                "version": version,
                "from": previous,
                "to": thresholds,
                "changed_rules": thresholds
                    .changed_rules(&previous)
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>(),
            }),
            reason: Some(reason),
        },
    )
    .await?;
    tx.commit().await?;
    ::metrics::counter!("risk_rule_versions_created_total").increment(1);
    tracing::info!(version, based_on, "risk rules changed by a supervisor");
    Ok(NewVersion {
        version,
        based_on,
        thresholds,
        previous,
        created_at,
    })
}

/// A replay's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The current version (the one the proposal would replace).
    pub current_version: i32,
    /// Assessments since then were replayed.
    pub since: DateTime<Utc>,
    /// The counts.
    pub report: ReplayReport,
}

/// Replays the cases assessed in the last `days` days (each case's latest
/// assessment) under `thresholds` and counts what would have changed. Reads only;
/// nothing changes.
pub async fn replay(
    pool: &PgPool,
    agent: &Agent,
    thresholds: RiskThresholds,
    days: u32,
    now: DateTime<Utc>,
) -> Result<Replay, WorkflowError> {
    agent.require_any(SUPERVISORS)?;
    let mut errors = threshold_errors(&thresholds);
    if !REPLAY_DAYS.contains(&days) {
        errors.push(FieldError::new(
            "days",
            format!(
                "between {} and {} days",
                REPLAY_DAYS.start(),
                REPLAY_DAYS.end()
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(WorkflowError::Invalid(errors));
    }
    let since = now - Duration::days(i64::from(days));
    // One snapshot: the current version and the history it is compared with.
    let mut tx = case_store::begin_snapshot(pool).await?;
    let current = store::current(&mut *tx).await?;
    // Streamed: memory stays flat however long the window.
    let mut report = ReplayReport::empty();
    store::replay_history(&mut *tx, since, |case| report.add(&case, &thresholds)).await?;
    tx.commit().await?;
    Ok(Replay {
        current_version: current.version,
        since,
        report,
    })
}

//! The supervisors' reports and the case export for a date range (issue 15 item 4).
//! The agent API and the console's Reports page call these, so both have the same
//! audience (supervisors) and every read is audited alike: who read which report (or
//! exported the cases) for which range, in which format.

use case_domain::{
    CaseState, Role,
    agent_policy::SUPERVISORS,
    reports::{DateRange, ReportKind},
    sla::SlaConfig,
};
use case_store::{
    audit::{self, AuditEntry},
    reports::{
        self as store, AgentDecisions, ChannelOutcome, ComplaintTimes, ExpediteFigures,
        ReasonFlags, StageTimes,
    },
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::{WorkflowError, agent::Agent};

/// The figures of one report.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportData {
    /// [`ReportKind::Cases`].
    Cases(Vec<ChannelOutcome>),
    /// [`ReportKind::Stages`].
    Stages(Vec<StageTimes>),
    /// [`ReportKind::Agents`].
    Agents(Vec<AgentDecisions>),
    /// [`ReportKind::Complaints`].
    Complaints(Vec<ComplaintTimes>),
    /// [`ReportKind::FalsePositives`].
    FalsePositives(Vec<ReasonFlags>),
    /// [`ReportKind::Expedite`].
    Expedite(Vec<ExpediteFigures>),
}

/// The clocked stages and their configured SLA in seconds.
fn stage_slas(sla: &SlaConfig) -> Vec<(CaseState, f64)> {
    CaseState::ALL
        .into_iter()
        .filter_map(|s| sla.stage_sla(s).map(|d| (s, d.num_seconds() as f64)))
        .collect()
}

async fn record(
    pool: &PgPool,
    agent: &Agent,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), WorkflowError> {
    let mut conn = pool.acquire().await?;
    audit::record(
        &mut conn,
        &AuditEntry {
            actor: &agent.actor(Role::Supervisor),
            action,
            case_id: None,
            detail,
            reason: None,
        },
    )
    .await?;
    Ok(())
}

/// One report for `range` (supervisors only), audited as `report.read` with the
/// report, the range and `format` (what the caller will write it as). `sla` gives
/// the stage SLAs the stages report measures against; `now` is when complaints
/// still open count as overdue.
pub async fn report(
    pool: &PgPool,
    agent: &Agent,
    kind: ReportKind,
    range: DateRange,
    format: &str,
    sla: &SlaConfig,
    now: DateTime<Utc>,
) -> Result<ReportData, WorkflowError> {
    agent.require_any(SUPERVISORS)?;
    record(
        pool,
        agent,
        "report.read",
        serde_json::json!({
            "report": kind.as_str(),
            "from": range.from(),
            "to": range.to(),
            "format": format,
        }),
    )
    .await?;
    figures(pool, kind, range, sla, now).await
}

/// A report's figures (the caller checked the role and audited the read).
async fn figures(
    pool: &PgPool,
    kind: ReportKind,
    range: DateRange,
    sla: &SlaConfig,
    now: DateTime<Utc>,
) -> Result<ReportData, WorkflowError> {
    let (start, end) = (range.start(), range.end());
    Ok(match kind {
        ReportKind::Cases => {
            ReportData::Cases(store::cases_by_channel_outcome(pool, start, end).await?)
        }
        ReportKind::Stages => {
            ReportData::Stages(store::stage_times(pool, start, end, &stage_slas(sla)).await?)
        }
        ReportKind::Agents => ReportData::Agents(store::agent_decisions(pool, start, end).await?),
        ReportKind::Complaints => {
            ReportData::Complaints(store::complaint_times(pool, start, end, now).await?)
        }
        ReportKind::FalsePositives => {
            ReportData::FalsePositives(store::false_positives_between(pool, start, end).await?)
        }
        ReportKind::Expedite => {
            ReportData::Expedite(store::expedite_figures(pool, start, end).await?)
        }
    })
}

/// The cases opened in `range` per channel and outcome, for the supervisor
/// dashboard (supervisors only): the `cases` report's figures, read by the same
/// query, so the dashboard, the report and the export agree. Not audited: the
/// dashboard re-reads its figures on every case change it is told of, and they are
/// counts, never a case or a person (the report and the export, which can be taken
/// away, are audited by [`report`] and [`begin_case_export`]).
pub async fn cases_summary(
    pool: &PgPool,
    agent: &Agent,
    range: DateRange,
) -> Result<Vec<ChannelOutcome>, WorkflowError> {
    agent.require_any(SUPERVISORS)?;
    Ok(store::cases_by_channel_outcome(pool, range.start(), range.end()).await?)
}

/// Allows an export of the cases opened in `range` (supervisors only) and audits it
/// as `cases.export` before a row is read; the caller then streams
/// [`case_store::reports::export_cases`].
pub async fn begin_case_export(
    pool: &PgPool,
    agent: &Agent,
    range: DateRange,
    format: &str,
) -> Result<(), WorkflowError> {
    agent.require_any(SUPERVISORS)?;
    record(
        pool,
        agent,
        "cases.export",
        serde_json::json!({
            "from": range.from(),
            "to": range.to(),
            "format": format,
        }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stages_report_measures_against_the_configured_slas() {
        let slas = stage_slas(&SlaConfig::default());
        assert!(slas.iter().any(|(s, _)| *s == CaseState::SecurityReview));
        assert!(
            slas.iter()
                .all(|(s, secs)| !s.waits_on_customer() && !s.is_terminal() && *secs >= 0.0)
        );
    }
}

//! Per-department progress and expedited handling, for the subscriber's status
//! answer and the agents' console.
//!
//! - [`route`]: the departments a case passes (`case_domain::route`: derived from
//!   the transition table and its risk tier), each with what it checks, its typical
//!   time from live statistics (the stage SLA when too few cases left it recently)
//!   and where the case is now.
//! - [`expedite`]: the subscriber asks for expedited handling, with a reason, once per
//!   case; the case then rises in its department queue, after cases with an
//!   unanswered complaint. Audited.

use case_domain::{
    Actor, CaseState,
    material::check_text,
    risk::RiskTier,
    route::{self, Step},
    sla::SlaConfig,
};
use case_store::{
    CaseRow, EventRow,
    audit::{self, AuditEntry},
    expedite::{self, ExpediteRow},
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::WorkflowError;

/// The longest reason for an expedite request, in characters.
pub const MAX_EXPEDITE_REASON: usize = 500;

/// The route of a case with `timeline` and risk `tier`, with typical times from
/// the live statistics (cached, see [`crate::eta::live_stats`]) under `sla`.
pub async fn route(
    pool: &PgPool,
    sla: &SlaConfig,
    state: CaseState,
    tier: Option<RiskTier>,
    timeline: &[EventRow],
    now: DateTime<Utc>,
) -> Vec<Step> {
    let stats = crate::eta::live_stats(pool, now).await;
    route_with(sla, state, tier, timeline, &stats)
}

/// [`route`] over given statistics (no I/O).
pub fn route_with(
    sla: &SlaConfig,
    state: CaseState,
    tier: Option<RiskTier>,
    timeline: &[EventRow],
    stats: &case_domain::eta::LiveStats,
) -> Vec<Step> {
    let history: Vec<CaseState> = timeline.iter().map(|e| e.to_state).collect();
    route::route(state, tier, &history, sla, stats)
}

/// The subscriber asks for expedited handling of `case`, with `reason`. Refused
/// (409) once the case is finished, and for a second request (of two racing
/// requests exactly one is recorded); a reason that is empty or longer than
/// [`MAX_EXPEDITE_REASON`] is invalid (422). Audited as `case.expedite`.
pub async fn expedite(
    pool: &PgPool,
    case: &CaseRow,
    reason: &str,
) -> Result<ExpediteRow, WorkflowError> {
    let reason =
        check_text(reason, MAX_EXPEDITE_REASON).map_err(|m| WorkflowError::invalid("reason", m))?;
    let mut tx = pool.begin().await?;
    // The state as of now (the caller's row may be stale), locked against a
    // concurrent transition for the length of this transaction.
    let state = expedite::lock_state(&mut tx, case.id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    if state.is_terminal() {
        return Err(WorkflowError::Refused {
            code: "case_finished",
            detail: format!("The case is {state}: there is nothing left to expedite."),
        });
    }
    let Some(row) = expedite::request(&mut tx, case.id, state, reason).await? else {
        return Err(WorkflowError::Refused {
            code: "already_expedited",
            detail: "Expedited handling was already requested for this case; it can be asked once."
                .into(),
        });
    };
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &Actor::customer(),
            action: "case.expedite",
            case_id: Some(case.id),
            detail: serde_json::json!({
                "state": state.as_str(),
                "reason_chars": row.reason.chars().count(),
            }),
            reason: None,
        },
    )
    .await?;
    tx.commit().await?;
    ::metrics::counter!("expedite_requests_total").increment(1);
    tracing::info!(case_id = %case.id, state = %state, "expedited handling requested");
    Ok(row)
}

/// The case's expedite request, if it made one.
pub async fn expedite_of(
    pool: &PgPool,
    case_id: uuid::Uuid,
) -> Result<Option<ExpediteRow>, WorkflowError> {
    Ok(expedite::of_case(pool, case_id).await?)
}

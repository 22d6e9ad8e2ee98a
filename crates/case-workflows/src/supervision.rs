//! Supervisors' tools over other agents' work: reassign a case to another named
//! agent, break an agent's claim, and escalate a case by hand into the supervisors'
//! escalation queue (any agent who works cases may do that). Withdrawing a case on
//! the subscriber's behalf is the `cancel` decision of [`crate::agent::decide`].
//!
//! Each act needs a reason, checks the role first (`Forbidden`), then the input
//! (`Invalid`), then, on the case row locked for the transaction, the version the
//! agent saw (`StaleVersion`) and the domain's rule (`Refused` with a code); it is
//! audited in the same transaction. Nothing changes when any check fails.

use case_domain::{
    CaseState,
    agent_policy::CLAIM_TTL,
    supervision::{self, ESCALATORS, MANUAL_LEVEL, REASSIGNERS, may_assign, may_escalate},
};
use case_store::{
    agents,
    audit::{self, AuditEntry},
    supervision::{self as store, LockedCase},
};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::{WorkflowError, agent::Agent};

/// What was done to a case's claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimChange {
    /// The case.
    pub case_id: Uuid,
    /// Its state.
    pub state: CaseState,
    /// Its version (unchanged: a claim is not a transition).
    pub version: i32,
    /// The agent who held it before (id), if anyone did.
    pub previous_holder: Option<Uuid>,
    /// The agent holding it now (id), if anyone does.
    pub holder: Option<Uuid>,
    /// Their username.
    pub holder_username: Option<String>,
    /// Until when the new claim runs.
    pub claimed_until: Option<DateTime<Utc>>,
}

/// A manual escalation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    /// The case.
    pub case_id: Uuid,
    /// Its state (the stage escalated).
    pub state: CaseState,
    /// Its version.
    pub version: i32,
    /// The level set.
    pub level: i16,
}

fn checked_reason(reason: &str) -> Result<&str, WorkflowError> {
    let reason = reason.trim();
    if supervision::reason_ok(reason) {
        Ok(reason)
    } else {
        Err(WorkflowError::invalid(
            "reason",
            "say why, in 5 to 500 characters",
        ))
    }
}

/// Locks the case and checks the version the agent saw.
async fn locked_at(
    tx: &mut Transaction<'_, Postgres>,
    case_id: Uuid,
    expected_version: i32,
) -> Result<LockedCase, WorkflowError> {
    let case = store::lock_case(tx, case_id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    if case.version != expected_version {
        return Err(WorkflowError::StaleVersion);
    }
    Ok(case)
}

/// A supervisor hands case `case_id` (at `expected_version`) to the active agent
/// `to_username`, whose roles must allow working the case in its state; the previous
/// holder's claim (if any) ends. Audited as `case.reassign`.
pub async fn reassign(
    pool: &PgPool,
    agent: &Agent,
    case_id: Uuid,
    to_username: &str,
    expected_version: i32,
    reason: &str,
) -> Result<ClaimChange, WorkflowError> {
    agent.require_any(REASSIGNERS)?;
    let to_username = to_username.trim();
    let reason = checked_reason(reason);
    let to = if to_username.is_empty() || to_username.chars().count() > 64 {
        None
    } else {
        agents::find_agent(pool, to_username).await?
    };
    let (reason, to) = match (reason, to) {
        (Ok(r), Some(to)) => (r, to),
        (reason, to) => {
            let mut errors = Vec::new();
            if let Err(WorkflowError::Invalid(e)) = reason {
                errors.extend(e);
            }
            if to.is_none() {
                errors.push(crate::FieldError::new(
                    "to",
                    "to must name an active agent (username)",
                ));
            }
            return Err(WorkflowError::Invalid(errors));
        }
    };
    let mut tx = pool.begin().await?;
    let case = locked_at(&mut tx, case_id, expected_version).await?;
    let previous = case.agent_holder();
    let to_id = to.id.to_string();
    let previous_text = previous.map(|p| p.to_string());
    may_assign(case.state, previous_text.as_deref(), &to_id, &to.roles).map_err(|refusal| {
        WorkflowError::Refused {
            code: refusal.code(),
            detail: match refusal {
                supervision::AssignRefusal::RoleMayNotAct => format!(
                    "{} may not work cases that are {}.",
                    to.username, case.state
                ),
                supervision::AssignRefusal::AlreadyHolder => {
                    format!("{} holds this case already.", to.username)
                }
                supervision::AssignRefusal::Finished => "The case is finished.".into(),
                supervision::AssignRefusal::Automated => {
                    format!("Cases that are {} are worked automatically.", case.state)
                }
                supervision::AssignRefusal::WaitsOnSubscriber => format!(
                    "The case waits on the subscriber ({}): there is nothing to hand over.",
                    case.state
                ),
            },
        }
    })?;
    let until = store::set_claim(&mut tx, case.id, Some(to.id), CLAIM_TTL).await?;
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &agent.actor(case_domain::Role::Supervisor),
            action: "case.reassign",
            case_id: Some(case.id),
            detail: serde_json::json!({
                "from": previous,
                "to": to.id,
                "to_username": to.username,
                "state": case.state,
                "version": case.version,
            }),
            reason: Some(reason),
        },
    )
    .await?;
    tx.commit().await?;
    ::metrics::counter!("case_reassignments_total").increment(1);
    tracing::info!(case_id = %case.id, from = ?previous, to = %to.id, "case reassigned by a supervisor");
    Ok(ClaimChange {
        case_id: case.id,
        state: case.state,
        version: case.version,
        previous_holder: previous,
        holder: Some(to.id),
        holder_username: Some(to.username),
        claimed_until: until,
    })
}

/// A supervisor ends the live claim an agent holds on case `case_id` (at
/// `expected_version`), so anyone of the department may take it. Audited as
/// `case.claim_broken`.
pub async fn break_claim(
    pool: &PgPool,
    agent: &Agent,
    case_id: Uuid,
    expected_version: i32,
    reason: &str,
) -> Result<ClaimChange, WorkflowError> {
    agent.require_any(REASSIGNERS)?;
    let reason = checked_reason(reason)?;
    let mut tx = pool.begin().await?;
    let case = locked_at(&mut tx, case_id, expected_version).await?;
    let Some(previous) = case.agent_holder() else {
        return Err(WorkflowError::Refused {
            code: "not_claimed",
            detail: "No agent holds this case.".into(),
        });
    };
    store::set_claim(&mut tx, case.id, None, CLAIM_TTL).await?;
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &agent.actor(case_domain::Role::Supervisor),
            action: "case.claim_broken",
            case_id: Some(case.id),
            detail: serde_json::json!({
                "from": previous,
                "state": case.state,
                "version": case.version,
            }),
            reason: Some(reason),
        },
    )
    .await?;
    tx.commit().await?;
    ::metrics::counter!("case_claims_broken_total").increment(1);
    tracing::info!(case_id = %case.id, from = %previous, "claim broken by a supervisor");
    Ok(ClaimChange {
        case_id: case.id,
        state: case.state,
        version: case.version,
        previous_holder: Some(previous),
        holder: None,
        holder_username: None,
        claimed_until: None,
    })
}

/// An agent escalates open case `case_id` (at `expected_version`) by hand into the
/// supervisors' escalation queue, with a reason. Refused when it is escalated
/// already (`already_escalated`) or finished (`case_finished`). Audited as
/// `case.escalate`; the escalation ends, as an SLA one does, when the case leaves
/// the stage.
pub async fn escalate(
    pool: &PgPool,
    agent: &Agent,
    case_id: Uuid,
    expected_version: i32,
    reason: &str,
) -> Result<Escalation, WorkflowError> {
    agent.require_any(ESCALATORS)?;
    let reason = checked_reason(reason)?;
    let mut tx = pool.begin().await?;
    let case = locked_at(&mut tx, case_id, expected_version).await?;
    may_escalate(case.state, case.escalation_level).map_err(|code| WorkflowError::Refused {
        code,
        detail: if code == "case_finished" {
            "The case is finished.".into()
        } else {
            "The case is in the escalation queue already.".into()
        },
    })?;
    if !store::escalate_by_hand(
        &mut tx,
        case.id,
        case.version,
        MANUAL_LEVEL,
        agent.id,
        reason,
    )
    .await?
    {
        // The row is locked at this version with level 0: only a broken invariant gets here.
        return Err(WorkflowError::StaleVersion);
    }
    let role = agent
        .roles
        .iter()
        .copied()
        .find(|r| ESCALATORS.contains(r))
        .unwrap_or(case_domain::Role::Supervisor);
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &agent.actor(role),
            action: "case.escalate",
            case_id: Some(case.id),
            detail: serde_json::json!({
                "level": MANUAL_LEVEL,
                "state": case.state,
                "version": case.version,
            }),
            reason: Some(reason),
        },
    )
    .await?;
    tx.commit().await?;
    ::metrics::counter!("case_manual_escalations_total", "state" => case.state.as_str())
        .increment(1);
    tracing::info!(case_id = %case.id, state = %case.state, "case escalated by hand");
    Ok(Escalation {
        case_id: case.id,
        state: case.state,
        version: case.version,
        level: MANUAL_LEVEL,
    })
}

//! Firing due timers. Each timer is claimed (`FOR UPDATE SKIP LOCKED`), acted on
//! and marked fired in **one** transaction: a crash before the commit leaves it
//! pending, and a second firer skips it while it is held. A timer of an older case
//! version (the case moved on) is discarded. The clock is a parameter: the service
//! passes `Utc::now()`, tests pass any instant.

use case_domain::{
    Actor, CaseEvent,
    notice::reminder_message,
    progress::needs_assessed,
    risk::Need,
    sla::{TimerKind, deadline_event, plan_timers, stage_elapsed},
};
use case_store::{
    StoreError, TransitionRequest,
    audit::{self, AuditEntry},
    timers::{self as store, TimerRow},
};
use case_workflows::notices::{CaseMessage, may_send};
use chrono::{DateTime, Duration, Utc};
use sqlx::{PgConnection, PgPool};

use crate::{
    NOTIFICATION_TOPIC, SERVICE, TimersConfig, deliver::message, follow::waiting_deadline,
};

/// Fires every timer due at `now`; returns how many fired (stale ones included).
pub async fn fire_due(
    pool: &PgPool,
    config: &TimersConfig,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let mut fired = 0;
    while let Fire::Fired = fire_one(pool, config, now).await? {
        fired += 1;
    }
    Ok(fired)
}

/// What a fire attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fire {
    /// A timer was due and fired (another may be due too).
    Fired,
    /// None was due at `now`; the earliest pending one is due then (`None`: no
    /// timer is pending), read in the same transaction.
    NoneDue(Option<DateTime<Utc>>),
}

/// Fires the earliest timer due at `now`, if any; when none is, says when the next
/// one falls due (one transaction either way, so the caller need not ask again).
pub async fn fire_one(
    pool: &PgPool,
    config: &TimersConfig,
    now: DateTime<Utc>,
) -> anyhow::Result<Fire> {
    let mut tx = pool.begin().await?;
    let Some(timer) = store::claim_due_timer(&mut tx, now).await? else {
        let next = store::next_timer_due(&mut *tx).await?;
        tx.commit().await?;
        return Ok(Fire::NoneDue(next));
    };
    let outcome = act(&mut tx, &timer, config, now).await?;
    store::finish_timer(&mut tx, timer.id, now, outcome).await?;
    tx.commit().await?;
    ::metrics::counter!("timers_fired_total", "kind" => timer.kind.clone(), "outcome" => outcome)
        .increment(1);
    tracing::info!(case_id = %timer.case_id, timer_id = %timer.id, kind = %timer.kind, ordinal = timer.ordinal, outcome, "timer fired");
    Ok(Fire::Fired)
}

async fn act(
    conn: &mut PgConnection,
    timer: &TimerRow,
    config: &TimersConfig,
    now: DateTime<Utc>,
) -> Result<&'static str, StoreError> {
    let Some(case) = case_store::load_case(&mut *conn, timer.case_id).await? else {
        return Ok("stale");
    };
    if case.version != timer.case_version || case.state != timer.state {
        return Ok("stale");
    }
    let Some(kind) = TimerKind::parse(&timer.kind, timer.ordinal) else {
        return Ok("skipped");
    };
    match kind {
        TimerKind::Reminder(_) => {
            let msisdn = &case.msisdn;
            let assessment = case_store::risk::latest_assessment(&mut *conn, case.id).await?;
            let stored: Option<Vec<Need>> = assessment
                .as_ref()
                .map(|a| a.needs.iter().filter_map(|n| Need::parse(n)).collect());
            let needs = needs_assessed(case.state, assessment.map(|a| a.tier), stored.as_deref());
            let deadline = waiting_deadline(case.state, case.state_entered_at, &config.sla);
            let body = reminder_message(msisdn, &needs, deadline, case.locale.as_str());
            let dedupe_key = format!("{}:{NOTIFICATION_TOPIC}", timer.id);
            let proven = case_store::identity_proven_at(&mut *conn, case.id).await?;
            let paid = may_send(
                &mut *conn,
                &CaseMessage {
                    msisdn,
                    case_id: case.id,
                    identity_proven_at: proven,
                    caused_at: now,
                    dedupe_key: &dedupe_key,
                },
            )
            .await?;
            if !paid {
                return Ok("skipped");
            }
            store::enqueue_message(
                &mut *conn,
                &message(Some(case.id), None, &dedupe_key, msisdn, "reminder", &body),
            )
            .await?;
            Ok("reminded")
        }
        TimerKind::Escalation(level) => {
            if !store::escalate(&mut *conn, case.id, case.version, case.state, level, now).await? {
                return Ok("skipped");
            }
            let actor = Actor::system(SERVICE);
            audit::record(
                &mut *conn,
                &AuditEntry {
                    actor: &actor,
                    action: "case.escalated",
                    case_id: Some(case.id),
                    detail: serde_json::json!({
                        "level": level,
                        "state": case.state,
                        "version": case.version,
                        "state_entered_at": case.state_entered_at,
                    }),
                    reason: Some("the stage ran past its SLA"),
                },
            )
            .await?;
            ::metrics::counter!("case_escalations_total", "state" => case.state.as_str(), "level" => level.to_string())
                .increment(1);
            tracing::warn!(case_id = %case.id, state = %case.state, level, "stage breached its SLA: escalated to supervisors");
            Ok("escalated")
        }
        TimerKind::Deadline => {
            let Some(event) = deadline_event(case.state) else {
                return Ok("skipped");
            };
            let actor = Actor::system(SERVICE);
            let reason = match event {
                CaseEvent::Closed => "the appeal period ended without an appeal",
                _ => "no answer from the subscriber within the allowed time",
            };
            let moved = case_store::transition_in(
                &mut *conn,
                TransitionRequest {
                    case_id: case.id,
                    expected_version: timer.case_version,
                    event,
                    actor: &actor,
                    reason: Some(reason),
                    fence: None,
                    outbox: vec![],
                },
            )
            .await;
            match moved {
                Ok(_) if event == CaseEvent::Closed => Ok("closed"),
                Ok(_) => Ok("expired"),
                Err(StoreError::StaleVersion { .. } | StoreError::NotFound(_)) => Ok("stale"),
                Err(e @ (StoreError::Refused(_) | StoreError::Invariant(_))) => {
                    // The table refuses it: retrying would not help.
                    tracing::error!(case_id = %case.id, error.message = %e, "deadline refused; timer skipped");
                    Ok("skipped")
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// Arms open cases that have no timer for their current version and entered their
/// state before `now - settle` (cases opened before the follower existed; younger
/// ones are the follower's). Returns how many timers were written.
pub async fn arm_unarmed(
    pool: &PgPool,
    config: &TimersConfig,
    now: DateTime<Utc>,
    settle: Duration,
) -> anyhow::Result<u64> {
    let mut plans = Vec::new();
    for case in store::unarmed_cases(pool, now - settle, 500).await? {
        let timeline = case_store::timeline(pool, case.case_id).await?;
        let history = case_workflows::eta::entries(&timeline, case.version);
        let used = stage_elapsed(&history, case.state_entered_at);
        plans.push(store::TimerPlan {
            case_id: case.case_id,
            version: case.version,
            state: case.state,
            timers: plan_timers(case.state, case.state_entered_at, used, &config.sla),
        });
    }
    let mut conn = pool.acquire().await?;
    Ok(store::insert_timer_plans(&mut conn, &plans).await?)
}

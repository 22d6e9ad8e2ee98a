//! Complaints: the subscriber complains about a case (which starts the carrier's
//! 15-day answer clock and raises the case in the agent queues), and an agent
//! answers (recorded in the audit log).

use case_domain::{
    Actor,
    complaint::{self, ComplaintChannel, ComplaintStatus},
    material::check_text,
};
use case_store::{
    audit::{self, AuditEntry},
    complaints::{self as store, AnswerRefusal, ComplaintListRow, ComplaintRow, OpenRefusal},
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{FieldError, WorkflowError};

/// The subscriber complains about the handling of case `case_id` through `channel`
/// (web, app, social, regulator or hotline). At most a few may be open at once.
pub async fn complain(
    pool: &PgPool,
    case_id: Uuid,
    channel: &str,
    text: &str,
) -> Result<ComplaintRow, WorkflowError> {
    let mut errors = Vec::new();
    let channel = ComplaintChannel::parse(channel);
    if channel.is_none() {
        errors.push(FieldError::new(
            "channel",
            "channel must be one of web, app, social, regulator, hotline",
        ));
    }
    let text = check_text(text, complaint::MAX_TEXT_CHARS)
        .map_err(|message| errors.push(FieldError::new("text", message)))
        .ok();
    let (Some(channel), Some(text)) = (channel, text) else {
        return Err(WorkflowError::Invalid(errors));
    };
    let mut tx = pool.begin().await?;
    let row = match store::open_complaint(&mut tx, case_id, channel, text).await? {
        Ok(row) => row,
        Err(OpenRefusal::NotFound) => return Err(WorkflowError::NotFound),
        Err(OpenRefusal::TooManyOpen) => {
            return Err(WorkflowError::Refused {
                code: "too_many_open_complaints",
                detail: format!(
                    "This case already has {} unanswered complaints; please wait for the answers.",
                    complaint::MAX_OPEN_PER_CASE
                ),
            });
        }
    };
    tx.commit().await?;
    tracing::info!(case_id = %case_id, complaint_id = %row.id, channel = %channel, "complaint opened");
    Ok(row)
}

/// A case's complaints, oldest first.
pub async fn for_case(pool: &PgPool, case_id: Uuid) -> Result<Vec<ComplaintRow>, WorkflowError> {
    Ok(store::list_for_case(pool, case_id).await?)
}

/// The most complaints one queue read returns.
const QUEUE_LIMIT: i64 = 500;

/// Complaints across cases, earliest due first: those with status `status` (`open`
/// when not given, every complaint for `all`).
pub async fn queue(
    pool: &PgPool,
    status: Option<&str>,
) -> Result<Vec<ComplaintListRow>, WorkflowError> {
    let status = match status.unwrap_or("open") {
        "all" => None,
        name => Some(ComplaintStatus::parse(name).ok_or_else(|| {
            WorkflowError::invalid("status", "status must be open, answered or all")
        })?),
    };
    Ok(store::list_by_status(pool, status, QUEUE_LIMIT).await?)
}

/// Agent `agent_id` (acting as `actor`) answers a complaint and closes it; the
/// answer is recorded in the audit log.
pub async fn answer(
    pool: &PgPool,
    actor: &Actor,
    agent_id: Uuid,
    case_id: Uuid,
    complaint_id: Uuid,
    answer: &str,
) -> Result<ComplaintRow, WorkflowError> {
    let text = check_text(answer, complaint::MAX_ANSWER_CHARS)
        .map_err(|m| WorkflowError::invalid("answer", m))?;
    let mut tx = pool.begin().await?;
    let row = match store::answer_complaint(&mut tx, case_id, complaint_id, agent_id, text).await? {
        Ok(row) => row,
        Err(AnswerRefusal::NotFound) => return Err(WorkflowError::NotFound),
        Err(AnswerRefusal::AlreadyAnswered) => {
            return Err(WorkflowError::Refused {
                code: "complaint_already_answered",
                detail: "This complaint was already answered.".into(),
            });
        }
    };
    audit::record(
        &mut tx,
        &AuditEntry {
            actor,
            action: "complaint.answer",
            case_id: Some(case_id),
            detail: serde_json::json!({
                "complaint_id": complaint_id,
                "channel": row.channel,
                "due_at": row.due_at,
                "overdue": row.answered_at.is_some_and(|at| at > row.due_at),
            }),
            reason: None,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(case_id = %case_id, complaint_id = %complaint_id, "complaint answered");
    Ok(row)
}

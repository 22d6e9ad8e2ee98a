//! Complaints: the subscriber complains about a case (which starts the carrier's
//! answer clock, 15 days unless configured, and raises the case in the agent
//! queues); agents log complaints that came by hotline, in a store, on social media
//! or as a 12300 referral, against a case or a number; an agent answers (audited, and
//! the subscriber is told through the outbox in their language); and the timers
//! service escalates a complaint left unanswered past its clock, telling the
//! subscriber that the regulator (12300) is the next avenue.

use case_domain::{
    Actor, Locale, Msisdn,
    complaint::{self, ComplaintChannel, ComplaintStatus},
    complaint_notice,
    material::check_text,
};
use case_store::{
    audit::{self, AuditEntry},
    complaints::{
        self as store, AnswerRefusal, ComplaintListRow, ComplaintRow, LoggedComplaint, OpenRefusal,
    },
    timers::enqueue_message,
};
use chrono::{DateTime, Duration, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{FieldError, WorkflowError, agent::Agent, notices::subscriber_message};

/// The subscriber complains about the handling of case `case_id` through `channel`
/// (web, app, social, regulator or hotline); it is due `window` later. At most a
/// few may be open at once.
pub async fn complain(
    pool: &PgPool,
    case_id: Uuid,
    channel: &str,
    text: &str,
    window: Duration,
) -> Result<ComplaintRow, WorkflowError> {
    let mut errors = Vec::new();
    let channel =
        ComplaintChannel::parse(channel).filter(|c| ComplaintChannel::SUBSCRIBER.contains(c));
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
    let row = match store::open_complaint_within(&mut tx, case_id, channel, text, window).await? {
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

/// Agent `agent_id` (acting as `actor`) answers a complaint (of case `case_id`
/// when given) and closes it; the answer is recorded in the audit log, and the
/// subscriber is told in the same transaction (a message through the outbox, in the
/// complaint's language; it names 12300 when the answer came after the due time).
pub async fn answer(
    pool: &PgPool,
    actor: &Actor,
    agent_id: Uuid,
    case_id: Option<Uuid>,
    complaint_id: Uuid,
    answer: &str,
) -> Result<ComplaintRow, WorkflowError> {
    let text = check_text(answer, complaint::MAX_ANSWER_CHARS)
        .map_err(|m| WorkflowError::invalid("answer", m))?;
    let mut tx = pool.begin().await?;
    let row = match store::answer_one(&mut tx, case_id, complaint_id, agent_id, text).await? {
        Ok(row) => row,
        Err(AnswerRefusal::NotFound) => return Err(WorkflowError::NotFound),
        Err(AnswerRefusal::AlreadyAnswered) => {
            return Err(WorkflowError::Refused {
                code: "complaint_already_answered",
                detail: "This complaint was already answered.".into(),
            });
        }
    };
    let late = row.answered_at.is_some_and(|at| at > row.due_at);
    let body = complaint_notice::answered_message(&row.msisdn, text, late, row.locale.as_str());
    let told = tell(&mut tx, &row, "answered", "complaint_answered", &body).await?;
    audit::record(
        &mut tx,
        &AuditEntry {
            actor,
            action: "complaint.answer",
            case_id: row.case_id,
            detail: serde_json::json!({
                "complaint_id": complaint_id,
                "channel": row.channel,
                "due_at": row.due_at,
                "overdue": late,
                "subscriber_told": told,
            }),
            reason: None,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(case_id = ?row.case_id, complaint_id = %complaint_id, late, "complaint answered");
    Ok(row)
}

/// Enqueues one message about complaint `row` (deduplicated per complaint and
/// `what`); whether it was written.
async fn tell(
    conn: &mut PgConnection,
    row: &ComplaintRow,
    what: &str,
    kind: &str,
    body: &str,
) -> Result<bool, WorkflowError> {
    let dedupe_key = format!(
        "complaint:{}:{what}:{}",
        row.id,
        crate::notices::NOTIFICATION_TOPIC
    );
    let written = enqueue_message(
        conn,
        &subscriber_message(row.case_id, None, &dedupe_key, &row.msisdn, kind, body),
    )
    .await?;
    Ok(written.is_some())
}

/// A complaint an agent logs.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    /// hotline, store, social or regulator.
    pub channel: String,
    /// What the subscriber complains about.
    pub text: String,
    /// The case, when the complaint is about one.
    pub case_id: Option<Uuid>,
    /// The subscriber's number (needed without a case; must be the case's with one).
    pub msisdn: Option<String>,
    /// The sender's reference (required for a 12300 referral).
    pub reference: Option<String>,
    /// The subscriber's language (zh-CN or en), when known.
    pub locale: Option<String>,
}

/// An agent (CS or supervisor) logs a complaint that came by hotline, in a store,
/// on social media or as a 12300 referral. It is linked to the given case, or to
/// the number's open case when only a number is given, or to the number alone. Its
/// clock runs for `window`. Audited as `complaint.log` (the number masked).
pub async fn log(
    pool: &PgPool,
    agent: &Agent,
    request: &LogRequest,
    window: Duration,
) -> Result<ComplaintRow, WorkflowError> {
    agent.require_any(complaint::LOGGERS)?;
    let mut errors = Vec::new();
    let channel = ComplaintChannel::parse(&request.channel)
        .filter(|c| ComplaintChannel::AGENT_LOGGED.contains(c));
    if channel.is_none() {
        errors.push(FieldError::new(
            "channel",
            "channel must be one of hotline, store, social, regulator",
        ));
    }
    let text = check_text(&request.text, complaint::MAX_TEXT_CHARS)
        .map_err(|m| errors.push(FieldError::new("text", m)))
        .ok();
    let reference = match channel {
        Some(c) => complaint::check_reference(c, request.reference.as_deref())
            .map_err(|m| errors.push(FieldError::new("reference", m)))
            .ok()
            .flatten(),
        None => None,
    };
    let msisdn = match request
        .msisdn
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        Some(raw) => match Msisdn::parse(raw) {
            Ok(m) => Some(m),
            Err(_) => {
                errors.push(FieldError::new(
                    "msisdn",
                    "msisdn must be a mainland mobile number, e.g. +8613800138000",
                ));
                None
            }
        },
        None => None,
    };
    if request.case_id.is_none() && msisdn.is_none() && !errors.iter().any(|e| e.field == "msisdn")
    {
        errors.push(FieldError::new(
            "msisdn",
            "give the case_id or the subscriber's msisdn",
        ));
    }
    let locale = match request.locale.as_deref() {
        None => None,
        Some(raw) => match Locale::parse(raw) {
            Ok(l) => Some(l),
            Err(_) => {
                errors.push(FieldError::new("locale", "locale must be zh-CN or en"));
                None
            }
        },
    };
    // The case, and its number.
    let mut case_id = request.case_id;
    let mut number = msisdn;
    if let Some(id) = request.case_id {
        match case_store::load_case(pool, id).await? {
            None => return Err(WorkflowError::NotFound),
            Some(case) => {
                if number.as_ref().is_some_and(|n| *n != case.msisdn) {
                    errors.push(FieldError::new(
                        "msisdn",
                        "msisdn is not the number of this case",
                    ));
                }
                number = Some(case.msisdn);
            }
        }
    }
    let (Some(channel), Some(text), Some(number), true) =
        (channel, text, number, errors.is_empty())
    else {
        return Err(WorkflowError::Invalid(errors));
    };
    if case_id.is_none() {
        case_id = store::open_case_of_number(pool, &number).await?;
    }
    let mut tx = pool.begin().await?;
    let row = match store::log_complaint(
        &mut tx,
        &LoggedComplaint {
            case_id,
            msisdn: &number,
            channel,
            body: text,
            reference,
            logged_by: Some(agent.id),
            locale,
            window,
        },
    )
    .await?
    {
        Ok(row) => row,
        Err(OpenRefusal::NotFound) => return Err(WorkflowError::NotFound),
        Err(OpenRefusal::TooManyOpen) => {
            return Err(WorkflowError::Refused {
                code: "too_many_open_complaints",
                detail: format!(
                    "This case or number already has {} unanswered complaints; answer them first.",
                    complaint::MAX_OPEN_PER_CASE
                ),
            });
        }
    };
    let role = agent
        .roles
        .iter()
        .copied()
        .find(|r| complaint::LOGGERS.contains(r))
        .unwrap_or(case_domain::Role::Supervisor);
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &agent.actor(role),
            action: "complaint.log",
            case_id: row.case_id,
            detail: serde_json::json!({
                "complaint_id": row.id,
                "channel": channel.as_str(),
                "reference": reference,
                "msisdn": number.masked(),
                "linked_to_case": row.case_id.is_some(),
                "due_at": row.due_at,
            }),
            reason: None,
        },
    )
    .await?;
    tx.commit().await?;
    ::metrics::counter!("complaints_logged_total", "channel" => channel.as_str()).increment(1);
    tracing::info!(case_id = ?row.case_id, complaint_id = %row.id, channel = %channel, "complaint logged by an agent");
    Ok(row)
}

/// Open complaints escalated for being overdue, the oldest due first (supervisors).
pub async fn escalated(
    pool: &PgPool,
    agent: &Agent,
) -> Result<Vec<ComplaintListRow>, WorkflowError> {
    agent.require_any(case_domain::agent_policy::SUPERVISORS)?;
    Ok(store::escalated_open(pool, QUEUE_LIMIT).await?)
}

/// Escalates the open complaint that fell due first at `now` and is not escalated
/// yet, if any: marks it, tells the subscriber that it went unanswered and that the
/// regulator (12300) is the next avenue, and audits it as `actor` — one transaction,
/// claimed `SKIP LOCKED`. Returns whether there was one. The timers service calls it.
pub async fn escalate_overdue(
    pool: &PgPool,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<bool, WorkflowError> {
    let mut tx = pool.begin().await?;
    let Some(id) = store::claim_overdue(&mut tx, now).await? else {
        return Ok(false);
    };
    if !store::mark_escalated(&mut tx, id, now).await? {
        return Ok(false);
    }
    let row = store::load(&mut *tx, id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    let body = complaint_notice::overdue_message(&row.msisdn, row.locale.as_str());
    let told = tell(&mut tx, &row, "overdue", "complaint_overdue", &body).await?;
    audit::record(
        &mut tx,
        &AuditEntry {
            actor,
            action: "complaint.escalated",
            case_id: row.case_id,
            detail: serde_json::json!({
                "complaint_id": row.id,
                "channel": row.channel,
                "due_at": row.due_at,
                "subscriber_told": told,
            }),
            reason: Some("the complaint was not answered within its time"),
        },
    )
    .await?;
    tx.commit().await?;
    ::metrics::counter!("complaints_escalated_total", "channel" => row.channel.clone())
        .increment(1);
    tracing::warn!(case_id = ?row.case_id, complaint_id = %row.id, "complaint overdue: escalated to supervisors");
    Ok(true)
}

/// When the next open complaint falls due (the timers service wakes then).
pub async fn next_due(pool: &PgPool) -> Result<Option<DateTime<Utc>>, WorkflowError> {
    Ok(store::next_overdue_at(pool).await?)
}

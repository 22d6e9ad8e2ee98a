//! Complaints about a case: opened by the subscriber with a 15-day answer clock,
//! closed by an agent's answer. They never move a case; an open complaint only raises
//! the case in the agent queues (see [`crate::agent_work::queue`]).

use case_domain::complaint::{self, ComplaintChannel, ComplaintStatus};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::StoreError;

/// A stored complaint. `Debug` leaves out the free texts (they may hold personal data).
#[derive(Clone, PartialEq, Eq)]
pub struct ComplaintRow {
    /// Complaint id.
    pub id: Uuid,
    /// The case.
    pub case_id: Uuid,
    /// Where it was made (web, app, social, regulator, hotline).
    pub channel: String,
    /// The subscriber's text.
    pub body: String,
    /// open or answered.
    pub status: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When the carrier must have answered.
    pub due_at: DateTime<Utc>,
    /// The answer, once given.
    pub answer: Option<String>,
    /// When it was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// The agent who answered.
    pub answered_by: Option<Uuid>,
    /// That agent's username.
    pub answered_by_username: Option<String>,
}

impl std::fmt::Debug for ComplaintRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComplaintRow")
            .field("id", &self.id)
            .field("case_id", &self.case_id)
            .field("channel", &self.channel)
            .field("status", &self.status)
            .field("created_at", &self.created_at)
            .field("due_at", &self.due_at)
            .field("answered_at", &self.answered_at)
            .field("answered_by", &self.answered_by)
            .finish_non_exhaustive()
    }
}

impl ComplaintRow {
    /// The status as the domain's type (an unknown value reads as open).
    pub fn status(&self) -> ComplaintStatus {
        ComplaintStatus::parse(&self.status).unwrap_or(ComplaintStatus::Open)
    }
}

/// Why a complaint was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenRefusal {
    /// No such case.
    NotFound,
    /// The case already has [`complaint::MAX_OPEN_PER_CASE`] unanswered complaints.
    TooManyOpen,
}

/// Advisory-lock namespace of complaint openings (the second key is the case id's hash).
const COMPLAINT_LOCK: i32 = 0x00c0_d7a1;

/// Opens a complaint on a case, due [`complaint::ANSWER_DAYS`] days after the
/// database's clock. Openings on one case are serialised (an advisory lock held until
/// the caller's transaction ends), so the cap on open complaints holds under
/// concurrent requests. The caller's transaction commits it.
pub async fn open_complaint(
    conn: &mut PgConnection,
    case_id: Uuid,
    channel: ComplaintChannel,
    body: &str,
) -> Result<Result<ComplaintRow, OpenRefusal>, StoreError> {
    // Serialise complaints of one case with a transaction-scoped advisory lock, not a
    // row lock: a lock on the case row would make workers' SKIP LOCKED claims pass
    // the case over.
    sqlx::query!(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        COMPLAINT_LOCK,
        case_id.to_string()
    )
    .execute(&mut *conn)
    .await?;
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM reactivation_cases WHERE id = $1) AS "x!""#,
        case_id
    )
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Ok(Err(OpenRefusal::NotFound));
    }
    let open = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM case_complaints WHERE case_id = $1 AND status = 'open'"#,
        case_id
    )
    .fetch_one(&mut *conn)
    .await?;
    if open >= complaint::MAX_OPEN_PER_CASE {
        return Ok(Err(OpenRefusal::TooManyOpen));
    }
    let row = sqlx::query_as!(
        ComplaintRow,
        r#"INSERT INTO case_complaints (id, case_id, channel, body, created_at, due_at)
           VALUES ($1, $2, $3, $4, now(), now() + make_interval(days => $5))
           RETURNING id, case_id, channel, body, status, created_at, due_at, answer, answered_at,
                     answered_by, NULL::text AS "answered_by_username?""#,
        Uuid::now_v7(),
        case_id,
        channel.as_str(),
        body,
        complaint::ANSWER_DAYS as i32,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Ok(row))
}

/// A case's complaints, oldest first.
pub async fn list_for_case(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Vec<ComplaintRow>, StoreError> {
    Ok(sqlx::query_as!(
        ComplaintRow,
        r#"SELECT k.id, k.case_id, k.channel, k.body, k.status, k.created_at, k.due_at, k.answer,
                  k.answered_at, k.answered_by, a.username AS "answered_by_username?"
           FROM case_complaints k LEFT JOIN agents a ON a.id = k.answered_by
           WHERE k.case_id = $1 ORDER BY k.created_at, k.id"#,
        case_id
    )
    .fetch_all(db)
    .await?)
}

/// Why an answer was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerRefusal {
    /// No such complaint on this case.
    NotFound,
    /// It was answered already.
    AlreadyAnswered,
}

/// Records an agent's answer and closes the complaint (only an open one of this case).
pub async fn answer_complaint(
    conn: &mut PgConnection,
    case_id: Uuid,
    complaint_id: Uuid,
    agent_id: Uuid,
    answer: &str,
) -> Result<Result<ComplaintRow, AnswerRefusal>, StoreError> {
    let answered = sqlx::query_as!(
        ComplaintRow,
        r#"WITH done AS (
               UPDATE case_complaints
               SET status = 'answered', answer = $4, answered_at = now(), answered_by = $3
               WHERE id = $1 AND case_id = $2 AND status = 'open'
               RETURNING *
           )
           SELECT d.id AS "id!", d.case_id AS "case_id!", d.channel AS "channel!", d.body AS "body!",
                  d.status AS "status!", d.created_at AS "created_at!", d.due_at AS "due_at!",
                  d.answer, d.answered_at, d.answered_by, a.username AS "answered_by_username?"
           FROM done d LEFT JOIN agents a ON a.id = d.answered_by"#,
        complaint_id,
        case_id,
        agent_id,
        answer,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = answered {
        return Ok(Ok(row));
    }
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM case_complaints WHERE id = $1 AND case_id = $2) AS "x!""#,
        complaint_id,
        case_id
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Err(if exists {
        AnswerRefusal::AlreadyAnswered
    } else {
        AnswerRefusal::NotFound
    }))
}

/// A complaint with what a supervisor's list shows of its case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplaintListRow {
    /// The complaint.
    pub complaint: ComplaintRow,
    /// The case's state now.
    pub case_state: case_domain::CaseState,
    /// The case's number (personal data: masked when printed).
    pub msisdn: case_domain::Msisdn,
}

/// Complaints in `status` (every complaint when `None`), earliest due first.
pub async fn list_by_status(
    db: impl PgExecutor<'_>,
    status: Option<ComplaintStatus>,
    limit: i64,
) -> Result<Vec<ComplaintListRow>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT k.id, k.case_id, k.channel, k.body, k.status, k.created_at, k.due_at, k.answer,
                  k.answered_at, k.answered_by, a.username AS "answered_by_username?",
                  c.state AS "case_state: case_domain::CaseState",
                  c.msisdn AS "msisdn: case_domain::Msisdn"
           FROM case_complaints k
           JOIN reactivation_cases c ON c.id = k.case_id
           LEFT JOIN agents a ON a.id = k.answered_by
           WHERE ($1::text IS NULL OR k.status = $1)
           ORDER BY k.due_at, k.id
           LIMIT $2"#,
        status.map(ComplaintStatus::as_str),
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ComplaintListRow {
            complaint: ComplaintRow {
                id: r.id,
                case_id: r.case_id,
                channel: r.channel,
                body: r.body,
                status: r.status,
                created_at: r.created_at,
                due_at: r.due_at,
                answer: r.answer,
                answered_at: r.answered_at,
                answered_by: r.answered_by,
                answered_by_username: r.answered_by_username,
            },
            case_state: r.case_state,
            msisdn: r.msisdn,
        })
        .collect())
}

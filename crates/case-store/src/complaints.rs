//! Complaints: opened by the subscriber about their case, or logged by an agent from
//! any channel (hotline, store, social media, a 12300 referral) against a case or
//! only a number, each with its answer clock; escalated by the timers service once
//! overdue; closed by an agent's answer. They never move a case; an open complaint
//! only raises its case in the agent queues (see [`crate::agent_work::queue`]).

use case_domain::{
    CaseState, Locale, Msisdn,
    complaint::{self, ComplaintChannel, ComplaintStatus},
};
use chrono::{DateTime, Duration, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::StoreError;

/// A stored complaint. `Debug` leaves out the free texts and the number (personal data).
#[derive(Clone, PartialEq, Eq)]
pub struct ComplaintRow {
    /// Complaint id.
    pub id: Uuid,
    /// The case, if the complaint is linked to one.
    pub case_id: Option<Uuid>,
    /// The subscriber's number (personal data: masked when printed).
    pub msisdn: Msisdn,
    /// Where it was made (web, app, social, regulator, hotline, store).
    pub channel: String,
    /// The subscriber's text.
    pub body: String,
    /// The sender's reference (12300 work-order number, post id, ticket), if any.
    pub reference: Option<String>,
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
    /// The agent who logged it (None: the subscriber made it).
    pub logged_by_username: Option<String>,
    /// The language messages about it are in (the complaint's, else the case's, else zh-CN).
    pub locale: Locale,
    /// When the timers service escalated it for being overdue.
    pub escalated_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ComplaintRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComplaintRow")
            .field("id", &self.id)
            .field("case_id", &self.case_id)
            .field("msisdn", &self.msisdn.masked())
            .field("channel", &self.channel)
            .field("status", &self.status)
            .field("created_at", &self.created_at)
            .field("due_at", &self.due_at)
            .field("answered_at", &self.answered_at)
            .field("answered_by", &self.answered_by)
            .field("escalated_at", &self.escalated_at)
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
    /// The case (or the number) already has [`complaint::MAX_OPEN_PER_CASE`] unanswered complaints.
    TooManyOpen,
}

/// Advisory-lock namespace of complaint openings (the second key is the case id's
/// or the number's hash).
const COMPLAINT_LOCK: i32 = 0x00c0_d7a1;

/// Opens a complaint on a case, due [`complaint::ANSWER_DAYS`] days after the
/// database's clock (see [`open_complaint_within`]).
pub async fn open_complaint(
    conn: &mut PgConnection,
    case_id: Uuid,
    channel: ComplaintChannel,
    body: &str,
) -> Result<Result<ComplaintRow, OpenRefusal>, StoreError> {
    open_complaint_within(conn, case_id, channel, body, complaint::answer_window()).await
}

/// Opens a complaint on a case, due `window` after the database's clock. Openings on
/// one case are serialised (an advisory lock held until the caller's transaction
/// ends), so the cap on open complaints holds under concurrent requests. The
/// caller's transaction commits it.
pub async fn open_complaint_within(
    conn: &mut PgConnection,
    case_id: Uuid,
    channel: ComplaintChannel,
    body: &str,
    window: Duration,
) -> Result<Result<ComplaintRow, OpenRefusal>, StoreError> {
    let Some(msisdn) = lock_case_complaints(conn, case_id).await? else {
        return Ok(Err(OpenRefusal::NotFound));
    };
    insert(
        conn,
        &LoggedComplaint {
            case_id: Some(case_id),
            msisdn: &msisdn,
            channel,
            body,
            reference: None,
            logged_by: None,
            locale: None,
            window,
        },
    )
    .await
}

/// Serialises complaint openings of one case and returns its number (`None`: no case).
async fn lock_case_complaints(
    conn: &mut PgConnection,
    case_id: Uuid,
) -> Result<Option<Msisdn>, StoreError> {
    // A transaction-scoped advisory lock, not a row lock: a lock on the case row
    // would make workers' SKIP LOCKED claims pass the case over.
    sqlx::query!(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        COMPLAINT_LOCK,
        case_id.to_string()
    )
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_scalar!(
        r#"SELECT msisdn AS "msisdn: Msisdn" FROM reactivation_cases WHERE id = $1"#,
        case_id
    )
    .fetch_optional(&mut *conn)
    .await?)
}

/// A complaint an agent logs from a channel other than the subscriber's case page.
#[derive(Debug, Clone)]
pub struct LoggedComplaint<'a> {
    /// The case, when it is about one (its number must be `msisdn`).
    pub case_id: Option<Uuid>,
    /// The subscriber's number.
    pub msisdn: &'a Msisdn,
    /// Where it came in.
    pub channel: ComplaintChannel,
    /// What the subscriber complains about.
    pub body: &'a str,
    /// The sender's reference.
    pub reference: Option<&'a str>,
    /// The agent logging it (None: the subscriber through the API).
    pub logged_by: Option<Uuid>,
    /// The subscriber's language, when known.
    pub locale: Option<Locale>,
    /// The answer clock.
    pub window: Duration,
}

/// The latest open case of a number (to link a complaint logged against the number).
pub async fn open_case_of_number(
    db: impl PgExecutor<'_>,
    msisdn: &Msisdn,
) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT id FROM reactivation_cases
           WHERE msisdn = $1 AND state NOT IN ('reactivated', 'cancelled', 'expired', 'closed')
           ORDER BY created_at DESC, id DESC LIMIT 1"#,
        msisdn.e164()
    )
    .fetch_optional(db)
    .await?)
}

/// Logs an agent's complaint, linked to `case_id` or to the number alone. Openings
/// on one case, or on one number without a case, are serialised, and each holds at
/// most [`complaint::MAX_OPEN_PER_CASE`] unanswered complaints. `NotFound` when the
/// case does not exist or is another number's.
pub async fn log_complaint(
    conn: &mut PgConnection,
    complaint: &LoggedComplaint<'_>,
) -> Result<Result<ComplaintRow, OpenRefusal>, StoreError> {
    match complaint.case_id {
        Some(case_id) => match lock_case_complaints(conn, case_id).await? {
            Some(number) if number == *complaint.msisdn => {}
            _ => return Ok(Err(OpenRefusal::NotFound)),
        },
        None => {
            sqlx::query!(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                COMPLAINT_LOCK,
                complaint.msisdn.e164()
            )
            .execute(&mut *conn)
            .await?;
        }
    }
    insert(conn, complaint).await
}

async fn insert(
    conn: &mut PgConnection,
    k: &LoggedComplaint<'_>,
) -> Result<Result<ComplaintRow, OpenRefusal>, StoreError> {
    let open = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM case_complaints
           WHERE status = 'open'
             AND (($1::uuid IS NOT NULL AND case_id = $1)
                  OR ($1::uuid IS NULL AND case_id IS NULL AND msisdn = $2))"#,
        k.case_id,
        k.msisdn.e164(),
    )
    .fetch_one(&mut *conn)
    .await?;
    if open >= complaint::MAX_OPEN_PER_CASE {
        return Ok(Err(OpenRefusal::TooManyOpen));
    }
    let id = Uuid::now_v7();
    sqlx::query!(
        r#"INSERT INTO case_complaints (id, case_id, msisdn, channel, body, reference, logged_by,
                                        locale, created_at, due_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), now() + make_interval(secs => $9))"#,
        id,
        k.case_id,
        k.msisdn.e164(),
        k.channel.as_str(),
        k.body,
        k.reference,
        k.logged_by,
        k.locale.map(|l| l.as_str()),
        k.window.num_seconds() as f64,
    )
    .execute(&mut *conn)
    .await?;
    notify_opened(&mut *conn).await?;
    let row = load(&mut *conn, id)
        .await?
        .ok_or(StoreError::NotFound(id))?;
    Ok(Ok(row))
}

/// One complaint.
pub async fn load(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<ComplaintRow>, StoreError> {
    Ok(sqlx::query_as!(
        ComplaintRow,
        r#"SELECT k.id, k.case_id, COALESCE(k.msisdn, c.msisdn) AS "msisdn!: Msisdn", k.channel,
                  k.body, k.reference, k.status, k.created_at, k.due_at, k.answer, k.answered_at,
                  k.answered_by, a.username AS "answered_by_username?",
                  l.username AS "logged_by_username?",
                  COALESCE(k.locale, c.locale, 'zh-CN') AS "locale!: Locale", k.escalated_at
           FROM case_complaints k
           LEFT JOIN reactivation_cases c ON c.id = k.case_id
           LEFT JOIN agents a ON a.id = k.answered_by
           LEFT JOIN agents l ON l.id = k.logged_by
           WHERE k.id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?)
}

/// A case's complaints, oldest first.
pub async fn list_for_case(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Vec<ComplaintRow>, StoreError> {
    Ok(sqlx::query_as!(
        ComplaintRow,
        r#"SELECT k.id, k.case_id, COALESCE(k.msisdn, c.msisdn) AS "msisdn!: Msisdn", k.channel,
                  k.body, k.reference, k.status, k.created_at, k.due_at, k.answer, k.answered_at,
                  k.answered_by, a.username AS "answered_by_username?",
                  l.username AS "logged_by_username?",
                  COALESCE(k.locale, c.locale, 'zh-CN') AS "locale!: Locale", k.escalated_at
           FROM case_complaints k
           LEFT JOIN reactivation_cases c ON c.id = k.case_id
           LEFT JOIN agents a ON a.id = k.answered_by
           LEFT JOIN agents l ON l.id = k.logged_by
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
    answer_one(conn, Some(case_id), complaint_id, agent_id, answer).await
}

/// Records an agent's answer and closes the complaint, which must be open and, when
/// `case_id` is given, about that case.
pub async fn answer_one(
    conn: &mut PgConnection,
    case_id: Option<Uuid>,
    complaint_id: Uuid,
    agent_id: Uuid,
    answer: &str,
) -> Result<Result<ComplaintRow, AnswerRefusal>, StoreError> {
    let answered = sqlx::query_scalar!(
        r#"UPDATE case_complaints
           SET status = 'answered', answer = $4, answered_at = now(), answered_by = $3
           WHERE id = $1 AND ($2::uuid IS NULL OR case_id = $2) AND status = 'open'
           RETURNING id"#,
        complaint_id,
        case_id,
        agent_id,
        answer,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if answered.is_some() {
        let row = load(&mut *conn, complaint_id)
            .await?
            .ok_or(StoreError::NotFound(complaint_id))?;
        return Ok(Ok(row));
    }
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM case_complaints
                          WHERE id = $1 AND ($2::uuid IS NULL OR case_id = $2)) AS "x!""#,
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
    /// The case's state now (None: logged against a number without a case).
    pub case_state: Option<CaseState>,
    /// The number (personal data: masked when printed).
    pub msisdn: Msisdn,
}

/// Complaints in `status` (every complaint when `None`), earliest due first.
pub async fn list_by_status(
    pool: &PgPool,
    status: Option<ComplaintStatus>,
    limit: i64,
) -> Result<Vec<ComplaintListRow>, StoreError> {
    // An optional filter (`$1 IS NULL OR …`): planned for the status asked.
    let mut tx = crate::begin_planned(pool).await?;
    let rows = sqlx::query!(
        r#"SELECT k.id, k.case_id, COALESCE(k.msisdn, c.msisdn) AS "msisdn!: Msisdn", k.channel,
                  k.body, k.reference, k.status, k.created_at, k.due_at, k.answer, k.answered_at,
                  k.answered_by, a.username AS "answered_by_username?",
                  l.username AS "logged_by_username?",
                  COALESCE(k.locale, c.locale, 'zh-CN') AS "locale!: Locale", k.escalated_at,
                  c.state AS "case_state?: CaseState"
           FROM case_complaints k
           LEFT JOIN reactivation_cases c ON c.id = k.case_id
           LEFT JOIN agents a ON a.id = k.answered_by
           LEFT JOIN agents l ON l.id = k.logged_by
           WHERE ($1::text IS NULL OR k.status = $1)
           ORDER BY k.due_at, k.id
           LIMIT $2"#,
        status.map(ComplaintStatus::as_str),
        limit,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|r| ComplaintListRow {
            msisdn: r.msisdn.clone(),
            case_state: r.case_state,
            complaint: ComplaintRow {
                id: r.id,
                case_id: r.case_id,
                msisdn: r.msisdn,
                channel: r.channel,
                body: r.body,
                reference: r.reference,
                status: r.status,
                created_at: r.created_at,
                due_at: r.due_at,
                answer: r.answer,
                answered_at: r.answered_at,
                answered_by: r.answered_by,
                answered_by_username: r.answered_by_username,
                logged_by_username: r.logged_by_username,
                locale: r.locale,
                escalated_at: r.escalated_at,
            },
        })
        .collect())
}

/// Open complaints the timers service escalated for being overdue, the oldest due first.
pub async fn escalated_open(
    pool: &PgPool,
    limit: i64,
) -> Result<Vec<ComplaintListRow>, StoreError> {
    Ok(list_by_status(pool, Some(ComplaintStatus::Open), limit)
        .await?
        .into_iter()
        .filter(|r| r.complaint.escalated_at.is_some())
        .collect())
}

/// Claims the open complaint that became overdue first and is not escalated yet
/// (due at `now`), for the caller's transaction (`FOR UPDATE SKIP LOCKED`: a
/// second firer skips it). The caller escalates it with [`mark_escalated`].
pub async fn claim_overdue(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT id FROM case_complaints
           WHERE status = 'open' AND escalated_at IS NULL AND due_at <= $1
           ORDER BY due_at, id
           LIMIT 1
           FOR UPDATE SKIP LOCKED"#,
        now
    )
    .fetch_optional(conn)
    .await?)
}

/// Marks a claimed complaint escalated at `now` (never before it was made).
pub async fn mark_escalated(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(sqlx::query!(
        r#"UPDATE case_complaints SET escalated_at = greatest($2, created_at)
           WHERE id = $1 AND status = 'open' AND escalated_at IS NULL"#,
        id,
        now
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// When the next open, unescalated complaint falls due (the timers service sleeps
/// until then at most).
pub async fn next_overdue_at(db: impl PgExecutor<'_>) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar!(
        "SELECT min(due_at) FROM case_complaints WHERE status = 'open' AND escalated_at IS NULL"
    )
    .fetch_one(db)
    .await?)
}

/// The `NOTIFY` channel that wakes the timers service when a complaint is made (its
/// clock may be due sooner than anything it waits for).
pub const COMPLAINT_CHANNEL: &str = "complaint_opened";

/// Wakes the timers service at commit of the caller's transaction.
pub async fn notify_opened(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query!("SELECT pg_notify($1, '')", COMPLAINT_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

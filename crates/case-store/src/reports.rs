//! The supervisors' reports for a time window `[start, end)` (issue 15 item 4), and
//! the streamed export of the cases opened in one. Nothing here writes.
//!
//! Every query reads one table through an index on the time it ranges over
//! (`reactivation_cases_by_opening`, `case_events_at`, `case_complaints_by_time`,
//! `risk_assessments_flagged_by_time`, `case_expedite_requests_by_time`), so its cost
//! follows the window, not the history. Durations are in seconds.

use case_domain::{CaseState, Msisdn, Role};
use chrono::{DateTime, Utc};
use futures_util::{Stream, TryStreamExt};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::StoreError;

/// The states a case ends in (it never leaves them).
const FINISHED: [CaseState; 4] = [
    CaseState::Reactivated,
    CaseState::Cancelled,
    CaseState::Expired,
    CaseState::Closed,
];

/// Cases of one channel with one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOutcome {
    /// Where the case was opened: web, app, hotline or store.
    pub channel: String,
    /// The finished state (reactivated, cancelled, expired, closed), or `open`.
    pub outcome: String,
    /// Cases.
    pub cases: i64,
}

/// Cases opened in `[start, end)` per channel and outcome (the finished state, or
/// `open` for a case still under way), ordered by channel and outcome.
pub async fn cases_by_channel_outcome(
    db: impl PgExecutor<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<ChannelOutcome>, StoreError> {
    Ok(sqlx::query_as!(
        ChannelOutcome,
        r#"SELECT c.channel AS "channel!",
                  CASE WHEN c.state = ANY($3::case_state[]) THEN c.state::text ELSE 'open' END AS "outcome!",
                  count(*) AS "cases!"
           FROM reactivation_cases c
           WHERE c.created_at >= $1 AND c.created_at < $2
           GROUP BY 1, 2
           ORDER BY 1, 2"#,
        start,
        end,
        &FINISHED as &[CaseState],
    )
    .fetch_all(db)
    .await?)
}

/// Time spent in one stage by the cases that left it in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTimes {
    /// The stage (state) left.
    pub state: CaseState,
    /// Exits from it in the window.
    pub exits: i64,
    /// Median seconds spent in it (entering event to leaving event).
    pub p50_secs: f64,
    /// 90th percentile of the same.
    pub p90_secs: f64,
    /// Exits within the stage's SLA (`None` for a stage without an SLA).
    pub sla_met: Option<i64>,
}

/// Per stage: the exits in `[start, end)` (from `case_events`), the median and 90th
/// percentile of the time spent in the stage (each leaving event minus the event that
/// entered it: one spell), and how many spells stayed within the stage's SLA
/// (`slas`: the clocked states and their SLA in seconds; other stages have none).
pub async fn stage_times(
    db: impl PgExecutor<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    slas: &[(CaseState, f64)],
) -> Result<Vec<StageTimes>, StoreError> {
    let (sla_states, sla_secs): (Vec<CaseState>, Vec<f64>) = slas.iter().copied().unzip();
    Ok(sqlx::query_as!(
        StageTimes,
        r#"SELECT e.from_state AS "state!: CaseState", count(*) AS "exits!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.at - p.at)::float8) AS "p50_secs!",
                  percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM e.at - p.at)::float8) AS "p90_secs!",
                  CASE WHEN max(s.secs) IS NOT NULL
                       THEN count(*) FILTER (WHERE extract(epoch FROM e.at - p.at) <= s.secs) END AS sla_met
           FROM case_events e
           -- When the case entered the state it left: on the exit itself, or looked up
           -- for events older than that column (see stage_stats::state_figures).
           CROSS JOIN LATERAL (SELECT COALESCE(e.from_state_since,
                                                   case_event_entered_at(e.case_id, e.version, e.at)) AS at
                               OFFSET 0) p
           LEFT JOIN unnest($3::case_state[], $4::float8[]) AS s(state, secs) ON s.state = e.from_state
           WHERE e.at >= $1 AND e.at < $2 AND e.from_state IS NOT NULL AND p.at IS NOT NULL
           GROUP BY e.from_state
           ORDER BY e.from_state"#,
        start,
        end,
        sla_states as Vec<CaseState>,
        &sla_secs,
    )
    .fetch_all(db)
    .await?)
}

/// Decisions of one agent (or, with `agent_id` `None`, of a whole team).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDecisions {
    /// The team: the role the agent acted in.
    pub team: Role,
    /// The agent's id (`None`: the team's total).
    pub agent_id: Option<String>,
    /// The agent's username, when the account exists.
    pub username: Option<String>,
    /// Distinct cases decided.
    pub cases: i64,
    /// Decisions (agent-caused transitions).
    pub decisions: i64,
    /// Median seconds from the case entering the state to the decision.
    pub median_secs: f64,
}

/// Per team (role acted in) and agent: the transitions agents caused in `[start,
/// end)` (approve, reject, request information, confirm identity, retry, …), the
/// distinct cases, and the median time the case had waited in its state. Each team's
/// total comes first (`agent_id` `None`), then its agents by username.
pub async fn agent_decisions(
    db: impl PgExecutor<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<AgentDecisions>, StoreError> {
    Ok(sqlx::query_as!(
        AgentDecisions,
        r#"SELECT e.actor_role AS "team!: Role", e.actor_id AS "agent_id?", a.username AS "username?",
                  count(DISTINCT e.case_id) AS "cases!", count(*) AS "decisions!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.at - p.at)::float8) AS "median_secs!"
           FROM case_events e
           CROSS JOIN LATERAL (SELECT COALESCE(e.from_state_since,
                                                   case_event_entered_at(e.case_id, e.version, e.at)) AS at
                               OFFSET 0) p
           LEFT JOIN agents a ON a.id::text = e.actor_id
           WHERE e.at >= $1 AND e.at < $2 AND e.from_state IS NOT NULL AND p.at IS NOT NULL
             AND e.actor_role NOT IN ('customer', 'system')
           GROUP BY GROUPING SETS ((e.actor_role), (e.actor_role, e.actor_id, a.username))
           ORDER BY e.actor_role, e.actor_id IS NOT NULL, a.username, e.actor_id"#,
        start,
        end,
    )
    .fetch_all(db)
    .await?)
}

/// Complaints of one channel (or, with `channel` `None`, of all).
#[derive(Debug, Clone, PartialEq)]
pub struct ComplaintTimes {
    /// Where they were made (`None`: every channel).
    pub channel: Option<String>,
    /// Complaints made in the window.
    pub made: i64,
    /// Of those, answered (by now).
    pub answered: i64,
    /// Answered by their due time.
    pub answered_in_time: i64,
    /// Still open.
    pub open: i64,
    /// Still open and past their due time at `now`.
    pub open_overdue: i64,
    /// Escalated by the timers service for being overdue.
    pub escalated: i64,
    /// Median seconds from complaint to answer (`None`: none answered).
    pub answer_p50_secs: Option<f64>,
    /// 90th percentile of the same.
    pub answer_p90_secs: Option<f64>,
}

/// Complaints made in `[start, end)` per channel, then the total over channels:
/// answered, in time, open, overdue at `now`, escalated, and the answer times.
pub async fn complaint_times(
    db: impl PgExecutor<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<ComplaintTimes>, StoreError> {
    Ok(sqlx::query_as!(
        ComplaintTimes,
        r#"SELECT k.channel AS "channel?", count(*) AS "made!",
                  count(k.answered_at) AS "answered!",
                  count(*) FILTER (WHERE k.answered_at <= k.due_at) AS "answered_in_time!",
                  count(*) FILTER (WHERE k.status = 'open') AS "open!",
                  count(*) FILTER (WHERE k.status = 'open' AND k.due_at < $3) AS "open_overdue!",
                  count(k.escalated_at) AS "escalated!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM k.answered_at - k.created_at)::float8) AS answer_p50_secs,
                  percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM k.answered_at - k.created_at)::float8) AS answer_p90_secs
           FROM case_complaints k
           WHERE k.created_at >= $1 AND k.created_at < $2
           GROUP BY GROUPING SETS ((k.channel), ())
           ORDER BY k.channel IS NULL, k.channel"#,
        start,
        end,
        now,
    )
    .fetch_all(db)
    .await?)
}

/// Flagged cases of one reason code in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonFlags {
    /// The reason code.
    pub reason_code: String,
    /// Cases an assessment in the window flagged with it (above the lowest tier).
    pub flagged: i64,
    /// Of those, labelled false positives (approved after review).
    pub approved: i64,
}

/// Per reason code: the cases an assessment in `[start, end)` flagged with it (tier
/// above low), and how many of them were approved after review (labelled false
/// positives). The window is what the all-time report
/// ([`crate::agent_work::false_positive_report`]) does not have.
pub async fn false_positives_between(
    db: impl PgExecutor<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<ReasonFlags>, StoreError> {
    Ok(sqlx::query_as!(
        ReasonFlags,
        r#"WITH flagged AS (
               SELECT DISTINCT r.case_id, code
               FROM risk_assessments r, unnest(r.reason_codes) AS code
               WHERE r.tier <> 'low' AND r.assessed_at >= $1 AND r.assessed_at < $2
           )
           SELECT f.code AS "reason_code!", count(*) AS "flagged!", count(l.case_id) AS "approved!"
           FROM flagged f
           LEFT JOIN outcome_labels l ON l.case_id = f.case_id AND l.reason_code = f.code
           GROUP BY f.code
           ORDER BY f.code"#,
        start,
        end,
    )
    .fetch_all(db)
    .await?)
}

/// Expedite requests asked in one state (or, with `state` `None`, in all).
#[derive(Debug, Clone, PartialEq)]
pub struct ExpediteFigures {
    /// The state the case was in when asked (`None`: every state).
    pub state: Option<CaseState>,
    /// Requests made in the window.
    pub requests: i64,
    /// Of those cases, finished by now.
    pub finished: i64,
    /// Of those, reactivated.
    pub reactivated: i64,
    /// Median seconds from the request to the case's end (`None`: none finished).
    pub finish_p50_secs: Option<f64>,
}

/// Expedite requests made in `[start, end)` per state asked in, then the total:
/// how many of their cases finished, were reactivated, and the median time from the
/// request to the end.
pub async fn expedite_figures(
    db: impl PgExecutor<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<ExpediteFigures>, StoreError> {
    Ok(sqlx::query_as!(
        ExpediteFigures,
        r#"SELECT x.state AS "state?: CaseState", count(*) AS "requests!",
                  count(*) FILTER (WHERE c.state = ANY($3::case_state[])) AS "finished!",
                  count(*) FILTER (WHERE c.state = 'reactivated') AS "reactivated!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM c.state_entered_at - x.requested_at)::float8)
                      FILTER (WHERE c.state = ANY($3::case_state[])) AS finish_p50_secs
           FROM case_expedite_requests x
           JOIN reactivation_cases c ON c.id = x.case_id
           WHERE x.requested_at >= $1 AND x.requested_at < $2
           GROUP BY GROUPING SETS ((x.state), ())
           ORDER BY x.state IS NULL, x.state"#,
        start,
        end,
        &FINISHED as &[CaseState],
    )
    .fetch_all(db)
    .await?)
}

/// One case of the export: what a supervisor's report needs, and no personal data but
/// the number (masked when written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    /// Case id.
    pub id: Uuid,
    /// Where it was opened.
    pub channel: String,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// Its state now.
    pub state: CaseState,
    /// When it entered that state (its end, for a finished case).
    pub state_entered_at: DateTime<Utc>,
    /// The number (personal data: write [`Msisdn::masked`] only).
    pub msisdn: Msisdn,
    /// Its latest risk tier, if graded.
    pub tier: Option<String>,
}

impl ExportRow {
    /// Whether the case is finished.
    pub fn finished(&self) -> bool {
        FINISHED.contains(&self.state)
    }

    /// When it finished, if it did.
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.finished().then_some(self.state_entered_at)
    }

    /// The finished state, or `open`.
    pub fn outcome(&self) -> &'static str {
        if self.finished() {
            self.state.as_str()
        } else {
            "open"
        }
    }
}

/// Every case opened in `[start, end)`, oldest first, as a stream read row by row from
/// the server (never collected): the caller writes each row out and drops it. The
/// connection is held until the stream ends or is dropped.
pub fn export_cases(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> impl Stream<Item = Result<ExportRow, StoreError>> + Send + '_ {
    sqlx::query_as!(
        ExportRow,
        r#"SELECT c.id, c.channel, c.created_at, c.state AS "state: CaseState", c.state_entered_at,
                  c.msisdn AS "msisdn: Msisdn",
                  (SELECT r.tier::text FROM risk_assessments r WHERE r.case_id = c.id
                   ORDER BY r.assessed_at DESC, r.id DESC LIMIT 1) AS tier
           FROM reactivation_cases c
           WHERE c.created_at >= $1 AND c.created_at < $2
           ORDER BY c.created_at, c.id"#,
        start,
        end,
    )
    .fetch(conn)
    .map_err(StoreError::from)
}

//! The supervisors' console pages and forms (issue 14, items 3, 4 and 8): the
//! escalation queue (escalated cases, with who escalated by hand and why, and
//! overdue complaints), the complaint queue (oldest due first, with the answer form
//! and the form that logs a complaint from the hotline, a store, social media or a
//! 12300 referral), and the supervisor tools on the case page (reassign, break a
//! claim, escalate). Every page and form calls the same use case as the agent API
//! route of the same name, so the roles and checks are the API's.

use askama::Template;
use axum::{
    extract::{Form, Path, State, rejection::FormRejection},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use case_domain::{
    CaseState, Role,
    complaint::{self, ComplaintChannel},
    supervision::{ESCALATORS, REASSIGNERS},
};
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::{
    ConsoleError, Ctx, Failure, Layout, i18n::Ui, iso, render, require_api_rule, short_id,
    show_time,
};
use crate::{AppState, agent::case_id as parse_case_id, agent_auth::AgentSession, error::ApiError};

/// What the case page offers of the supervisor tools.
#[derive(Debug, Default)]
pub(crate) struct CaseTools {
    pub may_reassign: bool,
    pub may_break: bool,
    pub may_escalate: bool,
}

/// The supervisor tools the agent may use on a case in `state`, held or not.
pub(crate) fn case_tools(session: &AgentSession, state: CaseState, held: bool) -> CaseTools {
    let open = !state.is_terminal();
    let human = open && !state.is_automated() && !state.waits_on_customer();
    CaseTools {
        may_reassign: human && session.has_any(REASSIGNERS),
        may_break: human && held && session.has_any(REASSIGNERS),
        may_escalate: open && session.has_any(ESCALATORS),
    }
}

/// The navigation links of these pages for `session`: (href, label key).
pub(crate) fn nav_links(session: &AgentSession) -> Vec<(&'static str, &'static str)> {
    let mut links = Vec::new();
    if require_api_rule(session, "get", "/v1/agent/escalations").is_ok() {
        links.push(("/console/escalations", "nav.escalations"));
    }
    if complaints_page_allowed(session) {
        links.push(("/console/complaints", "nav.complaints"));
    }
    if require_api_rule(session, "get", "/v1/agent/risk-rules").is_ok() {
        links.push(("/console/risk-rules", "nav.risk_rules"));
    }
    links
}

fn complaints_page_allowed(session: &AgentSession) -> bool {
    require_api_rule(session, "get", "/v1/agent/complaints").is_ok()
        || require_api_rule(session, "post", "/v1/agent/complaints").is_ok()
}

/// A case form of the supervisor tools.
#[derive(Debug, Deserialize)]
pub(super) struct ToolForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    expected_version: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    to: Option<String>,
}

fn done(case_id: &str, what: &str) -> Response {
    Redirect::to(&format!("/console/cases/{case_id}?done={what}")).into_response()
}

/// What every supervisor-tool form gives its use case once it is checked: the
/// form's own session (CSRF checked), the case and the version seen.
struct ToolPost {
    session: AgentSession,
    case_id: Uuid,
    version: i32,
    form: ToolForm,
}

fn tool_post(
    ctx: &Ctx,
    session: Result<AgentSession, ApiError>,
    case_id: &str,
    form: Result<Form<ToolForm>, FormRejection>,
) -> Result<ToolPost, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let version = super::case::expected_version(ctx, &form.expected_version)?;
    let case_id = parse_case_id(case_id).map_err(|e| ctx.fail(e))?;
    Ok(ToolPost {
        session,
        case_id,
        version,
        form,
    })
}

/// `POST /console/cases/{id}/reassign`: the API's reassign use case.
pub(super) async fn reassign(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(case_id): Path<String>,
    form: Result<Form<ToolForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let post = tool_post(&ctx, session, &case_id, form)?;
    case_workflows::supervision::reassign(
        &state.pool,
        &post.session.as_agent(),
        post.case_id,
        post.form.to.as_deref().unwrap_or_default(),
        post.version,
        &post.form.reason,
    )
    .await
    .map_err(|e| ctx.fail(e.into()))?;
    Ok(done(&case_id, "reassigned"))
}

/// `POST /console/cases/{id}/break-claim`: the API's break-claim use case.
pub(super) async fn break_claim(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(case_id): Path<String>,
    form: Result<Form<ToolForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let post = tool_post(&ctx, session, &case_id, form)?;
    case_workflows::supervision::break_claim(
        &state.pool,
        &post.session.as_agent(),
        post.case_id,
        post.version,
        &post.form.reason,
    )
    .await
    .map_err(|e| ctx.fail(e.into()))?;
    Ok(done(&case_id, "claim_broken"))
}

/// `POST /console/cases/{id}/escalate`: the API's escalate use case.
pub(super) async fn escalate(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(case_id): Path<String>,
    form: Result<Form<ToolForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let post = tool_post(&ctx, session, &case_id, form)?;
    case_workflows::supervision::escalate(
        &state.pool,
        &post.session.as_agent(),
        post.case_id,
        post.version,
        &post.form.reason,
    )
    .await
    .map_err(|e| ctx.fail(e.into()))?;
    Ok(done(&case_id, "escalated"))
}

/// One escalated case.
#[derive(Debug)]
pub(super) struct EscalatedRow {
    id: String,
    short_id: String,
    msisdn: String,
    state: String,
    state_label: String,
    level: i16,
    at: String,
    at_text: String,
    by: Option<String>,
    reason: Option<String>,
    holder: Option<String>,
}

/// One complaint in a list.
#[derive(Debug)]
pub(super) struct ComplaintRow {
    id: String,
    case_id: Option<String>,
    case_short: String,
    msisdn: String,
    state_label: String,
    channel_label: String,
    reference: Option<String>,
    body: String,
    logged_by: Option<String>,
    due: String,
    due_text: String,
    overdue: bool,
    escalated: bool,
    open: bool,
    answer: Option<String>,
}

fn complaint_row(ui: Ui, r: case_store::complaints::ComplaintListRow) -> ComplaintRow {
    let now = Utc::now();
    let k = r.complaint;
    let status = k.status();
    ComplaintRow {
        id: k.id.to_string(),
        case_id: k.case_id.map(|id| id.to_string()),
        case_short: k.case_id.map(short_id).unwrap_or_default(),
        msisdn: r.msisdn.masked(),
        state_label: r
            .case_state
            .map(|s| ui.code("state", s.as_str()))
            .unwrap_or_else(|| ui.t("complaints.no_case")),
        channel_label: ui.code("complaint.channel", &k.channel),
        reference: k.reference,
        body: k.body,
        logged_by: k.logged_by_username,
        due: iso(k.due_at),
        due_text: ui.countdown((k.due_at - now).num_seconds()),
        overdue: complaint::overdue(status, k.due_at, now),
        escalated: k.escalated_at.is_some(),
        open: status == complaint::ComplaintStatus::Open,
        answer: k.answer,
    }
}

#[derive(Template)]
#[template(path = "console/escalations.html")]
struct EscalationsPage {
    layout: Layout,
    cases: Vec<EscalatedRow>,
    complaints: Vec<ComplaintRow>,
}

/// `GET /console/escalations`: the API's escalation queue.
pub(super) async fn escalations(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    let ui = ctx.ui;
    let agent = session.as_agent();
    let now = Utc::now();
    let cases = case_workflows::agent::escalations(&state.pool, &agent, now)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    let complaints = case_workflows::complaints::escalated(&state.pool, &agent)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    let names = case_store::agents::usernames(
        &state.pool,
        &cases
            .iter()
            .filter_map(|c| c.claimed_by.as_deref().and_then(|h| h.parse::<Uuid>().ok()))
            .collect::<Vec<_>>(),
    )
    .await
    .map_err(|e| ctx.fail(case_workflows::WorkflowError::from(e).into()))?;
    let page = EscalationsPage {
        layout: ctx.layout(ui.t("esc.title"), Some(&session)),
        cases: cases
            .into_iter()
            .map(|c| EscalatedRow {
                id: c.case_id.to_string(),
                short_id: short_id(c.case_id),
                msisdn: c.msisdn,
                state: c.state.as_str().into(),
                state_label: ui.code("state", c.state.as_str()),
                level: c.escalation_level,
                at: c.escalated_at.map(iso).unwrap_or_default(),
                at_text: c.escalated_at.map(show_time).unwrap_or_default(),
                by: c.escalated_by,
                reason: c.escalation_reason,
                holder: c.claimed_by.map(|h| {
                    names
                        .iter()
                        .find(|(id, _)| id.to_string() == h)
                        .map_or(h.clone(), |(_, n)| n.clone())
                }),
            })
            .collect(),
        complaints: complaints
            .into_iter()
            .map(|r| complaint_row(ui, r))
            .collect(),
    };
    Ok(render(&page, StatusCode::OK))
}

/// A channel in the log form.
#[derive(Debug)]
pub(super) struct ChannelOption {
    code: &'static str,
    label: String,
}

#[derive(Template)]
#[template(path = "console/complaints.html")]
struct ComplaintsPage {
    layout: Layout,
    may_log: bool,
    may_list: bool,
    channels: Vec<ChannelOption>,
    complaints: Vec<ComplaintRow>,
    notice: Option<String>,
}

/// `GET /console/complaints`: the complaint queue (supervisors: the API's list,
/// open ones, oldest due first) and the form that logs a complaint (CS and
/// supervisors).
pub(super) async fn complaints(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    let ui = ctx.ui;
    if !complaints_page_allowed(&session) {
        return Err(ctx.fail(ApiError::Forbidden("Your role may not do this.".into())));
    }
    let may_list = require_api_rule(&session, "get", "/v1/agent/complaints").is_ok();
    let may_log = require_api_rule(&session, "post", "/v1/agent/complaints").is_ok();
    let complaints = if may_list {
        case_workflows::complaints::queue(&state.pool, Some("open"))
            .await
            .map_err(|e| ctx.fail(e.into()))?
            .into_iter()
            .map(|r| complaint_row(ui, r))
            .collect()
    } else {
        Vec::new()
    };
    let notice = ctx.param("done").and_then(|d| match d {
        "logged" => Some(ui.t("complaints.logged")),
        "answered" => Some(ui.t("complaints.answered")),
        _ => None,
    });
    let page = ComplaintsPage {
        layout: ctx.layout(ui.t("complaints.title"), Some(&session)),
        may_log,
        may_list,
        channels: ComplaintChannel::AGENT_LOGGED
            .into_iter()
            .map(|c| ChannelOption {
                code: c.as_str(),
                label: ui.code("complaint.channel", c.as_str()),
            })
            .collect(),
        complaints,
        notice,
    };
    Ok(render(&page, StatusCode::OK))
}

/// The form that logs a complaint.
#[derive(Debug, Deserialize)]
pub(super) struct LogForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    case_id: String,
    #[serde(default)]
    msisdn: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    locale: String,
}

fn some(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// `POST /console/complaints`: the API's log-complaint use case.
pub(super) async fn log(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    form: Result<Form<LogForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let case_id = match some(form.case_id) {
        None => None,
        Some(raw) => Some(raw.parse::<Uuid>().map_err(|_| {
            ctx.fail(ApiError::Invalid(vec![crate::error::FieldError {
                field: "case_id".into(),
                message: "case_id must be a case id (UUID)".into(),
            }]))
        })?),
    };
    let row = crate::complaints::log_as(
        &state,
        &session,
        crate::complaints::LogComplaintRequest {
            channel: form.channel,
            text: form.text,
            case_id,
            msisdn: some(form.msisdn),
            reference: some(form.reference),
            locale: some(form.locale),
        },
    )
    .await
    .map_err(|e| ctx.fail(e))?;
    let back = match row.case_id {
        Some(id) if session.has_any(case_domain::agent_policy::CASE_READERS) => {
            format!("/console/cases/{id}")
        }
        _ => "/console/complaints?done=logged".into(),
    };
    Ok(Redirect::to(&back).into_response())
}

/// The answer form.
#[derive(Debug, Deserialize)]
pub(super) struct AnswerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    answer: String,
}

/// `POST /console/complaints/{id}/answer`: the API's answer use case (the
/// subscriber is told).
pub(super) async fn answer(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(complaint_id): Path<String>,
    form: Result<Form<AnswerForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let id: Uuid = complaint_id
        .parse()
        .map_err(|_| ctx.fail(ApiError::NotFound))?;
    crate::complaints::answer_as(&state, &session, None, id, &form.answer)
        .await
        .map_err(|e| ctx.fail(e))?;
    let next = if session.has(Role::Supervisor) {
        "/console/complaints?done=answered"
    } else {
        "/console"
    };
    Ok(Redirect::to(next).into_response())
}

//! A department's queue: the agent API's queue use case (same roles, same order), as
//! a table with live SLA countdowns, badges and claim/release buttons.

use askama::Template;
use axum::{extract::State, http::StatusCode, response::Response};
use case_domain::{agent_policy::queue_states, decision::agent_may_act};
use chrono::Utc;

use super::{ConsoleError, Ctx, Layout, department_code, iso, render, short_id, show_time};
use crate::{AppState, agent_auth::AgentSession, error::ApiError};

/// One row of the queue table.
#[derive(Debug)]
pub(super) struct Row {
    id: String,
    short_id: String,
    msisdn: String,
    state: String,
    state_label: String,
    tier: Option<String>,
    tier_label: String,
    due: Option<String>,
    due_text: String,
    breached: bool,
    holder: Option<String>,
    held_by_me: bool,
    held_by_other: bool,
    version: i32,
    may_act: bool,
    complaint: bool,
    expedited: bool,
    escalated: bool,
    appealed: bool,
}

#[derive(Template)]
#[template(path = "console/queue.html")]
struct QueuePage {
    layout: Layout,
    heading: String,
    department: String,
    states: String,
    case_ids: String,
    rows: Vec<Row>,
    breached: usize,
    complaints: usize,
    back: String,
    rendered_at: String,
    rendered_at_text: String,
}

/// `GET /console/queue?department=cs|security|technical`.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    let code = ctx.param("department").unwrap_or_default().to_owned();
    let department = crate::agent::department(&code).map_err(|e| ctx.fail(e))?;
    // The API's own queue use case: its role check and order hold here too.
    let now = Utc::now();
    let queue = case_workflows::agent::queue(
        &state.pool,
        &state.sla,
        &session.as_agent(),
        department,
        now,
    )
    .await
    .map_err(|e| ctx.fail(e.into()))?;
    let ui = ctx.ui;
    let me = session.agent.username.clone();
    let rows: Vec<Row> = queue
        .iter()
        .map(|item| {
            let holder = item.claimed_by.as_ref().map(|id| {
                if *id == session.id().to_string() {
                    me.clone()
                } else {
                    id.clone()
                }
            });
            let held_by_me = item
                .claimed_by
                .as_deref()
                .is_some_and(|id| id == session.id().to_string());
            Row {
                id: item.case_id.to_string(),
                short_id: short_id(item.case_id),
                msisdn: item.msisdn.clone(),
                state: item.state.as_str().into(),
                state_label: ui.code("state", item.state.as_str()),
                tier_label: item
                    .tier
                    .as_deref()
                    .map(|t| ui.code("tier", t))
                    .unwrap_or_default(),
                tier: item.tier.clone(),
                due: item.sla_due_at.map(iso),
                due_text: item
                    .sla_due_at
                    .map(|d| ui.countdown((d - now).num_seconds()))
                    .unwrap_or_default(),
                breached: item.breached,
                held_by_other: holder.is_some() && !held_by_me,
                holder,
                held_by_me,
                version: item.version,
                may_act: agent_may_act(session.roles(), item.state),
                complaint: item.complaint,
                expedited: item.expedited,
                // The queue carries neither escalation nor appeal: no badge.
                escalated: false,
                appealed: false,
            }
        })
        .collect();
    let names = resolve_holders(&state, rows)
        .await
        .map_err(|e| ctx.fail(e))?;
    let heading = ui.t(&format!("queue.heading.{}", department_code(department)));
    let page = QueuePage {
        layout: ctx.layout(heading.clone(), Some(&session)),
        department: department_code(department).into(),
        states: queue_states(department)
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        case_ids: names
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        breached: names.iter().filter(|r| r.breached).count(),
        complaints: names.iter().filter(|r| r.complaint).count(),
        rows: names,
        heading,
        back: ctx.here(),
        rendered_at: iso(now),
        rendered_at_text: show_time(now),
    };
    Ok(render(&page, StatusCode::OK))
}

/// Shows agents' usernames instead of their ids.
async fn resolve_holders(state: &AppState, mut rows: Vec<Row>) -> Result<Vec<Row>, ApiError> {
    let ids: Vec<uuid::Uuid> = rows
        .iter()
        .filter_map(|r| r.holder.as_deref().and_then(|h| h.parse().ok()))
        .collect();
    if ids.is_empty() {
        return Ok(rows);
    }
    let names = case_store::dashboard::agent_names(&state.pool, &ids).await?;
    for row in &mut rows {
        if let Some(name) = row
            .holder
            .as_deref()
            .and_then(|h| h.parse().ok())
            .and_then(|id: uuid::Uuid| names.get(&id))
        {
            row.holder = Some(name.clone());
        }
    }
    Ok(rows)
}

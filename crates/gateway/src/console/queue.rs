//! A department's queue: the agent API's queue (same roles, same order), as a table
//! with live SLA countdowns, badges and claim/release buttons.

use askama::Template;
use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use case_domain::{CaseState, Department, decision::agent_may_act};
use chrono::Utc;

use super::{ConsoleError, Ctx, Layout, department_code, iso, render, short_id, show_time};
use crate::{
    AppState,
    agent::{self, QueueQuery, queue_states},
    agent_auth::AgentSession,
    error::ApiError,
};

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

/// A field the API's queue item may carry (added by other features); false when absent.
fn flag(item: &serde_json::Value, names: &[&str]) -> bool {
    names.iter().any(|n| match &item[*n] {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(x) => x.as_i64().unwrap_or(0) > 0,
        serde_json::Value::String(s) => !s.is_empty() && s != "normal",
        serde_json::Value::Array(a) => !a.is_empty(),
        _ => false,
    })
}

fn parse_department(code: &str) -> Option<Department> {
    match code {
        "cs" | "customer_service" => Some(Department::CustomerService),
        "security" => Some(Department::Security),
        "technical" => Some(Department::Technical),
        _ => None,
    }
}

/// `GET /console/queue?department=cs|security|technical`.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    let code = ctx.param("department").unwrap_or_default().to_owned();
    let department = parse_department(&code).ok_or_else(|| {
        ctx.fail(ApiError::Invalid(vec![crate::error::FieldError {
            field: "department".into(),
            message: "department must be cs, security or technical".into(),
        }]))
    })?;
    // The API's own queue handler: its role check and order hold here too.
    let Json(queue) = agent::queue(
        State(state.clone()),
        session.clone(),
        Ok(Query(QueueQuery {
            department: code.clone(),
        })),
    )
    .await
    .map_err(|e| ctx.fail(e))?;
    let now = Utc::now();
    let ui = ctx.ui;
    let me = session.agent.username.clone();
    let rows: Vec<Row> = queue
        .cases
        .iter()
        .map(|item| {
            let extra = serde_json::to_value(item).unwrap_or_default();
            let state = CaseState::parse(&item.state);
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
                state: item.state.clone(),
                state_label: ui.code("state", &item.state),
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
                may_act: state.is_some_and(|s| agent_may_act(session.roles(), s)),
                complaint: flag(&extra, &["complaint", "open_complaints", "has_complaint"]),
                escalated: flag(&extra, &["escalated", "escalation", "escalation_level"]),
                appealed: flag(&extra, &["appealed"]),
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

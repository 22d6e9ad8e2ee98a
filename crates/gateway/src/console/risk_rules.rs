//! The supervisors' risk-rules page (issue 15, item 5): the current thresholds, every
//! version before (who, when, why), and one form that replays a proposal over the
//! recent assessed cases (nothing changes) or adopts it as the next version. It calls
//! the use cases of the API routes of the same name, so the roles and checks are the
//! API's.

use askama::Template;
use axum::{
    extract::{Form, State, rejection::FormRejection},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use case_domain::risk_rules::{GRADED_RULES, ReplayReport, RiskThresholds, RuleThresholds};
use case_workflows::risk_rules as wf;
use chrono::Utc;
use serde::Deserialize;

use super::{ConsoleError, Ctx, Failure, Layout, iso, render, require_api_rule, show_time};
use crate::{AppState, agent_auth::AgentSession, error::ApiError};

/// One graded rule's thresholds on the page.
#[derive(Debug)]
pub(super) struct RuleRow {
    code: &'static str,
    label: String,
    medium: u32,
    high: u32,
}

/// One version in the history.
#[derive(Debug)]
pub(super) struct VersionRow {
    version: i32,
    current: bool,
    rules: Vec<RuleRow>,
    highs_for_extreme: u32,
    by: String,
    at: String,
    at_text: String,
    reason: String,
}

/// One rule's replay line.
#[derive(Debug)]
pub(super) struct ReplayRow {
    code: &'static str,
    label: String,
    fired_recorded: u64,
    fired_proposed: u64,
    false_positives: u64,
    false_positives_passing: u64,
}

/// A replay's result.
#[derive(Debug)]
pub(super) struct ReplayResult {
    days: u32,
    report: ReplayReport,
    rules: Vec<ReplayRow>,
}

#[derive(Template)]
#[template(path = "console/risk_rules.html")]
struct RiskRulesPage {
    layout: Layout,
    current: VersionRow,
    history: Vec<VersionRow>,
    /// The form's values: the proposal (or the current thresholds).
    proposal: Vec<RuleRow>,
    highs_for_extreme: u32,
    days: u32,
    reason: String,
    replay: Option<ReplayResult>,
    notice: Option<String>,
}

fn rule_rows(ui: super::i18n::Ui, t: &RiskThresholds) -> Vec<RuleRow> {
    GRADED_RULES
        .into_iter()
        .filter_map(|code| {
            t.rule(code).map(|r| RuleRow {
                code: code.as_str(),
                label: ui.code("reason", code.as_str()),
                medium: r.medium,
                high: r.high,
            })
        })
        .collect()
}

/// The page with the form holding `proposal`.
async fn page(
    state: &AppState,
    ctx: &Ctx,
    session: &AgentSession,
    proposal: Option<(RiskThresholds, u32, String)>,
    replay: Option<ResultInput>,
) -> Result<Response, ConsoleError> {
    let ui = ctx.ui;
    let rows = wf::versions(&state.pool, &session.as_agent())
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    let version = |r: case_store::risk_rules::RuleVersionRow| VersionRow {
        version: r.version,
        current: r.activated,
        rules: rule_rows(ui, &r.thresholds),
        highs_for_extreme: r.thresholds.highs_for_extreme,
        by: r
            .created_by_username
            .unwrap_or_else(|| ui.t("rules.seeded")),
        at: iso(r.created_at),
        at_text: show_time(r.created_at),
        reason: r.reason,
    };
    let Some(current) = rows.iter().find(|r| r.activated).cloned() else {
        return Err(ctx.fail(ApiError::Internal(anyhow::anyhow!(
            "no current version of the risk rules"
        ))));
    };
    let (thresholds, days, reason) =
        proposal.unwrap_or_else(|| (current.thresholds, 30, String::new()));
    let notice = ctx.param("done").and_then(|d| match d {
        "changed" => Some(ui.t("rules.changed")),
        _ => None,
    });
    let page = RiskRulesPage {
        layout: ctx.layout(ui.t("rules.title"), Some(session)),
        current: version(current),
        history: rows.into_iter().map(version).collect(),
        proposal: rule_rows(ui, &thresholds),
        highs_for_extreme: thresholds.highs_for_extreme,
        days,
        reason,
        replay: replay.map(|r| ReplayResult {
            days: r.days,
            rules: r
                .report
                .rules
                .iter()
                .map(|l| ReplayRow {
                    code: l.reason.as_str(),
                    label: ui.code("reason", l.reason.as_str()),
                    fired_recorded: l.fired_recorded,
                    fired_proposed: l.fired_proposed,
                    false_positives: l.false_positives,
                    false_positives_passing: l.false_positives_passing,
                })
                .collect(),
            report: r.report,
        }),
        notice,
    };
    Ok(render(&page, StatusCode::OK))
}

struct ResultInput {
    days: u32,
    report: ReplayReport,
}

/// `GET /console/risk-rules`: the API's risk-rules read.
pub(super) async fn show(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    require_api_rule(&session, "get", "/v1/agent/risk-rules").map_err(|e| ctx.fail(e))?;
    page(&state, &ctx, &session, None, None).await
}

/// The proposal form.
#[derive(Debug, Deserialize)]
pub(super) struct ProposalForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    based_on: String,
    #[serde(default)]
    fraud_linked_contacts_medium: String,
    #[serde(default)]
    fraud_linked_contacts_high: String,
    #[serde(default)]
    bulk_sms_medium: String,
    #[serde(default)]
    bulk_sms_high: String,
    #[serde(default)]
    international_calls_medium: String,
    #[serde(default)]
    international_calls_high: String,
    #[serde(default)]
    highs_for_extreme: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    reason: String,
}

/// Parses the form's numbers; every one that is not a whole number is named.
fn numbers(form: &ProposalForm) -> Result<(RiskThresholds, u32, i32), ApiError> {
    let mut errors = Vec::new();
    let mut number = |field: &str, raw: &str| -> u32 {
        raw.trim().parse::<u32>().unwrap_or_else(|_| {
            errors.push(crate::error::FieldError {
                field: field.into(),
                message: format!("{field} must be a whole number (0 or more)"),
            });
            0
        })
    };
    let mut rule = |name: &str, medium: &str, high: &str| RuleThresholds {
        medium: number(&format!("thresholds.{name}.medium"), medium),
        high: number(&format!("thresholds.{name}.high"), high),
    };
    let fraud = rule(
        "fraud_linked_contacts",
        &form.fraud_linked_contacts_medium,
        &form.fraud_linked_contacts_high,
    );
    let sms = rule("bulk_sms", &form.bulk_sms_medium, &form.bulk_sms_high);
    let intl = rule(
        "international_calls",
        &form.international_calls_medium,
        &form.international_calls_high,
    );
    let highs = number("thresholds.highs_for_extreme", &form.highs_for_extreme);
    let days = if form.op == "replay" {
        number("days", &form.days)
    } else {
        0
    };
    let based_on = if form.op == "adopt" {
        form.based_on.trim().parse::<i32>().unwrap_or_else(|_| {
            errors.push(crate::error::FieldError {
                field: "based_on".into(),
                message: "based_on must be a version number".into(),
            });
            0
        })
    } else {
        0
    };
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    Ok((
        RiskThresholds {
            fraud_linked_contacts: fraud,
            bulk_sms: sms,
            international_calls: intl,
            highs_for_extreme: highs,
        },
        days,
        based_on,
    ))
}

/// `POST /console/risk-rules`: `op=replay` runs the API's replay and shows the
/// counts under the form; `op=adopt` makes the proposal the next version (the API's
/// change: 409 when the rules changed meanwhile).
pub(super) async fn submit(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    form: Result<Form<ProposalForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let (thresholds, days, based_on) = numbers(&form).map_err(|e| ctx.fail(e))?;
    match form.op.as_str() {
        "replay" => {
            let replayed = wf::replay(
                &state.pool,
                &session.as_agent(),
                thresholds,
                days,
                Utc::now(),
            )
            .await
            .map_err(|e| ctx.fail(e.into()))?;
            page(
                &state,
                &ctx,
                &session,
                Some((thresholds, days, form.reason.clone())),
                Some(ResultInput {
                    days,
                    report: replayed.report,
                }),
            )
            .await
        }
        "adopt" => {
            wf::change(
                &state.pool,
                &session.as_agent(),
                based_on,
                thresholds,
                &form.reason,
            )
            .await
            .map_err(|e| ctx.fail(e.into()))?;
            Ok(Redirect::to("/console/risk-rules?done=changed").into_response())
        }
        _ => Err(ctx.refuse(Failure::BadForm)),
    }
}

//! The supervisor dashboard: load and oldest case per stage, SLA breaches,
//! throughput and median time per stage over the last day, open complaints by due
//! date, the false-positive rate per reason code (the API's report) and the dead
//! letters per queue, with
//! server-rendered SVG bar charts and the same figures in tables.

use askama::Template;
use axum::{extract::State, http::StatusCode, response::Response};
use case_domain::{CaseState, complaint::ComplaintStatus, progress, reports::DateRange};
use chrono::{Duration, Utc};

use super::{ConsoleError, Ctx, Layout, iso, render, short_id, show_time};
use crate::{AppState, agent_auth::AgentSession, error::ApiError};

/// One bar of a chart, laid out.
#[derive(Debug)]
pub(super) struct Bar {
    label: String,
    value_text: String,
    y: u32,
    text_y: u32,
    width: u32,
    value_x: u32,
    bad: bool,
}

/// A horizontal bar chart, laid out on the server (no script, no inline style).
#[derive(Debug)]
pub(super) struct Chart {
    id: &'static str,
    title: String,
    desc: String,
    empty: String,
    bars: Vec<Bar>,
    width: u32,
    height: u32,
    label_end: u32,
    bar_start: u32,
    bar_height: u32,
}

const ROW: u32 = 30;
const BAR_HEIGHT: u32 = 18;
const LABEL_END: u32 = 262;
const BAR_START: u32 = 270;
const BAR_MAX: u32 = 290;
const CHART_WIDTH: u32 = 620;

impl Chart {
    /// Lays out `(label, value, shown as, bad)` bars scaled to the largest value;
    /// `empty` is said instead when there are none.
    pub(super) fn new(
        id: &'static str,
        title: String,
        desc: String,
        empty: String,
        data: Vec<(String, f64, String, bool)>,
    ) -> Self {
        let max = data.iter().map(|d| d.1).fold(0.0_f64, f64::max);
        let bars = data
            .into_iter()
            .enumerate()
            .map(|(i, (label, value, value_text, bad))| {
                let width = if max > 0.0 {
                    ((value / max) * f64::from(BAR_MAX))
                        .round()
                        .max(if value > 0.0 { 2.0 } else { 0.0 }) as u32
                } else {
                    0
                };
                let y = i as u32 * ROW + (ROW - BAR_HEIGHT) / 2;
                Bar {
                    label,
                    value_text,
                    y,
                    text_y: y + BAR_HEIGHT - 4,
                    value_x: BAR_START + width + 6,
                    width,
                    bad,
                }
            })
            .collect::<Vec<_>>();
        Self {
            id,
            title,
            desc,
            empty,
            height: (bars.len() as u32 * ROW).max(ROW),
            bars,
            width: CHART_WIDTH,
            label_end: LABEL_END,
            bar_start: BAR_START,
            bar_height: BAR_HEIGHT,
        }
    }
}

#[derive(Debug)]
pub(super) struct StageRow {
    state: String,
    label: String,
    open: i64,
    oldest: String,
    oldest_text: String,
    oldest_age: String,
    breached: i64,
}

#[derive(Debug)]
pub(super) struct ThroughputRow {
    label: String,
    left: i64,
    median: String,
}

#[derive(Debug)]
pub(super) struct FalsePositiveRow {
    code: String,
    rule_version: i32,
    label: String,
    flagged: i64,
    approved: i64,
    rate: String,
}

#[derive(Debug)]
pub(super) struct ComplaintRow {
    case_id: String,
    short_id: String,
    msisdn: String,
    state_label: String,
    channel: String,
    due: String,
    due_text: String,
    overdue: bool,
}

#[derive(Debug)]
pub(super) struct DeadLetterRow {
    queue: &'static str,
    dead: i64,
}

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    total_open: i64,
    total_breached: i64,
    total_moves: i64,
    stages: Vec<StageRow>,
    throughput: Vec<ThroughputRow>,
    false_positives: Vec<FalsePositiveRow>,
    complaints: Vec<ComplaintRow>,
    complaints_overdue: usize,
    dead_letters: Vec<DeadLetterRow>,
    load_chart: Chart,
    breach_chart: Chart,
    throughput_chart: Chart,
    median_chart: Chart,
    fp_chart: Chart,
    rendered_at: String,
    rendered_at_text: String,
    range_from: String,
    range_to: String,
    reports_link: String,
    summary: super::reports::CasesSummary,
}

/// `GET /console/dashboard` (supervisors, as the API's report).
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    // The audience of the false-positive report (supervisors), as declared for the API.
    super::require_api_rule(&session, "get", "/v1/agent/reports/false-positives")
        .map_err(|e| ctx.fail(e))?;
    let ui = ctx.ui;
    let now = Utc::now();
    let pool = &state.pool;
    let open_states: Vec<CaseState> = CaseState::ALL
        .into_iter()
        .filter(|s| !s.is_terminal())
        .collect();
    let slas: Vec<(CaseState, f64)> = open_states
        .iter()
        .filter_map(|s| progress::default_stage_sla(*s).map(|d| (*s, d.num_seconds() as f64)))
        .collect();
    let load = case_store::dashboard::stage_load(pool, &open_states, &slas, now)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    let moves = case_store::dashboard::stage_throughput(pool, now - Duration::hours(24))
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    // The API's own report use case (and its supervisor-only rule).
    let report = case_workflows::agent::false_positive_report(pool, &session.as_agent())
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    let complaints = case_store::complaints::list_by_status(pool, Some(ComplaintStatus::Open), 100)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    // The cases opened in a range per channel and outcome (`?from=&to=`, today by
    // default: the page is re-read on every case change, so its default range stays
    // one day's cases).
    let today = DateRange::day_of(now);
    let range = super::reports::range_of(&ctx, today, today)?;
    let lines = case_workflows::reports::cases_summary(pool, &session.as_agent(), range)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    let summary = super::reports::CasesSummary::new(ui, &lines);
    let dead_letters = case_store::dashboard::dead_letters(pool)
        .await
        .map_err(|e| ctx.fail(e.into()))?
        .into_iter()
        .map(|(queue, dead)| DeadLetterRow { queue, dead })
        .collect();

    let stages: Vec<StageRow> = load
        .iter()
        .map(|s| StageRow {
            state: s.state.as_str().into(),
            label: ui.code("state", s.state.as_str()),
            open: s.open,
            oldest: iso(s.oldest_entered_at),
            oldest_text: show_time(s.oldest_entered_at),
            oldest_age: ui.duration((now - s.oldest_entered_at).num_seconds()),
            breached: s.breached,
        })
        .collect();
    let desc = ui.t("dash.chart.desc");
    let load_chart = Chart::new(
        "chart-load",
        ui.t("dash.chart.load"),
        desc.clone(),
        ui.t("dash.no_open"),
        load.iter()
            .map(|s| {
                (
                    ui.code("state", s.state.as_str()),
                    s.open as f64,
                    s.open.to_string(),
                    false,
                )
            })
            .collect(),
    );
    let breach_chart = Chart::new(
        "chart-breaches",
        ui.t("dash.chart.breaches"),
        desc.clone(),
        ui.t("dash.no_breaches"),
        load.iter()
            .filter(|s| s.breached > 0)
            .map(|s| {
                (
                    ui.code("state", s.state.as_str()),
                    s.breached as f64,
                    s.breached.to_string(),
                    s.breached > 0,
                )
            })
            .collect(),
    );
    let throughput_chart = Chart::new(
        "chart-left",
        ui.t("dash.chart.left"),
        desc.clone(),
        ui.t("dash.no_data"),
        moves
            .iter()
            .map(|m| {
                (
                    ui.code("state", m.state.as_str()),
                    m.left as f64,
                    m.left.to_string(),
                    false,
                )
            })
            .collect(),
    );
    let median_chart = Chart::new(
        "chart-median",
        ui.t("dash.chart.median"),
        desc.clone(),
        ui.t("dash.no_data"),
        moves
            .iter()
            .map(|m| {
                (
                    ui.code("state", m.state.as_str()),
                    m.median_secs,
                    ui.duration(m.median_secs.round() as i64),
                    false,
                )
            })
            .collect(),
    );
    // Once the rules changed, a bar says which version's it is.
    let several_versions = report
        .windows(2)
        .any(|w| w[0].rule_version != w[1].rule_version);
    let fp_chart = Chart::new(
        "chart-fp",
        ui.t("dash.chart.fp"),
        desc,
        ui.t("dash.no_data"),
        report
            .iter()
            .map(|r| {
                (
                    if several_versions {
                        format!("v{} {}", r.rule_version, ui.code("reason", &r.reason_code))
                    } else {
                        ui.code("reason", &r.reason_code)
                    },
                    r.false_positive_rate,
                    format!("{:.0}%", r.false_positive_rate * 100.0),
                    r.false_positive_rate >= 0.5,
                )
            })
            .collect(),
    );
    let complaint_rows: Vec<ComplaintRow> = complaints
        .into_iter()
        .map(|k| {
            let overdue = k.complaint.due_at < now;
            ComplaintRow {
                case_id: k
                    .complaint
                    .case_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                short_id: k.complaint.case_id.map(short_id).unwrap_or_default(),
                msisdn: k.msisdn.masked(),
                state_label: k
                    .case_state
                    .map(|s| ui.code("state", s.as_str()))
                    .unwrap_or_else(|| ui.t("complaints.no_case")),
                channel: k.complaint.channel.clone(),
                due: iso(k.complaint.due_at),
                due_text: ui.countdown((k.complaint.due_at - now).num_seconds()),
                overdue,
            }
        })
        .collect();
    let page = DashboardPage {
        layout: ctx.layout(ui.t("dash.title"), Some(&session)),
        total_open: load.iter().map(|s| s.open).sum(),
        total_breached: load.iter().map(|s| s.breached).sum(),
        total_moves: moves.iter().map(|m| m.left).sum(),
        stages,
        throughput: moves
            .iter()
            .map(|m| ThroughputRow {
                label: ui.code("state", m.state.as_str()),
                left: m.left,
                median: ui.duration(m.median_secs.round() as i64),
            })
            .collect(),
        false_positives: report
            .iter()
            .map(|r| FalsePositiveRow {
                code: r.reason_code.clone(),
                rule_version: r.rule_version,
                label: ui.code("reason", &r.reason_code),
                flagged: r.flagged,
                approved: r.approved,
                rate: format!("{:.0}%", r.false_positive_rate * 100.0),
            })
            .collect(),
        complaints_overdue: complaint_rows.iter().filter(|k| k.overdue).count(),
        complaints: complaint_rows,
        dead_letters,
        load_chart,
        breach_chart,
        throughput_chart,
        median_chart,
        fp_chart,
        rendered_at: iso(now),
        rendered_at_text: show_time(now),
        range_from: range.from().to_string(),
        range_to: range.to().to_string(),
        reports_link: super::reports::page_link(range),
        summary,
    };
    Ok(render(&page, StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_stack_down() {
        let chart = Chart::new(
            "c",
            "t".into(),
            "d".into(),
            "none".into(),
            vec![
                ("a".into(), 10.0, "10".into(), false),
                ("b".into(), 5.0, "5".into(), true),
                ("c".into(), 0.0, "0".into(), false),
                ("d".into(), 0.01, "0".into(), false),
            ],
        );
        let widths: Vec<u32> = chart.bars.iter().map(|b| b.width).collect();
        assert_eq!(widths, [BAR_MAX, BAR_MAX / 2, 0, 2]);
        assert!(chart.bars.windows(2).all(|w| w[1].y == w[0].y + ROW));
        assert_eq!(chart.height, 4 * ROW);
        assert!(chart.bars[1].bad);
        let empty = Chart::new("e", "t".into(), "d".into(), "none".into(), vec![]);
        assert!(empty.bars.is_empty());
        assert_eq!(empty.height, ROW);
    }
}

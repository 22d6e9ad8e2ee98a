//! The supervisors' Reports page (`/console/reports`, issue 15 item 4): a date-range
//! form, the cases opened in the range per channel and outcome (the figures of the
//! `cases` report, read through the same use case and audited alike), and download
//! links for every report and the case export in CSV and JSON. The downloads are the
//! agent API's own routes (`GET` with the console's session cookie), so a page and a
//! file can never disagree about who may read them.

use askama::Template;
use axum::{extract::State, http::StatusCode, response::Response};
use case_domain::{
    Channel,
    reports::{DateRange, MAX_RANGE_DAYS, RANGE_UTC_OFFSET, ReportKind},
};
use case_store::reports::ChannelOutcome;
use case_workflows::reports::{self as wf, ReportData};
use chrono::{Days, NaiveDate, Utc};

use super::{ConsoleError, Ctx, Layout, render};
use crate::{AppState, agent_auth::AgentSession, error::ApiError, error::FieldError};

/// The API route whose rule is this page's (supervisors).
pub(crate) const API_RULE: &str = "/v1/agent/reports/{report}";

/// The outcomes the summary shows, in column order.
const OUTCOMES: [&str; 5] = ["reactivated", "cancelled", "expired", "closed", "open"];

/// One channel's line of the summary.
#[derive(Debug)]
pub(super) struct SummaryRow {
    pub(super) label: String,
    pub(super) counts: Vec<i64>,
    pub(super) total: i64,
}

/// A report's download links.
#[derive(Debug)]
pub(super) struct Download {
    name: &'static str,
    label: String,
    help: String,
    csv: String,
    json: String,
}

#[derive(Template)]
#[template(path = "console/reports.html")]
struct ReportsPage {
    layout: Layout,
    from: String,
    to: String,
    max_days: i64,
    utc_offset: &'static str,
    summary: CasesSummary,
    downloads: Vec<Download>,
    export_csv: String,
    export_json: String,
}

/// The cases opened in a range per channel and outcome, as the Reports page and the
/// dashboard show them (`console/cases_summary.html`): a line per channel, a column
/// per outcome, totals.
#[derive(Debug)]
pub(super) struct CasesSummary {
    /// The outcomes (columns): code and label.
    pub(super) outcomes: Vec<(&'static str, String)>,
    pub(super) rows: Vec<SummaryRow>,
    /// Per outcome, in column order.
    pub(super) totals: Vec<i64>,
    /// Every case of the range.
    pub(super) total: i64,
}

impl CasesSummary {
    /// Lays out the `cases` report's lines.
    pub(super) fn new(ui: super::i18n::Ui, lines: &[ChannelOutcome]) -> Self {
        let mut channels: Vec<String> = Channel::ALL.iter().map(|c| c.to_string()).collect();
        for l in lines {
            if !channels.contains(&l.channel) {
                channels.push(l.channel.clone());
            }
        }
        let rows: Vec<SummaryRow> = channels
            .iter()
            .map(|channel| {
                let counts: Vec<i64> = OUTCOMES
                    .iter()
                    .map(|o| {
                        lines
                            .iter()
                            .filter(|l| &l.channel == channel && l.outcome == *o)
                            .map(|l| l.cases)
                            .sum()
                    })
                    .collect();
                SummaryRow {
                    label: ui.code("channel", channel),
                    total: counts.iter().sum(),
                    counts,
                }
            })
            .collect();
        let totals: Vec<i64> = (0..OUTCOMES.len())
            .map(|i| rows.iter().map(|r| r.counts[i]).sum())
            .collect();
        Self {
            outcomes: OUTCOMES
                .iter()
                .map(|o| {
                    let label = if *o == "open" {
                        ui.t("reports.outcome.open")
                    } else {
                        ui.code("state", o)
                    };
                    (*o, label)
                })
                .collect(),
            total: totals.iter().sum(),
            totals,
            rows,
        }
    }
}

/// The range of `?from=&to=` (whole days, China Standard Time), `default_from` to
/// `default_to` when a bound is not given; a bad range is the page's 400.
pub(super) fn range_of(
    ctx: &Ctx,
    default_from: NaiveDate,
    default_to: NaiveDate,
) -> Result<DateRange, ConsoleError> {
    let from = ctx
        .param("from")
        .map_or_else(|| default_from.to_string(), str::to_owned);
    let to = ctx
        .param("to")
        .map_or_else(|| default_to.to_string(), str::to_owned);
    DateRange::parse(Some(&from), Some(&to)).map_err(|errors| {
        ctx.fail(ApiError::Invalid(
            errors
                .into_iter()
                .map(|e| FieldError::new(e.field, &e.message))
                .collect(),
        ))
    })
}

/// The Reports page for `range`.
pub(super) fn page_link(range: DateRange) -> String {
    let query = serde_urlencoded::to_string([
        ("from", range.from().to_string()),
        ("to", range.to().to_string()),
    ])
    .unwrap_or_default();
    format!("/console/reports?{query}")
}

/// The query of a download link.
fn query(range: DateRange, format: &str) -> String {
    serde_urlencoded::to_string([
        ("from", range.from().to_string()),
        ("to", range.to().to_string()),
        ("format", format.to_owned()),
    ])
    .unwrap_or_default()
}

/// `GET /console/reports?from=&to=` (supervisors, as the API's reports). Without a
/// range: the last 30 days up to today (China Standard Time).
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    super::require_api_rule(&session, "get", API_RULE).map_err(|e| ctx.fail(e))?;
    let ui = ctx.ui;
    let now = Utc::now();
    let today = DateRange::day_of(now);
    let default_from = today.checked_sub_days(Days::new(29)).unwrap_or(today);
    let range = range_of(&ctx, default_from, today)?;
    let data = wf::report(
        &state.pool,
        &session.as_agent(),
        ReportKind::Cases,
        range,
        "html",
        &state.sla,
        now,
    )
    .await
    .map_err(|e| ctx.fail(e.into()))?;
    let ReportData::Cases(lines) = data else {
        return Err(ctx.fail(ApiError::Internal(anyhow::anyhow!(
            "the cases report answered with another report"
        ))));
    };
    let summary = CasesSummary::new(ui, &lines);
    let downloads = ReportKind::ALL
        .into_iter()
        .map(|k| {
            let base = format!("/v1/agent/reports/{}", k.as_str());
            Download {
                name: k.as_str(),
                label: ui.t(&format!("reports.kind.{}", k.as_str())),
                help: ui.t(&format!("reports.kind.{}.help", k.as_str())),
                csv: format!("{base}?{}", query(range, "csv")),
                json: format!("{base}?{}", query(range, "json")),
            }
        })
        .collect();
    let page = ReportsPage {
        layout: ctx.layout(ui.t("reports.title"), Some(&session)),
        from: range.from().to_string(),
        to: range.to().to_string(),
        max_days: MAX_RANGE_DAYS,
        utc_offset: RANGE_UTC_OFFSET,
        summary,
        downloads,
        export_csv: format!("/v1/agent/exports/cases?{}", query(range, "csv")),
        export_json: format!("/v1/agent/exports/cases?{}", query(range, "json")),
    };
    Ok(render(&page, StatusCode::OK))
}

/// Labels of the page, in both languages; looked up after the other label lists and
/// checked by the same tests.
pub const LABELS: &[(&str, &str, &str)] = &[
    ("nav.reports", "Reports", "报表"),
    ("reports.title", "Reports and exports", "报表与导出"),
    (
        "reports.intro",
        "Figures for whole days in China Standard Time (UTC{}), both ends included. Every report and export you open is recorded in the audit log.",
        "按北京时间（UTC{}）整日统计，含起止两日。打开的每份报表和导出都会记入审计日志。",
    ),
    ("reports.from", "From", "起始日期"),
    ("reports.to", "To (included)", "截止日期（含）"),
    ("reports.max_days", "At most {} days.", "最长{}天。"),
    ("reports.show", "Show", "查询"),
    (
        "reports.summary",
        "Cases opened in the range, per channel and outcome",
        "期间受理案件（按渠道与结果）",
    ),
    ("reports.channel", "Channel", "渠道"),
    ("reports.total", "Total", "合计"),
    ("reports.outcome.open", "Still open", "处理中"),
    ("reports.downloads", "Downloads", "下载"),
    ("reports.report", "Report", "报表"),
    ("reports.what", "What it holds", "内容"),
    ("reports.files", "Files", "文件"),
    (
        "reports.kind.cases",
        "Cases per channel and outcome",
        "各渠道案件结果",
    ),
    (
        "reports.kind.cases.help",
        "Cases opened in the range by channel, and how they ended (or that they are still open).",
        "期间受理的案件按渠道统计及其结果（或仍在处理）。",
    ),
    ("reports.kind.stages", "Time per stage", "各环节用时"),
    (
        "reports.kind.stages.help",
        "Cases that left each stage in the range: median and 90th-percentile time in the stage, and how many stayed within its SLA.",
        "期间离开各环节的案件：环节用时中位数与90分位，及时限内完成数。",
    ),
    ("reports.kind.agents", "Teams and agents", "团队与坐席"),
    (
        "reports.kind.agents.help",
        "Decisions per team (the role acted in) and agent, cases decided, and the median time a case waited for the decision.",
        "按团队（操作角色）与坐席统计处理决定数、案件数及决定前等待时间中位数。",
    ),
    ("reports.kind.complaints", "Complaints", "投诉"),
    (
        "reports.kind.complaints.help",
        "Complaints made in the range per channel: answered, in time, still open or overdue, escalated, and answer times.",
        "期间投诉按渠道统计：已答复、按时答复、未结、超期、已升级及答复用时。",
    ),
    (
        "reports.kind.false-positive-reasons",
        "False positives per reason code",
        "各原因码误报",
    ),
    (
        "reports.kind.false-positive-reasons.help",
        "Cases flagged in the range per reason code, and how many were approved after review.",
        "期间按原因码标记的案件数，及复核后批准数。",
    ),
    (
        "reports.kind.expedite-requests",
        "Expedite requests",
        "加急申请",
    ),
    (
        "reports.kind.expedite-requests.help",
        "Requests for expedited handling made in the range, per state asked in, and how their cases ended.",
        "期间的加急申请按申请时状态统计，及其案件结果。",
    ),
    ("reports.export", "Case export", "案件导出"),
    (
        "reports.export.help",
        "One line per case opened in the range: id, channel, opened, finished, outcome, state, risk tier and the masked number. No name, ID number or other personal data. JSON comes as one object per line (NDJSON).",
        "期间受理的每个案件一行：编号、渠道、受理与结束时间、结果、状态、风险等级及脱敏号码。不含姓名、身份证号等个人信息。JSON 为每行一个对象（NDJSON）。",
    ),
    ("reports.csv", "CSV", "CSV"),
    ("reports.json", "JSON", "JSON"),
];
